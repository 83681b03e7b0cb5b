"""The Grafana dashboards: well-formed, in sync with the generator, and every query real.

* Structure: unique uids, panel ids and refIds; panels inside the 24-column grid and never
  overlapping; Chinese titles; every variable a query uses is defined; links point at dashboards
  that exist (including the case link the alert e-mails carry).
* ClickHouse: every panel and variable query, expanded as Grafana and the ClickHouse plugin expand
  it (``dashboards.macros``), runs on a chDB warehouse filled with simulated traffic by the real
  pipeline (``tests/test_dashboards_data.py``), returns the columns its panel refers to, returns
  rows, and — for the headline numbers — the same answer the engine's own objects give.
* Prometheus: every PromQL expression parses with ``promtool check rules`` and names a metric that
  ``esup.metrics`` exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from dashboards.check import QueryRun, clickhouse_targets, panels, run_dashboard
from dashboards.macros import ALL, apply_conditional_all, apply_macros, apply_variables, expand
from schemas.events import CHINA_TZ

BOARDS = build.build_all()
CJK = re.compile(r"[\u4e00-\u9fff]")
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__value", "__url_time_range",
                "__data", "__from", "__to"}


def all_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, board in BOARDS.items():
        for p in panels(board):
            for t in p.get("targets", []):
                yield name, p, t


# ----------------------------------------------------------------------------------------- structure


def test_the_five_asked_for_dashboards_and_the_case_page_exist() -> None:
    assert {b["uid"] for b in BOARDS.values()} == {"esup-overview", "esup-department", "esup-findings", "esup-fees",
                                                   "esup-pipeline", "esup-case"}
    dept_vars = {v["name"] for v in BOARDS["department"]["templating"]["list"]}
    assert {"region", "department", "window"} <= dept_vars


def test_uids_ids_and_refids_are_unique() -> None:
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(uids) == len(set(uids))
    for name, board in BOARDS.items():
        assert board["id"] is None, "provisioned dashboards must not carry a database id"
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), name
        for p in panels(board):
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)), (name, p["title"])


def test_panels_stay_in_the_grid_and_never_overlap() -> None:
    for name, board in BOARDS.items():
        taken: dict[tuple[int, int], str] = {}
        for p in panels(board):
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] >= 1 and g["x"] + g["w"] <= 24, (name, p["title"], g)
            assert g["h"] >= 1 and g["y"] >= 0
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in taken, f"{name}: {p['title']!r} overlaps {taken[(x, y)]!r} at {(x, y)}"
                    taken[(x, y)] = p["title"]


def test_titles_labels_and_descriptions_are_chinese() -> None:
    for name, board in BOARDS.items():
        assert CJK.search(board["title"]) and CJK.search(board["description"]), name
        for p in panels(board):
            assert CJK.search(p["title"]), (name, p["title"])
            if p["type"] != "row":
                assert CJK.search(p.get("description", "")), (name, p["title"])
        for v in board["templating"]["list"]:
            assert CJK.search(v["label"]), (name, v["name"])


def test_every_target_uses_one_of_our_two_datasources() -> None:
    for name, p, t in all_targets():
        assert t["datasource"] in (build.CH, build.PROM), (name, p["title"])
        assert p["datasource"] == t["datasource"], (name, p["title"])
        if t["datasource"] == build.CH:
            assert t["editorType"] == "sql" and t["rawSql"].lstrip().upper().startswith("SELECT")
            assert t["format"] in (0, 1) and (t["format"] == 0) == (t["queryType"] == "timeseries")


def test_every_variable_a_query_uses_is_defined() -> None:
    var = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
    for name, board in BOARDS.items():
        defined = {v["name"] for v in board["templating"]["list"]}
        texts = [t.get("rawSql") or t.get("expr", "") for p in panels(board) for t in p.get("targets", [])]
        texts += [v.get("query", "") for v in board["templating"]["list"] if isinstance(v.get("query"), str)]
        for text in texts:
            for m in var.finditer(text):
                used = m.group(1) or m.group(2)
                assert used in defined or used.startswith("__"), f"{name}: ${used} is not a variable of the dashboard"


def test_links_point_at_existing_dashboards_and_the_alert_emails_case_link_works() -> None:
    uids = {b["uid"] for b in BOARDS.values()}
    for name, board in BOARDS.items():
        for p in panels(board):
            for o in p.get("fieldConfig", {}).get("overrides", []):
                for prop in o["properties"]:
                    if prop["id"] == "links":
                        for link in prop["value"]:
                            m = re.match(r"/d/([\w-]+)/", link["url"])
                            assert m and m.group(1) in uids, (name, link["url"])
    routing = yaml.safe_load(Path("config/routing.yaml").read_text(encoding="utf-8"))
    m = re.search(r"/d/([\w-]+)\?var-(\w+)=", routing["case_url"])
    assert m, routing["case_url"]
    case_board = next(b for b in BOARDS.values() if b["uid"] == m.group(1))
    assert m.group(2) in {v["name"] for v in case_board["templating"]["list"]}


def test_generated_files_are_in_sync_with_the_generator() -> None:
    for name, board in BOARDS.items():
        on_disk = (build.JSON_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert on_disk == build.dumps(board), f"dashboards/json/{name}.json is stale: run python -m dashboards.build"
    for rel, text in build.provisioning_files().items():
        assert (build.PROVISIONING_DIR / rel).read_text(encoding="utf-8") == text, rel


def test_provisioning_declares_both_datasources_by_the_uids_panels_use() -> None:
    doc = yaml.safe_load((build.PROVISIONING_DIR / "datasources/esup.yaml").read_text(encoding="utf-8"))
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert by_uid[build.CLICKHOUSE_UID]["type"] == "grafana-clickhouse-datasource"
    assert by_uid[build.CLICKHOUSE_UID]["secureJsonData"]["password"] == "$ESUP_CLICKHOUSE_PASSWORD"
    assert by_uid[build.PROMETHEUS_UID]["type"] == "prometheus"
    providers = yaml.safe_load((build.PROVISIONING_DIR / "dashboards/esup.yaml").read_text(encoding="utf-8"))
    assert providers["providers"][0]["options"]["path"]


def test_dashboards_count() -> None:
    n = sum(1 for _n, p, _t in all_targets())
    assert n >= 60  # a guard against a builder silently dropping panels


# ----------------------------------------------------------------------------------------- macros


def test_conditional_all_follows_the_plugin() -> None:
    q = "WHERE $__conditionalAll(d IN (${d:singlequote}), $d) AND $__conditionalAll(w IN (f(${w:singlequote})), $w)"
    assert apply_conditional_all(q, {"d": ALL, "w": ["x"]}) == "WHERE 1=1 AND w IN (f(${w:singlequote}))"
    assert apply_conditional_all(q, {"d": "", "w": ALL}) == "WHERE 1=1 AND 1=1"
    assert apply_conditional_all(q, {"d": ["a", "b"], "w": ["x"]}) == \
        "WHERE d IN (${d:singlequote}) AND w IN (f(${w:singlequote}))"


def test_template_variables_follow_grafana_formats() -> None:
    assert apply_variables("x IN (${d:singlequote})", {"d": ["a", "b'c"]}) == "x IN ('a','b\\'c')"
    assert apply_variables("x = ${c:sqlstring}", {"c": "o'k"}) == "x = 'o''k'"
    assert apply_variables("x IN (${d:singlequote})", {"d": ALL}, {"d": ["p", "q"]}) == "x IN ('p','q')"
    assert apply_variables("x = $d", {"d": "one"}) == "x = one"  # the plugin inserts a single value raw
    assert apply_variables("x IN ($d)", {"d": ["a", "b"]}) == "x IN ('a','b')"  # and quotes a multi-value
    assert apply_variables("$__timeFilter(t) AND $other", {"d": "x"}) == "$__timeFilter(t) AND $other"


def test_backend_macros_match_the_plugin_source() -> None:
    from datetime import datetime

    t0 = datetime(2026, 10, 1, 0, 0, tzinfo=CHINA_TZ)
    t1 = datetime(2026, 10, 2, 12, 0, 0, 500000, tzinfo=CHINA_TZ)
    s0, s1 = int(t0.timestamp()), int(t1.timestamp())
    assert apply_macros("$__timeFilter(at)", t0, t1) == f"at >= toDateTime({s0}) AND at <= toDateTime({s1})"
    assert apply_macros("$__fromTime $__toTime", t0, t1) == f"toDateTime({s0}) toDateTime({s1})"
    assert apply_macros("$__toTime_ms", t0, t1) == f"fromUnixTimestamp64Milli({int(t1.timestamp() * 1000)})"
    assert apply_macros("$__dateFilter(d)", t0, t1) == "d >= toDate('2026-09-30') AND d <= toDate('2026-10-02')"
    assert apply_macros("$__timeInterval(at) / $__interval_s", t0, t1, 300) == \
        "toStartOfInterval(toDateTime(at), INTERVAL 300 second) / 300"
    assert apply_macros("$__timeFilter(toDate(f(a, b)))", t0, t1).startswith("toDate(f(a, b)) >= ")
    with pytest.raises(ValueError, match="unknown macro"):
        apply_macros("$__unknownMacro", t0, t1)


# ----------------------------------------------------------------------------------------- ClickHouse


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    pytest.importorskip("chdb")
    from tests.test_dashboards_data import build_demo_warehouse
    from warehouse import open_warehouse

    directory = tmp_path_factory.mktemp("dashboards") / "wh"
    info = build_demo_warehouse(directory)
    wh = open_warehouse(f"chdb://{directory}")
    try:
        yield wh, info
    finally:
        wh.close()


def _runs(demo: tuple[Any, Any], **selected: Any) -> dict[tuple[str, str], QueryRun]:
    wh, info = demo
    out: dict[tuple[str, str], QueryRun] = {}
    for board in BOARDS.values():
        for run in run_dashboard(wh, board, info.start, info.now, selected=selected):
            out[(run.dashboard, run.panel)] = run
    return out


def _expected_columns(panel: dict[str, Any]) -> tuple[set[str], list[str]]:
    """Column names a panel's configuration refers to, and regexps that must match some column."""
    names: set[str] = set()
    patterns: list[str] = []
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byName":
            names.add(o["matcher"]["options"])
        elif o["matcher"]["id"] == "byRegexp":
            patterns.append(o["matcher"]["options"])
    if panel["type"] == "stat" and len(panel["targets"]) == 1 and panel["title"] != "应收与实收":
        names.add(panel["title"])  # a single-number stat shows its own column
    return names, patterns


