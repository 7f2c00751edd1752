"""The small L1C product that ships with cloudkit, for `cloudkit tile --sample` and first steps.

It is synthetic (see ``cloudkit.sample.synthetic``): a 7.68 x 7.68 km tile of UTM zone 31N at 10 m
(768 x 768 px; 384 x 384 at 20 m, 128 x 128 at 60 m), all 13 bands as lossless JPEG 2000,
processing baseline 04.00 (RADIO_ADD_OFFSET -1000), with water, vegetation, soil, snow,
cumulus and their cast shadows, a cirrus veil and a no-data wedge.
Regenerate it with ``python -m cloudkit.sample.product`` (seeded, so the result is the same).
"""

from __future__ import annotations

from pathlib import Path

from cloudkit.errors import SceneNotFoundError

SAMPLE_DIR = Path(__file__).parents[1] / "_sample"
SAMPLE_SEED = 20230615


def sample_product() -> Path:
    """Path of the shipped sample ``.SAFE``."""
    found = sorted(SAMPLE_DIR.glob("*.SAFE"))
    if not found:
        raise SceneNotFoundError(
            f"{SAMPLE_DIR}: the sample product is missing from this installation"
        )
    return found[0]


def main() -> None:
    from cloudkit.sample.synthetic import write_l1c_safe

    product = write_l1c_safe(SAMPLE_DIR, size_10m=768, seed=SAMPLE_SEED, overwrite=True)
    print(product.path)


if __name__ == "__main__":
    main()
