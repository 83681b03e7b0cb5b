"""Run every benchmark that exists and write the figures, with the machine and date, to bench/results/."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SUITES = [
    ("engine", "bench.engine", "bench_engine"),
    ("simulate", "bench.simulate", "bench_simulate"),
    ("warehouse", "bench.warehouse", "bench_warehouse"),
    ("export", "bench.export", "bench_export"),
    ("replay", "bench.replay", "bench_replay"),
    ("streams", "bench.streams", "bench_streams"),
]


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "python": platform.python_version()}


def main(argv: list[str]) -> int:
    wanted = set(argv) or {name for name, _, _ in SUITES}
    out: dict = {"date": date.today().isoformat(), "machine": machine(), "results": {}}
    for name, module, func in SUITES:
        if name not in wanted:
            continue
        try:
            fn = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            out["results"][name] = {"skipped": f"not available: {exc}"}
            continue
        print(f"bench {name} …", flush=True)
        t0 = time.perf_counter()
        try:
            figures = fn()
        except Exception as exc:  # a failing benchmark is reported, the others still run
            figures = {"error": f"{type(exc).__name__}: {exc}"}
        figures["wall_seconds"] = round(time.perf_counter() - t0, 1)
        out["results"][name] = figures
        print(json.dumps({name: figures}, ensure_ascii=False), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{out['date']}-{out['machine']['host'] or 'host'}.json"
    if path.exists():  # a partial run (`python -m bench engine`) keeps the other suites' figures of the day
        earlier = json.loads(path.read_text(encoding="utf-8"))
        out["results"] = {**earlier.get("results", {}), **out["results"]}
    path.write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
