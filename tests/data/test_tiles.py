"""TileDataset on a store tiled from the real T29UNU product, the views of its tiles and their
pairing.

The real store (60 m, 64 px tiles, Sen2Cor SCL as labels) is built once for the module; tiny
stores written through the store's own API stand in for the error cases.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, Subset

from cloudkit.config import TileOptions
from cloudkit.data import CloudinessPairs, TileDataset, TwoViews, ssl_view_transform
from cloudkit.data.tiles import cloud_bins_of
from cloudkit.errors import BandMismatchError, StoreError, TileShapeError
from cloudkit.io.store import SceneRecord, StoreLayout, TileRecord, TileStore
from cloudkit.tiler.writer import tile_paths

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")
TILE = 64


@pytest.fixture(scope="module")
def store(t29unu, tmp_path_factory):
    out = tmp_path_factory.mktemp("t29unu") / "tiles.zarr"
    options = TileOptions(resolution=60, bands=BANDS, tile_size=TILE, scl_labels=True)
    tile_paths([t29unu], out, options)
    return out


@pytest.fixture(scope="module")
def raw(store):
    return zarr.open_group(str(store), mode="r")


@pytest.fixture(scope="module")
def tiles(store):
    return TileDataset([store], with_labels=True)


def _kept_rows(raw, min_valid: float) -> np.ndarray:
    n = raw.attrs["num_tiles"]
    return np.flatnonzero(raw["valid_fraction"][:n] >= min_valid)


def _tiny_store(path, *, bands=BANDS, tile_size=TILE, valid_fractions=(1.0,)):
    """A store of constant tiles (DN 1500) without labels."""
    with TileStore.open(path, StoreLayout(tuple(bands), tile_size, 0, 60.0)) as tile_store:
        n = len(valid_fractions)
        start = tile_store.begin_scene("tiny", n, with_labels=False)
        if n:
            group = zarr.open_group(str(path), mode="r+")
            group["images"][start : start + n] = 1500
            group["valid"][start : start + n] = 1
        record = SceneRecord(
            scene_id="tiny",
            path="/data/tiny.SAFE",
            layout="l1c-safe",
            crs_wkt="EPSG:32629",
            transform=(60.0, 0.0, 600000.0, 0.0, -60.0, 5900040.0),
            height=tile_size,
            width=tile_size * max(n, 1),
            add_offset=(-1000,) * len(bands),
            dn_shift=(0,) * len(bands),
            processing_baseline="04.00",
            label_kind="",
        )
        records = [
            TileRecord(start + i, 0, tile_size * i, v, math.nan)
            for i, v in enumerate(valid_fractions)
        ]
        tile_store.commit_scene(record, records)
    return path


class TestTileDataset:
    def test_layout_and_length_follow_the_store(self, tiles, raw):
        assert tiles.bands == BANDS
        assert tiles.tile_size == TILE
        assert len(tiles) == len(_kept_rows(raw, 0.5)) > 100

    def test_item_types_and_shapes(self, tiles):
        item = tiles[3]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (11, TILE, TILE)
        assert item["valid"].dtype == torch.bool and item["valid"].shape == (1, TILE, TILE)
        assert item["labels"].dtype == torch.uint8 and item["labels"].shape == (1, TILE, TILE)
        assert item["index"] == 3

    def test_reflectance_is_offset_corrected_dn_and_no_data_is_zero(self, tiles, raw):
        rows = _kept_rows(raw, 0.5)
        fractions = raw["valid_fraction"][rows]
        i = int(np.flatnonzero(fractions < 1.0)[0])  # a tile with both valid and no-data pixels
        dn = raw["images"][rows[i]].astype(np.float64)
        valid = raw["valid"][rows[i], 0] == 1
        image = tiles[i]["image"].numpy()
        y, x = np.argwhere(valid)[0]
        assert image[4, y, x] == pytest.approx((dn[4, y, x] - 1000) / 10000, abs=1e-6)
        np.testing.assert_allclose(image[:, valid], (dn[:, valid] - 1000) / 10000, atol=1e-6)
        assert (image[:, ~valid] == 0.0).all() and (~valid).any()
        assert (tiles[i]["valid"][0].numpy() == valid).all()

    def test_cloud_bin_is_the_binned_cloud_fraction_of_the_labels(self, tiles):
        bins = tiles.cloud_bins()
        assert bins.dtype == np.int64 and bins.shape == (len(tiles),)
        assert ((bins >= -1) & (bins <= 9)).all()
        assert len(np.unique(bins[bins >= 0])) >= 5  # the scene has clear to overcast tiles
        for i in np.linspace(0, len(tiles) - 1, 7).astype(int):
            item = tiles[int(i)]
            labels = item["labels"].numpy()
            labelled = labels != 255
            cloudy = np.isin(labels, (1, 2)).sum() / labelled.sum()
            assert item["cloud_bin"] == bins[i] == min(int(cloudy * 100) // 10, 9)

    def test_cloud_bins_of_edges(self):
        fractions = np.array([0.0, 0.0999, 0.1, 0.7, 0.95, 1.0, np.nan], dtype=np.float32)
        assert cloud_bins_of(fractions).tolist() == [0, 0, 1, 7, 9, 9, -1]

    def test_min_valid_filters_tiles(self, store, raw):
        strict = TileDataset([store], min_valid=0.99)
        assert len(strict) == len(_kept_rows(raw, 0.99)) < len(_kept_rows(raw, 0.5))
        assert all(strict[i]["valid"].float().mean() >= 0.99 for i in range(0, len(strict), 50))
        assert len(TileDataset([store], min_valid=0.0)) == raw.attrs["num_tiles"]

    def test_several_stores_are_concatenated(self, store, tiles):
        both = TileDataset([store, store])
        n = len(tiles)
        assert len(both) == 2 * n
        assert torch.equal(both[n + 5]["image"], tiles[5]["image"])
        assert both[n + 5]["index"] == n + 5
        assert both.cloud_bins().tolist() == 2 * tiles.cloud_bins().tolist()

    def test_index_out_of_range(self, tiles):
        with pytest.raises(IndexError):
            tiles[len(tiles)]

    def test_forked_workers_reopen_the_store(self, tiles):
        expected = torch.stack([tiles[i]["image"] for i in range(8)])  # handles open in parent
        loader = DataLoader(
            Subset(tiles, range(8)), batch_size=4, num_workers=2, multiprocessing_context="fork"
        )
        images = torch.cat([batch["image"] for batch in loader])
        assert torch.equal(images, expected)

    def test_pickles_without_open_handles(self, tiles):
        tiles[0]
        copy = pickle.loads(pickle.dumps(tiles))
        assert copy.open_readers() == 0
        assert torch.equal(copy[7]["image"], tiles[7]["image"])

    def test_many_stores_open_only_what_is_read_and_at_most_open_readers(
        self, tmp_path, monkeypatch
    ):
        import cloudkit.data.tiles as tiles_module

        monkeypatch.setattr(tiles_module, "OPEN_READERS", 3)
        paths = []
        for k in range(6):
            paths.append(tmp_path / f"s{k}.zarr")
            _tiny_store(paths[-1], valid_fractions=(1.0, 1.0))
        many = TileDataset(paths)
        assert len(many) == 12 and many.open_readers() == 0  # indexes read, no reader kept
        many[0]
        many[1]  # same store
        assert many.open_readers() == 1
        for i in range(0, 12, 2):
            many[i]
        assert many.open_readers() == 3
        assert list(many._readers) == [3, 4, 5]  # the least recently used were closed
        many[0]  # store 0 again: reopened
        assert list(many._readers) == [4, 5, 0]
        assert float(many[0]["image"].mean()) == pytest.approx(float(many[11]["image"].mean()))


class TestTileDatasetErrors:
    def test_missing_path(self, tmp_path):
        with pytest.raises(StoreError, match="no such tile store"):
            TileDataset([tmp_path / "absent.zarr"])

    def test_folder_that_is_not_a_store(self, tmp_path):
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(StoreError, match="not a tile store"):
            TileDataset([tmp_path])

    def test_zarr_group_that_is_not_a_tile_store(self, tmp_path):
        zarr.create_group(str(tmp_path / "other.zarr"))
        with pytest.raises(StoreError, match="not a cloudkit tile store"):
            TileDataset([tmp_path / "other.zarr"])

    @pytest.mark.parametrize("fractions", [(), (0.2, 0.4)])
    def test_store_without_usable_tiles(self, tmp_path, fractions):
        path = _tiny_store(tmp_path / "t.zarr", valid_fractions=fractions)
        with pytest.raises(
            StoreError, match=r"t\.zarr: no tile with valid fraction >= 0\.5"
        ) as err:
            TileDataset([path])
        assert "\n" not in str(err.value)

    def test_stores_with_other_bands(self, store, tmp_path):
        other = _tiny_store(tmp_path / "rgb.zarr", bands=("B02", "B03", "B04"))
        with pytest.raises(BandMismatchError, match=r"rgb\.zarr: bands B02,B03,B04 differ"):
            TileDataset([store, other])

    def test_stores_with_other_tile_size(self, store, tmp_path):
        other = _tiny_store(tmp_path / "t32.zarr", tile_size=32)
        with pytest.raises(TileShapeError, match=r"t32\.zarr: tile size 32 differs from 64"):
            TileDataset([store, other])

    def test_labels_asked_of_an_unlabelled_store(self, tmp_path):
        path = _tiny_store(tmp_path / "t.zarr")
        with pytest.raises(StoreError, match="has no labels"):
            TileDataset([path], with_labels=True)
        item = TileDataset([path])[0]
        assert item["cloud_bin"] == -1
        assert item["image"][0, 0, 0].item() == pytest.approx(0.05)  # (1500 - 1000) / 10000


class _FakeTiles:
    """Stands for a TileDataset: tile i is a constant image of value i."""

    def __init__(self, bins):
        self._bins = np.asarray(bins, dtype=np.int64)

    def cloud_bins(self):
        return self._bins.copy()

    def __len__(self):
        return len(self._bins)

    def __getitem__(self, i):
        return {"image": torch.full((1, 4, 4), float(i)), "index": i, "cloud_bin": self._bins[i]}


class TestViews:
    def test_two_views_of_one_tile(self, tiles):
        views = TwoViews(tiles, ssl_view_transform(32))
        item = views[10]
        assert len(views) == len(tiles)
        assert item["view1"].shape == item["view2"].shape == (11, 32, 32)
        assert item["index"] == 10 and item["cloud_bin"] == tiles.cloud_bins()[10]

    def test_cloudiness_pairs_stay_in_their_bin(self, tiles):
        pairs = CloudinessPairs(tiles, ssl_view_transform(32), seed=0)
        bins = tiles.cloud_bins()
        partners = np.array([pairs.partner_of(i) for i in range(len(pairs))])
        assert (bins[partners] == bins).all()
        counts = np.bincount(bins[bins >= 0])
        for i, j in enumerate(partners):
            if bins[i] >= 0 and counts[bins[i]] > 1:
                assert j != i
        item = pairs[10]
        assert item["view1"].shape == item["view2"].shape == (11, 32, 32)
        assert item["index"] == 10 and item["cloud_bin"] == bins[10]

    def test_view2_comes_from_the_partner(self, tiles):
        pairs = CloudinessPairs(tiles, lambda image: image, seed=1)
        item = pairs[20]
        assert torch.equal(item["view1"], tiles[20]["image"])
        assert torch.equal(item["view2"], tiles[pairs.partner_of(20)]["image"])

    def test_pairing_is_seeded_per_epoch(self):
        fake = _FakeTiles(np.arange(60) % 3)
        a, b = (
            CloudinessPairs(fake, lambda x: x, seed=5),
            CloudinessPairs(fake, lambda x: x, seed=5),
        )
        epoch0 = [a.partner_of(i) for i in range(60)]
        assert epoch0 == [b.partner_of(i) for i in range(60)]
        a.set_epoch(1)
        epoch1 = [a.partner_of(i) for i in range(60)]
        assert epoch1 != epoch0
        a.set_epoch(0)
        assert [a.partner_of(i) for i in range(60)] == epoch0
        other_seed = CloudinessPairs(fake, lambda x: x, seed=6)
        assert [other_seed.partner_of(i) for i in range(60)] != epoch0

    def test_lonely_and_unlabelled_tiles_pair_with_themselves(self):
        pairs = CloudinessPairs(_FakeTiles([-1, 4, 2, 2, -1]), lambda x: x, seed=0)
        assert [pairs.partner_of(i) for i in range(5)] == [0, 1, 3, 2, 4]
        assert pairs[0]["view2"].flatten()[0].item() == 0.0

    def test_pairs_need_labels(self, tmp_path):
        tiles = TileDataset([_tiny_store(tmp_path / "t.zarr")])
        with pytest.raises(StoreError, match="need labelled tiles"):
            CloudinessPairs(tiles, ssl_view_transform(32), seed=0)
