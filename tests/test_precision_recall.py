"""Acceptance: on simulated traffic the engine finds every injected violation and nothing else.

The simulator writes a ground-truth file naming, per case, every finding its injected violation
must cause (docs/rules.md); the embedded run must produce exactly those (case, rule) pairs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rules.engine import Engine
from rules.registry import RULES
from simulator import write
from streams.embedded import load, run_events


def _compare(tmp: Path, cases: int, seed: int) -> tuple[dict[str, tuple[int, int, int]], set, set]:
    events, truth = tmp / "events.jsonl", tmp / "truth.jsonl"
    write(events, truth, cases=cases, days=30, seed=seed)
    with open(events, "rb") as fh:
        valid, invalid, _ = load(fh)
    assert invalid == []
    found = {(f.case_id, f.rule) for f in run_events(Engine.default(), valid).findings}
    expected = set()
    for line in truth.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "rule" in row:
            expected.add((row["case_id"], row["rule"]))
    tp = Counter(r for _, r in found & expected)
    fp = Counter(r for _, r in found - expected)
    fn = Counter(r for _, r in expected - found)
    table = {r: (tp[r], fp[r], fn[r]) for r in RULES}
    return table, found - expected, expected - found


def _report(table: dict[str, tuple[int, int, int]]) -> str:
    lines = [f"{'rule':32s} {'found':>6s} {'false+':>6s} {'missed':>6s} precision recall"]
    for rule, (tp, fp, fn) in table.items():
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        lines.append(f"{rule:32s} {tp:6d} {fp:6d} {fn:6d} {p:9.1%} {r:6.1%}")
    return "\n".join(lines)


def test_every_rule_exact_on_5000_cases(tmp_path: Path) -> None:
    table, extra, missed = _compare(tmp_path, 5_000, seed=3)
    print("\n" + _report(table))
    assert not extra, f"fired but not injected (case, rule): {sorted(extra)[:20]}"
    assert not missed, f"injected but not found (case, rule): {sorted(missed)[:20]}"
    assert all(tp > 0 for tp, _, _ in table.values()), "every rule must be exercised"


@pytest.mark.slow
def test_every_rule_exact_on_100000_cases(tmp_path: Path) -> None:
    table, extra, missed = _compare(tmp_path, 100_000, seed=7)
    print("\n" + _report(table))
    assert not extra, f"fired but not injected (case, rule): {sorted(extra)[:20]}"
    assert not missed, f"injected but not found (case, rule): {sorted(missed)[:20]}"
    assert all(tp > 0 for tp, _, _ in table.values())
