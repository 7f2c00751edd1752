"""`cloudkit tile`: the tile store as an output of the scene pipeline.

The pipeline decodes band windows (rasterio, several at once in threads, GIL released by
GDAL) one tile row ahead while Rust resamples, stacks, cuts, compresses and writes the current
row. Memory stays at a few tile rows of DN whatever the scene size.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cloudkit import kernels
from cloudkit.bands import L1C_BANDS, L2A_BANDS
from cloudkit.config import TileOptions
from cloudkit.errors import InvalidSceneError, OptionError
from cloudkit.io.grid import GridPlan, plan_grid
from cloudkit.io.labels import mask_label_source
from cloudkit.io.level import processing_level
from cloudkit.io.location import is_url
from cloudkit.io.scene import Scene
from cloudkit.io.store import SceneRecord, StoreLayout, TileRecord, TileStore
from cloudkit.io.sun_metadata import plan_sun
from cloudkit.peers.registry import PEERS
from cloudkit.pipeline.run import SKIPPED, Progress, Summary, run_scenes
from cloudkit.pipeline.writer import SceneJob, SceneTally, SceneWriter, Written
from cloudkit.predict.output import output_paths

if TYPE_CHECKING:
    from cloudkit.peers.teacher import Labeller, Teacher

TILED = "tiled"


def tile_paths(
    paths: Sequence[Path],
    out: Path | str,
    options: TileOptions,
    progress: Progress | None = None,
    *,
    keep_going: bool = False,
) -> Summary:
    """Tile every scene under ``paths`` into the store at ``out``; scenes it holds are skipped.

    Without ``keep_going`` the first bad scene raises (earlier scenes stay committed);
    otherwise failures are recorded in the summary and the next scene goes on.
    """
    writer = StoreWriter(out, options)
    return run_scenes(paths, writer, progress, keep_going=keep_going, scl_labels=options.scl_labels)


class StoreWriter(SceneWriter):
    """Appends scenes to a tile store (`io/store/`); the Rust ``TileWriter`` writes pixels.

    The store is opened (created when absent) at the first planned scene, whose grid gives
    its layout; every later scene must fit that layout. Any number of writers may append to
    one store at once: each scene is written into a scratch store of its own and committed
    into the store in one short locked step; a scene another writer committed first is
    skipped. With ``options.labels_from`` a peer
    model labels every scene (`teacher.py`), or, when it names a folder, the scene's
    ``SCENE_mask.tif`` there (as `cloudkit predict` writes them) does, in place of any label
    file the scene has.
    """

    wrote = TILED
    reads_labels = True
    options: TileOptions

    def __init__(self, out: Path | str, options: TileOptions) -> None:
        self.out = out if is_url(out) else Path(out)  # an s3:// store stays a URL
        self.options = options
        self._store: TileStore | None = None
        self._scratch: TileStore | None = None  # the scene being written
        self._rust: kernels.TileWriter | None = None
        self._records: list[TileRecord] = []
        source = options.labels_from
        self._mask_folder = Path(source) if source and Path(source).is_dir() else None
        if source and self._mask_folder is None and not set(source.split("+")) <= set(PEERS):
            raise OptionError(
                f"--labels-from {source}: neither a peer model ({', '.join(PEERS)}; several "
                "joined by + vote) nor a folder of masks"
            )
        self._teacher: Teacher | None = None
        if source and self._mask_folder is None:
            # here, not above: a teacher runs a peer through torch, and plain tiling starts
            # without it (torch is some 0.8 GB of a run's peak memory and 4 s of its start)
            from cloudkit.peers.teacher import Teacher

            self._teacher = Teacher(source, threads=options.threads)
        self._labeller: Labeller | None = None
        self._tally = SceneTally()  # the scene's: begin_scene takes its job's

    def plan(self, scene: Scene) -> GridPlan:
        if self._mask_folder is not None:
            mask = output_paths(self._mask_folder, scene.scene_id).mask
            what = f"--labels-from {self._mask_folder}"
            scene = replace(scene, labels=[mask_label_source(mask, what)])
        if self.options.bands is None:
            _check_band_folder_whole(scene)
        plan = plan_grid(
            scene,
            resolution=self.options.resolution,
            bands=self.options.bands,
            decode=self.options.decode,
        )
        if self.options.scl_labels and plan.label is None:  # asked for, so never left out silently
            raise InvalidSceneError(
                f"{scene.scene_id}: --scl-labels, but the product holds no SCL layer (Sen2Cor's "
                "scene classification comes with L2A products); tile it without --scl-labels"
            )
        if self._teacher is not None:
            self._teacher.bands_for(plan)  # a scene it cannot label stops here, in one line
            if not self.options.scl_labels:
                plan = replace(
                    plan, label=None, label_factor=None
                )  # its labels replace the scene's
            elif plan.label_factor is not None and plan.label_factor < -1:
                # the vote puts SCL on the target grid by repeating its pixels, never averaging
                raise InvalidSceneError(
                    f"{scene.scene_id}: --scl-labels with --labels-from: its SCL layer is finer "
                    f"than the {plan.resolution:g} m grid; tile at the SCL's resolution or finer"
                )
        if self._store is None:
            self._store = TileStore.open(self.out, _layout_of(plan, self.options), shared=True)
        return plan

    def existing(self, plan: GridPlan) -> Path | str | None:
        source = self._open_store().scene_sources().get(plan.scene.scene_id)
        return None if source is None else self._same_scene(plan.scene, source)

    def _same_scene(self, scene: Scene, source: str) -> Path | str:
        """The store, holding ``scene`` tiled from ``source``; an error when that is another
        product of the same name."""
        if Path(source).resolve() != Path(scene.path).resolve():
            # two dates of a tile in folders both called T31TCJ/: the name is not the product
            raise InvalidSceneError(
                f"{scene.path}: {self.out} already holds a scene named {scene.scene_id}, tiled "
                f"from {source}; tile this one into another store (a store keeps one scene "
                "per name)"
            )
        return self.out

    def window(self, plan: GridPlan) -> tuple[int, int]:
        return self.options.tile_size, self.options.overlap

    def begin_scene(self, job: SceneJob) -> None:
        plan = job.plan
        self._tally = job.tally
        with_labels = plan.label is not None or self._teacher is not None
        self._scratch = self._open_store().scratch(with_labels=with_labels)
        start = self._scratch.begin_scene(
            plan.scene.scene_id, len(job.windows), with_labels=with_labels
        )
        self._records = []
        # a teacher's labels come on the target grid
        label_factor = 1 if self._teacher is not None else plan.label_factor
        if self._teacher is not None:
            self._labeller = self._teacher.begin_scene(job)
        self._rust = kernels.TileWriter(
            str(self._scratch.path),
            start,
            plan.height,
            plan.width,
            list(plan.factors),
            list(job.dn_shift),
            job.windows.size,
            job.windows.overlap,
            label_factor=label_factor if with_labels else None,
            threads=self.options.workers,
        )

    def write_row(self, row: int, bands: list[np.ndarray], labels: np.ndarray | None) -> int:
        if self._labeller is not None:
            labels = self._labeller.labels(row, bands, labels)
        assert self._rust is not None, "begin_scene made it"
        with self._tally.stage("write"):  # Rust: resample, cut, zstd + CRC-32C, scratch files
            written = self._rust.write_row(row, bands, labels)
        self._records.extend(TileRecord(*w) for w in written)
        return len(written)

    def commit_scene(self, job: SceneJob) -> Written:
        label_kind = self._teacher.kind_with(job.plan) if self._teacher is not None else None
        assert self._scratch is not None, "begin_scene made it"
        if self._rust is not None:  # what the Rust writer's time went on
            cutting, storing = self._rust.seconds
            job.tally.stages.update(cut=cutting, store=storing)
        self._rust = None  # its files are closed: the chunks may move
        summary: dict = {}
        tally = job.tally
        try:
            check = self._labeller.shadow_check if self._labeller is not None else None
            if check is not None:  # the teacher's shadow, checked before anyone sees it
                self._records = check.rewrite(self._scratch, self._records)
                summary["shadow_check"] = check.report()
            vote = self._labeller.report() if self._labeller is not None else {}
            if vote:  # several teachers (or SCL and teachers): how much they disputed
                summary["teacher_vote"] = vote
            with tally.stage("commit"):  # under the lock: chunk renames, index rows
                held = self._open_store().commit_from(
                    self._scratch, _record_of(job, label_kind), self._records
                )
        finally:
            with tally.stage("cleanup"):
                self._drop_scene()
        if held is not None:  # another writer committed the scene first
            return Written(self._same_scene(job.scene, held), status=SKIPPED)
        summary["timings"] = tally.timings()
        return Written(self.out, summary)

    def abort_scene(self) -> None:
        self._drop_scene()

    def _drop_scene(self) -> None:
        if self._labeller is not None and self._labeller.shadow_check is not None:
            self._labeller.shadow_check.close()
        self._rust, self._records, self._labeller = None, [], None
        if self._scratch is not None:
            self._scratch.close()
            shutil.rmtree(self._scratch.path, ignore_errors=True)
            self._scratch = None

    def close(self) -> None:
        self._drop_scene()
        if self._store is not None:
            self._store.close()

    def _open_store(self) -> TileStore:
        assert self._store is not None, "a scene is planned before it is written"
        return self._store


def _layout_of(plan: GridPlan, options: TileOptions) -> StoreLayout:
    return StoreLayout(
        tuple(plan.bands),
        options.tile_size,
        options.overlap,
        float(plan.resolution),
        options.decode.value,
    )


def _check_band_folder_whole(scene: Scene) -> None:
    """A band folder holds a whole product (13 bands for L1C, 12 for L2A, the 12 they share
    when nothing tells the level): one that lacks some would make a store of fewer bands
    without a word. Asking for those bands with --bands says that is meant."""
    if scene.layout != "band-folder":
        return
    level = processing_level(scene)
    expected = {"L1C": L1C_BANDS, "L2A": L2A_BANDS}.get(level or "", L2A_BANDS)
    have = [band for band, sources in scene.bands.items() if sources]
    lacking = [band for band in expected if band not in have]
    if lacking:
        product = f"an {level} product" if level else "a Sentinel-2 product"
        raise InvalidSceneError(
            f"{scene.path}: lacks {','.join(lacking)} of the {len(expected)} bands of {product}"
            f"; to tile the bands it has, pass --bands {','.join(have)}"
        )


def _record_of(job: SceneJob, label_kind: str | None) -> SceneRecord:
    """What the store keeps of the scene; ``label_kind``: a teacher's, else the label file's."""
    plan, scene = job.plan, job.scene
    if label_kind is None:
        label_kind = plan.label.kind if plan.label is not None else ""
    return SceneRecord(
        scene_id=scene.scene_id,
        path=str(Path(scene.path).absolute()),  # what "already in the store" is checked by
        layout=scene.layout,
        crs_wkt=plan.crs.to_wkt(),
        # an Affine's six coefficients
        transform=cast(
            tuple[float, float, float, float, float, float],
            tuple(float(v) for v in plan.transform[:6]),
        ),
        height=plan.height,
        width=plan.width,
        add_offset=tuple(scene.offset_of(b) for b in plan.bands),
        dn_shift=job.dn_shift,
        processing_baseline=scene.processing_baseline or "",
        label_kind=label_kind,
        **_sun_of(plan),
    )


def _sun_of(plan: GridPlan) -> dict:
    """The scene's sun for its store row: read from the product, or computed from its
    acquisition time and place; not known otherwise."""
    sun, _ = plan_sun(plan)
    if sun is None:
        return {}
    return {"sun_azimuth": sun.azimuth, "sun_zenith": sun.zenith, "sun_source": sun.source}
