"""What a training run shows: a progress bar per epoch, a line per epoch, notes and warnings.

Everything goes to stderr (stdout carries only the command's result), through rich; the bar
only on a terminal. Silent on ranks other than 0.
"""

from __future__ import annotations

import sys
from typing import Any


class TrainingDisplay:
    """Progress bar of the running epoch (steps, loss, images/s), and lines between epochs."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.console import Console

        # soft wrap: one line per epoch in logs, however narrow the terminal
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = sys.stderr.isatty()

    def __enter__(self) -> TrainingDisplay:
        if self.enabled and self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} img/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(f"epoch {epoch}/{epochs}", total=steps, loss=0.0, rate=0.0)

    def wants_update(self, step: int) -> bool:
        return self._bar is not None

    def step_done(self, step: int, loss: float, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=loss, rate=rate)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    def warning(self, text: str) -> None:
        """``text`` in red (rich markup allowed)."""
        if self.enabled:
            self.console.print(text, style="red")