def test_every_clickhouse_query_runs_and_returns_what_its_panel_shows(demo: tuple[Any, Any]) -> None:
    wh, info = demo
    runs = _runs(demo, case=info.case_with_findings)
    failed = [f"{r.dashboard} / {r.panel}: {r.error}\n{r.sql}" for r in runs.values() if not r.ok]
    assert not failed, "\n\n".join(failed)
    n_queries = sum(1 for b in BOARDS.values() for _ in clickhouse_targets(b))
    assert len([r for r in runs.values() if r.ref != "var"]) == n_queries
    for board in BOARDS.values():
        for panel, _target in clickhouse_targets(board):
            run = runs[(board["uid"], panel["title"])]
            names, patterns = _expected_columns(panel)
            cols = set(run.columns)
            assert names <= cols, f"{panel['title']}: missing {names - cols}, got {run.columns}"
            for pat in patterns:
                assert any(re.match(pat, c) for c in run.columns), (panel["title"], pat, run.columns)
            if run.series:
                assert run.columns[0] == "time" and len(run.columns) >= 2, (panel["title"], run.columns)
            for c in run.columns:
                assert c == "time" or CJK.search(c), f"{panel['title']}: column {c!r} has no Chinese label"
            assert run.rows, f"{board['uid']} / {panel['title']} returned no rows on the demo data:\n{run.sql}"


