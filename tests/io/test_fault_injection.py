"""Fault injection, generated: every array of a tile store (tiles, index columns, scene
columns) x {a chunk deleted, a byte flipped, its metadata torn} x every command that reads or
appends to a store. Each ends in one line naming the store and the damage (exit 1), or, where
the command reads none of the damaged array, in its correct result; nothing committed is ever
lost, and `cloudkit check` lists the damage every time.

One small real store (the Rust tiler, a synthetic product), copied for each case."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from cloudkit.cli import main
from cloudkit.io.store import StoreReader
from cloudkit.io.store.layout import _INDEX_ARRAYS, _SCENE_ARRAYS, _SUN_ARRAYS
from cloudkit.models.encoder import Encoder
from cloudkit.models.segmentation import build_segmenter, segmenter_state
from cloudkit.sample.synthetic import write_l1c_safe
from tests.helpers.cli import run

TILE = ("--resolution", "20", "--tile-size", "32")
TRAIN = ("--epochs", "1", "--batch-size", "4", "--crop", "32", "--workers", "0", "--device", "cpu")
ARRAYS = (
    "images",
    "valid",
    "labels",
    *_INDEX_ARRAYS,
    *(f"scenes/{name}" for name in (*_SCENE_ARRAYS, *_SUN_ARRAYS)),
)
DAMAGES = ("chunk deleted", "byte flipped", "metadata torn")
COMMANDS = ("tile append", "pretrain", "finetune", "evaluate", "check")
#: what a command reads of the tile arrays (every command reads every array's metadata and
#: every chunk of the index and scene columns on opening the store)
TILES_READ = {
    "tile append": set(),  # it looks for lost tile chunks, and never rewrites one
    "pretrain": {"images", "valid"},
    "finetune": {"images", "valid", "labels"},
    "evaluate": {"images", "valid", "labels"},
    "check": {"images", "valid", "labels"},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(folder, pristine store, a second product to append, a fine-tuned checkpoint)."""
    folder = tmp_path_factory.mktemp("faults")
    masks = folder / "masks"
    first = write_l1c_safe(folder / "a", size_10m=192, seed=3, labels=masks).path
    second = write_l1c_safe(
        folder / "b", size_10m=192, seed=4, sensing="20230620T104031", labels=masks
    ).path
    store = folder / "s.zarr"
    assert _cli("tile", first, store, *TILE, "--labels-from", masks) == 0
    return folder, store, second, _checkpoint(folder / "best.pt", StoreReader.open(store).bands)


def _checkpoint(path: Path, bands) -> Path:
    """A cloud model of random weights, as `cloudkit finetune` saves one (evaluate reads the
    store the same whatever the weights)."""
    torch.manual_seed(0)
    model = build_segmenter(Encoder(bands), head="unet", num_classes=2, binary=True)
    state = segmenter_state(model, task="cloud")
    # half precision, as `cloudkit export` writes: half the bytes to load in every evaluate
    state["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()
    }
    payload = {"model": state, "task": "cloud", "bands": list(bands), "classes": ["clear", "cloud"]}
    torch.save({**payload, "head": "unet"}, path)
    return path


def _cli(*args) -> int:
    return main([str(a) for a in args])


def _chunk(store: Path, name: str) -> Path:
    """The first chunk file of array ``name`` (a tile array's: tile 1)."""
    folder = store / name / "c" / ("1" if name in ("images", "valid", "labels") else "0")
    return next(p for p in sorted(folder.rglob("*")) if p.is_file()) if folder.is_dir() else folder


def _damage(store: Path, name: str, damage: str) -> Path:
    """Damage array ``name`` of ``store``; the file damaged."""
    target = store / name / "zarr.json" if damage == "metadata torn" else _chunk(store, name)
    assert target.is_file(), target
    data = bytearray(target.read_bytes())
    if damage == "chunk deleted":
        target.unlink()
    elif damage == "byte flipped":
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    else:
        target.write_bytes(bytes(data[: len(data) // 2]))
    return target


def _contents(store: Path, leave_out: Path) -> dict[str, str]:
    """Hash of every committed file of the store but the damaged one."""
    return {
        p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p != leave_out and p.name != ".cloudkit.lock"
    }


def _command(command: str, store: Path, made, tmp_path: Path) -> list:
    folder, _, second, checkpoint = made
    return {
        "tile append": ["tile", second, store, *TILE, "--labels-from", folder / "masks"],
        "pretrain": ["pretrain", store, "--out", tmp_path / "p", *TRAIN],
        "finetune": ["finetune", store, "--out", tmp_path / "f", *TRAIN],
        "evaluate": ["evaluate", checkpoint, store, "--device", "cpu", "--batch-size", "4"],
        "check": ["check", store],
    }[command]


def _stops(command: str, name: str, damage: str) -> bool:
    """Whether ``command`` must stop on this damage. Where it reads nothing of the damaged
    array (the labels when pretraining, a tile chunk that an append never rewrites), its
    own result is correct and `check` finds the damage."""
    if damage == "metadata torn" or name not in ("images", "valid", "labels"):
        return True
    if command == "tile append":
        return damage == "chunk deleted"
    return name in TILES_READ[command]


def _names(name: str, damage: str) -> str:
    """What the one line says of the damage: the array, or its metadata file."""
    return f"{name}/zarr.json" if damage == "metadata torn" else name


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("name", ARRAYS)
def test_a_damaged_store_is_never_read_as_data(made, name, damage, tmp_path, capsys):
    """Every command on one damaged copy (a failed command changes nothing; the append,
    which may succeed, runs last)."""
    store = tmp_path / "s.zarr"
    shutil.copytree(made[1], store)
    damaged = _damage(store, name, damage)
    before = _contents(store, damaged)
    for command in sorted(COMMANDS, key=lambda c: c == "tile append"):
        capsys.readouterr()
        code, _, err = run(capsys, *_command(command, store, made, tmp_path))
        assert "Traceback" not in err, (command, err)
        if command == "check":
            assert code == 1, err
            lines = err.splitlines()
            assert lines[-1].startswith("cloudkit: error: 1 of 1 store(s) damaged"), err
            assert any(str(store) in ln and _names(name, damage) in ln for ln in lines), err
        elif not _stops(command, name, damage):
            assert code == 0, (command, err)
        else:
            # training prints what it is about to do first: the error is the last line
            assert code == 1, (command, err)
            line = err.splitlines()[-1]
            assert line.startswith("cloudkit: error: "), (command, err)
            assert str(store) in line and _names(name, damage) in line, (command, line)
            assert "damaged" in line, (command, line)
        after = _contents(store, damaged)
        if command == "tile append" and code == 0:  # the appended scene's files are new
            assert _grown(before, after)
            assert _cli("check", store) == 1  # the damage is still found
        else:
            assert after == before, command  # nothing committed lost or changed


def _grown(before: dict[str, str], after: dict[str, str]) -> bool:
    """Only what an append rewrites changed: the commit point, index and scene columns and
    the arrays' shapes; every committed tile chunk as it was."""
    tiles = ("images/c/", "valid/c/", "labels/c/")
    return all(after.get(k) == v for k, v in before.items() if k.startswith(tiles))
