"""Checkpoints are written atomically, load weights-only and are checked for their kind, and
carry every RNG state; metrics lines survive a resume."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cloudkit.errors import CheckpointError, OptionError
from cloudkit.models.checkpoint import (
    FINE_TUNING,
    PRETRAINING,
    load_checkpoint,
    load_finetuned,
    remove_stale_temporaries,
    resolve_checkpoint,
    resolve_device,
    save_checkpoint,
)
from cloudkit.train.metrics import MetricsWriter, read_metrics
from cloudkit.train.seeding import rng_state, set_rng_state


def _payload(value: float, size: int = 16) -> dict:
    return {
        "format": PRETRAINING.format,
        "format_version": PRETRAINING.version,
        "epoch": int(value),
        "model": {"w": torch.full((size,), value)},
    }


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")  # stands for any failure in the middle of a write


class TestAtomicSave:
    def test_round_trip_loads_weights_only(self, tmp_path):
        path = save_checkpoint({**_payload(3.0), "rng": rng_state()}, tmp_path / "last.pt")
        loaded = load_checkpoint(tmp_path)  # a run folder means its last.pt
        assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.full((16,), 3.0))
        assert torch.load(path, weights_only=True)["format"] == PRETRAINING.format
        assert list(tmp_path.iterdir()) == [path]  # no temporary left behind

    def test_failed_write_keeps_previous_checkpoint(self, tmp_path):
        path = save_checkpoint(_payload(1.0), tmp_path / "last.pt")
        before = path.read_bytes()
        with pytest.raises(RuntimeError, match="disk full"):
            save_checkpoint({**_payload(2.0, size=1 << 16), "bad": _Unpicklable()}, path)
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    def test_kill_during_writes_never_truncates(self, tmp_path):
        """SIGKILL a process that rewrites a 32 MB checkpoint in a loop: last.pt always loads."""
        path = tmp_path / "last.pt"
        save_checkpoint(_payload(0.0), path)
        code = (
            "import sys, torch; from cloudkit.models.checkpoint import save_checkpoint, PRETRAINING\n"
            "i = 0\n"
            "while True:\n"
            "    i += 1\n"
            "    save_checkpoint({'format': PRETRAINING.format, 'format_version': 1, 'epoch': i,\n"
            "                     'model': {'w': torch.full((8 << 20,), float(i))}}, sys.argv[1])\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        try:
            deadline = time.monotonic() + 60
            # wait until a second write is under way (a temporary exists after one rename)
            while time.monotonic() < deadline:
                if load_checkpoint(path)["epoch"] >= 1 and (tmp_path / ".last.pt.partial").exists():
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the writer made no progress")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        loaded = load_checkpoint(path)
        assert loaded["epoch"] >= 1
        assert torch.equal(loaded["model"]["w"][:4], torch.full((4,), float(loaded["epoch"])))
        remove_stale_temporaries(path)
        assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class TestLoad:
    def test_missing_checkpoint(self, tmp_path):
        with pytest.raises(CheckpointError, match="no last.pt in that folder"):
            resolve_checkpoint(tmp_path)
        with pytest.raises(CheckpointError, match="no such checkpoint"):
            resolve_checkpoint(tmp_path / "nope.pt")

    def test_garbage_is_refused(self, tmp_path):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(CheckpointError, match="not a readable cloudkit checkpoint"):
            load_checkpoint(bad)

    def test_other_torch_files_are_refused(self, tmp_path):
        torch.save({"state_dict": {}}, tmp_path / "other.pt")
        with pytest.raises(CheckpointError, match="not a cloudkit pretraining checkpoint"):
            load_checkpoint(tmp_path / "other.pt")
        save_checkpoint(
            {**_payload(1.0), "format_version": PRETRAINING.version + 1}, tmp_path / "n.pt"
        )
        with pytest.raises(CheckpointError, match="upgrade cloudkit"):
            load_checkpoint(tmp_path / "n.pt")


class TestFinetuned:
    def test_missing(self, tmp_path):
        with pytest.raises(CheckpointError, match="no such checkpoint"):
            load_finetuned(tmp_path / "best.pt")

    def test_pretraining_checkpoint_is_refused(self, tmp_path):
        path = save_checkpoint({**_payload(1.0), "encoder": {}}, tmp_path / "last.pt")
        with pytest.raises(CheckpointError, match="a pretraining checkpoint.*--init"):
            load_finetuned(path)

    def test_newer_format_is_refused(self, tmp_path):
        payload = {**FINE_TUNING.header(), "model": {}}
        path = save_checkpoint(
            {**payload, "format_version": FINE_TUNING.version + 1}, tmp_path / "b.pt"
        )
        with pytest.raises(CheckpointError, match="upgrade cloudkit"):
            load_finetuned(path)
        with pytest.raises(CheckpointError, match="not a cloudkit pretraining checkpoint"):
            load_checkpoint(path)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(OptionError, match="--device tpu: expected auto, cpu or cuda"):
        resolve_device("tpu")


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint({**_payload(0.0), "rng": rng_state()}, tmp_path / "last.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path)["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


class TestMetrics:
    def test_lines_nan_and_resume(self, tmp_path):
        writer = MetricsWriter(tmp_path, enabled=True)
        for epoch in (1, 2, 3):
            writer.write({"epoch": epoch, "loss": float("nan") if epoch == 2 else 1.0 / epoch})
        lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["loss"] for line in lines] == [1.0, None, 1.0 / 3]
        # a resume from the epoch-2 checkpoint drops the line of the epoch it redoes
        MetricsWriter(tmp_path, enabled=True, keep_epochs=2).write({"epoch": 3, "loss": 0.5})
        assert [(r["epoch"], r["loss"]) for r in read_metrics(tmp_path)] == [
            (1, 1.0),
            (2, None),
            (3, 0.5),
        ]
        # a fresh run starts the file afresh
        MetricsWriter(tmp_path, enabled=True)
        assert read_metrics(tmp_path) == []

    def test_other_ranks_write_nothing(self, tmp_path):
        MetricsWriter(tmp_path, enabled=False).write({"epoch": 1})
        assert not (tmp_path / "metrics.jsonl").exists()

    def test_half_written_line_is_skipped(self, tmp_path):
        (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "lo')
        assert read_metrics(tmp_path) == [{"epoch": 1}]


def test_weights_of_a_diverged_run_are_refused(tmp_path, capsys):
    """NaN weights would predict one class everywhere with exit 0: loading refuses them."""
    from cloudkit.cli import main
    from tests.helpers.predict_models import untrained_checkpoint

    path = untrained_checkpoint(tmp_path / "diverged.pt")
    payload = torch.load(path, weights_only=True)
    name = next(k for k, v in payload["model"]["state_dict"].items() if v.is_floating_point())
    payload["model"]["state_dict"][name][...] = float("nan")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"1 weight tensors hold NaN or infinity .* diverged"):
        load_finetuned(path)
    assert main(["predict", str(tmp_path), "--model", str(path), "-o", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hold NaN or infinity" in err


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda sd, k: sd.__setitem__(k, torch.zeros(3, 3, 3, 3)),
            r"has shape \(3, 3, 3, 3\) in the file, \(\d+, \d+, \d+, \d+\) in the model",
        ),
        (lambda sd, k: sd.pop(k), r"1 tensors missing \(first: "),
        (lambda sd, k: sd.__setitem__("extra.weight", torch.zeros(1)), "the model does not have"),
    ],
)
def test_weights_that_do_not_fit_say_how_in_one_line(tmp_path, tamper, message):
    """torch's own message starts "Error(s) in loading state_dict" and puts the detail on
    later lines; the one-line error must carry the detail and the file."""
    from tests.helpers.predict_models import untrained_checkpoint

    path = untrained_checkpoint(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    state = payload["model"]["state_dict"]
    first_conv = next(k for k, v in state.items() if v.ndim == 4)
    tamper(state, first_conv)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_finetuned(path)
    assert str(err.value).startswith(f"{path}: the weights of a resnet18")
    assert "\n" not in str(err.value)
