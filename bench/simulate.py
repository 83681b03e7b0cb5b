"""Benchmark: how fast ``esup simulate`` writes events (the replay and load tests need millions)."""

from __future__ import annotations

import math
import os
import tempfile
import time

from simulator import simulate, write

DAYS = 90
CENTERS = 3
SEED = 20261001


def bench_simulate(events: int = 1_000_000) -> dict[str, float | int]:
    """Generate about ``events`` events (at least that many) to a temporary file and time it.

    A small pilot run (not timed) measures events per case for these settings, so the timed run is
    sized to the requested number of events rather than a guessed number of cases.
    """
    pilot = simulate(2000, DAYS, SEED, centers=CENTERS)
    for _ in pilot.lines():
        pass
    per_case = pilot.summary.events / pilot.summary.cases
    cases = math.ceil(events / per_case * 1.02)
    fd, path = tempfile.mkstemp(suffix=".jsonl", prefix="esup-sim-")
    os.close(fd)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        summary = write(path, None, cases=cases, days=DAYS, seed=SEED, centers=CENTERS)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = os.path.getsize(path)
    finally:
        os.unlink(path)
    return {
        "events": summary.events,
        "cases": summary.cases,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_second": round(summary.events / wall),
        "bytes": size,
    }


if __name__ == "__main__":  # handy for a one-off measurement; the bench harness imports the function
    print(bench_simulate())
