"""A damaged tile store is found, never read as data: every chunk of a new store carries a
CRC-32C and every committed tile has all its chunks, so a flipped byte or a lost chunk stops
a reader with one line naming the tile, and `cloudkit check` lists every damaged tile.

Stores are written by the real tiler (Rust) from a small synthetic product."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import zarr

from cloudkit.cli import main
from cloudkit.config import TileOptions
from cloudkit.errors import StoreError
from cloudkit.io.store import INTEGRITY, StoreReader
from cloudkit.sample.synthetic import write_l1c_safe
from cloudkit.tiler.writer import tile_paths


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    product = write_l1c_safe(folder / "in", size_10m=192, seed=5, labels=folder / "masks")
    store = folder / "s.zarr"
    options = TileOptions(resolution=20, tile_size=32, labels_from=str(folder / "masks"))
    tile_paths([product.path], store, options)
    return store


@pytest.fixture()
def store(pristine, tmp_path):
    import shutil

    copy = tmp_path / "s.zarr"
    shutil.copytree(pristine, copy)
    return copy


def _chunk(store, name: str, row: int):
    return store / name / "c" / str(row) / "0" / "0" / "0"


def test_every_chunk_is_checksummed_and_written(pristine):
    group = zarr.open_group(str(pristine), mode="r")
    assert group.attrs["integrity"] == INTEGRITY
    for name in ("images", "valid", "labels"):
        meta = json.loads((pristine / name / "zarr.json").read_text())
        assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd", "crc32c"]
        n = int(group.attrs["num_tiles"])
        assert all(_chunk(pristine, name, row).is_file() for row in range(n)), name
    assert main(["check", str(pristine)]) == 0


@pytest.mark.parametrize("name", ["images", "valid", "labels"])
def test_a_flipped_byte_is_found(store, name, capsys):
    chunk = _chunk(store, name, 2)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    reader = StoreReader.open(store)
    with pytest.raises(StoreError, match=rf"tile 2: its {name} chunk does not decode"):
        reader.tile(name, 2)
    with pytest.raises(StoreError, match=rf"tile 2: its {name} chunk does not decode"):
        reader.tiles(name, np.array([0, 1, 2, 3]))
    assert reader.tile(name, 1) is not None  # the others still read
    assert main(["check", str(store)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0].startswith(f"{store}: tile 2: its {name} chunk does not decode (")
    assert len(lines) == 2  # the damaged tile, then the verdict
    assert lines[-1] == "cloudkit: error: 1 of 1 store(s) damaged (each problem is listed above)"
    assert "1 problem(s)" in out


@pytest.mark.parametrize("name", ["images", "valid", "labels"])
def test_a_lost_chunk_is_found(store, name, capsys):
    _chunk(store, name, 3).unlink()
    reader = StoreReader.open(store)
    with pytest.raises(StoreError, match=rf"tile 3 has lost its {name} chunk"):
        reader.tile(name, 3)
    assert main(["check", str(store)]) == 1
    err = capsys.readouterr().err
    assert f"{store}: tile 3 has lost its {name} chunk ({name}/c/3/0/0/0)" in err


@pytest.mark.parametrize("workers", ["0", "1"])
def test_training_on_a_damaged_store_stops_in_one_line(store, tmp_path, capsys, workers):
    _chunk(store, "images", 1).unlink()
    args = ["pretrain", str(store), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "4", "--crop", "32", "--workers", workers, "--device", "cpu"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("cloudkit: error: ") and "tile 1 has lost its images chunk" in last
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_an_older_store_without_checksums_reads_as_before(store, capsys):
    """Stores written before checksums left out chunks of only the fill value: a missing
    chunk there is not damage, and check says it has no checksums."""
    group = zarr.open_group(str(store), mode="r+")
    attrs = dict(group.attrs)
    del attrs["integrity"]
    group.attrs.clear()
    group.attrs.update(attrs)
    _chunk(store, "labels", 3).unlink()
    reader = StoreReader.open(store)
    assert (reader.tile("labels", 3) == 255).all()  # the fill value, as zarr reads it
    assert main(["check", str(store)]) == 0
    assert "no checksums (an older store): every chunk reads" in capsys.readouterr().out


def test_a_store_of_checksummed_tiles_only_reads_as_before(store, capsys):
    """Stores of cloudkit before index and scene columns wrote every chunk: a column's chunk
    of only fill values was left out there, so a missing one is no damage; one that does not
    decode still is."""
    from cloudkit.io.store import TILE_INTEGRITY

    group = zarr.open_group(str(store), mode="r+")
    group.attrs.update({"integrity": TILE_INTEGRITY})
    (store / "cloud_fraction" / "c" / "0").unlink()  # all NaN: never written then
    reader = StoreReader.open(store)
    assert np.isnan(reader.index("cloud_fraction")).all()
    assert main(["check", str(store)]) == 0
    assert (
        "CRC-32C checksums, every tile chunk written: every chunk reads" in capsys.readouterr().out
    )
    chunk = store / "tile_row" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="its tile_row column does not decode"):
        StoreReader.open(store)
    assert main(["check", str(store)]) == 1


@pytest.mark.parametrize("name", ["images", "valid", "labels", "tile_row", "scenes/crs"])
@pytest.mark.parametrize("lost", ["metadata", "array"])
def test_a_lost_array_or_its_metadata_is_found(store, name, lost, capsys):
    """A zarr.json deleted (its chunks still there), or the whole array: never read as a
    store without it (a store of this cloudkit has every array; labels say they were)."""
    import shutil

    if lost == "metadata":
        (store / name / "zarr.json").unlink()
        says = f"the metadata of its {name} ({name}/zarr.json) is lost, its chunks are there"
    else:
        shutil.rmtree(store / name)
        says = {"images": "it has no images array", "labels": "its labels array is lost"}.get(
            name, f"its {name} array is lost"
        )
    with pytest.raises(StoreError, match=re.escape(says)):
        StoreReader.open(store)
    assert main(["check", str(store)]) == 1
    assert says in capsys.readouterr().err
