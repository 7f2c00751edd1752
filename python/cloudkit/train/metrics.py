"""Per-epoch metrics as JSON lines (``DIR/metrics.jsonl``), written by rank 0 only.

One object per epoch, appended and flushed as soon as the epoch ends, so ``tail -f`` and
``pandas.read_json(path, lines=True)`` work during a run. Values that do not apply are
``null`` (never NaN, which is not JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cloudkit.errors import OutputError
from cloudkit.files.atomic import write_text
from cloudkit.files.jsonfile import plain

FILENAME = "metrics.jsonl"


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
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept), durable=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(plain(record), allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise OutputError(
                f"{self.path}: cannot append the epoch's metrics ({err.strerror or err}); free "
                "space or choose another output folder, then --resume"
            ) from None