def test_variable_queries_offer_the_demo_datas_places(demo: tuple[Any, Any]) -> None:
    wh, info = demo
    runs = _runs(demo)
    assert [r["region_code"] for r in runs[("esup-department", "$region")].rows] == info.regions
    assert [r["department"] for r in runs[("esup-department", "$department")].rows] == info.departments


def test_headline_numbers_agree_with_the_engine(demo: tuple[Any, Any]) -> None:
    wh, info = demo
    runs = _runs(demo)

    def value(dashboard: str, panel: str) -> Any:
        return runs[(dashboard, panel)].rows[0][panel]

    assert value("esup-overview", "办理中") == info.open_now > 0
    assert value("esup-overview", "今日受理") == info.accepted_today > 0
    assert value("esup-overview", "今日办结") == info.completed_today > 0
    assert value("esup-overview", "今日红牌") == info.red_today > 0
    assert value("esup-overview", "今日黄牌") == info.yellow_today > 0
    assert value("esup-findings", "时间范围内新增告警") == info.alerts
    queue = runs[("esup-findings", "待处置告警清单")].rows
    assert {r["状态"] for r in queue} == {"待签收", "已签收"}
    assert value("esup-findings", "待签收") + value("esup-findings", "已签收未办结") == len(queue)
    assert runs[("esup-pipeline", "告警投递失败（投递记录）")].rows  # the flaky SMS gateway's refusals


