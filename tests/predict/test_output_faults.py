"""Every file a predict run writes, damaged after the run (deleted, a byte flipped, cut in
half): the re-run never skips the scene as done; it predicts it again, says why, and leaves
outputs that check out. Generated over every output and every fault."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cloudkit.predict.output import output_paths
from cloudkit.predict.seal import damage
from cloudkit.sample.product import sample_product
from tests.helpers.cli import run

ARGS = ("--sample", "--resolution", "60", "--workers", "1", "--quicklook", "--probabilities")
OUTPUTS = ("mask", "probabilities", "quicklook", "summary")
FAULTS = ("deleted", "byte flipped", "cut in half")
SCENE = sample_product().name.removesuffix(".SAFE")


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predicted") / "masks"
    from cloudkit.cli import main

    assert main(["predict", *ARGS, "-o", str(out)]) == 0
    assert damage(output_paths(out, SCENE).summary) is None
    return out


def _damage(path: Path, fault: str) -> None:
    if fault == "deleted":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if fault == "byte flipped":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_a_damaged_output_is_predicted_again(predicted, tmp_path, capsys, output, fault):
    out = tmp_path / "masks"
    shutil.copytree(predicted, out)
    paths = output_paths(out, SCENE)
    _damage(getattr(paths, output), fault)
    code, stdout, stderr = run(capsys, "predict", *ARGS, "-o", out)
    assert code == 0, stderr
    assert "exists, skipped" not in stdout
    assert "Traceback" not in stderr
    if fault != "deleted" or output in ("probabilities", "quicklook"):
        assert "earlier outputs were damaged" in stderr  # said, not silent
    assert damage(paths.summary) is None
    assert all(getattr(paths, kind).is_file() for kind in OUTPUTS)


def test_intact_outputs_are_still_skipped(predicted, tmp_path, capsys):
    out = tmp_path / "masks"
    shutil.copytree(predicted, out)
    code, stdout, _ = run(capsys, "predict", *ARGS, "-o", out)
    assert code == 0 and "exists, skipped" in stdout
