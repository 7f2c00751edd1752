"""Describe a Sentinel-2 L1C or L2A ``.SAFE`` product from its metadata XML.

Everything comes from ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``: processing baseline, product
type, quantification value, per-band offsets and the list of band files. Files the metadata
lists but that are absent on disk are recorded in ``Scene.missing`` (not an error here: the
grid planner decides whether the bands it needs are there). No pixels are read.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from cloudkit.bands import BY_NAME, L1C_BANDS, L2A_BANDS, band_by_id
from cloudkit.errors import InvalidSceneError, SceneNotFoundError
from cloudkit.io.labels import SCL_LUT
from cloudkit.io.raster import RASTER_SUFFIXES, find_raster
from cloudkit.io.scene import SENTINEL2_QUANTIFICATION, BandSource, LabelSource, Scene
from cloudkit.io.sun_metadata import iso_time, safe_angles, time_in_name

#: Metadata file name -> cloudkit layout name.
MTD_LAYOUTS = {"MTD_MSIL1C.xml": "l1c-safe", "MTD_MSIL2A.xml": "l2a-safe"}

# Band file stems: L1C ".._B8A", L2A ".._B8A_20m", L2A scene classification ".._SCL_20m".
_L1C_BAND = re.compile(r"_(B0[1-9]|B1[0-2]|B8A)$")
_L2A_BAND = re.compile(r"_(B0[1-9]|B1[0-2]|B8A)_(\d+)m$")
_L2A_SCL = re.compile(r"_SCL_(\d+)m$")

_FORMAT_SUFFIX = {"JPEG2000": ".jp2", "GEOTIFF": ".tif"}


def find_mtd(product: Path) -> Path | None:
    """The product metadata file at the top of ``product``, or None."""
    for name in MTD_LAYOUTS:
        if (product / name).is_file():
            return product / name
    return None


def read_safe(path: Path, *, scl_labels: bool = False) -> Scene:
    """Describe the L1C or L2A product at ``path`` (the ``.SAFE`` folder or its MTD file).

    ``scl_labels``: offer the L2A scene classification (SCL) rasters as label candidates.
    """
    product = Path(path)
    if not product.exists():
        raise SceneNotFoundError(f"{product}: no such product; expected a .SAFE folder")
    if product.is_file() and product.name in MTD_LAYOUTS:
        product = product.parent
    mtd = find_mtd(product) if product.is_dir() else None
    if mtd is None:
        raise InvalidSceneError(
            f"{product}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml at the top of the product; "
            "expected an unzipped Sentinel-2 .SAFE folder: unzip it or download it again"
        )
    layout = MTD_LAYOUTS[mtd.name]
    root = _parse_xml(mtd)
    is_l2a = layout == "l2a-safe"
    band_names = L2A_BANDS if is_l2a else L1C_BANDS

    bands: dict[str, list[BandSource]] = {name: [] for name in band_names}
    missing: dict[str, list[Path]] = {}
    labels: list[LabelSource] = []
    for stem_path, suffix in _band_file_stems(product, mtd, root):
        kind, band, nominal = _classify(stem_path.name, is_l2a)
        if kind is None or (kind == "band" and band not in bands):
            continue  # AOT, WVP, TCI, previews: not inputs to cloud detection
        found = find_raster(stem_path) if suffix is None else _existing(stem_path, suffix)
        if kind == "scl":
            if scl_labels and found is not None:
                labels.append(LabelSource(found, SCL_LUT, kind="scl", nominal_resolution=nominal))
            continue
        if found is None:
            missing.setdefault(band, []).append(
                stem_path.with_name(stem_path.name + (suffix or _missing_suffix(root)))
            )
        else:
            bands[band].append(BandSource(band, found, nominal_resolution=nominal))

    for sources in bands.values():
        sources.sort(key=lambda s: (s.nominal_resolution or 0, str(s.path)))
    labels.sort(key=lambda s: (s.nominal_resolution or 0, str(s.path)))
    quantification, offsets = _radiometry(mtd, root, is_l2a)
    return Scene(
        scene_id=product.name.removesuffix(".SAFE"),
        path=product,
        layout=layout,
        bands=bands,
        quantification=quantification,
        add_offset={b: o for b, o in offsets.items() if b in bands},
        radiometry_file=mtd,
        labels=labels,
        processing_baseline=_text(root, "General_Info", "Product_Info", "PROCESSING_BASELINE"),
        product_type=_text(root, "General_Info", "Product_Info", "PRODUCT_TYPE"),
        missing={b: missing[b] for b in band_names if b in missing},
        sun=safe_angles(product),
        acquired=iso_time(_text(root, "General_Info", "Product_Info", "PRODUCT_START_TIME"))
        or time_in_name(product.name),
    )


def _parse_xml(mtd: Path) -> ET.Element:
    try:
        return ET.parse(mtd).getroot()
    except ET.ParseError as err:
        raise InvalidSceneError(
            f"{mtd}: malformed XML ({err}); the product is probably truncated: download it again"
        ) from err
    except OSError as err:
        raise InvalidSceneError(
            f"{mtd}: cannot be read ({err.strerror}); check its permissions"
        ) from err


def _text(root: ET.Element, *steps: str) -> str | None:
    """Text at the path ``steps`` below the root, whatever the namespaces; None if absent."""
    node = root.find("/".join("{*}" + s for s in steps))
    if node is None or node.text is None:
        return None
    return node.text.strip()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _band_file_stems(product: Path, mtd: Path, root: ET.Element) -> list[tuple[Path, str | None]]:
    """(path, suffix) of every band file: MTD entries have no suffix, globbed files have one."""
    listed = [
        node.text.strip()
        for node in root.iter()
        # IMAGE_FILE_2A: Sen2Cor's name for the entry in L2A metadata before PSD 14
        if _local(node.tag) in ("IMAGE_FILE", "IMAGE_FILE_2A") and node.text
    ]
    if listed:
        # Entries carry no file ending; tolerate one anyway.
        return [
            (product / rel[: -len(ext)], ext) if ext in RASTER_SUFFIXES else (product / rel, None)
            for rel in listed
            for ext in [Path(rel).suffix.lower()]
        ]
    # Some repackaged products drop the file list: fall back to what is on disk.
    granules = sorted(p for p in (product / "GRANULE").glob("*") if (p / "IMG_DATA").is_dir())
    if len(granules) > 1:
        raise InvalidSceneError(
            f"{mtd}: no IMAGE_FILE entries and {len(granules)} granules under GRANULE/; "
            "cloudkit reads single-tile products (format of Dec 2016 onwards): "
            "split the product into tiles first"
        )
    files = (
        sorted(p for p in (granules[0] / "IMG_DATA").rglob("*") if p.suffix in RASTER_SUFFIXES)
        if granules
        else []
    )
    return [(p.with_suffix(""), p.suffix) for p in files]


def _existing(stem_path: Path, suffix: str) -> Path | None:
    path = stem_path.with_name(stem_path.name + suffix)
    return path if path.is_file() else None


def _classify(stem: str, is_l2a: bool) -> tuple[str | None, str, int | None]:
    """("band", name, nominal metres), ("scl", "", nominal metres) or (None, "", None)."""
    if not is_l2a:
        match = _L1C_BAND.search(stem)
        if match:
            return "band", match[1], BY_NAME[match[1]].resolution
        return None, "", None
    match = _L2A_BAND.search(stem)
    if match:
        return "band", match[1], int(match[2])
    match = _L2A_SCL.search(stem)
    if match:
        return "scl", "", int(match[1])
    return None, "", None


def _missing_suffix(root: ET.Element) -> str:
    """File ending of absent band files, from the Granule's ``imageFormat`` attribute."""
    for node in root.iter():
        if _local(node.tag) == "Granule":
            fmt = node.get("imageFormat", "").upper()
            return _FORMAT_SUFFIX.get(fmt, ".jp2")
    return ".jp2"


