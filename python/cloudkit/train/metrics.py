"""Per-epoch metrics as JSON lines (``DIR/metrics.jsonl``), written by rank 0 only.

One object per epoch, appended and flushed as soon as the epoch ends, so ``tail -f`` and
``pandas.read_json(path, lines=True)`` work during a run. Values that do not apply are
``null`` (never NaN, which is not JSON).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

FILENAME = "metrics.jsonl"


def _plain(value: Any) -> Any:
    """Numbers, strings, lists and dicts that ``json`` writes; NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
        if isinstance(value, bool | int):
            return value
    value = float(value)
    return value if math.isfinite(value) else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a metrics file (a half-written last line is skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsWriter:
    """Appends one JSON object per epoch. Disabled (a no-op) on ranks other than 0.

    ``keep_epochs``: on a resumed run, lines of epochs after the checkpoint (written before a
    crash, then redone) are dropped first; ``None`` starts the file afresh.
    """

    def __init__(self, out_dir: Path, *, enabled: bool, keep_epochs: int | None = None) -> None:
        self.path = Path(out_dir) / FILENAME
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, Any]] = []
        if keep_epochs is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("epoch", 0) <= keep_epochs]
        tmp = self.path.with_name(f".{FILENAME}.tmp")
        with tmp.open("w") as f:
            for record in kept:
                f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(_plain(record), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
