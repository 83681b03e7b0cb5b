"""Grafana dashboards as code: ``python -m dashboards.build`` writes ``dashboards/json/*.json`` and the
provisioning files (the two data sources, the dashboard provider).

Why generated and not hand-edited JSON: six dashboards share one vocabulary (rule codes → Chinese
names, statuses, severities), one way of saying "open at time T" or "overdue at time T", and one set
of filters; written once here, a rule added to ``rules/registry.py`` appears on every panel, and the
tests can run every query against a warehouse (``dashboards.macros`` expands them as Grafana would).

Conventions every panel follows:

* **"Now" is the end of the dashboard's time range** (``$__toTime``). With the default range ending
  at ``now`` that is the present; moving the time picker back shows the center as it stood then
  (cases open at that instant, "today" = the China day of that instant, "this month" = its month).
* **China time.** Days are China days (``toDate(…, 'Asia/Shanghai')``); the warehouse stores instants.
* **Exact counts.** ReplacingMergeTree tables are read with ``FINAL`` or through ``uniqExact`` of ids,
  the daily aggregates with ``uniqExactMerge`` — a retried batch never counts twice.
* **No personal data** leaves the warehouse unmasked: applicant names are shown as 张**, never IDs.
* Only findings of the live run (``run_id = 'live'``); audit replays have their own run ids.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from textwrap import dedent
from typing import Any

from rules.registry import RULES, SEVERITY_NAMES

HERE = Path(__file__).resolve().parent
JSON_DIR = HERE / "json"
PROVISIONING_DIR = HERE / "provisioning"

CLICKHOUSE_UID = "esup-clickhouse"
PROMETHEUS_UID = "esup-prometheus"
CH: dict[str, str] = {"type": "grafana-clickhouse-datasource", "uid": CLICKHOUSE_UID}
PROM: dict[str, str] = {"type": "prometheus", "uid": PROMETHEUS_UID}
FOLDER_UID = "esup"
FOLDER_TITLE = "电子监察"
TAG = "esup"

# ------------------------------------------------------------------------------------------- data sources


def datasources(clickhouse_host: str = "clickhouse", clickhouse_port: int = 9000, clickhouse_user: str = "default",
                clickhouse_database: str = "esup", clickhouse_password: str | None = None,
                prometheus_url: str = "http://prometheus:9090") -> list[dict[str, Any]]:
    """The two data sources as Grafana's HTTP API takes them (provisioning uses the same fields).

    ClickHouse is reached over the native protocol by the official plugin. Grafana does not stop a
    panel from running any SQL, so production should name a read-only user; ``default`` is what a
    stock ClickHouse container has. The password is never written to a file: provisioning reads
    ``$ESUP_CLICKHOUSE_PASSWORD``, and without ``clickhouse_password`` an API update keeps the stored one.
    """
    ch: dict[str, Any] = {
        "uid": CLICKHOUSE_UID, "name": "esup ClickHouse", "type": CH["type"], "access": "proxy",
        "jsonData": {"host": clickhouse_host, "port": clickhouse_port, "protocol": "native", "secure": False,
                     "username": clickhouse_user, "defaultDatabase": clickhouse_database,
                     "dialTimeout": "10", "queryTimeout": "60"},
        "isDefault": True,
    }
    if clickhouse_password is not None:
        ch["secureJsonData"] = {"password": clickhouse_password}
    prom: dict[str, Any] = {
        "uid": PROMETHEUS_UID, "name": "esup Prometheus", "type": "prometheus", "access": "proxy",
        "url": prometheus_url, "jsonData": {"httpMethod": "POST", "timeInterval": "15s"}, "isDefault": False,
    }
    return [ch, prom]


# ------------------------------------------------------------------------------------------- vocabulary


def _sql_str(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def transform(column: str, mapping: Iterable[tuple[str, str]], default: str | None = None) -> str:
    """``transform(col, [codes], [names], default)``: Chinese labels computed in SQL, so every
    panel type (tables, bars, pies) shows them without per-panel value mappings."""
    pairs = list(mapping)
    codes = ", ".join(_sql_str(c) for c, _ in pairs)
    names = ", ".join(_sql_str(n) for _, n in pairs)
    return f"transform({column}, [{codes}], [{names}], {default if default is not None else column})"


CATEGORY_LABELS = [("TIMEOUT", "超时"), ("FEE", "违规收费"), ("PROCEDURE", "程序异常"), ("QUALITY", "服务质量")]
STATUS_LABELS = [("submitted", "已收件"), ("accepted", "办理中"), ("paused", "暂停计时"), ("decided", "已决定"),
                 ("completed", "已办结"), ("rejected", "不予受理"), ("withdrawn", "已撤回"), ("unknown", "未知")]
EVENT_LABELS = [
    ("submitted", "收件"), ("accepted", "受理"), ("intake_rejected", "不予受理"), ("supplement_requested", "补正告知"),
    ("supplement_received", "补正材料收到"), ("step_completed", "环节办理"), ("suspended", "特别程序开始"),
    ("resumed", "特别程序结束"), ("extension_granted", "延期"), ("fee_assessed", "收费通知"), ("fee_paid", "缴费"),
    ("fee_waived", "减免"), ("fee_refunded", "退费"), ("decided", "作出决定"), ("completed", "办结"),
    ("delivered", "送达/出证"), ("withdrawn", "撤回"), ("rated", "评价"), ("rating_resolved", "差评整改"),
    ("complaint_filed", "投诉"), ("complaint_resolved", "投诉办结"),
]
ALERT_STATUS_LABELS = [("open", "待签收"), ("acknowledged", "已签收"), ("resolved", "已办结"), ("dismissed", "已撤销")]
DELIVERY_RESULT_LABELS = [("ok", "成功"), ("retry", "失败待重试"), ("failed", "失败"), ("pending", "发送中"),
                          ("deferred", "并入汇总/限流延后"), ("cancelled", "已取消")]
CHANNEL_LABELS = [("email", "邮件"), ("sms", "短信")]
NOTICE_KIND_LABELS = [("finding", "新发现"), ("upgrade", "黄牌升红牌"), ("escalation", "红牌未签收上报"),
                      ("digest", "汇总")]
PAY_CHANNEL_LABELS = [("bank", "银行代收"), ("online", "网上缴费"), ("window_cash", "窗口现金")]
RATING_LEVELS = "[1, 2, 3, 4, 5]"
RATING_NAMES = "['非常不满意', '不满意', '基本满意', '满意', '非常满意']"



def rule_name(column: str = "rule") -> str:
    """The rule's Chinese name from ``rules/registry.py``; an unknown code shows as itself."""
    return transform(column, ((code, info.name) for code, info in RULES.items()))


def severity_name(column: str = "severity") -> str:
    return transform(column, SEVERITY_NAMES.items())


RULE_NAME = rule_name()
SEVERITY_NAME = severity_name()
CATEGORY_NAME = transform("category", CATEGORY_LABELS)

# ------------------------------------------------------------------------------------------- SQL fragments

TODAY = "toDate($__toTime, 'Asia/Shanghai')"
FIRST_DAY = "toDate($__fromTime, 'Asia/Shanghai')"
MONTH_START = f"toStartOfMonth({TODAY})"
IN_RANGE_DAYS = f"day >= {FIRST_DAY} AND day <= {TODAY}"
THIS_MONTH_DAYS = f"day >= {MONTH_START} AND day <= {TODAY}"
OPEN_AT_T = ("accepted_at <= $__toTime AND (completed_at IS NULL OR completed_at > $__toTime) "
             "AND status NOT IN ('rejected', 'withdrawn')")
"""A case in progress at T: accepted by T, not completed by T, not rejected or withdrawn."""
OVERDUE_AT_T = ("(ifNull(promised_due_at < $__toTime, 0) OR (ifNull(statutory_due_at < $__toTime, 0) "
                "AND (decided_at IS NULL OR decided_at > $__toTime)))")
"""Past its promised deadline (for 即办件, the end of the day of acceptance), or past the statutory one undecided."""