def test_filters_narrow_to_the_selected_department(demo: tuple[Any, Any]) -> None:
    wh, info = demo
    dept = info.busiest_department
    runs = _runs(demo, department=[dept])
    failed = [f"{r.dashboard} / {r.panel}: {r.error}" for r in runs.values() if not r.ok]
    assert not failed, failed
    windows = runs[("esup-department", "各窗口办件情况")].rows
    assert windows and {r["部门"] for r in windows} == {dept}
    assert [r["window"] for r in runs[("esup-department", "$window")].rows] == info.windows[dept]
    assert {r["部门"] for r in runs[("esup-findings", "待处置告警清单")].rows} == {dept}
    everyone = _runs(demo)
    assert value_of(runs, "esup-department", "收件") < value_of(everyone, "esup-department", "收件")
    one_window = _runs(demo, department=[dept], window=[info.windows[dept][0]])
    rows = one_window[("esup-department", "各窗口办件情况")].rows
    assert [r["窗口"] for r in rows] == [info.windows[dept][0]]


def value_of(runs: dict[tuple[str, str], QueryRun], dashboard: str, panel: str) -> Any:
    return runs[(dashboard, panel)].rows[0][panel]


def test_esup_dashboards_check_reports_every_query(demo: tuple[Any, Any]) -> None:
    import json

    from typer.testing import CliRunner

    from esup.cli import app

    wh, info = demo  # the CLI opens the same chDB directory: chDB shares it within one process
    result = CliRunner().invoke(app, ["dashboards", "check", "--target", f"chdb://{wh.path}", "--json",
                                      "--from", info.start.isoformat(), "--to", info.now.isoformat()])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)
    assert len(runs) == len(_runs(demo)) and all(r["error"] is None for r in runs)
    assert wh.query("SELECT 1 AS x") == [{"x": 1}]  # still open for the other tests


def test_the_case_page_masks_the_applicant(demo: tuple[Any, Any]) -> None:
    wh, info = demo
    runs = _runs(demo, case=info.case_with_findings)
    row = runs[("esup-case", "办件概况")].rows[0]
    name = wh.query("SELECT applicant_name FROM case_facts FINAL WHERE case_id = {c:String}",
                    {"c": info.case_with_findings})[0]["applicant_name"]
    assert row["申请人"] == name[0] + "*" * (len(name) - 1) and name not in str(row)
    quoted = expand("SELECT ${case:sqlstring}", info.start, info.now, selected={"case": "x' OR '1'='1"})
    assert quoted == "SELECT 'x'' OR ''1''=''1'"  # a typed case number cannot break out of the string


# ----------------------------------------------------------------------------------------- Prometheus


def _promql() -> list[tuple[str, str, str]]:
    out = []
    for name, p, t in all_targets():
        if t["datasource"] == build.PROM:
            out.append((name, p["title"], t["expr"]))
    for board in BOARDS.values():
        for v in board["templating"]["list"]:
            if v.get("datasource") == build.PROM:
                out.append((board["uid"], f"${v['name']}", v["query"]))
    return out


def _as_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
            .replace('"$job"', '".*"'))


def test_every_promql_expression_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make servers / scripts/install-servers.sh installs it)")
    rules = []
    for i, (_board, _panel, expr) in enumerate(_promql()):
        if expr.startswith("label_values("):
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", expr)
            assert m, expr
            expr = m.group(1)  # Grafana's helper; the metric inside it must still be a valid selector
        rules.append({"record": f"esup:dashboard_query_{i}", "expr": _as_promql(expr)})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, allow_unicode=True))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_promql_names_only_metrics_esup_exports() -> None:
    from prometheus_client import REGISTRY

    import esup.metrics  # noqa: F401 - registers the metrics

    exported = {s.name for m in REGISTRY.collect() for s in m.samples}
    exported |= {m.name for m in REGISTRY.collect()}
    for board, panel, expr in _promql():
        for name in re.findall(r"\besup_[a-z_]+", expr):
            family = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert name in exported or family in exported, f"{board} / {panel}: {name} is not exported by esup.metrics"
