"""Plan the common pixel grid of a scene: one file per band and its integer resampling factor.

Pixel sizes come from the files' headers, never from their names: a folder may hold every
band at 900 m. For each band the planner picks, among the files whose pixel size is an integer
multiple or divisor of the target, the one that serves it best:

1. the same pixel size;
2. else the coarsest file finer than the target, area-averaged down (finer data carries more
   information than upsampled coarse data), unless it is only a producer's upsampled copy
   (L2A's B01 at 20 m holds no more detail than the native 60 m file);
3. else the finest coarser file, preferring native data, upsampled by nearest neighbour.

Files the product lists but lacks take part in the choice: when the best file is absent the
plan fails with its name instead of quietly using worse data. Then all chosen files must
share one CRS, origin and extent. Only headers are read.

``decode="reduced"`` does not decode what averaging would throw away: a JPEG 2000 file that
is averaged down by a factor holding 2**j is decoded at its codestream's resolution level j
instead (a 10 m band read at 20 m costs about a quarter), and only the rest of the factor is
averaged. The levels are the wavelet's low-pass images, close to but not equal to the area
average: predictions at coarser resolutions use them by default, tiling when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from affine import Affine
from rasterio.crs import CRS

from cloudkit.bands import BY_NAME
from cloudkit.config import Decode
from cloudkit.errors import BandMismatchError, InvalidSceneError
from cloudkit.io.raster import RasterHeader, is_present, read_header
from cloudkit.io.scene import BandSource, LabelSource, Scene

# Pixel sizes within this relative tolerance are equal (JP2 headers round to ~1e-9).
_REL_TOL = 1e-6


@dataclass(frozen=True)
class GridPlan:
    scene: Scene
    bands: tuple[str, ...]  # ESA order
    sources: tuple[BandSource, ...]  # one chosen file per band, same order
    # per band, from what is decoded to the target grid: k>1 = k times coarser (nearest
    # upsample by k); k<-1 = |k| times finer (area-average downsample); 1 = same grid
    factors: tuple[int, ...]
    label: LabelSource | None
    label_factor: int | None
    crs: CRS
    transform: Affine  # of the target grid
    resolution: float  # target pixel size in CRS units
    height: int
    width: int
    # per band: the JPEG 2000 resolution level decoded (0: full resolution; j: 2**j coarser)
    levels: tuple[int, ...]


@dataclass(frozen=True)
class _Option:
    """A file that could serve a band: on disk (with its header) or only listed (absent)."""

    band: str
    path: Path
    pixel: float  # pixel size from the header; the nominal one for absent files
    nominal: int | None
    source: BandSource | None = None  # None: listed by the product's metadata, absent on disk
    header: RasterHeader | None = None

    @property
    def upsampled_by_producer(self) -> bool:
        """True for files finer than the band's native resolution, e.g. L2A's B01 at 20 m."""
        size = self.nominal if self.nominal is not None else self.pixel
        return size < BY_NAME[self.band].resolution * (1 - _REL_TOL)


def plan_grid(
    scene: Scene,
    *,
    resolution: float | None = None,
    bands: Sequence[str] | None = None,
    at_least: float | None = None,
    decode: Decode | str = Decode.full,
) -> GridPlan:
    """Choose a file per band and the target grid; raise a CloudkitError naming what is wrong.

    ``resolution``: target pixel size in CRS units (default: the finest pixel size among the
    files of the requested bands, but no finer than ``at_least`` when given: a model made to
    work at 20 m reads a 10 m product at 20 m, a 60 m one at 60 m). ``bands``: ESA names
    (default: every band of the scene). ``decode``: full, or reduced to decode JPEG 2000
    files at their coarser resolution levels where the target is coarser (module docstring).
    """
    decode = Decode(decode)  # ValueError for anything else
    if resolution is not None and not resolution > 0:
        raise InvalidSceneError(
            f"{scene.scene_id}: target resolution {resolution}; expected a positive pixel size "
            "in metres, e.g. 10, 20 or 60"
        )
    wanted = _requested_bands(scene, bands)
    headers: dict[Path, RasterHeader] = {}
    options = {band: _options(scene, band, headers) for band in wanted}
    _require_files(scene, wanted, options)
    on_disk = sorted({o.pixel for opts in options.values() for o in opts if o.source})
    target = float(resolution) if resolution is not None else on_disk[0]
    if resolution is None and at_least is not None and target < at_least:
        target = float(at_least)

    chosen = [_choose(options[band], target) for band in wanted]
    absent = [o for o in chosen if o.source is None]
    if absent:
        raise _absent_files_error(scene, target, absent, options, on_disk)

    factors = [_factor(o.pixel, target, o.path) for o in chosen]
    # The grid's origin and size come from a file already on it, if any (else the first).
    ref_at = factors.index(1) if 1 in factors else 0
    # none is absent now: each chosen option has its source and header
    ref = cast(RasterHeader, chosen[ref_at].header)
    crs, origin = ref.crs, (ref.transform.c, ref.transform.f)
    height, width = _scaled_size(ref, factors[ref_at])
    for option, factor in zip(chosen, factors, strict=True):
        header = cast(RasterHeader, option.header)
        _check_same_grid(ref.path, crs, origin, (height, width), header, factor, target)

    levels = [0] * len(chosen)
    if decode is Decode.reduced:
        levels = [
            _reduced_level(cast(RasterHeader, o.header), f)
            for o, f in zip(chosen, factors, strict=True)
        ]
        factors = [_after_level(f, j) for f, j in zip(factors, levels, strict=True)]

    label, label_factor = _pick_label(scene, target, headers)
    if label is not None:  # then it has its factor
        _check_same_grid(
            ref.path,
            crs,
            origin,
            (height, width),
            headers[label.path],
            cast(int, label_factor),
            target,
        )
    return GridPlan(
        scene=scene,
        bands=tuple(wanted),
        sources=tuple(cast(BandSource, o.source) for o in chosen),
        factors=tuple(factors),
        label=label,
        label_factor=label_factor,
        crs=crs,
        transform=Affine(target, 0.0, origin[0], 0.0, -target, origin[1]),
        resolution=target,
        height=height,
        width=width,
        levels=tuple(levels),
    )


# --- which bands, which files ------------------------------------------------------------


def _scene_bands(scene: Scene) -> list[str]:
    return sorted(set(scene.bands) | set(scene.missing), key=lambda b: BY_NAME[b].band_id)


def _requested_bands(scene: Scene, bands: Sequence[str] | None) -> list[str]:
    have = _scene_bands(scene)
    if bands is None:
        if not have:
            raise InvalidSceneError(f"{scene.scene_id}: the scene lists no bands at all")
        return have
    unknown = [b for b in bands if b not in BY_NAME]
    if unknown:
        raise BandMismatchError(
            f"unknown band(s) {', '.join(unknown)}; expected ESA names: {', '.join(BY_NAME)}"
        )
    absent = [b for b in bands if b not in have]
    if absent:
        raise BandMismatchError(
            f"{scene.scene_id}: no band {', '.join(absent)} in this {scene.layout} scene; "
            f"it has {', '.join(have)}"
        )
    if len(set(bands)) != len(bands) or not bands:
        raise BandMismatchError(
            f"bands {', '.join(bands) or '(none)'}: expected each band once, at least one"
        )
    return sorted(bands, key=lambda b: BY_NAME[b].band_id)


def _options(scene: Scene, band: str, headers: dict[Path, RasterHeader]) -> list[_Option]:
    found: list[_Option] = []
    listed = list(scene.missing.get(band, []))
    for source in scene.bands.get(band, []):
        if not is_present(source.path):
            listed.append(source.path)  # described by the reader, gone since
            continue
        header = _header(source.path, headers)
        if source.index > header.count:
            raise InvalidSceneError(
                f"{source.path}: has {header.count} band(s), but band {source.index} should "
                f"hold {band}; expected the file of the {scene.layout} layout"
            )
        found.append(
            _Option(
                band, source.path, _pixel_size(header), source.nominal_resolution, source, header
            )
        )
    for path in listed:
        nominal = _nominal_of_absent(path, band)
        found.append(_Option(band, path, float(nominal), nominal))
    return found


def _nominal_of_absent(path: Path, band: str) -> int:
    """Resolution of an absent file from its name (``.._B02_10m``), else the band's native one."""
    tail = path.stem.rsplit("_", 1)[-1]
    if tail.endswith("m") and tail[:-1].isdigit():
        return int(tail[:-1])
    return BY_NAME[band].resolution


