"""The operator's path, all as separate processes: ``esup simulate`` → ``esup run --data-dir`` (the
embedded driver storing into chDB) → ``esup dashboards check`` runs every panel query on what it stored.

Separate processes because chDB serves one data directory per process, and because that is how an
operator runs them; this catches a panel that only works on data written the test's own way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def esup(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", "from esup.cli import main; main()", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_panels_run_on_what_esup_run_stores(tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    events = tmp_path / "events.jsonl"
    data = tmp_path / "data"
    sim = esup("simulate", "--cases", "400", "--days", "20", "--seed", "5", "--out", str(events),
               "--violation-rate", "0.2", "--bad-rate", "0.01")
    assert sim.returncode == 0, sim.stderr
    run = esup("run", "--events", str(events), "--data-dir", str(data), "--quiet", "--json")
    assert run.returncode == 0, run.stderr
    stored = json.loads(run.stdout)
    assert stored["findings"] > 0 and stored["invalid"] > 0
    check = esup("dashboards", "check", "--target", f"chdb://{data}", "--json",
                 "--from", "2026-10-01T00:00+08:00", "--to", "2026-10-20T18:00+08:00")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    runs = json.loads(check.stdout)
    assert runs and all(r["error"] is None for r in runs)
    with_rows = {(r["dashboard"], r["panel"]) for r in runs if r["rows"]}
    for panel in ("办理中", "近期每日受理、办结与监察发现", "本月问题最多的部门"):
        assert ("esup-overview", panel) in with_rows, panel
    assert ("esup-department", "各窗口办件情况") in with_rows
    assert ("esup-fees", "缴费渠道") in with_rows
