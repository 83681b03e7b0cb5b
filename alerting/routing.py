"""Routing (告警路由): which recipients learn of a finding, on which channels.

Every route whose conditions match applies — a red card reaches the department's chief
representative *and* the discipline-inspection office — and recipients reached by several routes
get one message per channel. A finding that no route matches is never dropped: it goes to the
configured fallback, and the caller logs and counts it so the routing gap gets fixed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from alerting.config import AlertingConfig, Route
from alerting.model import Channel
from rules.findings import Finding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One recipient and the channels to reach them on, with the routes that asked for it."""

    recipient_id: str
    channels: tuple[Channel, ...]
    routes: tuple[str, ...]


@dataclass(frozen=True)
class Routing:
    targets: tuple[Target, ...]
    routes: tuple[str, ...]  # names of the matched routes ("fallback" when none matched)
    unrouted: bool
    escalate_to: tuple[Target, ...] = field(default=())


def _merge(pairs: list[tuple[str, tuple[Channel, ...], str]]) -> tuple[Target, ...]:
    order: list[str] = []
    chans: dict[str, list[Channel]] = {}
    names: dict[str, list[str]] = {}
    for rid, channels, route in pairs:
        if rid not in chans:
            order.append(rid)
            chans[rid] = []
            names[rid] = []
        for ch in channels:
            if ch not in chans[rid]:
                chans[rid].append(ch)
        if route not in names[rid]:
            names[rid].append(route)
    return tuple(Target(rid, tuple(chans[rid]), tuple(names[rid])) for rid in order if chans[rid])


def matching_routes(finding: Finding, cfg: AlertingConfig, severity: str | None = None) -> list[Route]:
    sev = severity or finding.severity
    return [
        r
        for r in cfg.routes
        if r.match.matches(
            region=finding.region_code, department=finding.department, severity=sev, rule=finding.rule
        )
    ]


def route_finding(finding: Finding, cfg: AlertingConfig, severity: str | None = None) -> Routing:
    """Recipients and channels for a finding at ``severity`` (default: its own)."""
    sev = severity or finding.severity
    routes = matching_routes(finding, cfg, sev)
    unrouted = not routes
    if unrouted:
        routes = [cfg.fallback.as_route()]
    targets = _merge([(rid, r.channels_for(sev), r.name) for r in routes for rid in r.to])
    esc = _merge([(rid, r.escalation_channels, r.name) for r in routes for rid in r.escalate_to])
    if not targets and not unrouted:
        # Routes matched but none asked for a channel at this severity: still never silent.
        fb = cfg.fallback.as_route()
        targets = _merge([(rid, fb.channels_for(sev), fb.name) for rid in fb.to])
        unrouted = True
        routes = [*routes, fb]
    return Routing(targets=targets, routes=tuple(r.name for r in routes), unrouted=unrouted, escalate_to=esc)


def escalation_targets(finding: Finding, cfg: AlertingConfig) -> tuple[Target, ...]:
    """Who hears of a red card nobody acknowledged: the matched routes' escalation targets.

    With none configured the fallback's escalation target is used, and failing that the fallback
    recipients themselves, so an unacknowledged red card always reaches somebody new or again.
    """
    routing = route_finding(finding, cfg, "red")
    if routing.escalate_to:
        return routing.escalate_to
    fb = cfg.fallback
    if fb.escalate_to:
        return _merge([(rid, fb.escalation_channels, "fallback") for rid in fb.escalate_to])
    log.warning(
        "no escalation target for rule %s department %s; using fallback recipients",
        finding.rule,
        finding.department,
    )
    return _merge([(rid, fb.escalation_channels, "fallback") for rid in fb.to])
