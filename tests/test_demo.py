"""`cloudkit demo --size quick`: every step runs, every fine-tuned model beats the trivial masks
on the held-out product, and every promised file is there."""

from __future__ import annotations

import json

import pytest

from cloudkit.cli import main
from tests.helpers.png import is_png


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--out", str(out), "--size", "quick", "--device", "cpu"])
    return out, code, printed.getvalue()


def test_demo_runs_every_command_and_says_the_sample_is_synthetic(demo):
    out, code, printed = demo
    assert code == 0, printed[-2000:]
    assert "The sample is synthetic" in printed
    commands = [line.split()[2] for line in printed.splitlines() if line.startswith("$ cloudkit")]
    assert commands == ["tile", "tile", "pretrain", "pretrain", "experiment", "predict", "predict"]


def test_every_fine_tuned_model_beats_all_clear_and_all_cloud(demo):
    out, _, printed = demo
    results = json.loads((out / "experiment" / "results.json").read_text())["results"]
    assert [r["init"] for r in results] == ["random", "pretrain-deepcluster", "pretrain-moco"]
    best = next(iter(out.glob("experiment/*/eval.json")))
    confusion = json.loads(best.read_text())["confusion_matrix"]
    clear, cloud = (sum(row) for row in confusion)
    share = cloud / (clear + cloud)
    all_cloud_f1 = 2 * share / (1 + share)
    assert 0.2 < share < 0.8  # a held-out product where the trivial masks are not good already
    for r in results:
        assert r["f1"] > all_cloud_f1 + 0.05, r  # all clear scores 0
    table = printed[printed.index("Cloud masks of the held-out product") :]
    assert f"all cloud {all_cloud_f1:.3f}" in " ".join(table.split())


def test_demo_writes_stores_figures_and_masks(demo):
    out, _, _ = demo
    assert (out / "train.zarr").is_dir() and (out / "test.zarr").is_dir()
    for run in ("pretrain-deepcluster", "pretrain-moco"):
        assert is_png(out / run / "metrics.png")
    assert is_png(out / "experiment" / "results.png")
    assert (out / "experiment" / "results.md").is_file()
    for masks in ("masks-best", "masks-default"):
        (mask,) = (out / masks).glob("*_mask.tif")
        (quicklook,) = (out / masks).glob("*_quicklook.png")
        assert is_png(quicklook)
        summary = json.loads(mask.with_name(mask.name.replace("_mask.tif", ".json")).read_text())
        assert summary["outputs"]["mask"] == mask.name


def test_rerun_skips_what_is_done(demo, capsys):
    out, _, _ = demo
    before = (out / "experiment" / "results.json").read_text()
    assert main(["demo", "--out", str(out), "--size", "quick", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "0 already in the store" not in printed and "1 already in the store" in printed
    assert (out / "experiment" / "results.json").read_text() == before
