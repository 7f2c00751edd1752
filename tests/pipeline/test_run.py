"""The scene pipeline shared by `cloudkit tile` and `cloudkit predict`: one policy for bad
paths and bad scenes, the window grid, and a third output plugged in as one writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from cloudkit import _core
from cloudkit.bands import L1C_BANDS
from cloudkit.cli import main
from cloudkit.config import SceneOptions
from cloudkit.errors import InvalidSceneError
from cloudkit.io.grid import GridPlan, plan_grid
from cloudkit.pipeline.run import FAILED, SKIPPED, Progress, run_scenes
from cloudkit.pipeline.windows import WindowGrid
from cloudkit.pipeline.writer import SceneJob, SceneWriter, Written
from cloudkit.sample.synthetic import write_l1c_safe
from tests.helpers.cli import fails_with_one_line
from tests.helpers.predict_models import untrained_checkpoint


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    return untrained_checkpoint(tmp_path / "m.pt", L1C_BANDS)


def _with_quantification(product: Path, value: str) -> Path:
    mtd = product / "MTD_MSIL1C.xml"
    text = mtd.read_text()
    assert "10000</QUANTIFICATION_VALUE>" in text
    mtd.write_text(text.replace("10000</QUANTIFICATION_VALUE>", f"{value}</QUANTIFICATION_VALUE>"))
    return mtd


class TestSameFailureInBothCommands:
    @pytest.mark.parametrize("kind", ["missing", "no layout"])
    def test_a_bad_path_stops_both_commands_with_the_same_line(
        self, kind, tmp_path, capsys, checkpoint
    ):
        bad = tmp_path / "nowhere.SAFE"
        if kind == "no layout":
            bad = tmp_path / "notes"
            bad.mkdir()
            (bad / "readme.txt").write_text("not a product")
        good = write_l1c_safe(tmp_path / "in", size_10m=192, seed=1).path
        store, masks = tmp_path / "o.zarr", tmp_path / "masks"
        tile = fails_with_one_line(capsys, "tile", good, bad, store)
        predict = fails_with_one_line(capsys, "predict", good, bad, "-m", checkpoint, "-o", masks)
        assert tile == predict and str(bad) in tile
        assert not store.exists() and not masks.exists()  # no scene was touched

    def test_another_quantification_is_refused_naming_file_and_value(
        self, tmp_path, capsys, checkpoint
    ):
        product = write_l1c_safe(tmp_path / "in", size_10m=192, seed=1).path
        mtd = _with_quantification(product, "1000")
        store = tmp_path / "o.zarr"
        line = fails_with_one_line(capsys, "tile", product, store)
        assert str(mtd) in line and "quantification value 1000;" in line
        assert zarr.open_group(str(store), mode="r").attrs["num_scenes"] == 0

        masks = tmp_path / "masks"
        code = main(["predict", str(product), "-m", str(checkpoint), "-o", str(masks)])
        err = capsys.readouterr().err
        assert code == 1
        (failure,) = [line for line in err.splitlines() if line.strip().startswith("failed:")]
        assert str(mtd) in failure and "quantification value 1000;" in failure
        assert not masks.exists()  # refused before any output was opened

    @pytest.mark.parametrize("offset", ["-99999", "99999"])
    def test_an_absurd_offset_is_refused_not_clamped(self, tmp_path, capsys, offset):
        product = write_l1c_safe(tmp_path / "in", size_10m=192, seed=1).path
        mtd = product / "MTD_MSIL1C.xml"
        text = mtd.read_text()
        assert ">-1000</RADIO_ADD_OFFSET>" in text
        mtd.write_text(text.replace(">-1000</RADIO_ADD_OFFSET>", f">{offset}</RADIO_ADD_OFFSET>"))
        store = tmp_path / "o.zarr"
        line = fails_with_one_line(capsys, "tile", product, store)
        assert str(mtd) in line and f"radiometric offset B01 {offset}" in line
        assert zarr.open_group(str(store), mode="r").attrs["num_scenes"] == 0


class TestWindowGrid:
    @pytest.mark.parametrize(("h", "w", "size", "overlap"), [(100, 70, 32, 8), (64, 64, 64, 0)])
    def test_rows_and_columns_are_the_kernel_windows_in_cutting_order(self, h, w, size, overlap):
        grid = WindowGrid.of(h, w, size, overlap)
        origins = _core.tile_windows(h, w, size, overlap)
        assert len(grid) == len(origins)
        assert [(r, c) for r in grid.rows for c in grid.columns[r]] == sorted(origins)
        assert grid.rows == sorted(grid.rows)
        assert grid.row_height(grid.rows[-1]) == min(size, h - grid.rows[-1])


class _Counter(SceneWriter):
    """A third output: per scene, the windows of each tile row (and nothing on disk)."""

    wrote = "counted"

    def __init__(self, fail_on: str | None = None) -> None:
        self.options = SceneOptions(resolution=60, workers=1)
        self.fail_on = fail_on
        self.counted: dict[str, list[int]] = {}
        self.aborted: list[str] = []
        self.closed = False

    def plan(self, scene) -> GridPlan:
        return plan_grid(scene, resolution=self.options.resolution)

    def existing(self, plan):
        return "counted before" if plan.scene.scene_id in self.counted else None

    def window(self, plan):
        return 16, 4

    def begin_scene(self, job: SceneJob) -> None:
        self._id, self._rows = job.scene.scene_id, []

    def write_row(self, row, bands, labels) -> int:
        if self._id == self.fail_on:
            raise InvalidSceneError(f"{self._id}: refused by the test")
        assert labels is None and all(b.dtype == np.uint16 for b in bands)
        self._rows.append(row)
        return 2

    def commit_scene(self, job: SceneJob) -> Written:
        self.counted[self._id] = self._rows
        return Written(f"{len(self._rows)} rows")

    def abort_scene(self) -> None:
        self.aborted.append(self._id)

    def close(self) -> None:
        self.closed = True


class TestAThirdOutput:
    @pytest.fixture()
    def products(self, tmp_path) -> list[Path]:
        return [
            write_l1c_safe(tmp_path / name, size_10m=192, seed=i, tile_id=name).path
            for i, name in enumerate(("T31TCJ", "T31TDJ"))
        ]

    def test_rows_top_to_bottom_then_skipped_on_the_next_run(self, products):
        writer = _Counter()
        first = run_scenes(products, writer)
        assert [r.status for r in first.results] == ["counted", "counted"]
        rows = next(iter(writer.counted.values()))
        assert rows == [0, 12, 24]  # a 32 x 32 grid at 60 m, 16 px windows sharing 4 px
        assert first.results[0].windows == 2 * len(rows) and first.results[0].outputs == "3 rows"
        assert writer.closed
        again = run_scenes(products, writer)
        assert [r.status for r in again.results] == [SKIPPED, SKIPPED]
        assert again.results[0].outputs == "counted before"

    def test_a_failing_scene_is_aborted_then_stops_or_is_passed(self, products):
        bad = products[0].name.removesuffix(".SAFE")
        writer = _Counter(fail_on=bad)
        with pytest.raises(InvalidSceneError, match="refused by the test"):
            run_scenes(products, writer)
        assert writer.aborted == [bad] and writer.counted == {}
        writer = _Counter(fail_on=bad)
        seen = []

        class Seen(Progress):
            def scene_finished(self, result):
                seen.append(result.status)

        summary = run_scenes(products, writer, Seen(), keep_going=True)
        assert seen == [FAILED, "counted"] and len(summary.failed) == 1
        assert "refused by the test" in summary.failed[0].error
