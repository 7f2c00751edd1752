"""Any-band datasets and the training crops of a model meant for any product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cloudkit.data.tiles import TileDataset
from cloudkit.data.training_crops import TrainingCrops, _sun
from cloudkit.errors import BandMismatchError
from cloudkit.geometry.sun import SunAngles
from cloudkit.models.band_slots import REQUIRED_BANDS, SLOTS
from tests.helpers.pretrain_stores import BANDS, real_store, subset_store
from tests.helpers.shared_data import L2A_T29UNU

RGB_BANDS = ("B02", "B03", "B04")
pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def eleven(tmp_path_factory) -> Path:
    return subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("a") / "a.zarr", 24)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory) -> Path:
    """The same scene tiled with true colour only (a product of fewer bands)."""
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    folder = tmp_path_factory.mktemp("rgb")
    options = TileOptions(resolution=60, bands=RGB_BANDS, tile_size=32, scl_labels=True)
    tile_paths([L2A_T29UNU], folder / "all.zarr", options)
    return subset_store(folder / "all.zarr", folder / "rgb.zarr", 24)


def test_any_band_dataset_mixes_band_sets_in_slots(eleven, rgb):
    with pytest.raises(BandMismatchError, match="same bands"):
        TileDataset([eleven, rgb], with_labels=True)
    tiles = TileDataset([eleven, rgb], with_labels=True, any_bands=True)
    assert tiles.bands == SLOTS
    first, last = tiles[0], tiles[len(tiles) - 1]
    assert first["image"].shape == last["image"].shape == (13, 32, 32)
    absent = lambda item: {b for i, b in enumerate(SLOTS) if torch.isnan(item["image"][i]).all()}  # noqa: E731
    assert absent(first) == {"B08", "B10"}  # the R60m bands of an L2A product
    assert absent(last) == set(SLOTS) - set(RGB_BANDS)
    assert last["resolution"] == 60.0
    plain = TileDataset([eleven], with_labels=True)[0]["image"]
    np.testing.assert_array_equal(
        first["image"][[SLOTS.index(b) for b in BANDS]].numpy(), plain.numpy()
    )
    assert len(set(tiles.value_scale.scale)) == 1 and len(tiles.value_scale.scale) == 13


def test_processing_level_of_stored_scenes(tmp_path):
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    options = TileOptions(resolution=60, bands=RGB_BANDS, tile_size=128)
    tile_paths([L2A_T29UNU], tmp_path / "t.zarr", options)
    item = TileDataset([tmp_path / "t.zarr"])[0]
    assert item["toa"] is False
    # the scene's sun, from its metadata, for the synthetic shadows (tile store's sun columns)
    assert item["sun"] == pytest.approx((172.8, 57.8), abs=0.1)
    assert _sun(item) == SunAngles(*item["sun"], source="tile store")
    assert _sun({**item, "sun": (float("nan"), float("nan"))}) is None


def _draw(crops, n, seed=0):
    torch.manual_seed(seed)
    return [crops[i % len(crops)] for i in range(n)]


def test_plain_crops_are_the_papers(eleven):
    tiles = TileDataset([eleven], with_labels=True)
    crops = TrainingCrops(tiles, np.arange(len(tiles)), 16)
    item = _draw(crops, 1)[0]
    assert item["image"].shape == (len(BANDS), 16, 16)
    assert item["valid"].dtype == torch.bool and item["labels"].dtype == torch.uint8


def test_augmented_crops(eleven, rgb):
    tiles = TileDataset([eleven, rgb], with_labels=True, any_bands=True)
    crops = TrainingCrops(tiles, np.arange(len(tiles)), 24, resolutions=(20.0, 60.0), synthetic=1.0)
    items = _draw(crops, 40)
    again = _draw(crops, 40)
    seen_codes = set()
    for item, twin in zip(items, again, strict=True):
        torch.testing.assert_close(item["image"], twin["image"], equal_nan=True)
        assert item["image"].shape == (13, 24, 24)
        present = {b for i, b in enumerate(SLOTS) if not torch.isnan(item["image"][i]).all()}
        assert set(REQUIRED_BANDS) <= present
        codes = set(torch.unique(item["labels"]).tolist())
        assert codes <= {0, 1, 2, 3, 255}
        seen_codes |= codes
    assert {0, 1, 3} <= seen_codes  # synthetic shadows appear


@pytest.mark.parametrize("sun_cast", [True, False])
def test_synthetic_shadows_follow_the_sun_unless_placed_at_random(rgb, monkeypatch, sun_cast):
    """--synthetic-shadows sun casts each crop's shadows by its scene's sun (T29UNU's, from
    the store); random leaves the direction and offset to chance, as before the sun was known."""
    from cloudkit.data import training_crops

    suns = []
    composite = training_crops.composite

    def spy(*args, sun=None, **kwargs):
        suns.append(sun)
        return composite(*args, sun=sun, **kwargs)

    monkeypatch.setattr(training_crops, "composite", spy)
    tiles = TileDataset([rgb.parent / "all.zarr"], with_labels=True)  # the subset has no sun
    crops = TrainingCrops(tiles, np.arange(8), 24, synthetic=1.0, sun_cast=sun_cast)
    _draw(crops, 8)
    assert len(suns) == 8
    if sun_cast:
        assert all(s == SunAngles(*tiles[0]["sun"], source="tile store") for s in suns)
    else:
        assert all(s is None for s in suns)


def test_the_veil_style_of_finetune_reaches_every_composite(rgb, monkeypatch, tmp_path):
    """--synthetic-veils ice: the fine-tuning's crops draw their thin clouds as cirrus."""
    from cloudkit.config import FinetuneConfig, Veils
    from cloudkit.data import training_crops
    from cloudkit.train.distributed import Dist
    from cloudkit.train.finetune import FineTuning

    styles = []
    composite = training_crops.composite

    def spy(*args, veils="water", **kwargs):
        styles.append(veils)
        return composite(*args, veils=veils, **kwargs)

    monkeypatch.setattr(training_crops, "composite", spy)
    cfg = FinetuneConfig(
        stores=[rgb],
        out=tmp_path / "run",
        batch_size=4,
        crop=24,
        synthetic=1.0,
        synthetic_veils="ice",
        val_fraction=0.25,
        workers=0,
    )
    assert cfg.synthetic_veils is Veils.ice
    run = FineTuning(cfg, device=torch.device("cpu"), dist=Dist())
    _draw(run.train_set.views, 6)
    assert styles == ["ice"] * 6