def cond_all(column: str, var: str) -> str:
    """The plugin's ``$__conditionalAll``: no filter when the variable is "All"."""
    return f"$__conditionalAll({column} IN (${{{var}:singlequote}}), ${var})"


def dims(*pairs: tuple[str, str]) -> str:
    return " AND ".join(cond_all(col, var) for col, var in pairs)


PLACE = (("region_code", "region"), ("department", "department"), ("`window`", "window"))
PLACE_FILTER = dims(*PLACE)


def rated_events(extra: str = "") -> str:
    """Ratings in the time range, one row per event id (a re-delivered line counts once).

    Aggregates get new names: ClickHouse would read an alias equal to a column name in WHERE.
    """
    return dedent(f"""\
        (SELECT case_id, event_id, any(occurred_at) AS rated_at, any(level) AS rating
         FROM events
         WHERE valid = 1 AND event_type = 'rated' AND $__timeFilter(occurred_at){extra}
         GROUP BY case_id, event_id)""")


def cases_where(where: str, columns: str = "case_id") -> str:
    return f"(SELECT {columns} FROM case_facts FINAL WHERE {where})"


FEE_EVENTS = dedent("""\
    (SELECT case_id, event_id, any(event_type) AS fee_event, any(occurred_at) AS fee_at,
            any(JSONExtractString(raw, 'channel')) AS pay_channel,
            any(toDecimal64OrZero(JSONExtractRaw(raw, 'amount'), 2)) AS amount
     FROM events
     WHERE valid = 1 AND event_type IN ('fee_assessed', 'fee_paid', 'fee_waived', 'fee_refunded')
       AND $__timeFilter(occurred_at)
     GROUP BY case_id, event_id)""")
"""Fee events in the time range with amount and payment channel read from the line as received."""

ALERTS_AT_T = dedent("""\
    (SELECT alert_id, argMax(status, version) AS status, argMax(severity, version) AS severity,
            min(changed_at) AS opened_at, argMax(actor, version) AS actor
     FROM alert_lifecycle
     WHERE changed_at <= $__toTime
     GROUP BY alert_id)""")
"""Each alert's state as of T: the latest version written by then."""

# ------------------------------------------------------------------------------------------- panels


def sql(text: str) -> str:
    return dedent(text).strip()


def ch_target(query: str, ref: str = "A", series: bool = False) -> dict[str, Any]:
    """A ClickHouse plugin (v4) SQL query; ``series`` asks for a time series frame (first column ``time``)."""
    return {"refId": ref, "datasource": CH, "editorType": "sql", "queryType": "timeseries" if series else "table",
            "format": 0 if series else 1, "rawSql": sql(query)}


def prom_target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROM, "editorMode": "code", "expr": expr, "legendFormat": legend,
            "range": not instant, "instant": instant}


def _base(kind: str, title: str, description: str, targets: Sequence[dict[str, Any]],
          datasource: dict[str, str]) -> dict[str, Any]:
    return {"type": kind, "title": title, "description": description, "datasource": datasource,
            "targets": list(targets), "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN = [(None, "green")]
BAD_IF_ANY = [(None, "green"), (1, "red")]
WARN_IF_ANY = [(None, "green"), (1, "orange")]
RATE_GOOD_HIGH = [(None, "red"), (80, "orange"), (95, "green")]


def stat(title: str, description: str, targets: Sequence[dict[str, Any]], *, unit: str = "none",
         steps: Sequence[tuple[float | None, str]] = GREEN, decimals: int | None = None,
         datasource: dict[str, str] = CH, color_mode: str = "background") -> dict[str, Any]:
    p = _base("stat", title, description, targets, datasource)
    p["fieldConfig"]["defaults"] = {"unit": unit, "thresholds": _thresholds(steps), "color": {"mode": "thresholds"},
                                    "noValue": "0" if unit in ("none", "short") else "—"}
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    p["options"] = {"colorMode": color_mode, "graphMode": "none", "justifyMode": "center", "textMode": "value_and_name",
                    "orientation": "auto", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return p


def timeseries(title: str, description: str, targets: Sequence[dict[str, Any]], *, unit: str = "short",
               bars: bool = False, datasource: dict[str, str] = CH, stack: bool = False) -> dict[str, Any]:
    p = _base("timeseries", title, description, targets, datasource)
    p["fieldConfig"]["defaults"] = {
        "unit": unit, "color": {"mode": "palette-classic"},
        "custom": {"drawStyle": "bars" if bars else "line", "fillOpacity": 60 if bars else 10, "lineWidth": 2,
                   "showPoints": "never", "spanNulls": True,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
    }
    p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


def case_link(column: str = "办件编号") -> dict[str, Any]:
    """Make a column's cells open the case dashboard (the same link alert e-mails carry)."""
    return {"matcher": {"id": "byName", "options": column},
            "properties": [{"id": "links", "value": [
                {"title": "办件详情", "url": "/d/esup-case/esup-case?var-case=${__value.raw}&${__url_time_range}"}]}]}


def table(title: str, description: str, targets: Sequence[dict[str, Any]], *,
          overrides: Sequence[dict[str, Any]] = (), datasource: dict[str, str] = CH) -> dict[str, Any]:
    p = _base("table", title, description, targets, datasource)
    p["fieldConfig"]["defaults"] = {"custom": {"align": "auto", "filterable": True}, "noValue": "无"}
    p["fieldConfig"]["overrides"] = list(overrides)
    p["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return p


def percent_column(name: str) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": "percent"}, {"id": "decimals", "value": 1},
                           {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                           {"id": "thresholds", "value": _thresholds(RATE_GOOD_HIGH)}]}


def money_columns(*names: str) -> dict[str, Any]:
    return {"matcher": {"id": "byRegexp", "options": "^(" + "|".join(names) + ")$"},
            "properties": [{"id": "unit", "value": "currencyCNY"}, {"id": "decimals", "value": 2}]}


def barchart(title: str, description: str, targets: Sequence[dict[str, Any]], *, horizontal: bool = True,
             stack: bool = False) -> dict[str, Any]:
    p = _base("barchart", title, description, targets, CH)
    p["fieldConfig"]["defaults"] = {"color": {"mode": "palette-classic"}, "custom": {"fillOpacity": 80}}
    p["options"] = {"orientation": "horizontal" if horizontal else "vertical", "showValue": "auto",
                    "stacking": "normal" if stack else "none", "xTickLabelRotation": 0,
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}}
    return p


def piechart(title: str, description: str, targets: Sequence[dict[str, Any]], *, unit: str = "short") -> dict[str, Any]:
    p = _base("piechart", title, description, targets, CH)
    p["fieldConfig"]["defaults"] = {"unit": unit, "color": {"mode": "palette-classic"}}
    p["options"] = {"pieType": "donut", "displayLabels": ["name", "percent"],
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                    "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value"]}}
    return p


