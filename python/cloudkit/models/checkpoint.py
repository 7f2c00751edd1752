"""Checkpoints on disk: their kinds, atomic writing, safe reading, and the device to run on.

A checkpoint is a plain dict saved with ``torch.save``; it loads with ``weights_only=True``
(tensors, numbers, strings, lists, dicts only: no pickled classes). Every checkpoint starts
with ``format`` and ``format_version``, one :class:`CheckpointKind` per kind:

- :data:`PRETRAINING` (``DIR/last.pt`` of `cloudkit pretrain`): ``method``, ``config`` (the
  resolved options), ``bands``, ``tile_size``, ``num_samples``, ``epoch``, ``model`` (state_dict
  of the whole SSL model), ``encoder`` (``models.encoder.encoder_state``: what fine-tuning
  loads), ``metrics``, ``versions``, and the training state below.
- :data:`FINE_TUNING` (``DIR/best.pt`` and ``DIR/last.pt`` of `cloudkit finetune`): ``model``
  (``models.segmentation.segmenter_state``), ``task``, ``bands``, ``classes``, ``head``,
  ``normalisation``, ``crop``, ``tile_size``, ``init``, ``fraction``, ``config``, ``epoch``,
  ``metrics``, ``splits``, ``versions``; ``last.pt`` adds the training state and
  ``early_stopping``. Earlier cloudkit also wrote ``classes``, ``normalisation``, ``crop``,
  ``init`` and ``fraction`` a second time, in ``model["extra"]``; nothing reads that copy, so
  those checkpoints load (and resume) as they are.

The training state (what ``--resume`` needs): ``optimizer``, ``scheduler``, ``rng`` (python,
numpy, torch CPU and CUDA generators) and ``loader`` (the DataLoader's generator).

:func:`save_checkpoint` writes to a temporary name in the same folder, flushes and fsyncs, then
renames over the target (``os.replace``), so a run killed at any moment leaves either the
previous checkpoint or the new one, never a truncated file.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cloudkit.config import Device
from cloudkit.errors import CheckpointError, DeviceError, OptionError
from cloudkit.files.atomic import atomic_file, partial_name
from cloudkit.files.disk import disk_full
from cloudkit.models.segmentation import Segmenter, load_segmenter, segmenter_state

#: the checkpoint every epoch rewrites (what --resume continues from)
LAST = "last.pt"
#: fine-tuning's checkpoint of the epoch with the best val IoU
BEST = "best.pt"


@dataclass(frozen=True)
class CheckpointKind:
    """One kind of checkpoint: its ``format`` tag, the newest ``format_version`` this cloudkit
    writes and reads, and what messages call it."""

    format: str
    version: int
    name: str

    def header(self) -> dict[str, Any]:
        """The keys every checkpoint of this kind starts with."""
        return {"format": self.format, "format_version": self.version}


PRETRAINING = CheckpointKind("cloudkit-pretrain", 1, "pretraining")
FINE_TUNING = CheckpointKind("cloudkit-finetune", 1, "fine-tuning")


# ---------------------------------------------------------------------------------------------
# writing


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` atomically and durably (cloudkit.files.atomic: a temporary
    beside it, fsync, ``os.replace``, fsync of the folder). On any error the previous file
    stays as it was."""
    path = Path(path)
    full = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, durable=True) as tmp, open(tmp, "wb") as file:
            try:  # opened first: an unwritable folder is an OSError saying so, not torch's
                torch.save(payload, file)
            except (OSError, RuntimeError) as err:
                # a folder that cannot be written says so; torch reports a full disk as a
                # RuntimeError: asked before the partial file frees its space
                if not isinstance(err, OSError) or err.errno == errno.ENOSPC:
                    full = disk_full(path.parent)
                raise
    except (OSError, RuntimeError) as err:
        full = full or (isinstance(err, OSError) and err.errno == errno.ENOSPC)
        if isinstance(err, RuntimeError) and not full:  # not torch's "unexpected pos ..."
            raise
        reason = "no space left on device" if full else _reason(err)
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({reason}); the previous one, if any, is "
            "kept: free space or choose another output folder"
        ) from None
    return path


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or " ".join(str(err).split())


def remove_stale_temporaries(path: Path) -> int:
    """Delete temporaries that a killed :func:`save_checkpoint` left beside ``path`` (and
    those of cloudkit versions that named them ``.NAME.*.tmp``)."""
    path = Path(path)
    stale = [partial_name(path), *path.parent.glob(f".{path.name}.*.tmp")]
    removed = 0
    for tmp in stale:
        if tmp.exists():
            tmp.unlink()
            removed += 1
    return removed


