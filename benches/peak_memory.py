"""Wall time and peak memory of one command, its own: not what its parent once used.

`wait4`'s ru_maxrss cannot give that: Linux carries a process's high-water mark across
fork and exec, so every child of a bench that had generated a 3.9 GB scene reported 3.9 GB
whatever it used itself. Each process's VmHWM (/proc/PID/status) starts afresh at exec; the
tree's are polled while the command runs and the largest is kept (growth in the last poll
interval before a process exits can be missed: 50 ms).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
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


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, the largest process of the tree) of one command;
    SystemExit when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    peak = [0.0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_peak_mb(proc.pid))
            done.wait(POLL_SECONDS)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    # wait without reaping, so the last poll still sees the finished process's status
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    peak[0] = max(peak[0], tree_peak_mb(proc.pid))
    status = proc.wait()
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return seconds, peak[0]
