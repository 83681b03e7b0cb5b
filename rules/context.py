"""What a rule sees while it judges one case: the case, its catalog entry, the clock and thresholds.

Rules raise findings through ``CaseContext.raise_finding``, which is the one place that makes a
finding fire once per occurrence and gives it its deterministic id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from rules.catalog import Catalog, Item
from rules.clock import Clock, china_date
from rules.config import RuleConfig
from rules.findings import Finding, finding_id
from rules.registry import RULES
from rules.state import CaseState, Derived
from schemas.events import CHINA_TZ


class Deadline(msgspec.Struct, frozen=True):
    """A clock rule's pending deadline: fires once ``now >= at`` unless satisfied at or before ``at``.

    A struct, not a NamedTuple: families build several per event, and this is five times cheaper to make.
    """

    rule: str
    occurrence: str
    at: float
    satisfied: float | None
    render: Callable[..., tuple[str, str]]  # render(*args) -> (message, basis), called only when it fires
    officer: str | None = None
    args: tuple = ()  # what ``render`` needs: a module-level function and its values cost less than a closure

    def message(self) -> tuple[str, str]:
        return self.render(*self.args)


def fmt_day(t: float) -> str:
    return china_date(t).isoformat()


def fmt_time(t: float) -> str:
    """China local time; a day-end deadline reads as "YYYY-MM-DD 24:00", the way limits are announced."""
    local = datetime.fromtimestamp(t, CHINA_TZ)
    if local.hour == 0 and local.minute == 0 and local.second == 0:
        return datetime.fromtimestamp(t - 1, CHINA_TZ).strftime("%Y-%m-%d 24:00")
    return local.strftime("%Y-%m-%d %H:%M")


class CaseContext(msgspec.Struct):
    """Built per event, after the engine has (re)built ``state.d``; ``d`` is that summary (rules read it
    hundreds of thousands of times a second, so it is a plain attribute, not a property). A struct: made
    once per event, and msgspec builds it in C.

    ``item`` is the case's entry in ``catalog`` (None: unknown item or no intake yet).
    """

    state: CaseState
    d: Derived
    catalog: Catalog | None
    item: Item | None
    clock: Clock
    config: RuleConfig
    out: list[Finding]

    def item_label(self) -> str:
        it = self.item
        if it is not None:
            return f"{it.name}（{it.code}）"
        return f"事项{self.state.info.item_code or '未知'}"

    def catalog_basis(self, what: str) -> str:
        version = self.catalog.version if self.catalog is not None else "?"
        code = self.state.info.item_code or "?"
        return f"事项目录 {version} · {code} · {what}"

    def raise_finding(self, rule: str, occurrence: str, at: float, message: str, basis: str, *,
                      officer: str | None = None, event_id: str | None = None,
                      deadline: float | None = None) -> None:
        key = f"{rule}|{occurrence}"
        st = self.state
        if st.has_fired(key):
            return
        st.mark_fired(key)
        info = st.info
        self.out.append(Finding(
            finding_id=finding_id(st.case_id, rule, occurrence),
            rule=rule,
            severity=RULES[rule].severity,
            case_id=st.case_id,
            item_code=info.item_code,
            department=info.department,
            window=info.window,
            region_code=info.region_code,
            officer_id=officer,
            fired_at=datetime.fromtimestamp(at, UTC),
            message=message,
            basis=basis,
            catalog_version=info.catalog_version,
            occurrence=occurrence,
            deadline=datetime.fromtimestamp(deadline, UTC) if deadline is not None else None,
            event_id=event_id,
        ))
