"""Loading saved weights into a module, with one line that says how they do not fit.

torch's own error lists every missing, unexpected and mis-shaped tensor over many lines, and
its first line says only that there were errors; cloudkit's errors are one line.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from cloudkit.errors import CheckpointError


def load_weights(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """``module.load_state_dict(state)``; CheckpointError naming ``what`` and the first
    mismatch of each kind when the weights do not fit."""
    mismatch = describe_mismatch(module, state)
    if mismatch is not None:
        raise CheckpointError(f"{what} do not fit: {mismatch}")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # anything describe_mismatch does not foresee
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CheckpointError(f"{what} do not fit: {' '.join(lines[1:3] or lines[:1])}") from err


def describe_mismatch(module: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    """How ``state`` differs from ``module``'s own tensors, in one line; None when it fits."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(getattr(state[k], "shape", ())), tuple(own[k].shape))
        for k in own
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    parts = []
    if shapes:
        name, got, want = shapes[0]
        more = f" (and {len(shapes) - 1} more tensors of another shape)" if len(shapes) > 1 else ""
        parts.append(f"{name} has shape {got} in the file, {want} in the model{more}")
    if missing:
        parts.append(f"{len(missing)} tensors missing (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the model does not have (first: {unexpected[0]})")
    return "; ".join(parts) or None
