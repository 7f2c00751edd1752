"""JSON files every command writes (summaries, metrics): plain values, written atomically.

Torch-free on purpose: the CLI imports it for small files and must stay quick to start.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cloudkit.files.atomic import write_text


def plain(value: Any) -> Any:
    """A copy ``json`` can write: numpy/torch scalars and arrays as Python values, paths as
    str, NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        return plain(value.tolist())
    value = float(value)
    return value if math.isfinite(value) else None


def write_json(result: dict, path: Path) -> Path:
    """Write ``result`` as indented JSON atomically: a hidden partial file, then os.replace,
    so a reader never sees half a file and a killed run leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(plain(result), indent=2, allow_nan=False)  # a bad value fails here
    return write_text(path, text + "\n")
