"""The paper's dataset layouts (Gbodjo et al. 2026), plain band folders and multiband GeoTIFFs.

Each ``read_*`` function turns one folder or file into Scenes; each ``is_*`` predicate says
whether a folder looks like that layout (``io/discover.py`` uses them to pick a reader).
All these datasets predate processing baseline 04.00: quantification 10000, offset 0, unless
the folder's own metadata says otherwise. No pixels are read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cloudkit.bands import BY_NAME, L1C_BANDS, L2A_BANDS, esa_order
from cloudkit.errors import InvalidSceneError, SceneNotFoundError, UnknownLayoutError
from cloudkit.io.labels import CLOUDSEN12_LUT, SCL_LUT, WHUS2_LUT
from cloudkit.io.level import PRODUCT_TYPES, level_from, level_in_name, processing_level
from cloudkit.io.raster import RASTER_SUFFIXES, read_header, read_tags
from cloudkit.io.scene import SENTINEL2_QUANTIFICATION, BandSource, LabelSource, Scene
from cloudkit.io.sun_metadata import (
    iso_time,
    stac_angles,
    tag_angles,
    tile_xml_angles,
    time_in_name,
)

# Since baseline 04.00 (January 2022) ESA shifts every band's DN by +1000.
_HARMONISED_BASELINE = (4, 0)
_HARMONISED_OFFSET = -1000

# "B02.jp2", "B8A.tif", or "<anything>_B02.tif" (BigEarthNet-style prefixes).
_BAND_FILE = re.compile(r"^(?:.*_)?(B0[1-9]|B1[0-2]|B8A)$")
_SCL_FILE = re.compile(r"^(?:.*_)?SCL$")
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")
#: SEN12MS Sentinel-2 patch, e.g. ROIs1158_spring_s2_1_p30.tif
SEN12MS_NAME = re.compile(r"^ROIs\d+_[A-Za-z]+_s2_\d+_p\d+\.tif$")

CLOUDSEN12_CSV = "cloudsen12_metadata.csv"
_CLOUDSEN12_COLUMNS = ("roi_id", "s2_id_gee", "test", "label_type")
_CLOUDSEN12_SPLITS = {0: "train", 1: "val", 2: "test"}
_CLOUDSEN12_LABELS = {
    "high": ("manual_hq.tif", "cloudsen12-high"),
    "scribble": ("manual_sc.tif", "cloudsen12-scribble"),
}

_WHUS2_SPLITS = ("train", "test")
#: Bands of the WHUS2-CD+ files, in file band order.
WHUS2_FILE_BANDS = {
    10: ("B02", "B03", "B04", "B08"),
    20: ("B05", "B06", "B07", "B8A", "B11", "B12"),
    60: ("B01", "B09", "B10"),
}


# --- band folder (AWS tile layout, Element 84 COGs, BigEarthNet patches) ----------------


def band_files(folder: Path, names: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """Band rasters directly inside ``folder``, by ESA band name; ``names``: the files in
    it, for a folder that is not local (a prefix in object storage)."""
    found: dict[str, list[Path]] = {}
    for path in _files_in(folder, names):
        if path.suffix.lower() in RASTER_SUFFIXES:
            match = _BAND_FILE.match(path.stem)
            if match:
                found.setdefault(match[1], []).append(path)
    return {band: found[band] for band in esa_order(list(found))}


def _files_in(folder: Path, names: Sequence[str] | None) -> list[Path]:
    if names is not None:
        return sorted(folder / name for name in names)
    return [path for path in sorted(folder.iterdir()) if path.is_file()]


def is_band_folder(folder: Path) -> bool:
    return folder.is_dir() and bool(band_files(folder))


def read_band_folder(
    folder: Path,
    *,
    scl_labels: bool = False,
    names: Sequence[str] | None = None,
    documents: dict[str, bytes] | None = None,
) -> Scene:
    """A folder of one raster per band (``B01.jp2``, ``B8A.tif``, ...) = one scene. A folder
    in object storage (a GDAL ``/vsis3/`` path) comes with the ``names`` of its files and the
    content of its JSON ``documents``, by name."""
    folder = _existing(folder) if names is None else folder
    files = band_files(folder, names)
    if not files:
        raise UnknownLayoutError(
            f"{folder}: no band files (B01.jp2 ... B12.jp2, B8A.jp2, or .tif) in this folder; "
            "expected one raster per Sentinel-2 band"
        )
    twice = {band: paths for band, paths in files.items() if len(paths) > 1}
    if twice:  # which one is the band? Picking one would be a guess
        band, paths = next(iter(twice.items()))
        raise InvalidSceneError(
            f"{folder}: band {band} is in {len(paths)} files ({', '.join(p.name for p in paths)})"
            "; keep one file per band in a band folder"
        )
    bands = {band: [BandSource(band, p) for p in paths] for band, paths in files.items()}
    if documents is None:
        documents = {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}
    meta = _folder_metadata(folder, documents, names)
    labels = []
    if scl_labels:
        labels = [
            LabelSource(p, SCL_LUT, kind="scl")
            for p in _files_in(folder, names)
            if p.suffix.lower() in RASTER_SUFFIXES and _SCL_FILE.match(p.stem)
        ]
    return Scene(
        scene_id=folder.name,
        path=folder,
        layout="band-folder",
        bands=bands,
        quantification=meta.get("quantification", SENTINEL2_QUANTIFICATION),
        add_offset=_offsets_for(list(bands), meta),
        radiometry_file=meta.get("radiometry_file"),
        labels=labels,
        processing_baseline=meta.get("baseline"),
        product_type=meta.get("product_type"),
        sun=meta.get("sun") or _aws_tile_angles(folder, names),
        acquired=meta.get("acquired") or time_in_name(folder.name),
    )


def _aws_tile_angles(folder: Path, names: Sequence[str] | None):
    """The AWS tile layout's ``metadata.xml`` (the granule's MTD_TL.xml), where present."""
    xml = folder / "metadata.xml"
    if names is not None or not xml.is_file():
        return None
    return tile_xml_angles(xml)


def _folder_metadata(
    folder: Path, documents: dict[str, bytes], names: Sequence[str] | None
) -> dict:
    """What tileInfo.json or a STAC item JSON in ``folder`` says about the product."""
    meta: dict = {}
    for name, content in sorted(documents.items()):
        path = folder / name
        doc = _load_json(path, content)
        if not isinstance(doc, dict):
            continue
        if "productName" in doc:  # AWS tileInfo.json
            meta.update(_product_name_metadata(str(doc["productName"])))
            acquired = iso_time(doc.get("timestamp")) or time_in_name(str(doc["productName"]))
            if acquired is not None:
                meta["acquired"] = acquired
        elif doc.get("type") == "Feature" and isinstance(doc.get("assets"), dict):
            stac = _stac_metadata(folder, doc, names)
            if "quantification" in stac:
                stac["radiometry_file"] = path
            props = doc["properties"] if isinstance(doc.get("properties"), dict) else {}
            sun = stac_angles(path, props)
            if sun is not None:
                stac["sun"] = sun
            acquired = iso_time(props.get("datetime"))
            if acquired is not None:
                stac["acquired"] = acquired
            meta.update(stac)
    return meta


def _load_json(path: Path, content: bytes) -> object:
    try:
        return json.loads(content.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidSceneError(
            f"{path}: malformed JSON ({err}); fix or remove the file, or download it again"
        ) from err


def _product_name_metadata(name: str) -> dict:
    meta: dict = {}
    match = _BASELINE_IN_NAME.search(name)
    if match:  # metadata content, not a folder name: the product's full official name
        meta["baseline"] = f"{match[1]}.{match[2]}"
    level = level_in_name(name)
    if level is not None:
        meta["product_type"] = PRODUCT_TYPES[level]
    return meta


def _stac_metadata(folder: Path, item: dict, names: Sequence[str] | None) -> dict:
    """Baseline, product type and, when every band agrees on one scale, the radiometry."""
    props = item.get("properties") or {}
    meta: dict = {}
    if props.get("s2:processing_baseline"):
        meta["baseline"] = str(props["s2:processing_baseline"])
    if props.get("s2:product_type"):
        meta["product_type"] = str(props["s2:product_type"])
    local = {p.name: band for band, paths in band_files(folder, names).items() for p in paths}
    scales, offsets = set(), {}
    for asset in item["assets"].values():
        href = str(asset.get("href", "")).split("?")[0]
        band = local.get(href.rsplit("/", 1)[-1])
        raster_bands = asset.get("raster:bands") or [{}]
        if band is None:
            continue
        scale, offset = raster_bands[0].get("scale"), raster_bands[0].get("offset", 0)
        if not scale or scale <= 0:
            return meta  # radiometry not described for every band: keep the defaults
        scales.add(scale)
        offsets[band] = offset / scale  # reflectance = DN*scale + offset = (DN + o/s) / (1/s)
    simple = len(scales) == 1 and all(abs(o - round(o)) < 1e-6 for o in offsets.values())
    if simple:
        meta["quantification"] = round(1.0 / scales.pop(), 6)
        meta["offsets"] = {band: int(round(o)) for band, o in offsets.items()}
    return meta


def _offsets_for(bands: list[str], meta: dict) -> dict[str, int]:
    if "offsets" in meta:
        return {b: meta["offsets"].get(b, 0) for b in bands}
    # No explicit offsets: products of baseline 04.00 or later still carry the +1000 shift.
    offset = baseline_offset(meta.get("baseline"))
    return {b: offset for b in bands}


def baseline_offset(baseline: str | None) -> int:
    """The DN offset of every band of a product of processing ``baseline`` ("04.00"): -1000
    from 04.00 on, 0 before and when the baseline is unknown."""
    try:
        version = tuple(int(part) for part in (baseline or "").split("."))
    except ValueError:
        return 0
    return _HARMONISED_OFFSET if version >= _HARMONISED_BASELINE else 0


# --- single multiband GeoTIFF ------------------------------------------------------------


def geotiff_band_names(path: Path) -> tuple[str, ...] | None:
    """Bands of a stacked GeoTIFF: as its band descriptions name them, when it has any; else
    by its band count (13: L1C, 12: L2A, ESA order); None if neither. Names that are there
    are obeyed or refused (InvalidSceneError), never replaced by an assumed order: a band
    named twice, or one named otherwise beside named ones, would be stored as another band."""
    header = read_header(path)
    described = [(d or "").strip() for d in header.descriptions]
    if not any(described):
        return {13: L1C_BANDS, 12: L2A_BANDS}.get(header.count)
    named: dict[str, int] = {}
    for number, text in enumerate(described, start=1):
        band = _band_from_description(text)
        if band is None:
            raise InvalidSceneError(
                f"{path}: band {number} is described as {text!r}, which names no Sentinel-2 "
                "band; describe every band by its ESA name (B01 ... B12, B8A) or none"
            )
        if band in named:
            raise InvalidSceneError(
                f"{path}: bands {named[band]} and {number} are both described as {band}; "
                "describe each band once, by its own name"
            )
        named[band] = number
    return tuple(named)


def read_geotiff(path: Path) -> Scene:
    """A 13-band (L1C, ESA order) or 12-band (L2A, no B10) GeoTIFF, or one with band
    descriptions naming its bands."""
    path = _existing(path)
    names = geotiff_band_names(path)
    if names is None:
        count = read_header(path).count
        raise UnknownLayoutError(
            f"{path}: a raster with {count} band(s) and no band descriptions naming Sentinel-2 "
            "bands; expected 13 bands (L1C, ESA order B01..B12 with B8A) or 12 (L2A, no B10)"
        )
    bands = {name: [BandSource(name, path, index=i + 1)] for i, name in enumerate(names)}
    return Scene(
        scene_id=path.stem,
        path=path,
        layout="geotiff",
        bands={b: bands[b] for b in esa_order(list(bands))},
        add_offset={b: 0 for b in bands},
        sun=tag_angles(path, read_tags(path)),
        acquired=time_in_name(path.stem),
    )


def _band_from_description(description: str | None) -> str | None:
    """ "B02", "B2", "b8a" -> ESA name; anything else -> None."""
    match = re.fullmatch(r"[Bb](\d{1,2}|8[Aa])", (description or "").strip())
    if not match:
        return None
    raw = match[1].upper()
    name = "B8A" if raw == "8A" else f"B{int(raw):02d}"
    return name if name in BY_NAME else None


# --- CloudSEN12 --------------------------------------------------------------------------


def is_cloudsen12_root(folder: Path) -> bool:
    return (folder / CLOUDSEN12_CSV).is_file()


def read_cloudsen12(root: Path) -> list[Scene]:
    """Every sample of ``cloudsen12_metadata.csv`` present under ``root/ROI``.

    Rows whose sample folder is absent are skipped (CloudSEN12 is often downloaded in part);
    an absent image inside a present folder is recorded as missing, an absent label is an error.
    """
    root = _existing(root)
    csv_path = root / CLOUDSEN12_CSV
    try:
        # utf-8-sig: tables saved by spreadsheet tools start with a byte-order mark
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as err:
        raise InvalidSceneError(
            f"{csv_path}: not a readable CSV table ({err}); download the metadata table again"
        ) from err
    absent = [c for c in _CLOUDSEN12_COLUMNS if c not in fields]
    if absent:
        raise InvalidSceneError(
            f"{csv_path}: no column(s) {', '.join(absent)}; expected the CloudSEN12 "
            f"metadata table with columns {', '.join(_CLOUDSEN12_COLUMNS)}"
        )
    scenes = []
    for line, raw in enumerate(rows, start=2):  # line 1 is the header
        # short rows give None for their last fields
        row = {key: (value or "").strip() for key, value in raw.items() if key is not None}
        if not row["roi_id"] or not row["s2_id_gee"]:
            raise InvalidSceneError(
                f"{csv_path} line {line}: empty roi_id or s2_id_gee; expected both on every row"
            )
        sample = root / "ROI" / row["roi_id"] / row["s2_id_gee"]
        if sample.is_dir():
            scenes.append(_cloudsen12_scene(csv_path, line, row, sample))
    if not scenes:
        raise InvalidSceneError(
            f"{root}: none of the {len(rows)} samples listed in {CLOUDSEN12_CSV} is on disk; "
            "expected sample folders ROI/<roi_id>/<s2_id_gee>/ next to the table"
        )
    return scenes


def _cloudsen12_scene(csv_path: Path, line: int, row: dict[str, str], sample: Path) -> Scene:
    where = f"{csv_path} line {line}"
    try:
        split = _CLOUDSEN12_SPLITS[int(float(row["test"]))]
    except (KeyError, ValueError) as err:
        raise InvalidSceneError(
            f"{where}: test is {row['test']!r}; expected 0 (train), 1 (valid) or 2 (test)"
        ) from err
    label_type = row["label_type"]
    labels = []
    if label_type in _CLOUDSEN12_LABELS:
        name, kind = _CLOUDSEN12_LABELS[label_type]
        label = sample / "labels" / name
        if not label.is_file():
            raise InvalidSceneError(
                f"{label}: missing, but {where} says label_type {label_type}; "
                "download the sample's labels again"
            )
        labels.append(LabelSource(label, CLOUDSEN12_LUT, kind=kind, nominal_resolution=10))
    elif label_type != "nolabel":
        raise InvalidSceneError(
            f"{where}: label_type is {label_type!r}; expected high, scribble or nolabel"
        )
    image = sample / "S2L1C.tif"
    scene = _stacked_scene(
        f"cloudsen12/{row['roi_id']}/{row['s2_id_gee']}", sample, "cloudsen12", image, 10
    )
    scene.labels, scene.split = labels, split
    # s2_id_gee starts with the datatake's sensing time: the sun is computed from it
    scene.acquired = time_in_name(row["s2_id_gee"])
    return scene


# --- WHUS2-CD+ ---------------------------------------------------------------------------


def is_whus2_root(folder: Path) -> bool:
    return any((folder / split / "10m").is_dir() for split in _WHUS2_SPLITS)


def read_whus2(root: Path) -> list[Scene]:
    """Every scene of ``{train,test}/10m``; its 20m, 60m and label files share its name."""
    root = _existing(root)
    scenes = []
    for split in _WHUS2_SPLITS:
        folder = root / split
        for ten_m in sorted((folder / "10m").glob("*.tif")):
            scenes.append(_whus2_scene(folder, split, ten_m.stem))
    if not scenes:
        raise InvalidSceneError(
            f"{root}: no scenes in train/10m or test/10m; expected WHUS2-CD+ files "
            "{train,test}/{10m,20m,60m}/<id>.tif"
        )
    return scenes


def _whus2_scene(folder: Path, split: str, scene: str) -> Scene:
    bands: dict[str, list[BandSource]] = {}
    missing: dict[str, list[Path]] = {}
    for res, names in WHUS2_FILE_BANDS.items():
        path = folder / f"{res}m" / f"{scene}.tif"
        for index, band in enumerate(names, start=1):
            if path.is_file():
                bands[band] = [BandSource(band, path, index=index, nominal_resolution=res)]
            else:
                bands[band] = []
                missing[band] = [path]
    label = folder / "labels" / f"{scene}_Mask.tif"
    if not label.is_file():
        raise InvalidSceneError(
            f"{label}: missing; every WHUS2-CD+ scene has a mask <id>_Mask.tif in labels/: "
            "download it again"
        )
    order = esa_order(list(bands))
    return Scene(
        scene_id=f"whus2/{split}/{scene}",
        path=folder / "10m" / f"{scene}.tif",
        layout="whus2",
        bands={b: bands[b] for b in order},
        add_offset={b: 0 for b in order},
        labels=[LabelSource(label, WHUS2_LUT, kind="whus2", nominal_resolution=10)],
        missing={b: missing[b] for b in order if b in missing},
        split=split,
    )


# --- SEN12MS -----------------------------------------------------------------------------


def sen12ms_patches(folder: Path, max_depth: int = 3) -> list[Path]:
    """SEN12MS Sentinel-2 patches in ``folder`` and up to ``max_depth - 1`` levels below."""
    found: list[Path] = []
    for depth in range(max_depth):
        pattern = "/".join(["*"] * depth + ["ROIs*_s2_*_p*.tif"])
        found += [p for p in folder.glob(pattern) if SEN12MS_NAME.match(p.name)]
    return sorted(found)


def is_sen12ms_root(folder: Path) -> bool:
    return folder.is_dir() and bool(sen12ms_patches(folder))


def read_sen12ms(root: Path) -> list[Scene]:
    """One Scene per 13-band patch, ``<season>/s2_<scene>/ROIs<n>_<season>_s2_<scene>_p<k>.tif``."""
    root = _existing(root)
    patches = [root] if root.is_file() else sen12ms_patches(root)
    if not patches or not all(SEN12MS_NAME.match(p.name) for p in patches):
        raise UnknownLayoutError(
            f"{root}: no SEN12MS Sentinel-2 patches (ROIs<n>_<season>_s2_<scene>_p<k>.tif) "
            "here or up to two folders below"
        )
    return [_stacked_scene(f"sen12ms/{p.stem}", p, "sen12ms", p, 10) for p in patches]


# --- shared ------------------------------------------------------------------------------


def _stacked_scene(scene_id: str, path: Path, layout: str, image: Path, res: int) -> Scene:
    """A scene whose 13 L1C bands are stacked in ESA order in one file at ``res`` metres."""
    present = image.is_file()
    return Scene(
        scene_id=scene_id,
        path=path,
        layout=layout,
        bands={
            band: [BandSource(band, image, index=i + 1, nominal_resolution=res)] if present else []
            for i, band in enumerate(L1C_BANDS)
        },
        add_offset={band: 0 for band in L1C_BANDS},
        missing={} if present else {band: [image] for band in L1C_BANDS},
    )


def _existing(path: Path) -> Path:
    path = Path(path)
    if str(path).startswith("/vsi"):  # in object storage or on a web server: GDAL reads it
        return path
    if not path.exists():
        raise SceneNotFoundError(f"{path}: no such file or folder")
    return path


def stored_scene_level(layout: str, scene_id: str, path: str, bands: Iterable[str]) -> str | None:
    """The level of a scene a tile store holds, from its ``scenes/`` row (``bands``: the
    store's). A band folder's metadata files are read again when the folder is still there:
    only they tell the level of ``T19UDP_2017-07-29/``."""
    level = level_from(layout=layout, names=(scene_id, Path(path).name), bands=bands)
    if level is None and layout == "band-folder" and Path(path).is_dir():
        level = processing_level(read_band_folder(Path(path)))
    return level
