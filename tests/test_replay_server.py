"""The audit replay against a real ClickHouse server (18.16 here): the same SQL must mean the same there.

Second-precision times, no native query parameters, an old ALTER … DELETE: the replay of a stored
month must still reproduce the live findings, select whole cases by department, and replace a re-run.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from esup.commands.replay import execute_replay
from esup.commands.run import execute
from simulator import write
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - session fixture
from warehouse import open_warehouse

pytestmark = pytest.mark.server
_db = itertools.count()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, clickhouse_server: str) -> dict[str, Any]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("replay-server")
    events = tmp / "events.jsonl"
    write(events, None, cases=600, days=30, seed=9)
    url = f"{clickhouse_server}/esup_replay{os.getpid()}_{next(_db)}"
    out = execute(str(events), store=url, report_invalid=False)
    return {"url": url, "live": out["result"].findings, "tmp": tmp}


def _replay(served: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return execute_replay(clickhouse_url=served["url"], state=served["tmp"] / "state", show_progress=False, **kw)


def test_the_server_replay_reproduces_the_live_run(served: dict[str, Any]) -> None:
    out = _replay(served, diff=True)
    assert out["diff"].empty and out["diff"].live_count == len(served["live"]) > 10
    assert {f.finding_id for f in out["findings"]} == {f.finding_id for f in served["live"]}


def test_the_server_selects_departments_and_replaces_reruns(served: dict[str, Any], tmp_path: Path) -> None:
    out = _replay(served, department="公安局", diff=True, run_id="audit-server")
    assert out["selected"] and out["diff"].empty
    again = _replay(served, department="公安局", run_id="audit-server")
    wh = open_warehouse(served["url"])
    try:
        rows = wh.query("SELECT uniqExact(finding_id) AS n, count() AS c FROM findings FINAL "
                        "WHERE run_id = {r:String}", {"r": "audit-server"})
    finally:
        wh.close()
    assert int(rows[0]["n"]) == int(rows[0]["c"]) == len(again["findings"])
