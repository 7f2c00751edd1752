"""Pretraining checkpoints: written atomically, loaded safely, with every RNG state.

A checkpoint is a plain dict saved with ``torch.save``; it loads with ``weights_only=True``
(tensors, numbers, strings, lists, dicts only: no pickled classes):

    format, format_version   "cloudkit-pretrain", 1
    method, config           the run's resolved PretrainConfig as plain values
    bands, tile_size         of the training data (ESA names)
    num_samples              training tiles (DeepCluster's memory bank is that long)
    epoch                    epochs completed
    model                    state_dict of the whole SSL model (MoCo / DeepClusterV2)
    encoder                  models.encoder.encoder_state(model.encoder()): what fine-tuning loads
    optimizer, scheduler     their state_dicts
    rng                      python, numpy, torch CPU (and CUDA) generator states
    loader                   the DataLoader's torch.Generator state and the sampler epoch
    metrics                  the last epoch's metrics line
    versions                 cloudkit and torch versions that wrote it

The file is written to a temporary name in the same folder, flushed and fsynced, then renamed
over the target (``os.replace``), so a run killed at any moment leaves either the previous
checkpoint or the new one, never a truncated file.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cloudkit.errors import CheckpointError

FORMAT = "cloudkit-pretrain"
FORMAT_VERSION = 1
LAST = "last.pt"


def rng_state() -> dict[str, Any]:
    """Every global generator's state, as weights-only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state` (CUDA states only when this process has the same GPUs)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np.asarray(np_state["key"], dtype=np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, fsync,
    ``os.replace``, fsync of the folder). On any error the previous file stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temporaries(path: Path) -> int:
    """Delete temporaries that a killed :func:`save_checkpoint` left beside ``path``."""
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def resolve_checkpoint(path: Path, *, option: str = "--resume") -> Path:
    """A checkpoint file, or a run folder meaning its ``last.pt``; ``option`` names the CLI
    option that brought the path, for the message."""
    path = Path(path)
    if path.is_dir():
        candidate = path / LAST
        if not candidate.is_file():
            raise CheckpointError(f"{option} {path}: no {LAST} in that folder")
        return candidate
    if not path.is_file():
        raise CheckpointError(f"{option} {path}: no such checkpoint file or run folder")
    return path


#: what each checkpoint format is called in messages
_KINDS = {FORMAT: "pretraining", "cloudkit-finetune": "fine-tuning"}


def load_checkpoint(
    path: Path,
    *,
    map_location: str | torch.device = "cpu",
    expected_format: str = FORMAT,
    max_version: int = FORMAT_VERSION,
    option: str = "--resume",
) -> dict[str, Any]:
    """Load and check a checkpoint (a file, or a run folder's ``last.pt``) whose ``format``
    tag is ``expected_format`` (default: a pretraining checkpoint); CheckpointError otherwise."""
    path = resolve_checkpoint(path, option=option)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, not a torch file, pickled classes, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable cloudkit checkpoint ({first})") from None
    kind = _KINDS.get(expected_format, expected_format)
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise CheckpointError(f"{path}: not a cloudkit {kind} checkpoint")
    if payload.get("format_version", 0) > max_version:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this "
            f"cloudkit reads ({max_version}); upgrade cloudkit"
        )
    return payload
