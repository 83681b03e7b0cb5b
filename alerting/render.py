"""Rendering messages (消息生成): Chinese e-mail and SMS from Jinja2 templates, masked, SMS fitted.

Wording belongs to the supervision office, not to code, so it lives in ``alerting/templates/*.j2``.
An e-mail template defines a ``subject`` and a ``body`` block; an SMS template renders the text
without the 【签名】, which is added here and counted, because gateways bill and split by the whole
text. Every rendered text is masked before it leaves (``masking.mask_text``) whatever the template
did, and an SMS that would exceed its segment budget is shortened by trimming ``summary`` first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from alerting.config import TEMPLATES_DIR, AlertingConfig, Recipient
from alerting.masking import find_unmasked, mask_text
from alerting.model import AlertState, Channel, MessageKind, NoticeKind, OutgoingMessage
from schemas.events import CHINA_TZ

RULE_NAMES: dict[str, str] = {
    "TIMEOUT.INTAKE_OVERDUE": "受理超时",
    "TIMEOUT.PROMISED_WARNING": "承诺时限预警",
    "TIMEOUT.PROMISED_OVERDUE": "超承诺时限",
    "TIMEOUT.STATUTORY_OVERDUE": "超法定时限",
    "TIMEOUT.STEP_OVERDUE": "环节超时",
    "TIMEOUT.SUSPENSION_OVERRUN": "特别程序超期",
    "FEE.NO_BASIS": "无依据收费",
    "FEE.OVER_STANDARD": "超标准收费",
    "FEE.CASH_AT_WINDOW": "窗口收取现金",
    "FEE.DUPLICATE": "重复收费",
    "FEE.AMOUNT_MISMATCH": "缴费金额不符",
    "FEE.NOT_REFUNDED": "未按期退费",
    "FEE.DELIVERED_UNPAID": "未缴费即出证",
    "FEE.WAIVER_UNAPPROVED": "减免未经审批",
    "PROCEDURE.SKIPPED_STEP": "跳环节",
    "PROCEDURE.OUT_OF_ORDER": "环节顺序异常",
    "PROCEDURE.SAME_OFFICER": "审批未分离",
    "PROCEDURE.NOT_ACCEPTED": "未受理即办理",
    "PROCEDURE.REPEATED_SUPPLEMENT": "多次补正",
    "PROCEDURE.ON_THE_SPOT_LATE": "即办件未当日办结",
    "PROCEDURE.TOO_FAST": "办结过快",
    "PROCEDURE.OFF_HOURS": "非工作时间审批",
    "PROCEDURE.AFTER_COMPLETION": "办结后变更",
    "PROCEDURE.BACKDATED": "事后补录",
    "QUALITY.BAD_RATING": "差评",
    "QUALITY.BAD_RATING_UNRESOLVED": "差评未整改",
    "QUALITY.COMPLAINT_OVERDUE": "投诉办理超期",
}
SEVERITY_LABELS = {"yellow": "黄牌", "red": "红牌"}
KIND_LABELS: dict[str, str] = {
    "finding": "新发现",
    "upgrade": "黄牌逾期转红牌",
    "escalation": "红牌逾期未签收",
}
CHANNEL_LABELS = {"email": "邮件", "sms": "短信"}

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")


def rule_name(rule: str) -> str:
    return RULE_NAMES.get(rule, rule)


def sms_units(text: str) -> tuple[int, bool]:
    """(length as a gateway counts it, whether it needs UCS-2). Chinese text always needs UCS-2."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        return sum(2 if c in _GSM7_EXT else 1 for c in text), False
    return len(text.encode("utf-16-le")) // 2, True


