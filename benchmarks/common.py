"""Timing and memory measurement shared by the benchmark cases."""
from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def release_freed_memory() -> None:
    """Hand memory freed by earlier work back to the system, so that resident memory (what
    ``PeakMemory`` samples) counts only what is alive; a no-op where glibc is absent."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every ``interval`` seconds.

    >>> with PeakMemory() as mem: work()
    >>> mem.peak_gb
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0

    def __enter__(self) -> "PeakMemory":
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def peak_gb(self) -> float:
        """Peak growth above the starting level, in GB."""
        return (self.peak - self.start) / 1e9


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass
class Row:
    """One line of the benchmark table: a candidate against its baseline."""

    case: str
    baseline: str
    baseline_s: float
    candidate_s: float
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.baseline_s / self.candidate_s


def print_table(rows: list[Row]) -> None:
    header = f"{'case':44} {'baseline':34} {'base s':>9} {'cand s':>9} {'speedup':>8}  note"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.case:44} {row.baseline:34} {row.baseline_s:9.3f} {row.candidate_s:9.3f} "
            f"{row.speedup:7.1f}x  {row.note}"
        )
