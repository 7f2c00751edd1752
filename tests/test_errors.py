"""errors.py: every error cloudkit raises on purpose is a class a caller can catch, by cloudkit
name or by the builtin it subclasses; the bare root is never raised."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import cloudkit
from cloudkit import errors
from cloudkit.config import PredictOptions, PretrainConfig, SceneOptions, TileOptions
from cloudkit.errors import (
    CheckpointError,
    CloudkitError,
    DeviceError,
    OptionError,
    ScenesFailedError,
    StoreError,
    TileShapeError,
)

PACKAGE = Path(cloudkit.__file__).parent


def _raises_of_the_root(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = exc.attr if isinstance(exc, ast.Attribute) else getattr(exc, "id", None)
        if name == CloudkitError.__name__:
            lines.append(node.lineno)
    return sorted(lines)


def test_no_module_raises_the_bare_root():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in _raises_of_the_root(path)
    ]
    assert not found, "raise a subclass of CloudkitError (see errors.py) at " + ", ".join(found)


def test_the_walk_finds_a_raise_of_the_root(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    raise errors.CloudkitError('x')\n\n\nraise CloudkitError\n")
    assert _raises_of_the_root(source) == [2, 5]


def test_every_error_subclasses_the_root_and_a_builtin():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c is not CloudkitError]
    assert classes
    for cls in classes:
        builtins = [b for b in cls.__mro__ if b.__module__ == "builtins"]
        assert issubclass(cls, CloudkitError), cls
        assert builtins[0] is not Exception, f"{cls.__name__} subclasses no builtin but Exception"


@pytest.mark.parametrize(
    ("make", "cls", "builtin", "message"),
    [
        (lambda: SceneOptions(workers=0), OptionError, ValueError, "--workers 0"),
        (lambda: PredictOptions(batch_size=0), OptionError, ValueError, "--batch-size 0"),
        (lambda: TileOptions(tile_size=8), TileShapeError, ValueError, "--tile-size 8"),
        (lambda: PredictOptions(window=8), TileShapeError, ValueError, "--window 8"),
        (
            lambda: PretrainConfig(stores=("s.zarr",), out="o", epochs=0).validate(),
            OptionError,
            ValueError,
            "--epochs must be positive",
        ),
    ],
)
def test_option_errors(make, cls, builtin, message):
    with pytest.raises(cls, match=message) as err:
        make()
    assert isinstance(err.value, builtin)


def test_workers_and_batch_size_are_no_tile_geometry():
    for make in (lambda: SceneOptions(workers=0), lambda: PredictOptions(batch_size=0)):
        with pytest.raises(OptionError) as err:
            make()
        assert not isinstance(err.value, TileShapeError)


def test_device_errors():
    import torch

    from cloudkit.models.checkpoint import resolve_device

    with pytest.raises(OptionError, match="--device tpu") as err:
        resolve_device("tpu")
    assert isinstance(err.value, ValueError)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device is usable") as err:
            resolve_device("cuda")
        assert isinstance(err.value, RuntimeError)


def test_bad_torchrun_environment(monkeypatch):
    from cloudkit.train import distributed

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DeviceError, match="bad torchrun environment") as err:
        distributed.from_env()
    assert isinstance(err.value, RuntimeError)


def test_a_state_that_is_no_model_is_a_checkpoint_error():
    from cloudkit.models.encoder import load_encoder

    with pytest.raises(CheckpointError, match="not an encoder state") as err:
        load_encoder({})
    assert isinstance(err.value, ValueError)


def test_a_missing_store_is_an_os_error(tmp_path):
    from cloudkit.io.store import StoreReader

    with pytest.raises(OSError, match="no such tile store") as err:
        StoreReader.open(tmp_path / "absent.zarr")
    assert isinstance(err.value, StoreError)


def test_failed_scenes_end_the_run_with_one_error():
    from cloudkit.cli._progress import report_failures
    from cloudkit.pipeline.run import FAILED, SceneResult, Summary

    summary = Summary([SceneResult("a", "tiled"), SceneResult("b", FAILED, error="bad")])
    with pytest.raises(ScenesFailedError, match="1 of 2 scene") as err:
        report_failures(summary)
    assert isinstance(err.value, RuntimeError)
