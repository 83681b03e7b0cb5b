"""Alert routing configuration (告警路由配置), read from the versioned ``config/routing.yaml``.

Who receives what is policy that changes with people and reorganisations, so it is data: named
recipients, routes matching region, department, severity and rule, a fallback for findings no route
matches, digest and rate-limit settings against alert storms, the lifecycle deadlines, and which
transport each channel uses. Secrets are never in this file: it names environment variables (or
keys of a secrets file) that hold them. A broken file is refused as a whole, with the field named.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

import msgspec
import yaml

from alerting.model import CHANNELS, Channel

DEFAULT_ROUTING = Path(__file__).resolve().parent.parent / "config" / "routing.yaml"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|wd)\s*$")


class RoutingConfigError(ValueError):
    """The routing file cannot be used; alerting with half a configuration would misroute red cards."""


class Duration(msgspec.Struct, frozen=True):
    """A configured span: seconds, minutes, hours, days, or working days (``wd``, the legal unit)."""

    amount: float
    unit: Literal["s", "m", "h", "d", "wd"]

    @classmethod
    def parse(cls, text: str | int | float) -> Duration:
        if isinstance(text, int | float):
            return cls(float(text), "s")
        m = _DURATION.match(str(text))
        if not m:
            raise RoutingConfigError(
                f"invalid duration {text!r}: use e.g. 90s, 30m, 2h, 1d or 1wd (working days)"
            )
        return cls(float(m.group(1)), m.group(2))  # type: ignore[arg-type]

    def after(self, start: datetime) -> datetime:
        """The instant this span after ``start`` ends; ``n wd`` ends at the end of the n-th working day after."""
        if self.unit == "wd":
            return _calendar().add_working_days(start, int(self.amount))
        return start + self.as_timedelta()

    def as_timedelta(self) -> timedelta:
        """A fixed span; working days have no fixed length, so they are refused here."""
        if self.unit == "wd":
            raise RoutingConfigError(f"{self}: working days are not allowed here; use s, m, h or d")
        return timedelta(seconds={"s": 1, "m": 60, "h": 3600, "d": 86400}[self.unit] * self.amount)

    def __str__(self) -> str:
        n = int(self.amount) if self.amount == int(self.amount) else self.amount
        return f"{n}{self.unit}"


@lru_cache(maxsize=1)
def _calendar():  # type: ignore[no-untyped-def]
    from rules.calendar import WorkCalendar

    return WorkCalendar.default()


class Recipient(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named recipient (an office or a person's role). Addresses are the people's own: never logged."""

    id: str = ""  # filled from the mapping key
    name: str
    email: str | None = None
    mobile: str | None = None
    rate_limit: dict[str, RateLimit] | None = None  # per-recipient override of the global limits

    def address(self, channel: Channel) -> str | None:
        return self.email if channel == "email" else self.mobile


