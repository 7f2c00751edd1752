"""A scene's processing level, L1C (top of atmosphere) or L2A (bottom of atmosphere).

The one place that decides it, for every command that needs it (a peer model has one network
per level; an L2A product has no B10). The evidence, strongest first:

1. the product type in the product's own metadata (``S2MSI1C``, ``S2MSI2A``: the .SAFE
   metadata XML, an AWS ``tileInfo.json``, a STAC item);
2. the layout: ``l1c-safe``/``l2a-safe``, and the datasets whose images are all L1C
   (CloudSEN12's ``S2L1C.tif``, SEN12MS, WHUS2-CD+);
3. the name of the scene or its file: ``MSIL1C``/``MSIL2A`` as in ESA's product names, or
   ``L1C``/``L2A`` as a separate word (``S2A_29RKH_20200219_0_L2A``);
4. band B10: only L1C has it (Sen2Cor drops the cirrus band).

Nothing else is guessed: a plain GeoTIFF of, say, B02 B03 B04 B08 named ``crop.tif`` has no
level, and what needs one refuses it with a line saying how to name it (:func:`require_level`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from cloudkit.errors import InvalidSceneError
from cloudkit.io.scene import Scene

L1C, L2A = "L1C", "L2A"
LEVELS = (L1C, L2A)
#: The product type ESA writes for each level (Product_Info/PRODUCT_TYPE, ``s2:product_type``).
PRODUCT_TYPES = {L1C: "S2MSI1C", L2A: "S2MSI2A"}
#: Layouts whose every scene has one level.
LAYOUT_LEVELS = {
    "l1c-safe": L1C,
    "l2a-safe": L2A,
    "cloudsen12": L1C,
    "sen12ms": L1C,
    "whus2": L1C,
}
# "S2A_MSIL1C_2017...", "L2A_T31TCJ_...", "..._0_L2A": the level as a word of its own
_LEVEL_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(?:MSI)?(L1C|L2A)(?![A-Za-z0-9])", re.IGNORECASE)


def level_in_name(name: str) -> str | None:
    """``L1C``/``L2A`` when ``name`` carries exactly one of them as a word, else None."""
    found = {m.upper() for m in _LEVEL_IN_NAME.findall(name)}
    return found.pop() if len(found) == 1 else None


def level_of_product_type(product_type: str | None) -> str | None:
    """``S2MSI1C`` -> L1C, ``S2MSI2A`` (or ``S2MSI2Ap``) -> L2A, anything else -> None."""
    kind = (product_type or "").upper()
    if kind.startswith("S2MSI1C"):
        return L1C
    if kind.startswith("S2MSI2A"):
        return L2A
    return None


def level_from(
    *,
    layout: str,
    product_type: str | None = None,
    names: Iterable[str] = (),
    bands: Iterable[str] = (),
) -> str | None:
    """The level these facts of a scene tell (in the order of the module docstring), or None."""
    level = level_of_product_type(product_type) or LAYOUT_LEVELS.get(layout)
    for name in names:
        level = level or level_in_name(name)
    if level is None and "B10" in set(bands):
        level = L1C
    return level


def processing_level(scene: Scene) -> str | None:
    """The level of a scene as a reader described it, or None when nothing tells."""
    on_disk = [band for band, sources in scene.bands.items() if sources]
    return level_from(
        layout=scene.layout,
        product_type=scene.product_type,
        names=(scene.scene_id, Path(scene.path).name),
        bands=on_disk,
    )


def require_level(level: str | None, scene: str, needed_by: str) -> str:
    """``level``, or a one-line InvalidSceneError saying why ``needed_by`` needs it and how a
    scene can tell it."""
    if level is None:
        raise InvalidSceneError(
            f"{scene}: cannot tell whether it is L1C or L2A (no product metadata says so, its "
            f"name holds neither MSIL1C nor MSIL2A, and it has no B10), and {needed_by} "
            "depends on it; put MSIL1C or MSIL2A (or _L1C / _L2A) in the file or folder name"
        )
    return level