# ---------------------------------------------------------------------------------------------
# reading


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


def load_checkpoint(
    path: Path,
    kind: CheckpointKind = PRETRAINING,
    *,
    map_location: str | torch.device = "cpu",
    option: str = "--resume",
) -> dict[str, Any]:
    """Load and check a checkpoint of ``kind`` (a file, or a run folder's ``last.pt``);
    CheckpointError for anything else."""
    path = resolve_checkpoint(path, option=option)
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != kind.format:
        raise CheckpointError(f"{path}: not a cloudkit {kind.name} checkpoint")
    _check_version(path, payload, kind)
    return payload


def load_finetuned(path: Path) -> tuple[dict[str, Any], Segmenter]:
    """(checkpoint dict, segmenter in eval mode) of a `cloudkit finetune` checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint; pass a best.pt/last.pt of `cloudkit finetune`"
        )
    payload = _read(path, "cpu")
    tag = payload.get("format") if isinstance(payload, dict) else None
    if tag == PRETRAINING.format or not isinstance(payload, dict):
        what = "a pretraining checkpoint" if tag == PRETRAINING.format else "not a checkpoint"
        raise CheckpointError(
            f"{path}: {what}; pass a best.pt/last.pt of `cloudkit finetune` (a pretraining "
            "checkpoint goes to `cloudkit finetune --init`)"
        )
    if not isinstance(payload.get("model"), dict):
        raise CheckpointError(
            f"{path}: not a fine-tuned model (no 'model' key); pass a best.pt/last.pt of "
            "`cloudkit finetune`"
        )
    if tag == FINE_TUNING.format:
        _check_version(path, payload, FINE_TUNING)
    try:
        model = load_segmenter(payload["model"])
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    not_finite = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if not_finite:  # a diverged run's weights would predict one class everywhere, silently
        raise CheckpointError(
            f"{path}: {len(not_finite)} weight tensors hold NaN or infinity (first: "
            f"{not_finite[0]}); the run that wrote it diverged: use an earlier checkpoint"
        )
    model.eval()
    return payload, model


#: a model's pixel size in metres is below this (what `predict` accepts in one)
MAX_RESOLUTION = 100_000.0
#: what an exported model keeps of a fine-tuning checkpoint (besides its weights)
_EXPORTED = (
    "task", "bands", "classes", "head", "normalisation", "tile_size", "made_for", "crop", "init",
)  # fmt: skip


def export_model(source: Path, out: Path, *, resolution: float | None = None) -> Path:
    """A fine-tuned checkpoint as cloudkit ships models: the weights in half precision
    (inference only: about half the size), what prediction needs (task, bands, classes,
    normalisation, tile size; ``resolution``, the pixel size it works at by default), no
    optimiser, schedule or RNG state. Loads like any checkpoint (`load_finetuned`: the
    weights go back to float32); written atomically."""
    if resolution is not None and not 0 < resolution < MAX_RESOLUTION:  # NaN fails too
        raise OptionError(
            f"--resolution {resolution:g}: not a pixel size in metres (above 0, below "
            f"{MAX_RESOLUTION:g}); `cloudkit predict` would refuse the model"
        )
    payload, model = load_finetuned(source)
    state = segmenter_state(model, task=str(payload.get("task", payload["model"]["task"])))
    state["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()
    }
    exported = {
        "format": FINE_TUNING.format,
        "format_version": FINE_TUNING.version,
        "model": state,
        **{k: payload[k] for k in _EXPORTED if k in payload},
        "resolution": resolution,
        "exported_from": {
            "checkpoint": Path(source).name,
            "epoch": payload.get("epoch"),
            "config": payload.get("config"),
        },
    }
    return save_checkpoint(exported, Path(out))


def _read(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, not a torch file, pickled classes, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable cloudkit checkpoint ({first})") from None


def _check_version(path: Path, payload: dict[str, Any], kind: CheckpointKind) -> None:
    if payload.get("format_version", 0) > kind.version:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this "
            f"cloudkit reads ({kind.version}); upgrade cloudkit"
        )


# ---------------------------------------------------------------------------------------------
# where a checkpoint runs


def resolve_device(device: Device | str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is usable, else the CPU; ``cpu``; ``cuda`` (or
    ``cuda:N``), an error without a usable GPU. ``local_rank`` picks the GPU under torchrun."""
    name = str(getattr(device, "value", device)).lower()
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise OptionError(f"--device {name}: expected auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            "--device cuda but no CUDA device is usable here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
            "use --device cpu or auto"
        )
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name.startswith("cuda:"):
        return torch.device(name)
    return torch.device("cuda", local_rank)