class Match(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Conditions of a route; each list is OR-ed, fields are AND-ed, a missing field matches anything.

    Patterns are shell-style: region ``5101*`` is every district of Chengdu, rule ``FEE.*`` every fee rule.
    """

    region: tuple[str, ...] | None = None
    department: tuple[str, ...] | None = None
    severity: tuple[Literal["yellow", "red"], ...] | None = None
    rule: tuple[str, ...] | None = None

    def matches(self, *, region: str | None, department: str | None, severity: str, rule: str) -> bool:
        return (
            _any(self.region, region)
            and _any(self.department, department)
            and (self.severity is None or severity in self.severity)
            and _any(self.rule, rule)
        )


def _any(patterns: tuple[str, ...] | None, value: str | None) -> bool:
    if patterns is None:
        return True
    if value is None:
        return "*" in patterns
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _default_channels() -> dict[str, tuple[Channel, ...]]:
    return {"yellow": ("email",), "red": ("email", "sms")}


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    match: Match = Match()
    to: tuple[str, ...]
    channels: dict[str, tuple[Channel, ...]] = msgspec.field(default_factory=_default_channels)
    escalate_to: tuple[str, ...] = ()
    escalation_channels: tuple[Channel, ...] = ("email", "sms")

    def channels_for(self, severity: str) -> tuple[Channel, ...]:
        return self.channels.get(severity, ())


class Fallback(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to: tuple[str, ...]
    channels: dict[str, tuple[Channel, ...]] = msgspec.field(default_factory=_default_channels)
    escalate_to: tuple[str, ...] = ()
    escalation_channels: tuple[Channel, ...] = ("email", "sms")

    def as_route(self) -> Route:
        return Route(
            name="fallback",
            to=self.to,
            channels=self.channels,
            escalate_to=self.escalate_to,
            escalation_channels=self.escalation_channels,
        )


class DigestConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """More than ``threshold`` notices within ``window`` for one recipient and channel → one digest."""

    window: str = "60s"
    threshold: int = 5
    max_cases: int = 10  # cases listed by name in a digest e-mail; the rest are counted

    @property
    def window_delta(self) -> timedelta:
        return Duration.parse(self.window).as_timedelta()


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``max_messages`` messages per ``per`` to one recipient on one channel; the rest wait."""

    max_messages: int
    per: str = "1h"

    @property
    def per_delta(self) -> timedelta:
        return Duration.parse(self.per).as_timedelta()


class LifecycleConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    red_ack_within: str = "2h"  # a red card not acknowledged by then is escalated
    yellow_clear_within: str = "1wd"  # a yellow card not resolved by then becomes red
    yellow_clear_within_by_rule: dict[str, str] = {}  # rule code (or pattern) -> span

    def red_ack_deadline(self, red_since: datetime) -> datetime:
        return Duration.parse(self.red_ack_within).after(red_since)

    def yellow_clear_deadline(self, rule: str, opened_at: datetime) -> datetime:
        span = self.yellow_clear_within
        for pattern, value in self.yellow_clear_within_by_rule.items():
            if fnmatch.fnmatchcase(rule, pattern):
                span = value
                break
        return Duration.parse(span).after(opened_at)


class RetryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tries per message and exponential backoff between them (``initial`` · 2^k, capped at ``max``)."""

    attempts: int = 4
    initial: float = 1.0
    max: float = 30.0
    redeliver_after: str = "10m"  # a failed message is tried again by a later call after this long …
    redeliver_max: int = 3  # … until it has failed this many times (then only a replay retries it)

    @property
    def redeliver_delta(self) -> timedelta:
        return Duration.parse(self.redeliver_after).as_timedelta()


class SmtpTransport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "localhost"
    port: int = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = None  # name of the env var (or secrets-file key) with the password
    ca_file: str | None = None  # trust this CA (a private mail relay); default: the system store
    timeout: float = 15.0
    sender: str = "esupervision@localhost"
    sender_name: str = "政务服务电子监察系统"
    local_hostname: str | None = None


class OutboxTransport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    directory: str = "outbox"
    sender: str = "esupervision@localhost"
    sender_name: str = "政务服务电子监察系统"


class WebhookTransport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str
    token_env: str | None = None  # bearer token, from the environment or the secrets file
    timeout: float = 10.0
    headers: dict[str, str] = {}


class AliyunTransport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Alibaba Cloud SMS ``SendSms`` (API version 2017-05-25), RPC style, signature version 1.0."""

    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    region_id: str = "cn-hangzhou"
    access_key_id_env: str = "ALIBABA_CLOUD_ACCESS_KEY_ID"
    access_key_secret_env: str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
    sign_name: str | None = None  # defaults to sms.sign
    template_code: str  # SMS_xxxxxxxx, approved in the console
    # TemplateParam: variable name -> Jinja expression over the SMS context, e.g. "{{ case_id }}".
    template_param: dict[str, str] = msgspec.field(default_factory=lambda: {"content": "{{ content }}"})
    method: Literal["GET", "POST"] = "POST"
    timeout: float = 10.0


class EmailTransportConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["outbox", "smtp"] = "outbox"
    smtp: SmtpTransport | None = None
    outbox: OutboxTransport = OutboxTransport()


class SmsTransportConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["outbox", "webhook", "aliyun"] = "outbox"
    webhook: WebhookTransport | None = None
    aliyun: AliyunTransport | None = None
    outbox: OutboxTransport = OutboxTransport()


class TransportConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: EmailTransportConfig = EmailTransportConfig()
    sms: SmsTransportConfig = SmsTransportConfig()
    retry: RetryConfig = RetryConfig()


class SmsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sign: str = "政务监察"  # shown as 【政务监察】 and counted in the length
    max_segments: int = 1  # 1: 70 characters in all; 2: 134 (67 per segment)


class AlertingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: str = "default"
    dashboard_url: str = "http://localhost:3000"
    case_url: str = "{dashboard_url}/d/esup-case?var-case={case_id}"
    recipients: dict[str, Recipient]
    routes: tuple[Route, ...] = ()
    fallback: Fallback
    digest: DigestConfig = DigestConfig()
    rate_limit: dict[str, RateLimit] = {}
    lifecycle: LifecycleConfig = LifecycleConfig()
    sms: SmsConfig = SmsConfig()
    transport: TransportConfig = TransportConfig()
    templates_dir: str | None = None

    def recipient(self, rid: str) -> Recipient:
        return self.recipients[rid]

    def rate_limit_for(self, rid: str, channel: Channel) -> RateLimit | None:
        r = self.recipients.get(rid)
        if r is not None and r.rate_limit and channel in r.rate_limit:
            return r.rate_limit[channel]
        return self.rate_limit.get(channel)


def _problems(cfg: AlertingConfig) -> list[str]:
    out: list[str] = []
    if not cfg.fallback.to:
        out.append("fallback.to: at least one recipient is required (unmatched findings must go somewhere)")
    for rid, r in cfg.recipients.items():
        if not r.email and not r.mobile:
            out.append(f"recipients.{rid}: needs an email or a mobile")
    names: set[str] = set()
    routes = [*cfg.routes, cfg.fallback.as_route()]
    for i, route in enumerate(routes):
        where = (
            "fallback" if route.name == "fallback" and i == len(routes) - 1 else f"routes[{i}] ({route.name})"
        )
        if route.name in names:
            out.append(f"{where}: duplicate route name")
        names.add(route.name)
        for rid in (*route.to, *route.escalate_to):
            if rid not in cfg.recipients:
                out.append(f"{where}: unknown recipient {rid!r}")
        for sev, chans in route.channels.items():
            if sev not in ("yellow", "red"):
                out.append(f"{where}.channels: unknown severity {sev!r}")
            for ch in chans:
                if ch not in CHANNELS:
                    out.append(f"{where}.channels.{sev}: unknown channel {ch!r}")
    fixed = [
        ("digest.window", cfg.digest.window),
        ("transport.retry.redeliver_after", cfg.transport.retry.redeliver_after),
        *((f"rate_limit.{k}.per", v.per) for k, v in cfg.rate_limit.items()),
        *(
            (f"recipients.{rid}.rate_limit.{k}.per", v.per)
            for rid, r in cfg.recipients.items()
            for k, v in (r.rate_limit or {}).items()
        ),
    ]
    for label, text in fixed:
        try:
            Duration.parse(text).as_timedelta()
        except RoutingConfigError as exc:
            out.append(f"{label}: {exc}")
    for label, text in (
        ("lifecycle.red_ack_within", cfg.lifecycle.red_ack_within),
        ("lifecycle.yellow_clear_within", cfg.lifecycle.yellow_clear_within),
        *(
            (f"lifecycle.yellow_clear_within_by_rule.{k}", v)
            for k, v in cfg.lifecycle.yellow_clear_within_by_rule.items()
        ),
    ):
        try:
            Duration.parse(text)
        except RoutingConfigError as exc:
            out.append(f"{label}: {exc}")
    for k in cfg.rate_limit:
        if k not in CHANNELS:
            out.append(f"rate_limit: unknown channel {k!r}")
    t = cfg.transport
    if t.email.kind == "smtp" and t.email.smtp is None:
        out.append("transport.email: kind smtp needs an smtp section")
    if t.sms.kind == "webhook" and t.sms.webhook is None:
        out.append("transport.sms: kind webhook needs a webhook section")
    if t.sms.kind == "aliyun" and t.sms.aliyun is None:
        out.append("transport.sms: kind aliyun needs an aliyun section")
    if cfg.sms.max_segments < 1:
        out.append("sms.max_segments: must be at least 1")
    return out


def parse_alerting_config(data: object, source: str = "<routing>") -> AlertingConfig:
    """Validate a parsed YAML document; every problem is listed, not just the first."""
    if not isinstance(data, dict):
        raise RoutingConfigError(f"{source}: expected a mapping at the top level")
    recipients = data.get("recipients")
    if isinstance(recipients, dict):
        data = {
            **data,
            "recipients": {k: {**v, "id": k} if isinstance(v, dict) else v for k, v in recipients.items()},
        }
    try:
        cfg = msgspec.convert(data, AlertingConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise RoutingConfigError(f"{source}: {exc}") from None
    problems = _problems(cfg)
    if problems:
        raise RoutingConfigError(f"{source}: " + "; ".join(problems))
    return cfg


def load_alerting_config(path: str | Path | None = None) -> AlertingConfig:
    """Read ``config/routing.yaml`` (or ``path``). Cheap enough to call again to pick up a new version."""
    p = Path(path) if path else DEFAULT_ROUTING
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RoutingConfigError(f"{p}: routing file not found") from None
    except yaml.YAMLError as exc:
        raise RoutingConfigError(f"{p}: {exc}") from None
    return parse_alerting_config(data, str(p))
