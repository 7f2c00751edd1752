"""What reduced-resolution decoding changes: JPEG 2000 resolution levels against area averaging,
on real 10 m pixels, in reflectance and in the default model's masks.

`cloudkit predict` reads a 10 m band for a 20 m model from its JPEG 2000 file's resolution
level 1 (the wavelet's low-pass image, about a quarter of the decoding) instead of decoding
every pixel and averaging 2 x 2 blocks (``--decode full``, bit-exact). The two differ: the
low-pass filter is not a box. The only real 10 m pixels in ``../shared/data`` are GeoTIFFs, so
each band is written here as a lossless JPEG 2000 file (reversible 5/3 wavelet, 1024 px
tiles) and read back at level 1 through cloudkit's decoding lanes (GDAL shows the levels of a
file of even size only, and of none below about 128 px: the 509 px CloudSEN12 images lose
their last row and column, the 120 px BigEarthNet patches are mirrored out to 256 px). Images:

- the 15 CloudSEN12 images (509 px, L1C, B02 B03 B04), 8 of them with human labels;
- the six BigEarthNet patches (120 px, L2A, B02 B03 B04 B08).

Reported: the difference in reflectance (mean absolute, 99th percentile, relative to the
mean), and for the default model on the CloudSEN12 images (true colour, as in the quality
table) the share of pixels whose class changes, with cloud F1 and mean IoU against the human
labels from each decoding; last, the run's peak RSS (its process's VmHWM: peak_memory.py).

    python benches/bench_reduced_decode.py [--model default] [--json out.json]

Speed is measured by ``bench_predict.py --size 10980`` and ``bench_tile.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as quality  # noqa: E402
from peak_memory import hwm_mb  # noqa: E402

JP2_OPTIONS = {
    "driver": "JP2OpenJPEG",
    "QUALITY": 100,
    "REVERSIBLE": "YES",
    "BLOCKXSIZE": 1024,
    "BLOCKYSIZE": 1024,
    # the images are not georeferenced here; a grid keeps GDAL from warning about it
    "crs": "EPSG:32631",
    "transform": Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5000000.0),
}


def write_jp2(dn: np.ndarray, path: Path) -> Path:
    h, w = dn.shape
    with rasterio.open(path, "w", width=w, height=h, count=1, dtype="uint16", **JP2_OPTIONS) as dst:
        dst.write(dn, 1)
    return path


def read_level(path: Path, level: int) -> np.ndarray:
    """A band at a resolution level, read as `cloudkit predict` reads it."""
    from cloudkit.io.band_stream import BandStream, RasterBand

    with BandStream([RasterBand(path, level=level)], workers=1) as stream:
        return stream.rows(0, 0, stream.shape(0)[0])


def reduced_mean(folder: Path):
    """A coarsening like bench_quality's block mean, but through JPEG 2000 levels: each band
    of ``refl`` (C, H, W) as a lossless file, read at level log2(k) (NaN: DN 0, no data)."""
    count = iter(range(10**9))

    def coarsen(refl: np.ndarray, k: int) -> np.ndarray:
        level = int(np.log2(k))
        if 2**level != k:
            raise ValueError(f"a resolution level is 2**j times coarser, not {k}")
        out = []
        h, w = refl.shape[1:]
        for band in refl:
            dn = np.where(np.isfinite(band), np.clip(np.round(band * 10000.0), 1, 65535), 0)
            # GDAL shows no level of a small file: mirror it out to 256 px (JPEG 2000
            # extends an image symmetrically at its edges too) and keep the original's part
            pad = ((0, max(0, 256 - h)), (0, max(0, 256 - w)))
            dn = np.pad(dn, pad, mode="symmetric")
            path = write_jp2(dn.astype(np.uint16), folder / f"band{next(count)}.jp2")
            low = read_level(path, level).astype(np.float32)[: h // k, : w // k]
            out.append(np.where(low > 0, low / 10000.0, np.nan))
        return np.stack(out).astype(np.float32)

    return coarsen


def bigearthnet() -> list[tuple[str, np.ndarray]]:
    """(name, reflectance (4, 120, 120)) of B02 B03 B04 B08 of each BigEarthNet patch."""
    root = quality.DATA / "bigearthnet" / "BigEarthNet-S2-Example"
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        bands = [
            quality._read(folder / f"{folder.name}_{b}.tif") for b in ("B02", "B03", "B04", "B08")
        ]
        out.append((folder.name, np.stack(bands).astype(np.float32) / 10000.0))
    return out


def even(sample: quality.Sample) -> quality.Sample:
    """The sample without its last row and column where its size is odd."""
    h, w = (n - n % 2 for n in sample.labels.shape)
    return replace(sample, refl=sample.refl[:, :h, :w], labels=sample.labels[:h, :w])


def labelled(kind: str) -> list[quality.Sample]:
    return [even(s) for s in quality.cloudsen12(kind)]


def cloudsen12_images() -> list[quality.Sample]:
    """Every CloudSEN12 image, labelled or not (labels: 255 where there are none)."""
    labelled_ = {s.name: s for s in labelled("hq") + labelled("sc")}
    root = quality.DATA / "cloudsen12-figures"
    out = []
    for path in sorted(root.glob("**/S2L1C.tif")):
        name = str(path.parent.relative_to(root))
        if name in labelled_:
            out.append(labelled_[name])
            continue
        refl = quality.cloudsen12_reflectance(path)
        labels = np.full(refl.shape[1:], quality.NODATA, np.uint8)
        out.append(even(quality.Sample(name, refl, quality.RGB, labels, "L1C", 10.0)))
    return out


def reflectance_difference(images, coarsen) -> dict:
    diffs, means = [], []
    for refl in images:
        full = quality._block_mean(refl, 2)
        low = coarsen(refl, 2)
        both = np.isfinite(full) & np.isfinite(low)
        diffs.append(np.abs(low - full)[both])
        means.append(full[both])
    d, m = np.concatenate(diffs), np.concatenate(means)
    return {
        "pixels": int(d.size),
        "mean_abs": float(d.mean()),
        "p99_abs": float(np.percentile(d, 99)),
        "max_abs": float(d.max()),
        "mean_reflectance": float(m.mean()),
        "relative_mean_abs": float(d.mean() / m.mean()),
    }


def mask_comparison(samples: list[quality.Sample], model: str, coarsen) -> dict:
    """Pixels whose class changes over every image, and the quality table's scores on the
    human labels (dense and scribbles) from each decoding."""
    runs = {
        "full": quality.model_method(model, "cpu")[0],
        "reduced": quality.model_method(model, "cpu", coarsen=coarsen)[0],
    }
    changed = total = 0
    for sample in samples:
        valid = np.isfinite(sample.refl).all(axis=0)
        changed += int((runs["full"](sample) != runs["reduced"](sample))[valid].sum())
        total += int(valid.sum())
    out: dict = {"images": len(samples), "changed_fraction": changed / total}
    for kind, name in (("hq", "dense"), ("sc", "scribbles")):
        scored = quality.Scored(name, "human", "CloudSEN12", labelled(kind))
        out[name] = {decode: quality.score(scored, run) for decode, run in runs.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (quality.DATA / "cloudsen12-figures").is_dir():
        print(f"the real samples are not at {quality.DATA}", file=sys.stderr)
        return 1
    samples = cloudsen12_images()
    with tempfile.TemporaryDirectory(prefix="bench-reduced-") as tmp:
        coarsen = reduced_mean(Path(tmp))
        results = {
            "reflectance": {
                "cloudsen12 (B02 B03 B04, 15 images)": reflectance_difference(
                    [s.refl for s in samples], coarsen
                ),
                "bigearthnet (B02 B03 B04 B08, 6 patches)": reflectance_difference(
                    [refl for _, refl in bigearthnet()], coarsen
                ),
            },
            "masks": mask_comparison(samples, args.model, coarsen),
        }
    print("10 m -> 20 m: JPEG 2000 level 1 against the 2 x 2 area average")
    print("| images | pixels | mean abs diff | 99th pct | max | relative to mean reflectance |")
    print("|---|---|---|---|---|---|")
    for name, r in results["reflectance"].items():
        print(
            f"| {name} | {r['pixels']} | {r['mean_abs']:.4f} | {r['p99_abs']:.4f} | "
            f"{r['max_abs']:.4f} | {100 * r['relative_mean_abs']:.2f} % |"
        )
    m = results["masks"]
    print(
        f"\nmodel {args.model} at 20 m on {m['images']} CloudSEN12 images (true colour): "
        f"{100 * m['changed_fraction']:.2f} % of pixels change class"
    )
    print("| human labels | decoding | cloud F1 | shadow F1 | mean IoU (4 classes) |")
    print("|---|---|---|---|---|")
    for name in ("dense", "scribbles"):
        for decode in ("full", "reduced"):
            r = m[name][decode]
            print(
                f"| {name} | {decode} | {r['cloud_f1']:.3f} | {r.get('shadow_f1', 0):.3f} | "
                f"{r['mean_iou']:.3f} |"
            )
    print(f"\npeak RSS of the run: {hwm_mb():.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