def _choose(options: list[_Option], target: float) -> _Option:
    """The file that serves ``target`` best (rules in the module docstring).

    When no file fits by an integer factor, the best of all is returned so that computing
    its factor reports it by name.
    """

    def tie_break(o: _Option) -> tuple:
        return (o.source is None, o.nominal or 0, str(o.path))

    pool = [o for o in options if _integer_ratio(o.pixel, target)] or options
    equal = [o for o in pool if _close(o.pixel, target)]
    if equal:
        return min(equal, key=tie_break)
    finer = [o for o in pool if o.pixel < target and not o.upsampled_by_producer]
    if finer:
        return min(finer, key=lambda o: (-o.pixel, tie_break(o)))
    coarser = [o for o in pool if o.pixel > target]
    if coarser:
        native = [o for o in coarser if not o.upsampled_by_producer] or coarser
        return min(native, key=lambda o: (o.pixel, tie_break(o)))
    return min(pool, key=lambda o: (-o.pixel, tie_break(o)))


def _require_files(scene: Scene, wanted: list[str], options: dict[str, list[_Option]]) -> None:
    """Every requested band needs at least one file on disk."""
    no_file = [b for b in wanted if not any(o.source for o in options[b])]
    if not no_file:
        return
    first = no_file[0]
    listed = [o.path for o in options[first]]
    need = f"needs {_show(scene, listed[0])}, which is missing" if listed else "has no file"
    others = f" (as do {', '.join(no_file[1:])})" if len(no_file) > 1 else ""
    usable = [b for b in wanted if b not in no_file]
    if not usable:
        raise InvalidSceneError(
            f"{scene.scene_id}: band {first} {need}{others}: no requested band has a file on "
            "disk (metadata-only product?); download the full product"
        )
    on_disk = sorted({o.pixel for b in usable for o in options[b] if o.source})
    works = _working_resolutions(usable, options, on_disk)
    hint = f" (they give --resolution {_join(works)})" if works else ""
    raise InvalidSceneError(
        f"{scene.scene_id}: band {first} {need}{others}, and no other file on disk holds it; "
        f"select the bands on disk with --bands {','.join(usable)}{hint}"
    )


