"""The default model's recipe (recipes/default_model.py) at its reduced size: every step runs,
on the real samples, and ends in weights `cloudkit predict` takes as it takes the shipped ones.

The full size is what made the shipped weights (about 45 minutes on 2 cores); this is the same
commands with two epochs each, so CI proves the recipe still runs end to end: with one seed
and a DeepCluster start, run twice (the second run resumes and has nothing to do), then with
its defaults (seeds 0, 1 and 2, random weights).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloudkit.models.zoo import load_predictor
from tests.helpers.cli import run
from tests.helpers.shared_data import AWS_T19UDP, DATA

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "default_model.py"
VALIDATION_BENCH = RECIPE.parents[1] / "benches" / "validation_scores.py"
OFFSETS_BENCH = RECIPE.parents[1] / "benches" / "class_offsets.py"


@pytest.mark.shared_data
def test_quick_recipe_makes_a_model_predict_takes(tmp_path, capsys):
    out = tmp_path / "recipe"
    one_seed = [
        "--size",
        "quick",
        "--data",
        str(DATA),
        "--seed",
        "0",
        "--inits",
        "random,deepcluster",
    ]
    done = subprocess.run(
        [sys.executable, str(RECIPE), str(out), *one_seed], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in (
        "$ cloudkit tile",
        "$ cloudkit pretrain",
        "$ cloudkit finetune",
        "$ cloudkit export",
    ):
        assert step in done.stdout
    assert "--best-by loss" in done.stdout  # each run keeps its epoch of the lowest val loss
    # the CloudSEN12 patches (scoring only) and the s2cloudless arrays (share-alike) stay out
    assert "cloudsen12" not in done.stdout.lower() and "s2cloudless-1.2.2" not in done.stdout
    weights = out / "default.pt"
    info = load_predictor(weights, device="cpu").info
    assert info.any_bands and info.task == "multi" and info.resolution == 20.0

    code, _, err = run(capsys, "predict", AWS_T19UDP, "--model", weights, "-o", tmp_path / "m")
    assert code == 0, err
    assert (tmp_path / "m" / f"{AWS_T19UDP.name}_mask.tif").is_file()

    # run again, it continues: complete training runs are resumed and have nothing to do
    again = subprocess.run(
        [sys.executable, str(RECIPE), str(out), *one_seed], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert said.count("--resume") == 3 and said.count("nothing to do") == 3  # pretrain, 2 runs
    assert "$ cloudkit export" not in again.stdout

    # the defaults: seeds 0, 1 and 2 from random weights, each validated on seed 0's tiles, the
    # lowest val loss shipped (seed 0's run is the one above: complete, left alone)
    seeds = subprocess.run(
        [sys.executable, str(RECIPE), str(out), "--size", "quick", "--data", str(DATA)],
        capture_output=True,
        text=True,
    )
    assert seeds.returncode == 0, seeds.stdout[-3000:] + seeds.stderr[-3000:]
    assert "--seed 1 --arch resnet18 --split-seed 0 --out" in seeds.stdout
    assert "--seed 2 --arch resnet18 --split-seed 0 --out" in seeds.stdout
    assert "$ cloudkit pretrain" not in seeds.stdout
    for seed in (1, 2):
        assert (out / "runs" / f"resnet18-s{seed}-split0" / "finetune-random.pt").is_file()
    said = seeds.stdout.splitlines()
    losses = dict(
        item.rsplit(" ", 1)
        for line in said
        if line.startswith("validation loss: ")
        for item in line.removeprefix("validation loss: ").split(", ")
    )
    assert set(losses) == {
        "finetune-random",
        "runs/resnet18-s1-split0/finetune-random",
        "runs/resnet18-s2-split0/finetune-random",
    }
    chosen = min(losses, key=lambda k: float(losses[k]))
    assert f"shipping {chosen}" in said
    assert (out / "default.pt").read_bytes() == (out / f"{chosen}.pt").read_bytes()

    # the validation bench scores each run on those same tiles as its fine-tuning did
    figures = tmp_path / "validation.json"
    runs = {name: out / name / "best.pt" for name in losses}
    bench = subprocess.run(
        [sys.executable, str(VALIDATION_BENCH), str(out / "stores"), *map(str, runs.values()),
         "--batch-size", "4", "--json", str(figures)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    scored = json.loads(figures.read_text())
    for name, path in runs.items():
        assert scored[str(path)]["val_loss"] == pytest.approx(float(losses[name]), abs=1e-4)
        assert {"iou clear", "iou thick cloud", "iou thin cloud", "iou cloud shadow"} <= set(
            scored[str(path)]
        )

    # and on true colour alone: the same tiles, every other band absent
    true_colour = tmp_path / "validation-rgb.json"
    bench = subprocess.run(
        [sys.executable, str(VALIDATION_BENCH), str(out / "stores"), *map(str, runs.values()),
         "--batch-size", "4", "--bands", "B02,B03,B04", "--json", str(true_colour)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    assert "bands present: B02,B03,B04" in bench.stdout
    rgb = json.loads(true_colour.read_text())
    for path in runs.values():
        assert rgb[str(path)]["val_loss"] != pytest.approx(scored[str(path)]["val_loss"], abs=1e-4)

    # class offsets fitted on those tiles, folded into the classifier: the folded model scores
    # on them what the fit said it would
    first = next(iter(runs.values()))
    shifted = tmp_path / "offsets.pt"
    fitted = subprocess.run(
        [sys.executable, str(OFFSETS_BENCH), str(out / "stores"), str(first), str(shifted)],
        capture_output=True,
        text=True,
    )
    assert fitted.returncode == 0, fitted.stdout[-3000:] + fitted.stderr[-3000:]
    promised = float(re.search(r"with offsets: val mean IoU ([0-9.]+)", fitted.stdout).group(1))
    rescored = tmp_path / "offsets.json"
    bench = subprocess.run(
        [sys.executable, str(VALIDATION_BENCH), str(out / "stores"), str(shifted),
         "--batch-size", "4", "--json", str(rescored)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    assert json.loads(rescored.read_text())[str(shifted)]["val_iou"] == pytest.approx(
        promised, abs=2e-4
    )


def test_recipe_without_the_samples_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(RECIPE), str(tmp_path / "out"), "--data", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "the real samples are not at" in done.stderr


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--fractions", "0,100"], "--fractions 0,100: whole percentages in 1..100"),
        (["--fractions", "ten"], "--fractions ten: whole percentages in 1..100"),
        (["--inits", "random,simclr"], "--inits random,simclr: name random, deepcluster, moco"),
        (["--seeds", "0,0"], "--seeds 0,0: distinct whole numbers, e.g. 0,1,2"),
        (["--seeds", "0,a"], "--seeds 0,a: distinct whole numbers, e.g. 0,1,2"),
        (["--seed", "0", "--seeds", "0,1"], "--seed and --seeds: give one of them"),
        (["--seeds", ""], "--seeds : distinct whole numbers, e.g. 0,1,2"),
    ],
)
def test_recipe_options_are_checked_before_any_step(tmp_path, option, message):
    done = subprocess.run(
        [sys.executable, str(RECIPE), str(tmp_path / "out"), "--data", str(DATA), *option],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stderr.strip() == f"recipe: {message}"
    assert "$ cloudkit" not in done.stdout and not (tmp_path / "out").exists()
