"""Wall time and peak memory of one command, its own: not what its parent once used.

`wait4`'s ru_maxrss cannot give that: Linux carries a process's high-water mark across
fork and exec, so every child of a bench that had generated a 3.9 GB scene reported 3.9 GB
whatever it used itself. Each process's VmHWM (/proc/PID/status) starts afresh at exec; the
tree's are polled while the command runs and the largest is kept (growth in the last poll
interval before a process exits can be missed: 50 ms).

Benches that run their configurations one after another in one process use
:func:`measure_here` instead: it resets this process's VmHWM (:func:`reset_hwm`) before each.
"""

from __future__ import annotations

import gc
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POLL_SECONDS = 0.05


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def hwm_mb(pid: int | str = "self") -> float:
    """The high-water mark (MB) of process ``pid`` (this one by default); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_peak_mb(pid: int) -> float:
    """The largest high-water mark among ``pid`` and its descendants now."""
    peak, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        peak = max(peak, hwm_mb(p))
        todo += _children(p)
    return peak


class _TreeWatch:
    """The largest high-water mark in the tree of ``pid``, polled in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, tree_peak_mb(self.pid))
            self._done.wait(POLL_SECONDS)

    def stop(self) -> float:
        """Stop polling; the peak, the tree as it is now included."""
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, tree_peak_mb(self.pid))
        return self.peak


def measure(
    cmd: list[str], env: dict | None = None, stdout: int | None = None
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, the largest process of the tree) of one command;
    SystemExit when it fails. ``stdout``: as subprocess takes it (DEVNULL to silence it)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout)
    watch = _TreeWatch(proc.pid)
    # wait without reaping, so the last poll still sees the finished process's status
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    seconds = time.perf_counter() - t0
    peak = watch.stop()
    status = proc.wait()
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return seconds, peak


def reset_hwm() -> None:
    """Bring this process's high-water mark (VmHWM) down to its RSS now.

    A bench that runs its configurations one after another in one process otherwise reports
    the first one's peak for all the later ones: ru_maxrss and VmHWM only grow. Writing "5"
    to /proc/self/clear_refs is Linux's way to reset VmHWM. What the process still holds
    counts towards the next peak, so drop the last configuration's data before.
    """
    Path("/proc/self/clear_refs").write_text("5")


@dataclass
class Measured:
    """What :func:`measure_here` found of its block: wall seconds and peak RSS (MB)."""

    seconds: float = 0.0
    peak_mb: float = 0.0


@contextmanager
def measure_here(children: bool = False) -> Iterator[Measured]:
    """Wall time and peak RSS of the ``with`` block, run in this process: its own peak, not
    an earlier configuration's. ``children``: the processes it starts count too (DataLoader
    workers), the peak being the largest process, as in :func:`measure`.

    Not nested: the inner block's reset would hide the outer block's peak.
    """
    gc.collect()  # what the last configuration left to the collector is not this one's
    reset_hwm()
    watch = _TreeWatch(os.getpid()) if children else None
    figures = Measured()
    t0 = time.perf_counter()
    try:
        yield figures
    finally:
        figures.seconds = time.perf_counter() - t0
        figures.peak_mb = watch.stop() if watch else hwm_mb()