def test_any_band_finetune_and_predictor(eleven, rgb, tmp_path):
    """An any-band model trains on stores of different bands and reads any product holding
    true colour: the checkpoint says so, and the predictor picks each scene's bands."""
    from cloudkit.config import FinetuneConfig
    from cloudkit.io.discover import discover_scenes
    from cloudkit.predict.model import CheckpointPredictor
    from cloudkit.train.finetune import finetune

    torch.set_num_threads(1)
    cfg = FinetuneConfig(
        stores=[eleven, rgb],
        out=tmp_path / "run",
        epochs=1,
        batch_size=4,
        crop=24,
        freeze_epochs=0,
        lr=1e-3,
        workers=0,
        device="cpu",
        task="multi",
        any_bands=True,
        synthetic=0.5,
        resolutions=(30.0, 60.0),
    )
    best = finetune(cfg)
    payload = torch.load(best, weights_only=True)
    assert payload["model"]["any_bands"] is True and payload["bands"] == list(SLOTS)
    predictor = CheckpointPredictor(best, device="cpu")
    assert predictor.info.any_bands
    (scene,) = discover_scenes([L2A_T29UNU])
    assert predictor.bands_for(scene) == tuple(b for b in SLOTS if b in BANDS)
    dn = np.full((2, 3, 32, 32), 1500, np.uint16)
    valid = np.ones((2, 1, 32, 32), np.uint8)
    x = predictor.inputs(dn, valid, RGB_BANDS)
    assert x.shape == (2, 13, 32, 32)
    probs = predictor.probabilities(x)
    assert probs.shape == (2, 4, 32, 32) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_any_band_pretraining_views_keep_their_own_bands(eleven, rgb, tmp_path):
    """Views of an any-band encoder each keep a random band subset holding true colour, and
    pretraining runs on stores of different bands; its encoder starts an any-band model."""
    from cloudkit.config import PretrainConfig
    from cloudkit.data.augment import ssl_view_transform
    from cloudkit.models.encoder import load_encoder
    from cloudkit.train.pretrain import pretrain

    tiles = TileDataset([eleven, rgb], any_bands=True)
    view = ssl_view_transform(16, any_bands=True)
    torch.manual_seed(0)
    image = tiles[0]["image"]
    subsets = set()
    for _ in range(30):
        v = view(image)
        present = frozenset(b for i, b in enumerate(SLOTS) if not torch.isnan(v[i]).all())
        assert set(REQUIRED_BANDS) <= present
        subsets.add(present)
    assert len(subsets) > 3
    torch.set_num_threads(1)
    cfg = PretrainConfig(
        stores=(eleven, rgb),
        out=tmp_path / "dc",
        method="deepcluster",
        epochs=2,
        batch_size=8,
        crop=16,
        prototypes=(4, 4),
        any_bands=True,
        workers=0,
        device="cpu",
    )
    last = pretrain(cfg)
    encoder = load_encoder(torch.load(last, weights_only=True)["encoder"])
    assert encoder.any_bands and encoder.bands == SLOTS