def _absent_files_error(
    scene: Scene,
    target: float,
    absent: list[_Option],
    options: dict[str, list[_Option]],
    on_disk: list[float],
) -> InvalidSceneError:
    first = absent[0]
    message = (
        f"{scene.scene_id}: band {first.band} at {target:g} m needs "
        f"{_show(scene, first.path)}, which is missing"
    )
    if len(absent) > 1:
        message += f", as are the files for {', '.join(o.band for o in absent[1:])}"
    works = _working_resolutions(list(options), options, on_disk)
    if works:
        message += f"; the files on disk give --resolution {_join(works)}"
    else:
        message += "; no resolution works with the files on disk: download them or use --bands"
    return InvalidSceneError(message)


def _working_resolutions(
    bands: list[str], options: dict[str, list[_Option]], candidates: list[float]
) -> list[float]:
    return [r for r in candidates if all(_choose(options[b], r).source for b in bands)]


# --- headers and grid checks -------------------------------------------------------------


def _header(path: Path, headers: dict[Path, RasterHeader]) -> RasterHeader:
    """Read once per plan (WHUS2 files hold several bands); check it is a usable map grid."""
    if path in headers:
        return headers[path]
    header = read_header(path)
    crs = header.crs
    if crs is None or not crs.is_projected:
        what = "no CRS" if crs is None else f"a geographic CRS ({crs.to_string()})"
        raise InvalidSceneError(
            f"{path}: bad CRS: the raster has {what}; expected a projected CRS in metres "
            "(UTM for Sentinel-2): use the georeferenced original file"
        )
    t = header.transform
    if t.b != 0 or t.d != 0 or t.e >= 0 or not _close(t.a, -t.e):
        raise InvalidSceneError(
            f"{path}: pixel grid {tuple(round(v, 6) for v in t[:6])} is rotated, flipped or "
            "has non-square pixels; expected a north-up grid of square pixels"
        )
    headers[path] = header
    return header


def _pixel_size(header: RasterHeader) -> float:
    return float(header.transform.a)


def _integer_ratio(pixel: float, target: float) -> bool:
    ratio = max(pixel, target) / min(pixel, target)
    return abs(ratio - round(ratio)) <= _REL_TOL * ratio