# Severity colours used on series and bars named 红牌 / 黄牌.
CARD_COLOURS = [
    {"matcher": {"id": "byName", "options": "红牌"},
     "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]},
    {"matcher": {"id": "byName", "options": "黄牌"},
     "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "yellow"}}]},
]


class Grid:
    """Lays panels out left to right in rows of 24 columns, so positions never overlap by construction."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y += 1

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if not 1 <= w <= 24:
            raise ValueError(f"panel width {w} outside 1..24")
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def numbered(self) -> list[dict[str, Any]]:
        for i, p in enumerate(self.panels, start=1):
            p["id"] = i
        return self.panels


# ------------------------------------------------------------------------------------------- variables


def query_var(name: str, label: str, query: str, datasource: dict[str, str] = CH, *, multi: bool = True,
              all_value: str | None = None) -> dict[str, Any]:
    v: dict[str, Any] = {
        "type": "query", "name": name, "label": label, "datasource": datasource, "query": sql(query),
        "definition": sql(query), "refresh": 2, "sort": 1, "multi": multi, "includeAll": True,
        "current": {"selected": True, "text": ["全部"], "value": ["$__all"]}, "options": [], "hide": 0,
    }
    if all_value is not None:
        v["allValue"] = all_value
    return v


def custom_var(name: str, label: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A fixed list shown by Chinese text, sending the code (Grafana's ``text : value`` syntax)."""
    return {
        "type": "custom", "name": name, "label": label, "query": ",".join(f"{text} : {value}" for value, text in pairs),
        "multi": True, "includeAll": True, "current": {"selected": True, "text": ["全部"], "value": ["$__all"]},
        "options": [{"selected": False, "text": text, "value": value} for value, text in pairs], "hide": 0,
    }


def text_var(name: str, label: str, default: str = "") -> dict[str, Any]:
    return {"type": "textbox", "name": name, "label": label, "query": default,
            "current": {"selected": False, "text": default, "value": default}, "options": [], "hide": 0}


def region_var() -> dict[str, Any]:
    return query_var("region", "行政区划", "SELECT DISTINCT region_code FROM daily_case_metrics WHERE region_code != '' ORDER BY region_code")


def department_var(region_filtered: bool = True) -> dict[str, Any]:
    where = " AND " + cond_all("region_code", "region") if region_filtered else ""
    return query_var("department", "部门",
                     f"SELECT DISTINCT department FROM daily_case_metrics WHERE department != ''{where} ORDER BY department")


def window_var() -> dict[str, Any]:
    return query_var("window", "窗口", f"""
        SELECT DISTINCT `window` FROM daily_case_metrics
        WHERE `window` != '' AND {cond_all('region_code', 'region')} AND {cond_all('department', 'department')}
        ORDER BY `window`""")


def dashboard(uid: str, title: str, description: str, grid: Grid, variables: Sequence[dict[str, Any]] = (), *,
              time_from: str = "now-30d", refresh: str = "1m", tags: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "id": None, "uid": uid, "title": title, "description": description, "tags": [TAG, *tags],
        "timezone": "Asia/Shanghai", "weekStart": "monday", "editable": True, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "refresh": refresh, "liveNow": False, "fiscalYearStartMonth": 0,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["30s", "1m", "5m", "15m", "1h"]},
        "templating": {"list": list(variables)},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True, "title": "电子监察看板",
                   "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False}],
        "panels": grid.numbered(),
    }


# ============================================================================================ 1. overview


def overview() -> dict[str, Any]:
    g = Grid()
    g.row("当前态势（以时间范围终点为“现在”）")
    g.add(stat("办理中", "截至时间范围终点已受理、尚未办结且未撤回/不予受理的办件数。", [ch_target(f"""
        SELECT count() AS "办理中"
        FROM case_facts FINAL
        WHERE {OPEN_AT_T}""")], steps=[(None, "blue")]), 4, 5)
    g.add(stat("今日受理", "当天（北京时间）受理的办件数。", [ch_target(f"""
        SELECT uniqExactMerge(cases) AS "今日受理"
        FROM daily_case_metrics
        WHERE metric = 'accepted' AND day = {TODAY}""")], steps=[(None, "blue")]), 4, 5)
    g.add(stat("今日办结", "当天（北京时间）办结的办件数。", [ch_target(f"""
        SELECT uniqExactMerge(cases) AS "今日办结"
        FROM daily_case_metrics
        WHERE metric = 'completed' AND day = {TODAY}""")], steps=[(None, "green")]), 4, 5)
    g.add(stat("当前预警", "已发出承诺时限预警（黄牌）、尚未超期、仍在办理的办件数。", [ch_target(f"""
        SELECT count() AS "当前预警"
        FROM case_facts FINAL
        WHERE {OPEN_AT_T} AND NOT {OVERDUE_AT_T}
          AND case_id IN (SELECT case_id FROM findings
                          WHERE run_id = 'live' AND rule = 'TIMEOUT.PROMISED_WARNING' AND fired_at <= $__toTime)""")],
        steps=WARN_IF_ANY), 4, 5)
    g.add(stat("当前超期", "仍在办理且已超过承诺时限（即办件：受理当日），或超过法定时限尚未作出决定的办件数。",
               [ch_target(f"""
        SELECT count() AS "当前超期"
        FROM case_facts FINAL
        WHERE {OPEN_AT_T} AND {OVERDUE_AT_T}""")], steps=BAD_IF_ANY), 4, 5)
    g.add(stat("本月按时办结率", "本月（北京时间）办结的办件中，在承诺时限内（即办件：当日）办结的比例。", [ch_target(f"""
        SELECT round(100 * uniqExactMergeIf(cases, metric = 'completed_on_time')
                     / nullIf(uniqExactMergeIf(cases, metric = 'completed'), 0), 1) AS "本月按时办结率"
        FROM daily_case_metrics
        WHERE {THIS_MONTH_DAYS}""")], unit="percent", decimals=1, steps=RATE_GOOD_HIGH), 4, 5)

    g.add(stat("今日红牌", "当天触发的红牌监察发现数（同时报送纪检监察）。", [ch_target(f"""
        SELECT uniqExactMerge(findings) AS "今日红牌"
        FROM daily_findings
        WHERE run_id = 'live' AND severity = 'red' AND day = {TODAY}""")], steps=BAD_IF_ANY), 6, 5)
    g.add(stat("今日黄牌", "当天触发的黄牌（预警）监察发现数。", [ch_target(f"""
        SELECT uniqExactMerge(findings) AS "今日黄牌"
        FROM daily_findings
        WHERE run_id = 'live' AND severity = 'yellow' AND day = {TODAY}""")], steps=[(None, "green"), (1, "yellow")]), 6, 5)
    g.add(stat("待签收红牌", "截至时间范围终点仍未签收的红牌告警数。", [ch_target(f"""
        SELECT count() AS "待签收红牌"
        FROM {ALERTS_AT_T}
        WHERE status = 'open' AND severity = 'red'""")], steps=BAD_IF_ANY), 6, 5)
    g.add(stat("本月无效事件", "本月接收但未通过事件规范校验的数据行（已存档待核查，未参与监察）。", [ch_target(f"""
        SELECT count() AS "本月无效事件"
        FROM events
        WHERE valid = 0 AND toDate(received_at, 'Asia/Shanghai') >= {MONTH_START} AND received_at <= $__toTime""")],
        steps=WARN_IF_ANY), 6, 5)

    g.row("趋势")
    trend = timeseries("近期每日受理、办结与监察发现", "按北京时间自然日统计：受理、办结的办件数，红牌、黄牌监察发现数。", [ch_target(f"""
        SELECT toDateTime(day, 'Asia/Shanghai') AS time,
               sum(accepted) AS "受理", sum(completed) AS "办结", sum(red) AS "红牌", sum(yellow) AS "黄牌"
        FROM (
            SELECT day, uniqExactMergeIf(cases, metric = 'accepted') AS accepted,
                   uniqExactMergeIf(cases, metric = 'completed') AS completed,
                   toUInt64(0) AS red, toUInt64(0) AS yellow
            FROM daily_case_metrics
            WHERE {IN_RANGE_DAYS}
            GROUP BY day
            UNION ALL
            SELECT day, toUInt64(0), toUInt64(0), uniqExactMergeIf(findings, severity = 'red'),
                   uniqExactMergeIf(findings, severity = 'yellow')
            FROM daily_findings
            WHERE run_id = 'live' AND {IN_RANGE_DAYS}
            GROUP BY day
        )
        GROUP BY day
        ORDER BY time""", series=True)])
    trend["fieldConfig"]["overrides"] = CARD_COLOURS
    g.add(trend, 16, 9)
    by_cat = barchart("本月监察发现（按类别）", "本月红牌、黄牌监察发现数，按规则类别。", [ch_target(f"""
        SELECT {CATEGORY_NAME} AS "类别",
               uniqExactMergeIf(findings, severity = 'red') AS "红牌",
               uniqExactMergeIf(findings, severity = 'yellow') AS "黄牌"
        FROM daily_findings
        WHERE run_id = 'live' AND {THIS_MONTH_DAYS}
        GROUP BY category
        ORDER BY category""")], stack=True)
    by_cat["fieldConfig"]["overrides"] = CARD_COLOURS
    g.add(by_cat, 8, 9)

    g.row("重点关注")
    g.add(table("本月问题最多的部门", "本月红牌、黄牌最多的部门（同数时按时办结率低者在前），及其办结与按时办结率。", [ch_target(f"""
        SELECT if(department = '', '（未知部门）', department) AS "部门", red AS "红牌", yellow AS "黄牌",
               completed AS "办结", round(100 * on_time / nullIf(completed, 0), 1) AS "按时办结率"
        FROM (
            SELECT department, uniqExactMergeIf(findings, severity = 'red') AS red,
                   uniqExactMergeIf(findings, severity = 'yellow') AS yellow
            FROM daily_findings
            WHERE run_id = 'live' AND {THIS_MONTH_DAYS}
            GROUP BY department
        ) AS f
        LEFT JOIN (
            SELECT department, uniqExactMergeIf(cases, metric = 'completed') AS completed,
                   uniqExactMergeIf(cases, metric = 'completed_on_time') AS on_time
            FROM daily_case_metrics
            WHERE {THIS_MONTH_DAYS}
            GROUP BY department
        ) AS c USING department
        ORDER BY red DESC, yellow DESC, "按时办结率" ASC
        LIMIT 10""")], overrides=[percent_column("按时办结率"), *CARD_COLOURS]), 12, 10)
    g.add(table("最新红牌", "最近 7 天触发的红牌，最新在前；点击办件编号查看办件详情。", [ch_target(f"""
        SELECT fired_at AS "时间", case_id AS "办件编号", {RULE_NAME} AS "规则",
               ifNull(department, '') AS "部门", ifNull(`window`, '') AS "窗口"
        FROM findings FINAL
        WHERE run_id = 'live' AND severity = 'red'
          AND fired_at <= $__toTime AND fired_at > $__toTime - INTERVAL 7 DAY
        ORDER BY fired_at DESC
        LIMIT 20""")], overrides=[case_link()]), 12, 10)
    return dashboard("esup-overview", "电子监察总览（大屏）",
                     "政务服务中心实时态势：办理中、当日受理办结、预警与超期、红黄牌、趋势与重点部门。", g,
                     refresh="30s", tags=["大屏"])


# ============================================================================================ 2. department


def department() -> dict[str, Any]:
    g = Grid()
    days = f"{IN_RANGE_DAYS} AND {PLACE_FILTER}"
    g.row("概况（所选时间范围）")

    def rate(title: str, num: str, den: str, description: str) -> dict[str, Any]:
        return stat(title, description, [ch_target(f"""
            SELECT round(100 * uniqExactMergeIf(cases, metric = '{num}')
                         / nullIf(uniqExactMergeIf(cases, metric = '{den}'), 0), 1) AS "{title}"
            FROM daily_case_metrics
            WHERE {days}""")], unit="percent", decimals=1, steps=RATE_GOOD_HIGH)

    g.add(stat("收件", "时间范围内收件（无收件记录时按受理）的办件数。", [ch_target(f"""
        SELECT uniqExactMergeIf(cases, metric = 'received') AS "收件"
        FROM daily_case_metrics
        WHERE {days}""")], steps=[(None, "blue")]), 4, 4)
    g.add(stat("办结", "时间范围内办结的办件数。", [ch_target(f"""
        SELECT uniqExactMergeIf(cases, metric = 'completed') AS "办结"
        FROM daily_case_metrics
        WHERE {days}""")], steps=[(None, "blue")]), 4, 4)
    g.add(rate("按时办结率", "completed_on_time", "completed", "办结件中在承诺时限内（即办件：当日）办结的比例。"), 4, 4)
    g.add(rate("即办件当日办结率", "on_the_spot_same_day", "on_the_spot_completed", "即办件中当日办结的比例。"), 4, 4)
    g.add(stat("当前超期", "截至时间范围终点仍在办理且已超期的办件数（明细见下方超期清单）。", [ch_target(f"""
        SELECT count() AS "当前超期"
        FROM case_facts FINAL
        WHERE {OPEN_AT_T} AND {OVERDUE_AT_T} AND {PLACE_FILTER}""")], steps=BAD_IF_ANY), 4, 4)
    g.add(stat("满意率", "时间范围内的好差评中“满意”“非常满意”所占比例。", [ch_target(f"""
        SELECT round(100 * countIf(r.rating >= 4) / nullIf(count(), 0), 1) AS "满意率"
        FROM {rated_events()} AS r
        INNER JOIN {cases_where(PLACE_FILTER)} AS c USING case_id""")],
        unit="percent", decimals=1, steps=RATE_GOOD_HIGH), 4, 4)

    g.row("趋势")
    g.add(timeseries("每日按时办结率与即办件当日办结率", "按北京时间自然日。", [ch_target(f"""
        SELECT toDateTime(day, 'Asia/Shanghai') AS time,
               round(100 * uniqExactMergeIf(cases, metric = 'completed_on_time')
                     / nullIf(uniqExactMergeIf(cases, metric = 'completed'), 0), 1) AS "按时办结率",
               round(100 * uniqExactMergeIf(cases, metric = 'on_the_spot_same_day')
                     / nullIf(uniqExactMergeIf(cases, metric = 'on_the_spot_completed'), 0), 1) AS "即办件当日办结率"
        FROM daily_case_metrics
        WHERE {days}
        GROUP BY day
        ORDER BY time""", series=True)], unit="percent"), 12, 8)
    g.add(timeseries("每日收件、受理与办结", "按北京时间自然日统计的办件数。", [ch_target(f"""
        SELECT toDateTime(day, 'Asia/Shanghai') AS time,
               uniqExactMergeIf(cases, metric = 'received') AS "收件",
               uniqExactMergeIf(cases, metric = 'accepted') AS "受理",
               uniqExactMergeIf(cases, metric = 'completed') AS "办结"
        FROM daily_case_metrics
        WHERE {days}
        GROUP BY day
        ORDER BY time""", series=True)], bars=True), 12, 8)

    g.row("窗口对比")
    g.add(table("各窗口办件情况", "时间范围内各窗口的收件、办结、按时办结率、即办件当日办结率与红黄牌；按时办结率低者在前。", [ch_target(f"""
        SELECT if(c.department = '', '（未知部门）', c.department) AS "部门",
               if(c.window = '', '（未知窗口）', c.window) AS "窗口",
               c.received AS "收件", c.completed AS "办结",
               round(100 * c.on_time / nullIf(c.completed, 0), 1) AS "按时办结率",
               round(100 * c.spot_same_day / nullIf(c.spot, 0), 1) AS "即办件当日办结率",
               f.red AS "红牌", f.yellow AS "黄牌"
        FROM (
            SELECT department, `window`,
                   uniqExactMergeIf(cases, metric = 'received') AS received,
                   uniqExactMergeIf(cases, metric = 'completed') AS completed,
                   uniqExactMergeIf(cases, metric = 'completed_on_time') AS on_time,
                   uniqExactMergeIf(cases, metric = 'on_the_spot_completed') AS spot,
                   uniqExactMergeIf(cases, metric = 'on_the_spot_same_day') AS spot_same_day
            FROM daily_case_metrics
            WHERE {days}
            GROUP BY department, `window`
        ) AS c
        LEFT JOIN (
            SELECT department, `window`,
                   uniqExactMergeIf(findings, severity = 'red') AS red,
                   uniqExactMergeIf(findings, severity = 'yellow') AS yellow
            FROM daily_findings
            WHERE run_id = 'live' AND {days}
            GROUP BY department, `window`
        ) AS f ON c.department = f.department AND c.window = f.window
        ORDER BY "按时办结率" ASC NULLS LAST, "红牌" DESC""")],
        overrides=[percent_column("按时办结率"), percent_column("即办件当日办结率")]), 24, 9)

    g.row("超期办件")
    g.add(table("超期办件清单", "截至时间范围终点仍在办理且已超期的办件，超期最久在前；点击办件编号查看办件详情。", [ch_target(f"""
        SELECT case_id AS "办件编号", ifNull(item_name, ifNull(item_code, '')) AS "事项",
               ifNull(department, '') AS "部门", ifNull(`window`, '') AS "窗口",
               accepted_at AS "受理时间", promised_due_at AS "承诺期限", statutory_due_at AS "法定期限",
               multiIf(ifNull(statutory_due_at < $__toTime, 0) AND (decided_at IS NULL OR decided_at > $__toTime),
                       '超法定时限', ifNull(item_kind = 'on_the_spot', 0), '即办件未当日办结', '超承诺时限') AS "超期类型",
               dateDiff('hour', coalesce(promised_due_at, statutory_due_at), $__toTime) AS "已超期（小时）"
        FROM case_facts FINAL
        WHERE {OPEN_AT_T} AND {OVERDUE_AT_T} AND {PLACE_FILTER}
        ORDER BY "已超期（小时）" DESC, case_id
        LIMIT 500""")], overrides=[case_link()]), 24, 9)

    g.row("收费与程序问题")
    g.add(table("收费与程序问题（按规则）", "时间范围内违规收费、程序异常类监察发现数及涉及办件数。", [ch_target(f"""
        SELECT {CATEGORY_NAME} AS "类别", {RULE_NAME} AS "规则", {SEVERITY_NAME} AS "等级",
               uniqExactMerge(findings) AS "发现数", uniqExactMerge(cases) AS "涉及办件"
        FROM daily_findings
        WHERE run_id = 'live' AND category IN ('FEE', 'PROCEDURE') AND {days}
        GROUP BY category, rule, severity
        ORDER BY "发现数" DESC, rule""")]), 10, 9)
    g.add(table("收费与程序问题明细", "最新在前；点击办件编号查看办件详情。", [ch_target(f"""
        SELECT fired_at AS "时间", case_id AS "办件编号", {RULE_NAME} AS "规则", {SEVERITY_NAME} AS "等级",
               ifNull(`window`, '') AS "窗口", ifNull(officer_id, '') AS "经办人", message AS "说明"
        FROM findings FINAL
        WHERE run_id = 'live' AND category IN ('FEE', 'PROCEDURE') AND $__timeFilter(fired_at) AND {PLACE_FILTER}
        ORDER BY fired_at DESC
        LIMIT 200""")], overrides=[case_link()]), 14, 9)

    g.row("好差评")
    ratings = barchart("评价分布", "时间范围内的好差评（每条评价计一次）。", [ch_target(f"""
        SELECT transform(r.rating, {RATING_LEVELS}, {RATING_NAMES}, '未知') AS "评价", count() AS "评价数"
        FROM {rated_events()} AS r
        INNER JOIN {cases_where(PLACE_FILTER)} AS c USING case_id
        GROUP BY r.rating
        ORDER BY r.rating""")], horizontal=False)
    g.add(ratings, 10, 8)
    g.add(table("差评及整改情况", "时间范围内“不满意”“非常不满意”的评价；整改以其后的差评整改记录为准。", [ch_target(f"""
        SELECT r.rated_at AS "评价时间", r.case_id AS "办件编号", c.department AS "部门", c.window AS "窗口",
               transform(r.rating, {RATING_LEVELS}, {RATING_NAMES}, '未知') AS "评价",
               if(x.resolved_at >= r.rated_at, '已整改', '未整改') AS "整改情况"
        FROM {rated_events(" AND level <= 2")} AS r
        INNER JOIN {cases_where(PLACE_FILTER, "case_id, ifNull(department, '') AS department, ifNull(`window`, '') AS window")} AS c
            USING case_id
        LEFT JOIN (SELECT case_id, max(occurred_at) AS resolved_at
                   FROM events
                   WHERE valid = 1 AND event_type = 'rating_resolved' AND occurred_at <= $__toTime
                   GROUP BY case_id) AS x USING case_id
        ORDER BY r.rated_at DESC
        LIMIT 200""")], overrides=[case_link()]), 14, 8)
    return dashboard("esup-department", "部门与窗口绩效",
                     "按行政区划、部门、窗口查看按时办结率、即办件率、超期清单、收费与程序问题及好差评。", g,
                     [region_var(), department_var(), window_var()], tags=["考核"])


# ============================================================================================ 3. findings queue


def findings_queue() -> dict[str, Any]:
    g = Grid()
    # a.severity is the alert's current severity (a yellow card not cleared in time turns red)
    f_filter = dims(("a.severity", "severity"), ("f.category", "category"), ("f.department", "department"))
    case_filter = "$__conditionalAll(f.case_id = ${case:sqlstring}, $case)"
    joined = dedent(f"""\
        {ALERTS_AT_T} AS a
        INNER JOIN (SELECT finding_id, case_id, rule, category, severity AS finding_severity,
                           ifNull(department, '') AS department, ifNull(`window`, '') AS window, fired_at, message
                    FROM findings FINAL
                    WHERE run_id = 'live' AND fired_at <= $__toTime) AS f ON f.finding_id = a.alert_id""")
    where_open = f"a.status IN ('open', 'acknowledged') AND {f_filter} AND {case_filter}"

    g.row("待处置告警（截至时间范围终点）")
    g.add(stat("待签收", "已告警、尚未签收的告警数。", [ch_target(f"""
        SELECT count() AS "待签收"
        FROM {joined}
        WHERE a.status = 'open' AND {f_filter} AND {case_filter}""")], steps=WARN_IF_ANY), 6, 4)
    g.add(stat("已签收未办结", "已签收、尚未办结或撤销的告警数。", [ch_target(f"""
        SELECT count() AS "已签收未办结"
        FROM {joined}
        WHERE a.status = 'acknowledged' AND {f_filter} AND {case_filter}""")], steps=[(None, "blue")]), 6, 4)
    g.add(stat("红牌超 2 小时未签收", "告警已超过 2 小时仍未签收的红牌（应已上报）。", [ch_target(f"""
        SELECT count() AS "红牌超 2 小时未签收"
        FROM {joined}
        WHERE a.status = 'open' AND a.severity = 'red' AND a.opened_at < $__toTime - INTERVAL 2 HOUR
          AND {f_filter} AND {case_filter}""")], steps=BAD_IF_ANY), 6, 4)
    g.add(stat("时间范围内新增告警", "时间范围内新开启的告警数。", [ch_target(f"""
        SELECT count() AS "时间范围内新增告警"
        FROM {joined}
        WHERE a.opened_at >= $__fromTime AND {f_filter} AND {case_filter}""")], steps=[(None, "blue")]), 6, 4)

    by_rule = table("未关闭告警（按规则与等级）", "待签收与已签收未办结的告警，按规则与当前等级。", [ch_target(f"""
        SELECT {rule_name('f.rule')} AS "规则",
               {severity_name('a.severity')} AS "等级",
               countIf(a.status = 'open') AS "待签收", countIf(a.status = 'acknowledged') AS "已签收",
               count() AS "合计"
        FROM {joined}
        WHERE {where_open}
        GROUP BY f.rule, a.severity
        ORDER BY "合计" DESC, f.rule""")])
    g.add(by_rule, 12, 9)
    g.add(table("未关闭告警时长分布", "自监察发现触发起已持续的时间，按当前等级。", [ch_target(f"""
        SELECT multiIf(age < 24, '1 天内', age < 72, '1–3 天', age < 168, '3–7 天', '7 天以上') AS "已持续",
               countIf(t.severity = 'red') AS "红牌", countIf(t.severity = 'yellow') AS "黄牌"
        FROM (SELECT a.severity AS severity, dateDiff('hour', f.fired_at, $__toTime) AS age
              FROM {joined}
              WHERE {where_open}) AS t
        GROUP BY "已持续"
        ORDER BY min(age)""")], overrides=CARD_COLOURS), 12, 9)

    g.add(table("待处置告警清单", "持续最久在前；点击办件编号查看办件详情与投递记录。", [ch_target(f"""
        SELECT f.fired_at AS "触发时间", f.case_id AS "办件编号",
               {rule_name('f.rule')} AS "规则",
               {severity_name('a.severity')} AS "等级",
               f.department AS "部门", f.window AS "窗口",
               {transform('a.status', ALERT_STATUS_LABELS)} AS "状态", a.actor AS "签收人",
               dateDiff('hour', f.fired_at, $__toTime) AS "已持续（小时）", f.message AS "说明"
        FROM {joined}
        WHERE {where_open}
        ORDER BY f.fired_at, f.case_id
        LIMIT 500""")], overrides=[case_link()]), 24, 10)

    g.row("处置进度与监察发现")
    g.add(timeseries("每日告警开启、签收与关闭", "按北京时间自然日：新开启、签收、办结或撤销的告警数。", [ch_target(f"""
        SELECT toDateTime(toDate(changed_at, 'Asia/Shanghai'), 'Asia/Shanghai') AS time,
               uniqExactIf(alert_id, version = 1) AS "新开启",
               uniqExactIf(alert_id, status = 'acknowledged') AS "签收",
               uniqExactIf(alert_id, status IN ('resolved', 'dismissed')) AS "关闭"
        FROM alert_lifecycle
        WHERE $__timeFilter(changed_at) AND {cond_all('severity', 'severity')}
        GROUP BY time
        ORDER BY time""", series=True)], bars=True), 24, 8)
    g.add(table("监察发现明细", "时间范围内的全部监察发现（含未告警的），最新在前。", [ch_target(f"""
        SELECT f.fired_at AS "触发时间", f.case_id AS "办件编号",
               {rule_name('f.rule')} AS "规则",
               {severity_name('f.severity')} AS "等级", ifNull(f.department, '') AS "部门",
               ifNull(f.window, '') AS "窗口", f.message AS "说明", f.basis AS "依据"
        FROM findings AS f FINAL
        WHERE f.run_id = 'live' AND $__timeFilter(f.fired_at)
          AND {dims(('f.severity', 'severity'), ('f.category', 'category'), ('f.department', 'department'))}
          AND {case_filter}
        ORDER BY f.fired_at DESC
        LIMIT 500""")], overrides=[case_link()]), 24, 10)
    return dashboard("esup-findings", "监察发现与告警处置",
                     "待处置告警队列：按规则与等级、持续时长、是否签收；以及全部监察发现。", g,
                     [custom_var("severity", "等级", list(SEVERITY_NAMES.items())),
                      custom_var("category", "类别", CATEGORY_LABELS), department_var(region_filtered=False),
                      text_var("case", "办件编号")], tags=["处置"])


# ============================================================================================ 4. fees


def fees() -> dict[str, Any]:
    g = Grid()
    place = dims(("region_code", "region"), ("department", "department"))
    fee_rows = dedent(f"""\
        {FEE_EVENTS} AS e
        INNER JOIN {cases_where(place, "case_id, ifNull(department, '') AS department")} AS c USING case_id""")
    g.row("收费概况（所选时间范围）")
    money = stat("应收与实收", "时间范围内收费通知（应收）、缴费（实收）、减免与退费金额（元），按事件发生时间。", [ch_target(f"""
        SELECT toFloat64(sumIf(e.amount, e.fee_event = 'fee_assessed')) AS "应收",
               toFloat64(sumIf(e.amount, e.fee_event = 'fee_paid')) AS "实收",
               toFloat64(sumIf(e.amount, e.fee_event = 'fee_waived')) AS "减免",
               toFloat64(sumIf(e.amount, e.fee_event = 'fee_refunded')) AS "退费"
        FROM {fee_rows}""")], unit="currencyCNY", decimals=2, steps=[(None, "blue")])
    g.add(money, 16, 4)
    g.add(stat("收费异常", "时间范围内违规收费类监察发现数。", [ch_target(f"""
        SELECT uniqExactMerge(findings) AS "收费异常"
        FROM daily_findings
        WHERE run_id = 'live' AND category = 'FEE' AND {IN_RANGE_DAYS} AND {place}""")], steps=BAD_IF_ANY), 4, 4)
    g.add(stat("窗口现金收费", "时间范围内在窗口以现金收取的缴费笔数（违反票款分离）。", [ch_target(f"""
        SELECT count() AS "窗口现金收费"
        FROM {fee_rows}
        WHERE e.fee_event = 'fee_paid' AND e.pay_channel = 'window_cash'""")], steps=BAD_IF_ANY), 4, 4)

    g.row("应收与实收")
    g.add(timeseries("每日应收与实收", "按北京时间自然日的收费通知金额与缴费金额（元）。", [ch_target(f"""
        SELECT toDateTime(toDate(e.fee_at, 'Asia/Shanghai'), 'Asia/Shanghai') AS time,
               toFloat64(sumIf(e.amount, e.fee_event = 'fee_assessed')) AS "应收",
               toFloat64(sumIf(e.amount, e.fee_event = 'fee_paid')) AS "实收"
        FROM {fee_rows}
        GROUP BY time
        ORDER BY time""", series=True)], unit="currencyCNY", bars=True), 16, 8)
    g.add(piechart("缴费渠道", "时间范围内缴费笔数按渠道；窗口现金收费违反票款分离。", [ch_target(f"""
        SELECT {transform('e.pay_channel', PAY_CHANNEL_LABELS)} AS "渠道", count() AS "笔数"
        FROM {fee_rows}
        WHERE e.fee_event = 'fee_paid'
        GROUP BY e.pay_channel
        ORDER BY e.pay_channel""")]), 8, 8)
    g.add(table("各部门收费对账", "时间范围内各部门应收、实收、减免、退费（元），差额 = 应收 − 实收 − 减免；及收费异常数。", [ch_target(f"""
        SELECT if(m.department = '', '（未知部门）', m.department) AS "部门", m.assessed AS "应收", m.paid AS "实收",
               m.waived AS "减免", m.refunded AS "退费", m.assessed - m.paid - m.waived AS "差额",
               a.anomalies AS "收费异常"
        FROM (SELECT c.department AS department,
                     toFloat64(sumIf(e.amount, e.fee_event = 'fee_assessed')) AS assessed,
                     toFloat64(sumIf(e.amount, e.fee_event = 'fee_paid')) AS paid,
                     toFloat64(sumIf(e.amount, e.fee_event = 'fee_waived')) AS waived,
                     toFloat64(sumIf(e.amount, e.fee_event = 'fee_refunded')) AS refunded
              FROM {fee_rows}
              GROUP BY c.department) AS m
        LEFT JOIN (SELECT department, uniqExactMerge(findings) AS anomalies
                   FROM daily_findings
                   WHERE run_id = 'live' AND category = 'FEE' AND {IN_RANGE_DAYS} AND {place}
                   GROUP BY department) AS a ON a.department = m.department
        ORDER BY "收费异常" DESC, "应收" DESC""")], overrides=[money_columns("应收", "实收", "减免", "退费", "差额")]), 24, 8)

    g.row("收费异常")
    kinds = barchart("收费异常（按类型）", "时间范围内违规收费类监察发现，按规则与等级。", [ch_target(f"""
        SELECT {RULE_NAME} AS "异常类型",
               uniqExactMergeIf(findings, severity = 'red') AS "红牌",
               uniqExactMergeIf(findings, severity = 'yellow') AS "黄牌"
        FROM daily_findings
        WHERE run_id = 'live' AND category = 'FEE' AND {IN_RANGE_DAYS} AND {place}
        GROUP BY rule
        ORDER BY rule""")], stack=True)
    kinds["fieldConfig"]["overrides"] = CARD_COLOURS
    g.add(kinds, 10, 9)
    g.add(table("收费异常（按部门与类型）", "时间范围内违规收费类监察发现数与涉及办件数。", [ch_target(f"""
        SELECT if(department = '', '（未知部门）', department) AS "部门", {RULE_NAME} AS "异常类型",
               uniqExactMerge(findings) AS "发现数", uniqExactMerge(cases) AS "涉及办件"
        FROM daily_findings
        WHERE run_id = 'live' AND category = 'FEE' AND {IN_RANGE_DAYS} AND {place}
        GROUP BY department, rule
        ORDER BY "发现数" DESC, department, rule""")]), 14, 9)
    g.add(table("应收与实收不符的办件", "时间范围内办结、实收加减免不等于应收的办件（元）；点击办件编号查看详情。", [ch_target(f"""
        SELECT case_id AS "办件编号", ifNull(item_name, ifNull(item_code, '')) AS "事项",
               ifNull(department, '') AS "部门", ifNull(`window`, '') AS "窗口", completed_at AS "办结时间",
               toFloat64(fee_assessed) AS "应收", toFloat64(fee_paid) AS "实收", toFloat64(fee_waived) AS "减免",
               toFloat64(fee_refunded) AS "退费", toFloat64(fee_assessed - fee_paid - fee_waived) AS "差额"
        FROM case_facts FINAL
        WHERE $__timeFilter(completed_at) AND fee_paid + fee_waived != fee_assessed AND {place}
        ORDER BY abs(fee_assessed - fee_paid - fee_waived) DESC, case_id
        LIMIT 200""")], overrides=[case_link(), money_columns("应收", "实收", "减免", "退费", "差额")]), 24, 9)
    return dashboard("esup-fees", "收费监察", "应收与实收、缴费渠道、收费异常（按类型与部门）及对不上账的办件。", g,
                     [region_var(), department_var()], tags=["收费"])


# ============================================================================================ 5. pipeline


JOB = 'job=~"$job"'


def _p(expr: str) -> str:
    """Put the ``job`` variable's matcher into every selector written ``{J}`` or ``{J, …}``."""
    return expr.replace("{J}", "{" + JOB + "}").replace("{J, ", "{" + JOB + ", ")


def pipeline() -> dict[str, Any]:
    g = Grid()
    g.row("吞吐、积压与延迟（Prometheus）")
    g.add(stat("事件接收速率", "每秒读入的事件行数（含无效行）。", [prom_target(_p(
        "sum(rate(esup_events_consumed_total{J}[$__rate_interval]))"), "条/秒")],
        unit="reqps", datasource=PROM, steps=[(None, "blue")]), 4, 4)
    g.add(stat("消费积压", "各分区未消费的消息数之和。", [prom_target(_p("sum(esup_consumer_lag{J})"), "积压")],
               datasource=PROM, steps=[(None, "green"), (1000, "orange"), (10000, "red")]), 4, 4)
    g.add(stat("处理延迟 p95", "从接收事件到产生监察发现的 95 分位耗时。", [prom_target(_p(
        'histogram_quantile(0.95, sum by (le) (rate(esup_processing_latency_seconds_bucket{J, since="received"}'
        "[$__rate_interval])))"), "p95")], unit="s", datasource=PROM,
        steps=[(None, "green"), (10, "orange"), (60, "red")]), 4, 4)
    g.add(stat("死信率", "未通过事件规范校验（进入死信）的行占读入行的比例。", [prom_target(_p(
        "sum(rate(esup_events_rejected_total{J}[$__rate_interval])) / "
        "sum(rate(esup_events_consumed_total{J}[$__rate_interval]))"), "死信率")],
        unit="percentunit", decimals=2, datasource=PROM, steps=[(None, "green"), (0.01, "orange"), (0.1, "red")]), 4, 4)
    g.add(stat("ClickHouse 写入错误", "时间范围内写入 ClickHouse 失败的批次数（批次会重试）。", [prom_target(_p(
        "sum(increase(esup_clickhouse_write_errors_total{J}[$__range]))"), "错误")],
        datasource=PROM, steps=BAD_IF_ANY, decimals=0), 4, 4)
    g.add(stat("告警投递失败", "时间范围内放弃投递的告警消息数（已记录，下次运行重试）。", [prom_target(_p(
        'sum(increase(esup_alert_deliveries_total{J, result="failed"}[$__range]))'), "失败")],
        datasource=PROM, steps=BAD_IF_ANY, decimals=0), 4, 4)

    g.add(timeseries("事件读入与处理速率（按类型）", "每秒读入（按事件类型，invalid 为无效行）与引擎处理的事件数。", [
        prom_target(_p("sum by (type) (rate(esup_events_consumed_total{J}[$__rate_interval]))"), "读入 {{type}}"),
        prom_target(_p("sum(rate(esup_events_processed_total{J}[$__rate_interval]))"), "已处理（合计）", ref="B"),
    ], unit="reqps", datasource=PROM), 12, 8)
    g.add(timeseries("消费积压（按主题与分区）", "Kafka 各分区提交位点之后的消息数。", [prom_target(_p(
        "sum by (topic, partition) (esup_consumer_lag{J})"), "{{topic}}/{{partition}}")], datasource=PROM), 12, 8)
    g.add(timeseries("处理延迟", "接收→监察发现的 50/95/99 分位；事件（或期限）时间→监察发现的 95 分位（反映迟到事件与定时器）。", [
        prom_target(_p('histogram_quantile(0.5, sum by (le) (rate(esup_processing_latency_seconds_bucket{J, since="received"}[$__rate_interval])))'), "接收→发现 p50"),
        prom_target(_p('histogram_quantile(0.95, sum by (le) (rate(esup_processing_latency_seconds_bucket{J, since="received"}[$__rate_interval])))'), "接收→发现 p95", ref="B"),
        prom_target(_p('histogram_quantile(0.99, sum by (le) (rate(esup_processing_latency_seconds_bucket{J, since="received"}[$__rate_interval])))'), "接收→发现 p99", ref="C"),
        prom_target(_p('histogram_quantile(0.95, sum by (le) (rate(esup_processing_latency_seconds_bucket{J, since="event_time"}[$__rate_interval])))'), "事件时间→发现 p95", ref="D"),
    ], unit="s", datasource=PROM), 12, 8)
    g.add(timeseries("死信（按原因）", "每秒进入死信的行数，按原因类别。", [prom_target(_p(
        "sum by (reason) (rate(esup_events_rejected_total{J}[$__rate_interval]))"), "{{reason}}")],
        unit="reqps", datasource=PROM), 12, 8)

    g.row("存储与告警投递")
    g.add(timeseries("ClickHouse 写入延迟 p95（按表）", "每批写入耗时的 95 分位。", [prom_target(_p(
        "histogram_quantile(0.95, sum by (le, table) (rate(esup_clickhouse_write_seconds_bucket{J}[$__rate_interval])))"),
        "{{table}}")], unit="s", datasource=PROM), 8, 8)
    g.add(timeseries("ClickHouse 平均每批行数（按表）", "每批写入的平均行数：过小说明批次没有攒满。", [prom_target(_p(
        "sum by (table) (rate(esup_clickhouse_batch_rows_sum{J}[$__rate_interval])) / "
        "sum by (table) (rate(esup_clickhouse_batch_rows_count{J}[$__rate_interval]))"), "{{table}}")],
        datasource=PROM), 8, 8)
    g.add(timeseries("ClickHouse 写入错误（按表）", "每秒失败的批次数。", [prom_target(_p(
        "sum by (table) (rate(esup_clickhouse_write_errors_total{J}[$__rate_interval]))"), "{{table}}")],
        datasource=PROM), 8, 8)
    g.add(timeseries("告警投递（按渠道与结果）", "每秒告警投递结果：sent 成功，error 失败待重试，failed 放弃，deferred 并入汇总或限流。",
                     [prom_target(_p("sum by (channel, result) (rate(esup_alert_deliveries_total{J}[$__rate_interval]))"),
                                  "{{channel}} {{result}}")], datasource=PROM), 8, 8)
    g.add(timeseries("监察发现速率（按等级）", "每秒产生的监察发现数。", [prom_target(_p(
        "sum by (severity) (rate(esup_findings_total{J}[$__rate_interval]))"), "{{severity}}")], datasource=PROM), 8, 8)
    g.add(timeseries("办件状态与引擎数据说明", "进程内办件数（按状态），及每秒引擎无法使用的事件（重复、无收件等）。", [
        prom_target(_p("sum by (status) (esup_case_states{J})"), "办件 {{status}}"),
        prom_target(_p("sum by (kind) (rate(esup_engine_notes_total{J}[$__rate_interval]))"), "说明 {{kind}}", ref="B"),
    ], datasource=PROM), 8, 8)

    g.row("仓库侧核对（ClickHouse）")
    g.add(stat("最近事件入库", "ClickHouse 中最近一条事件的接收时间（毫秒时间戳，显示为距今多久）：长时间不更新说明采集或写入中断。", [ch_target("""
        SELECT toUnixTimestamp(max(received_at)) * 1000 AS "最近事件入库"
        FROM events
        WHERE received_at <= $__toTime""")], unit="dateTimeFromNow", steps=[(None, "blue")]), 6, 8)
    g.add(timeseries("事件入库（按接收时间）", "每个统计区间的入库速率与无效行数（来自 ClickHouse 事件表）。", [ch_target("""
        SELECT $__timeInterval(received_at) AS time,
               count() / $__interval_s AS "入库速率（条/秒）",
               countIf(valid = 0) AS "无效行"
        FROM events
        WHERE $__timeFilter(received_at)
        GROUP BY time
        ORDER BY time""", series=True)]), 9, 8)
    g.add(timeseries("告警投递失败（投递记录）", "按北京时间自然日，投递记录中放弃投递的消息数，按渠道。", [ch_target(f"""
        SELECT toDateTime(day, 'Asia/Shanghai') AS time,
               uniqExactMergeIf(deliveries, channel = 'email') AS "邮件",
               uniqExactMergeIf(deliveries, channel = 'sms') AS "短信"
        FROM daily_deliveries
        WHERE result = 'failed' AND {IN_RANGE_DAYS}
        GROUP BY day
        ORDER BY time""", series=True)], bars=True), 9, 8)
    job = query_var("job", "采集任务", "label_values(esup_case_states, job)", PROM, all_value=".*")
    return dashboard("esup-pipeline", "监察流水线运行状态",
                     "事件吞吐、消费积压、处理延迟、死信率、ClickHouse 写入与告警投递（Prometheus 指标与仓库核对）。",
                     g, [job], time_from="now-6h", refresh="30s", tags=["运维"])


# ============================================================================================ 6. case


def case() -> dict[str, Any]:
    g = Grid()
    c = "${case:sqlstring}"
    g.add(table("办件概况", "办件当前状态；申请人姓名已脱敏。", [ch_target(f"""
        SELECT case_id AS "办件编号", ifNull(item_name, '') AS "事项", ifNull(item_code, '') AS "事项编码",
               ifNull(department, '') AS "部门", ifNull(`window`, '') AS "窗口",
               {transform('status', STATUS_LABELS)} AS "状态",
               concat(substringUTF8(ifNull(applicant_name, ''), 1, 1),
                      repeat('*', greatest(lengthUTF8(ifNull(applicant_name, '')), 1) - 1)) AS "申请人",
               accepted_at AS "受理时间", promised_due_at AS "承诺期限", statutory_due_at AS "法定期限",
               completed_at AS "办结时间",
               multiIf(on_time = 1, '按时', on_time = 0, '超期', '未办结') AS "是否按时",
               toFloat64(fee_assessed) AS "应收", toFloat64(fee_paid) AS "实收"
        FROM case_facts FINAL
        WHERE case_id = {c}""")], overrides=[money_columns("应收", "实收")]), 24, 4)
    g.add(table("事件记录", "按发生时间排列的全部事件，含未通过校验的行。", [ch_target(f"""
        SELECT occurred_at AS "发生时间", recorded_at AS "记录时间", received_at AS "接收时间",
               {transform('event_type', EVENT_LABELS)} AS "事件",
               multiIf(event_type = 'step_completed', JSONExtractString(raw, 'step'),
                       event_type = 'suspended', JSONExtractString(raw, 'procedure'),
                       event_type IN ('fee_assessed', 'fee_paid', 'fee_waived', 'fee_refunded'),
                       concat(JSONExtractString(raw, 'fee_code'), ' ', JSONExtractRaw(raw, 'amount'), ' 元'),
                       event_type = 'rated', transform(level, {RATING_LEVELS}, {RATING_NAMES}, ''),
                       event_type = 'decided', if(JSONExtractString(raw, 'outcome') = 'approved', '准予', '不予'),
                       '') AS "内容",
               officer_id AS "经办人", source AS "来源系统",
               if(valid = 1, '有效', concat('无效：', error)) AS "校验"
        FROM events FINAL
        WHERE case_id = {c} AND case_id != ''
        ORDER BY occurred_at, event_id""")]), 24, 10)
    g.add(table("监察发现", "本办件触发的全部监察发现。", [ch_target(f"""
        SELECT fired_at AS "触发时间", {RULE_NAME} AS "规则", {SEVERITY_NAME} AS "等级",
               message AS "说明", basis AS "依据", deadline AS "期限"
        FROM findings FINAL
        WHERE run_id = 'live' AND case_id = {c}
        ORDER BY fired_at, rule""")]), 24, 7)
    g.add(table("告警状态", "本办件各告警的当前状态。", [ch_target(f"""
        SELECT a.opened_at AS "开启时间", {rule_name('f.rule')} AS "规则",
               {severity_name('a.severity')} AS "当前等级",
               {transform('a.status', ALERT_STATUS_LABELS)} AS "状态", a.actor AS "处理人"
        FROM {ALERTS_AT_T} AS a
        INNER JOIN (SELECT finding_id, rule FROM findings WHERE run_id = 'live' AND case_id = {c}) AS f
            ON f.finding_id = a.alert_id
        ORDER BY a.opened_at""")]), 10, 7)
    g.add(table("告警投递记录", "发给各接收人的每次投递尝试（地址不在此显示）。", [ch_target(f"""
        SELECT attempted_at AS "时间", {transform('channel', CHANNEL_LABELS)} AS "渠道",
               {transform('kind', NOTICE_KIND_LABELS)} AS "类型", recipient AS "接收人",
               {transform('result', DELIVERY_RESULT_LABELS)} AS "结果", error AS "错误"
        FROM alert_deliveries FINAL
        WHERE result != 'pending'
          AND alert_id IN (SELECT finding_id FROM findings WHERE run_id = 'live' AND case_id = {c})
        ORDER BY attempted_at, delivery_id, attempt""")]), 14, 7)
    return dashboard("esup-case", "办件详情", "一个办件的状态、事件、监察发现、告警与投递记录（告警邮件中的链接指向此处）。",
                     g, [text_var("case", "办件编号")], time_from="now-90d", refresh="", tags=["办件"])


# ============================================================================================ output

BUILDERS = {"overview": overview, "department": department, "findings": findings_queue, "fees": fees,
            "pipeline": pipeline, "case": case}


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard by file stem (``json/<stem>.json``)."""
    return {name: make() for name, make in BUILDERS.items()}


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def provisioning_files() -> dict[str, str]:
    """Provisioning YAML, relative to ``provisioning/``: data sources (password from the environment)
    and the dashboard provider reading the JSON files mounted at ``/var/lib/grafana/dashboards/esup``."""
    import yaml

    dss = datasources()
    dss[0]["secureJsonData"] = {"password": "$ESUP_CLICKHOUSE_PASSWORD"}
    for ds in dss:
        ds["editable"] = False
        ds["version"] = 1
    ds_doc = {"apiVersion": 1, "deleteDatasources": [], "datasources": dss}
    dash_doc = {"apiVersion": 1, "providers": [{
        "name": "esup", "orgId": 1, "folder": FOLDER_TITLE, "folderUid": FOLDER_UID, "type": "file",
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": "/var/lib/grafana/dashboards/esup", "foldersFromFilesStructure": False}}]}
    header = ("# Generated by `python -m dashboards.build` (dashboards/build.py); edit that, not this file.\n")
    dump = lambda d: header + yaml.safe_dump(d, allow_unicode=True, sort_keys=False)  # noqa: E731
    return {"datasources/esup.yaml": dump(ds_doc), "dashboards/esup.yaml": dump(dash_doc)}


def write_all(json_dir: Path = JSON_DIR, provisioning_dir: Path = PROVISIONING_DIR) -> list[Path]:
    """Write every dashboard and provisioning file; returns the paths written."""
    written = []
    json_dir.mkdir(parents=True, exist_ok=True)
    for name, board in build_all().items():
        path = json_dir / f"{name}.json"
        path.write_text(dumps(board), encoding="utf-8")
        written.append(path)
    for rel, text in provisioning_files().items():
        path = provisioning_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    for path in write_all():
        print(path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