def _radiometry(mtd: Path, root: ET.Element, is_l2a: bool) -> tuple[float, dict[str, int]]:
    """Quantification value and per-band add offsets (absent list: offset 0, pre-04.00)."""
    q_tag, list_tag, offset_tag = (
        ("BOA_QUANTIFICATION_VALUE", "BOA_ADD_OFFSET_VALUES_LIST", "BOA_ADD_OFFSET")
        if is_l2a
        else ("QUANTIFICATION_VALUE", "Radiometric_Offset_List", "RADIO_ADD_OFFSET")
    )
    q_node = root.find(f".//{{*}}{q_tag}")
    quantification = (
        _number(mtd, q_tag, q_node.text)
        if q_node is not None and q_node.text
        else SENTINEL2_QUANTIFICATION
    )
    if quantification <= 0:
        raise InvalidSceneError(
            f"{mtd}: {q_tag} is {quantification:g}; expected a positive value such as 10000"
        )
    offsets: dict[str, int] = {}
    for node in root.findall(f".//{{*}}{list_tag}/{{*}}{offset_tag}"):
        band_id = node.get("band_id", "")
        try:
            band = band_by_id(int(band_id)).name
        except (KeyError, ValueError) as err:
            raise InvalidSceneError(
                f"{mtd}: {offset_tag} has band_id {band_id!r}; expected 0..12"
            ) from err
        offsets[band] = int(_number(mtd, offset_tag, node.text or ""))
    return quantification, offsets


def _number(mtd: Path, tag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise InvalidSceneError(f"{mtd}: {tag} is {text.strip()!r}; expected a number") from err