def sms_segments(text: str) -> int:
    """Segments a gateway bills: UCS-2 70 alone or 67 each when concatenated; GSM-7 160 / 153."""
    n, ucs2 = sms_units(text)
    single, multi = (70, 67) if ucs2 else (160, 153)
    if n <= single:
        return 1
    return -(-n // multi)


def sms_budget(max_segments: int, ucs2: bool = True) -> int:
    """Characters (signature included) that fit in ``max_segments`` segments."""
    single, multi = (70, 67) if ucs2 else (160, 153)
    return single if max_segments <= 1 else multi * max_segments


_UNIT_CN = {"s": "秒", "m": "分钟", "h": "小时", "d": "天", "wd": "个工作日"}


def span_cn(text: str) -> str:
    """A configured span as inspectors say it: 2h → 2小时, 1wd → 1个工作日."""
    from alerting.config import Duration

    d = Duration.parse(text)
    n = int(d.amount) if d.amount == int(d.amount) else d.amount
    return f"{n}{_UNIT_CN[d.unit]}"


def cn_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An instant in China time, as inspectors read it; a naive value is shown as is."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(CHINA_TZ)
    return value.strftime(fmt)


@dataclass(frozen=True)
class DigestItem:
    kind: NoticeKind
    alert: AlertState


class Renderer:
    """Renders and masks every outgoing text; one per configuration (the Jinja environment is cached)."""

    def __init__(self, cfg: AlertingConfig) -> None:
        self.cfg = cfg
        directory = Path(cfg.templates_dir) if cfg.templates_dir else TEMPLATES_DIR
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(directory))]
        if directory != TEMPLATES_DIR:
            loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))  # fall back to the shipped set
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["cn_time"] = cn_time
        self.env.filters["rule_name"] = rule_name
        self.env.filters["severity_label"] = lambda s: SEVERITY_LABELS.get(s, s)

    # ------------------------------------------------------------------------------- contexts

    def case_url(self, case_id: str) -> str:
        return self.cfg.case_url.format(
            dashboard_url=self.cfg.dashboard_url.rstrip("/"), case_id=quote(case_id, safe="")
        )

    def notice_context(self, kind: NoticeKind, alert: AlertState, recipient: Recipient) -> dict[str, Any]:
        f = alert.finding
        lc = self.cfg.lifecycle
        ack_deadline = lc.red_ack_deadline(alert.red_since) if alert.red_since else None
        return {
            "kind": kind,
            "kind_label": KIND_LABELS[kind],
            "alert_id": alert.alert_id,
            "severity": alert.severity,
            "severity_label": SEVERITY_LABELS[alert.severity],
            "original_severity_label": SEVERITY_LABELS[f.severity],
            "rule": f.rule,
            "rule_name": rule_name(f.rule),
            "case_id": f.case_id,
            "item_code": f.item_code or "—",
            "department": f.department or "—",
            "window": f.window or "—",
            "region_code": f.region_code or "—",
            "fired_at": f.fired_at,
            "deadline": f.deadline,
            "message": f.message,
            "summary": f.message,
            "basis": f.basis,
            "catalog_version": f.catalog_version or "—",
            "opened_at": alert.opened_at,
            "red_since": alert.red_since,
            "ack_deadline": ack_deadline,
            "red_ack_within": span_cn(lc.red_ack_within),
            "acknowledged_by": alert.acknowledged_by,
            "status": alert.status,
            "recipient_name": recipient.name,
            "dashboard_url": self.cfg.dashboard_url.rstrip("/"),
            "case_url": self.case_url(f.case_id),
        }

    def digest_context(
        self, items: Sequence[DigestItem], recipient: Recipient, now: datetime
    ) -> dict[str, Any]:
        by_rule = Counter((i.alert.finding.rule, i.alert.severity) for i in items)
        by_kind = Counter(i.kind for i in items)
        by_dept = Counter(i.alert.finding.department or "—" for i in items)
        ordered = sorted(
            items, key=lambda i: (i.alert.severity != "red", i.alert.finding.fired_at, i.alert.alert_id)
        )
        n = self.cfg.digest.max_cases
        cases = [
            {
                "case_id": i.alert.finding.case_id,
                "rule": i.alert.finding.rule,
                "rule_name": rule_name(i.alert.finding.rule),
                "severity_label": SEVERITY_LABELS[i.alert.severity],
                "kind_label": KIND_LABELS[i.kind],
                "department": i.alert.finding.department or "—",
                "window": i.alert.finding.window or "—",
                "fired_at": i.alert.finding.fired_at,
                "message": i.alert.finding.message,
                "case_url": self.case_url(i.alert.finding.case_id),
            }
            for i in ordered[:n]
        ]
        fired = [i.alert.finding.fired_at for i in items]
        return {
            "count": len(items),
            "red": sum(1 for i in items if i.alert.severity == "red"),
            "yellow": sum(1 for i in items if i.alert.severity == "yellow"),
            "by_rule": [
                {"rule": r, "rule_name": rule_name(r), "severity_label": SEVERITY_LABELS[s], "count": c}
                for (r, s), c in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "by_kind": [
                {"kind": k, "kind_label": KIND_LABELS[k], "count": c} for k, c in sorted(by_kind.items())
            ],
            "departments": [d for d, _ in by_dept.most_common()],
            "department_count": len(by_dept),
            "top_department": by_dept.most_common(1)[0][0] if by_dept else "—",
            "cases": cases,
            "more": max(0, len(items) - n),
            "first_fired_at": min(fired) if fired else None,
            "last_fired_at": max(fired) if fired else None,
            "now": now,
            "window": span_cn(self.cfg.digest.window),
            "recipient_name": recipient.name,
            "dashboard_url": self.cfg.dashboard_url.rstrip("/"),
            "alerts_url": self.cfg.dashboard_url.rstrip("/") + "/d/esup-alerts",
            "summary": "",
        }

    # ------------------------------------------------------------------------------- rendering

    def email(self, template: str, ctx: dict[str, Any]) -> tuple[str, str]:
        """(subject, body), masked. Subjects are single-line whatever the template's whitespace."""
        t = self.env.get_template(template)
        c = t.new_context(ctx)
        subject = " ".join("".join(t.blocks["subject"](c)).split())
        body = "".join(t.blocks["body"](c)).strip() + "\n"
        return _masked(subject), _masked(body)

    def sms(self, template: str, ctx: dict[str, Any]) -> tuple[str, str]:
        """(full text with 【签名】, content without it), masked and within ``sms.max_segments``."""
        sign = f"【{self.cfg.sms.sign}】" if self.cfg.sms.sign else ""
        budget = sms_budget(self.cfg.sms.max_segments)
        t = self.env.get_template(template)

        def render(summary: str) -> str:
            return _masked(" ".join(t.render({**ctx, "summary": summary}).split()))

        summary = str(ctx.get("summary", ""))
        content = render(summary)
        if sms_units(sign + content)[0] > budget and summary:
            lo, hi = 0, len(summary)  # the longest prefix of the summary that still fits
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if sms_units(sign + render(summary[:mid] + "…"))[0] <= budget:
                    lo = mid
                else:
                    hi = mid - 1
            content = render(summary[:lo] + "…") if lo else render("")
        if sms_units(sign + content)[0] > budget:
            room = budget - sms_units(sign)[0] - 1
            content = content[: max(0, room)] + "…"
        return sign + content, content

    def aliyun_params(self, templates: dict[str, str], ctx: dict[str, Any]) -> dict[str, str]:
        """Render Aliyun ``TemplateParam`` values (each a small Jinja template), masked."""
        out: dict[str, str] = {}
        for k, src in templates.items():
            out[k] = _masked(" ".join(self.env.from_string(src).render(ctx).split()))
        return out

    def message(
        self,
        *,
        kind: MessageKind,
        channel: Channel,
        recipient: Recipient,
        address: str,
        delivery_id: str,
        ctx: dict[str, Any],
        now: datetime,
        alert_id: str | None = None,
    ) -> OutgoingMessage:
        """One outgoing message from the ``{channel}_{kind}.j2`` template."""
        name = "email" if channel == "email" else "sms"
        template = f"{name}_{kind}.j2"
        if channel == "email":
            subject, body = self.email(template, ctx)
            return OutgoingMessage(
                delivery_id=delivery_id,
                kind=kind,
                channel=channel,
                recipient_id=recipient.id,
                recipient_name=recipient.name,
                address=address,
                subject=subject,
                body=body,
                alert_id=alert_id,
                at=now,
            )
        text, content = self.sms(template, ctx)
        params: dict[str, str] = {}
        aliyun = self.cfg.transport.sms.aliyun
        if self.cfg.transport.sms.kind == "aliyun" and aliyun is not None:
            params = self.aliyun_params(aliyun.template_param, {**ctx, "content": content, "text": text})
        return OutgoingMessage(
            delivery_id=delivery_id,
            kind=kind,
            channel=channel,
            recipient_id=recipient.id,
            recipient_name=recipient.name,
            address=address,
            subject=content[:20],
            body=text,
            sms_sign=self.cfg.sms.sign,
            sms_content=content,
            sms_params=params,
            alert_id=alert_id,
            at=now,
        )


def _masked(text: str) -> str:
    out = mask_text(text)
    left = find_unmasked(out)
    if left:  # cannot happen with the masking patterns above; refuse rather than leak
        raise ValueError(f"unmasked personal data left in a rendered message ({len(left)} occurrence(s))")
    return out