def _factor(pixel: float, target: float, path: Path) -> int:
    """Integer resampling factor from ``pixel`` to ``target`` (sign convention of GridPlan)."""
    coarse = pixel >= target
    k = round(pixel / target if coarse else target / pixel)
    if not _integer_ratio(pixel, target):
        raise InvalidSceneError(
            f"{path}: pixel size {pixel:g} m is not an integer multiple or divisor of the "
            f"{target:g} m target grid; choose a resolution that divides or is divided by it"
        )
    return k if coarse else -k


def _reduced_level(header: RasterHeader, factor: int) -> int:
    """The coarsest JPEG 2000 level j whose 2**j divides an averaging factor and the file's
    size exactly (so that the level's pixels tile the target's), else 0."""
    level = 0
    while factor < -1 and level < header.reduced_levels:
        step = 2 ** (level + 1)
        if -factor % step or header.height % step or header.width % step:
            break
        level += 1
    return level


def _after_level(factor: int, level: int) -> int:
    """What is left of an averaging factor once level ``level`` is decoded."""
    if level == 0:
        return factor
    rest = -factor // 2**level
    return 1 if rest == 1 else -rest


def _scaled_size(header: RasterHeader, factor: int) -> tuple[int, int]:
    if factor >= 1:
        return header.height * factor, header.width * factor
    return header.height // -factor, header.width // -factor


def _check_same_grid(
    ref_path: Path,
    crs: CRS,
    origin: tuple[float, float],
    size: tuple[int, int],
    header: RasterHeader,
    factor: int,
    target: float,
) -> None:
    path = header.path
    if header.crs != crs:
        raise InvalidSceneError(
            f"{path}: CRS {cast(CRS, header.crs).to_string()} differs from {crs.to_string()} of "
            f"{ref_path}; expected every band of a scene on one CRS: reproject it first"
        )
    x0, y0 = header.transform.c, header.transform.f
    if abs(x0 - origin[0]) > target / 2 or abs(y0 - origin[1]) > target / 2:
        raise InvalidSceneError(
            f"{path}: upper-left corner ({x0:g}, {y0:g}) is not that of {ref_path} "
            f"({origin[0]:g}, {origin[1]:g}); expected aligned grids (within half a "
            f"{target:g} m pixel): are the files from the same tile?"
        )
    scaled = _scaled_size(header, factor)
    if scaled != size:
        raise InvalidSceneError(
            f"{path}: {header.height}x{header.width} pixels of {_pixel_size(header):g} m give "
            f"{scaled[0]}x{scaled[1]} at {target:g} m, but {ref_path} gives {size[0]}x{size[1]}; "
            "expected every band to cover the same extent"
        )


# --- labels ------------------------------------------------------------------------------


def _pick_label(
    scene: Scene, target: float, headers: dict[Path, RasterHeader]
) -> tuple[LabelSource | None, int | None]:
    """The label file nearest the target: equal pixel size, else finer, else coarser."""
    candidates = [
        (label, _pixel_size(_header(label.path, headers)))
        for label in scene.labels
        if is_present(label.path)
    ]
    if not candidates:
        return None, None

    def rank(item: tuple[LabelSource, float]) -> tuple:
        label, pixel = item
        if _close(pixel, target):
            group, distance = 0, 0.0
        elif pixel < target:
            group, distance = 1, target - pixel
        else:
            group, distance = 2, pixel - target
        return (group, distance, label.nominal_resolution or 0, str(label.path))

    # A file off the target by a non-integer factor is skipped when another one fits.
    ranked = sorted(candidates, key=rank)
    for position, (label, pixel) in enumerate(ranked, start=1):
        try:
            factor = _factor(pixel, target, label.path)
        except InvalidSceneError:
            if position == len(ranked):
                raise
            continue
        header = headers[label.path]
        if label.index > header.count:
            raise InvalidSceneError(
                f"{label.path}: has {header.count} band(s); expected labels in band {label.index}"
            )
        return label, factor
    raise AssertionError("unreachable: the last candidate returns or raises")


# --- small helpers -----------------------------------------------------------------------


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL_TOL * max(abs(a), abs(b))


def _show(scene: Scene, path: Path) -> str:
    """``path`` relative to the scene folder when inside it: shorter, still unambiguous."""
    try:
        return str(Path(path).relative_to(scene.path))
    except ValueError:
        return str(path)


def _join(resolutions: list[float]) -> str:
    return " or ".join(f"{r:g}" for r in resolutions)
