"""A full disk mid-run, or a read-only output: one line saying so, exit code 1, no work done
before a write that cannot happen, nothing half-written left behind, nothing committed before
lost. The disks are small tmpfs mounts (which need the right to mount: the tests skip with the
reason where that is not allowed)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
import zarr

from cloudkit.cli import main
from cloudkit.sample.synthetic import write_l1c_safe


@contextlib.contextmanager
def small_disk(folder: Path, size: str, *, read_only: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return write_l1c_safe(tmp_path_factory.mktemp("in"), size_10m=384, seed=9).path


def _last_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_predict_leaves_nothing_of_the_scene(product, tmp_path, capsys):
    with small_disk(tmp_path / "disk", "64k") as disk:
        assert main(["predict", str(product), "-o", str(disk / "masks"), "--quicklook"]) == 1
        assert "(no space left on device)" in " ".join(capsys.readouterr().err.lower().split())
        assert list((disk / "masks").iterdir()) == []


def test_tile_keeps_the_committed_scenes(product, tmp_path, capsys):
    other = write_l1c_safe(tmp_path / "other", size_10m=384, seed=10, tile_id="T31TDJ").path
    with small_disk(tmp_path / "disk", "1m") as disk:
        store = disk / "s.zarr"
        assert main(["tile", str(product), str(store), "--resolution", "60",
                     "--tile-size", "32"]) == 0  # fmt: skip
        before = dict(zarr.open_group(str(store), mode="r").attrs)
        filler = disk / "filler"
        with contextlib.suppress(OSError):
            filler.write_bytes(b"\0" * (1 << 20))  # fill what is left
        assert main(["tile", str(other), str(store), "--resolution", "60",
                     "--tile-size", "32"]) == 1  # fmt: skip
        assert "No space left on device" in _last_line(capsys)
        after = dict(zarr.open_group(str(store), mode="r").attrs)
        assert after["num_tiles"] == before["num_tiles"] and after["num_scenes"] == 1
        assert after["in_progress"] is None
        filler.unlink()
        assert main(["check", str(store)]) == 0


def test_a_new_store_on_a_full_disk_leaves_no_half_made_store(product, tmp_path, capsys):
    with small_disk(tmp_path / "disk", "8k") as disk:
        assert main(["tile", str(product), str(disk / "s.zarr")]) == 1
        assert "No space left on device" in _last_line(capsys)
        assert list(disk.iterdir()) == []


def test_checkpoint_on_a_full_disk_is_one_line(tmp_path, capsys):

    store = tmp_path / "s.zarr"
    product = write_l1c_safe(tmp_path / "in", size_10m=384, seed=11, labels=tmp_path / "m").path
    assert main(["tile", str(product), str(store), "--resolution", "20", "--tile-size", "32",
                 "--labels-from", str(tmp_path / "m")]) == 0  # fmt: skip
    capsys.readouterr()
    with small_disk(tmp_path / "disk", "1m") as disk:
        args = ["finetune", str(store), "--out", str(disk / "run"), "--epochs", "1",
                "--batch-size", "4", "--crop", "32", "--workers", "0", "--device", "cpu"]  # fmt: skip
        assert main(args) == 1
        line = _last_line(capsys)
        assert line.startswith(f"cloudkit: error: {disk / 'run'}/")
        assert "cannot write the checkpoint (no space left on device)" in line
        assert not [p for p in (disk / "run").iterdir() if p.suffix in (".pt", ".tmp", ".partial")]


def test_read_only_outputs_stop_before_any_work(product, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    masks = tmp_path / "masks"
    assert main(["tile", str(product), str(store), "--resolution", "60", "--tile-size", "32",
                 "--labels-from", str(_masks(product, masks))]) == 0  # fmt: skip
    capsys.readouterr()
    with small_disk(tmp_path / "ro", "64k", read_only=True) as ro:
        common = ["--epochs", "1", "--batch-size", "4", "--crop", "32", "--workers", "0",
                  "--device", "cpu"]  # fmt: skip
        runs = {
            "pretrain": ["pretrain", str(store), "--out", str(ro / "p"), *common],
            "finetune": ["finetune", str(store), "--out", str(ro / "f"), *common],
            "experiment": ["experiment", str(store), "--test-store", str(store),
                           "--fractions", "100", "--out", str(ro / "x"), *common],
            "demo": ["demo", "--out", str(ro / "demo")],
        }  # fmt: skip
        for name, args in runs.items():
            assert main(args) == 1, name
            line = _last_line(capsys)
            assert line.startswith("cloudkit: error: ") and "cannot write here" in line, name
            assert "Read-only file system" in line and "for --out" in line, name
        assert main(["tile", str(product), str(ro / "t.zarr")]) == 1
        assert "Read-only file system" in _last_line(capsys)
        assert main(["predict", str(product), "-o", str(ro / "m")]) == 1
        assert "read-only file system" in capsys.readouterr().err.lower()


def _masks(product: Path, folder: Path) -> Path:
    """The product's exact classes as masks (what --labels-from reads)."""
    write_l1c_safe(product.parent, size_10m=384, seed=9, labels=folder)
    return folder
