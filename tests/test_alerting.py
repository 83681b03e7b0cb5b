"""Alerting: masking, SMS length, routing, templates, once-only delivery, digests, rate limits, lifecycle.

Everything runs on real components: the JSONL delivery log on disk and the outbox channel writing
``.eml`` / ``.sms.txt`` files that are parsed back.
"""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerting import (
    AlertLifecycleError,
    JsonlDeliveryLog,
    acknowledge,
    deliver_findings,
    dismiss,
    find_alert,
    load_alerting_config,
    resolve,
)
from alerting.channels.outbox import OutboxChannel
from alerting.config import RoutingConfigError
from alerting.dispatcher import Dispatcher
from alerting.lifecycle import due_changes, process_due
from alerting.masking import find_unmasked, mask_id_number, mask_name, mask_phone, mask_text
from alerting.model import AlertState, DeliveryReport, delivery_id
from alerting.render import KIND_LABELS, RULE_NAMES, DigestItem, Renderer, sms_segments, sms_units
from alerting.routing import escalation_targets, route_finding
from alerting.secrets import Secret, SecretMissing, get_secret
from schemas.events import CHINA_TZ
from tests.test_alerting_support import NOW, PII_MESSAGE, finding, iter_files, leaks, make_config

# ----------------------------------------------------------------------------------------- masking


def test_masked_forms_follow_the_documented_shapes() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("张三丰") == "张**"
    assert mask_name("欧阳娜娜") == "欧阳**"
    assert mask_id_number("110101199003071234") == "110101********1234"
    assert mask_id_number("11010119900307123X") == "110101********123X"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"


def test_mask_text_finds_ids_mobiles_and_labelled_names_in_free_text() -> None:
    out = mask_text(PII_MESSAGE)
    assert "110101********1234" in out and "138****5678" in out and "139****5678" in out
    assert "申请人：张**" in out and "代理人 欧阳**" in out
    assert leaks(out) == [] and find_unmasked(out) == []
    # ordinary case numbers and amounts survive
    assert mask_text("办件 QY-2026-000001 收费 1200.00 元，编号 5101052026112300012") == (
        "办件 QY-2026-000001 收费 1200.00 元，编号 5101052026112300012"
    )
    assert mask_text("经办人李四", names=["李四"]) == "经办人李*"


# ------------------------------------------------------------------------------------- SMS length


def test_sms_length_is_counted_as_gateways_count() -> None:
    assert sms_units("【政务监察】" + "字" * 64) == (70, True)
    assert sms_segments("字" * 70) == 1
    assert sms_segments("字" * 71) == 2  # concatenated: 67 per segment
    assert sms_segments("字" * 134) == 2
    assert sms_segments("字" * 135) == 3
    assert sms_segments("a" * 160) == 1 and sms_segments("a" * 161) == 2  # GSM-7: 160 / 153
    assert sms_units("😀")[0] == 2  # outside the BMP: a surrogate pair in UCS-2


# ---------------------------------------------------------------------------------------- config


def test_shipped_routing_file_is_valid() -> None:
    cfg = load_alerting_config()
    assert cfg.routes and cfg.fallback.to
    assert {"jjjc_610113", "jjjc_province", "center_duty"} <= set(cfg.recipients)
    # every department of the shipped catalog has its chief representative, so nothing of the demo
    # falls through to the fallback for want of a route
    from rules.catalog import load_catalog
    routed = {d for r in cfg.routes for d in (r.match.department or ())}
    assert set(load_catalog().departments) <= routed


def test_broken_routing_is_refused_with_every_problem_named() -> None:
    from alerting.config import parse_alerting_config
    from tests.test_alerting_support import config_dict

    bad = config_dict(
        routes=[{"name": "x", "to": ["nobody"], "escalate_to": ["ghost"]}],
        fallback={"to": []},
        digest={"window": "1wd"},
        lifecycle={"red_ack_within": "soon"},
    )
    with pytest.raises(RoutingConfigError) as err:
        parse_alerting_config(bad, "bad.yaml")
    text = str(err.value)
    assert text.startswith("bad.yaml: ")
    assert "unknown recipient 'nobody'" in text and "unknown recipient 'ghost'" in text
    assert "fallback.to" in text and "digest.window" in text and "red_ack_within" in text
    with pytest.raises(RoutingConfigError, match=r"fax.*routes\[0\]"):
        parse_alerting_config(
            config_dict(routes=[{"name": "x", "to": ["jjjc"], "channels": {"red": ["fax"]}}])
        )


# --------------------------------------------------------------------------------------- routing


def test_red_card_reaches_discipline_office_and_chief_yellow_only_the_chief() -> None:
    cfg = make_config()
    red = route_finding(finding(1), cfg)
    assert {(t.recipient_id, t.channels) for t in red.targets} == {
        ("jjjc", ("email", "sms")),
        ("chief", ("email", "sms")),
    }
    assert not red.unrouted
    yellow = route_finding(finding(2, severity="yellow", rule="TIMEOUT.PROMISED_WARNING"), cfg)
    assert [(t.recipient_id, t.channels) for t in yellow.targets] == [("chief", ("email",))]
    assert [t.recipient_id for t in escalation_targets(finding(1), cfg)] == ["city"]


def test_unmatched_finding_goes_to_fallback_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config()
    f = finding(3, department="未知部门", region="650102")
    routing = route_finding(f, cfg)
    assert routing.unrouted and routing.routes == ("fallback",)
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    with caplog.at_level(logging.WARNING, logger="alerting.dispatcher"):
        report = deliver_findings([f], cfg, log, NOW, outbox_dir=str(tmp_path / "out"))
    assert report.unrouted == 1
    assert report.sent == {"duty": {"email": 1, "sms": 1}}
    assert any("matched no route" in r.getMessage() for r in caplog.records)
    assert log.get_alert(f.finding_id).unrouted  # type: ignore[union-attr]


def test_channel_without_address_is_counted_not_silent(tmp_path: Path) -> None:
    cfg = make_config()
    f = finding(4, rule="QUALITY.BAD_RATING", severity="yellow", department="其他", region="510106")
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    report = deliver_findings([f], cfg, log, NOW, outbox_dir=str(tmp_path / "out"))
    assert report.no_address == 1  # the quality route asks for SMS; 效能办 has no mobile
    assert report.sent == {"mailonly": {"email": 1}}


# ------------------------------------------------------------------------------------- templates


def _alert(f, *, severity: str | None = None) -> AlertState:  # type: ignore[no-untyped-def]
    return AlertState(
        alert_id=f.finding_id,
        finding=f,
        severity=severity or f.severity,
        opened_at=NOW,
        red_since=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize("rule", sorted(RULE_NAMES))
def test_every_message_is_masked_and_every_sms_fits_one_segment(rule: str) -> None:
    cfg = make_config()
    r = Renderer(cfg)
    rcpt = cfg.recipients["jjjc"]
    long_dept = "成都市青羊区市场监督管理局行政审批科食品经营许可受理窗口"
    for severity in ("yellow", "red"):
        f = finding(7, rule=rule, severity=severity, department=long_dept, message=PII_MESSAGE)
        st = _alert(f)
        for kind in KIND_LABELS:
            ctx = r.notice_context(kind, st, rcpt)  # type: ignore[arg-type]
            subject, body = r.email(f"email_{kind}.j2", ctx)
            text, content = r.sms(f"sms_{kind}.j2", ctx)
            for out in (subject, body, text):
                assert leaks(out) == [], (rule, kind, out)
            assert "\n" not in subject and "QY-2026-000007" in subject
            assert "http://grafana.test/d/esup-case?var-case=QY-2026-000007" in body
            assert f.basis in body and "2026-11-23 09:00" in body  # the limit that was missed
            assert text.startswith("【政务监察】") and text == "【政务监察】" + content
            assert sms_units(text)[0] <= 70 and sms_segments(text) == 1, text
            assert RULE_NAMES[rule] in text or kind == "finding"


def test_digest_message_counts_by_rule_and_lists_first_cases() -> None:
    cfg = make_config()
    r = Renderer(cfg)
    rules = ["TIMEOUT.PROMISED_OVERDUE", "FEE.CASH_AT_WINDOW", "PROCEDURE.SKIPPED_STEP"]
    items = [
        DigestItem("finding", _alert(finding(i, rule=rules[i % 3], message=PII_MESSAGE))) for i in range(30)
    ]
    ctx = r.digest_context(items, cfg.recipients["jjjc"], NOW)
    subject, body = r.email("email_digest.j2", ctx)
    text, _ = r.sms("sms_digest.j2", ctx)
    assert "30" in subject
    for rule in rules:
        assert f"{RULE_NAMES[rule]}（{rule}）：10 条" in body
    assert body.count("var-case=QY-2026-") == 10 and "另有 20 件" in body
    assert leaks(body) == [] and leaks(text) == [] and sms_units(text)[0] <= 70


# ------------------------------------------------------------------------------- once, restarts


def test_delivered_once_per_recipient_and_channel_across_restarts(tmp_path: Path) -> None:
    cfg = make_config()
    out = tmp_path / "out"
    findings = [finding(1), finding(2, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")]
    first = deliver_findings(findings, cfg, JsonlDeliveryLog(tmp_path / "log"), NOW, outbox_dir=str(out))
    assert first.messages_sent == 5  # red: jjjc email+sms, chief email+sms; yellow: chief email
    files = sorted(p.name for p in out.iterdir())
    # a restart: a new process reads the same log; the stream replays the same findings
    again = deliver_findings(
        findings, cfg, JsonlDeliveryLog(tmp_path / "log"), NOW + timedelta(minutes=5), outbox_dir=str(out)
    )
    assert again.messages_sent == 0 and again.already_delivered == 5 and again.new_alerts == 0
    assert sorted(p.name for p in out.iterdir()) == files
    expected = delivery_id(findings[0].finding_id, "jjjc", "sms")
    assert (out / f"jjjc__{expected}.sms.txt").exists()


def test_outbox_email_is_rfc5322_with_encoded_chinese_subject_and_masked_body(tmp_path: Path) -> None:
    cfg = make_config()
    out = tmp_path / "out"
    deliver_findings(
        [finding(9, message=PII_MESSAGE)], cfg, JsonlDeliveryLog(tmp_path / "log"), NOW, outbox_dir=str(out)
    )
    emls = list(iter_files(out, ".eml"))
    assert len(emls) == 2
    raw = emls[0].read_bytes()
    assert raw.isascii()  # headers RFC 2047-encoded, body base64: safe through any relay
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"].startswith("【电子监察·红牌】超承诺时限")
    assert msg.get_content_charset() == "utf-8"
    body = msg.get_content()
    assert "申请人：张**" in body and "110101********1234" in body and leaks(body) == []
    for sms in iter_files(out, ".sms.txt"):
        text = sms.read_text(encoding="utf-8")
        assert leaks(text) == [] and "【政务监察】" in text


# ------------------------------------------------------------------------------------ storms


def test_ten_thousand_findings_in_one_minute_become_digests(tmp_path: Path) -> None:
    cfg = make_config()
    out = tmp_path / "out"
    rules = [
        "TIMEOUT.PROMISED_OVERDUE",
        "TIMEOUT.STATUTORY_OVERDUE",
        "FEE.CASH_AT_WINDOW",
        "PROCEDURE.SKIPPED_STEP",
    ]
    findings = [
        finding(i, rule=rules[i % 4], fired_at=NOW + timedelta(milliseconds=6 * i)) for i in range(10_000)
    ]
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    report = deliver_findings(findings, cfg, log, NOW + timedelta(seconds=60), outbox_dir=str(out))
    # one department, two recipients (纪检监察室 and 首席代表), two channels each: four digests in all
    assert report.messages_sent == 4 and report.digests_sent == 4
    assert report.notices_in_digests == 40_000
    assert report.sent == {"jjjc": {"email": 1, "sms": 1}, "chief": {"email": 1, "sms": 1}}
    assert len(list(out.iterdir())) == 4
    eml = next(iter_files(out, ".eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert "10000" in msg["Subject"]
    body = msg.get_content()
    assert "超承诺时限（TIMEOUT.PROMISED_OVERDUE）：2500 条" in body and "另有 9990 件" in body
    # and they are delivered: a replay sends nothing
    again = deliver_findings(findings, cfg, log, NOW + timedelta(minutes=5), outbox_dir=str(out))
    assert again.messages_sent == 0 and again.already_delivered == 40_000


@pytest.mark.slow
def test_findings_trickling_in_one_by_one_still_make_few_messages(tmp_path: Path) -> None:
    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    d = Dispatcher(cfg, log, outbox_dir=str(tmp_path / "out"))
    total = DeliveryReport()
    findings = [finding(i, fired_at=NOW + timedelta(milliseconds=6 * i)) for i in range(10_000)]
    for i, f in enumerate(findings):  # one call per finding, as a live stream might
        total.merge(d.deliver([f], NOW + timedelta(milliseconds=6 * i)))
    for k in (1, 2, 3):  # the ticker keeps going after the burst
        total.merge(process_due(d, NOW + timedelta(seconds=61 * k)))
    # per recipient and channel: 5 single messages, then at most one digest per 60 s window
    for per in total.sent.values():
        for n in per.values():
            assert n <= 5 + 3
    assert total.messages_sent <= 4 * 8
    # every notice delivered exactly once: no record twice, none left over
    sent = [a for a in log.attempts() if a.result == "sent" and a.kind != "digest"]
    assert len(sent) == 40_000 and len({a.delivery_id for a in sent}) == 40_000
    assert log.unfinished() == []


def test_rate_limit_defers_then_digests_when_budget_returns(tmp_path: Path) -> None:
    cfg = make_config(rate_limit={"email": {"max_messages": 3, "per": "1h"}}, digest={"threshold": 1000})
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    d = Dispatcher(cfg, log, outbox_dir=str(tmp_path / "out"))
    yellow = [finding(i, severity="yellow", rule="TIMEOUT.PROMISED_WARNING") for i in range(6)]
    reports = [d.deliver([f], NOW + timedelta(minutes=i)) for i, f in enumerate(yellow)]
    assert [r.messages_sent for r in reports] == [1, 1, 1, 0, 0, 0]
    assert sum(r.deferred for r in reports) == 3
    assert process_due(d, NOW + timedelta(minutes=30)).messages_sent == 0  # still over budget
    late = process_due(d, NOW + timedelta(minutes=61))
    assert late.messages_sent == 1 and late.digests_sent == 1 and late.notices_in_digests == 3


# -------------------------------------------------------------------------------------- failures


def test_failed_delivery_is_recorded_and_tried_again_later(tmp_path: Path) -> None:
    cfg = make_config()
    blocked = tmp_path / "out"
    blocked.write_text("not a directory")  # the outbox cannot be created: every send fails
    log = JsonlDeliveryLog(tmp_path / "log")
    d = Dispatcher(cfg, log, outbox_dir=str(blocked), sleep=lambda s: None)
    f = finding(11, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")
    report = d.deliver([f], NOW)
    assert report.failed == 1 and report.messages_sent == 0
    failed = [a for a in log.attempts(alert_id=f.finding_id) if a.result == "failed"]
    assert len(failed) == 1 and "FileExistsError" in (failed[0].error or "")
    blocked.unlink()
    assert process_due(d, NOW + timedelta(minutes=5)).messages_sent == 0  # not before redeliver_after
    again = process_due(d, NOW + timedelta(minutes=11))
    assert again.messages_sent == 1
    assert log.already_delivered(delivery_id(f.finding_id, "chief", "email"))


# ------------------------------------------------------------------------------------- lifecycle


def test_red_card_not_acknowledged_in_time_is_escalated_once(tmp_path: Path) -> None:
    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    d = Dispatcher(cfg, log, outbox_dir=str(tmp_path / "out"))
    acked, ignored = finding(21), finding(22)
    d.deliver([acked, ignored], NOW)
    acknowledge(log, acked.finding_id, "王监察", NOW + timedelta(minutes=30))
    assert process_due(d, NOW + timedelta(hours=1, minutes=59)).escalated == 0
    r = process_due(d, NOW + timedelta(hours=2))
    assert r.escalated == 1 and r.sent == {"city": {"email": 1, "sms": 1}}
    assert log.get_alert(ignored.finding_id).escalated_at == NOW + timedelta(hours=2)  # type: ignore[union-attr]
    assert log.get_alert(acked.finding_id).escalated_at is None  # type: ignore[union-attr]
    assert process_due(d, NOW + timedelta(hours=5)).escalated == 0
    esc = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("city__") and p.suffix == ".eml"]
    msg = email.message_from_bytes(esc[0].read_bytes(), policy=email.policy.default)
    assert "升级督办" in msg["Subject"] and "2小时" in msg.get_content()


def test_yellow_card_not_cleared_becomes_red(tmp_path: Path) -> None:
    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    d = Dispatcher(cfg, log, outbox_dir=str(tmp_path / "out"))
    stale = finding(31, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")
    fixed = finding(32, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")
    first = d.deliver([stale, fixed], NOW)
    assert first.sent == {"chief": {"email": 2}}
    resolve(log, fixed.finding_id, "首席代表", "已督促办结", NOW + timedelta(hours=1))
    r = process_due(d, NOW + timedelta(hours=4))
    assert r.upgraded == 1
    # the red delivery goes to the red routes: 纪检监察室 now hears of it, the chief by SMS too
    assert r.sent == {"jjjc": {"email": 1, "sms": 1}, "chief": {"email": 1, "sms": 1}}
    st = log.get_alert(stale.finding_id)
    assert st is not None and st.severity == "red" and st.upgraded_at == NOW + timedelta(hours=4)
    assert st.finding.severity == "yellow"  # the finding itself is unchanged
    # its acknowledgement clock starts at the upgrade
    assert process_due(d, NOW + timedelta(hours=5)).escalated == 0
    assert process_due(d, NOW + timedelta(hours=6)).escalated == 1


def test_yellow_deadline_counts_working_days_over_national_day() -> None:
    cfg = make_config(lifecycle={"yellow_clear_within": "1wd"})
    opened = datetime(2026, 9, 30, 15, 0, tzinfo=CHINA_TZ)
    f = finding(41, severity="yellow", rule="TIMEOUT.PROMISED_WARNING", fired_at=opened)
    st = AlertState(alert_id=f.finding_id, finding=f, severity="yellow", opened_at=opened, updated_at=opened)
    deadline = cfg.lifecycle.yellow_clear_deadline(f.rule, opened)
    assert deadline.date() > datetime(2026, 10, 7).date()  # not during the 国庆 holiday
    assert due_changes(cfg, [st], deadline - timedelta(seconds=1)) == []
    [(what, new)] = due_changes(cfg, [st], deadline)
    assert what == "upgrade" and new.severity == "red"


def test_acknowledge_and_close_rules(tmp_path: Path) -> None:
    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    f = finding(51)
    deliver_findings([f], cfg, log, NOW, outbox_dir=str(tmp_path / "out"))
    st = acknowledge(log, f.finding_id[:8], "王监察", NOW + timedelta(minutes=1))  # a prefix, as typed
    assert st.status == "acknowledged" and st.acknowledged_by == "王监察" and st.version == 2
    with pytest.raises(AlertLifecycleError, match="不能签收"):
        acknowledge(log, f.finding_id, "李四", NOW + timedelta(minutes=2))
    with pytest.raises(AlertLifecycleError, match="原因"):
        resolve(log, f.finding_id, "王监察", "  ", NOW + timedelta(minutes=3))
    done = dismiss(log, f.finding_id, "王监察", "系统误报：办件已线下办结", NOW + timedelta(minutes=4))
    assert done.status == "dismissed" and done.reason == "系统误报：办件已线下办结"
    with pytest.raises(AlertLifecycleError, match="不能重复处理"):
        resolve(log, f.finding_id, "王监察", "再次", NOW + timedelta(minutes=5))
    with pytest.raises(AlertLifecycleError, match="找不到"):
        find_alert(log, "ffffffffff")
    with pytest.raises(ValueError, match="timezone"):
        acknowledge(log, f.finding_id, "x", datetime(2026, 11, 23, 10, 0))
    # a closed alert is not delivered again when its finding fires again
    again = deliver_findings([f], cfg, log, NOW + timedelta(hours=1), outbox_dir=str(tmp_path / "out"))
    assert again.closed_skipped == 1 and again.messages_sent == 0


def test_held_notices_of_a_closed_alert_are_cancelled(tmp_path: Path) -> None:
    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log", fsync=False)
    d = Dispatcher(cfg, log, outbox_dir=str(tmp_path / "out"))
    for i in range(5):
        d.deliver(
            [finding(60 + i, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")], NOW + timedelta(seconds=i)
        )
    held = finding(70, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")
    assert d.deliver([held], NOW + timedelta(seconds=10)).deferred == 1  # the 6th within a minute waits
    resolve(log, held.finding_id, "首席代表", "已整改", NOW + timedelta(seconds=20))
    r = process_due(d, NOW + timedelta(seconds=80))
    assert r.cancelled == 1 and r.messages_sent == 0
    assert [a.result for a in log.attempts(alert_id=held.finding_id)] == ["deferred", "cancelled"]


# ------------------------------------------------------------------------------ log durability


def test_jsonl_log_survives_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log")
    deliver_findings([finding(81)], cfg, log, NOW, outbox_dir=str(tmp_path / "out"))
    with (tmp_path / "log" / "deliveries.jsonl").open("ab") as fh:
        fh.write(b'{"delivery_id":"torn","kind":"fin')  # the process died mid-write
    log2 = JsonlDeliveryLog(tmp_path / "log")
    r = deliver_findings([finding(81), finding(82)], cfg, log2, NOW, outbox_dir=str(tmp_path / "out"))
    assert r.already_delivered == 4 and r.messages_sent == 4
    log3 = JsonlDeliveryLog(tmp_path / "log")  # the torn line is skipped, everything after it read
    assert len([a for a in log3.attempts() if a.result == "sent"]) == 8


def test_outbox_rewrites_the_same_file_for_the_same_delivery(tmp_path: Path) -> None:
    from alerting.model import OutgoingMessage

    ch = OutboxChannel(tmp_path, "email")
    msg = OutgoingMessage(
        delivery_id="d1",
        kind="finding",
        channel="email",
        recipient_id="r",
        recipient_name="某办",
        address="r@example.gov.cn",
        subject="主题",
        body="正文",
        at=NOW,
    )
    ch.send(msg)
    ch.send(msg)
    assert [p.name for p in tmp_path.iterdir()] == ["r__d1.eml"]


# --------------------------------------------------------------------------------------- secrets


def test_secrets_come_from_env_or_file_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "secrets.env"
    f.write_text("# esup\nESUP_TEST_SECRET='from-file'\nexport OTHER=x\n", encoding="utf-8")
    monkeypatch.setenv("ESUP_SECRETS_FILE", str(f))
    monkeypatch.delenv("ESUP_TEST_SECRET", raising=False)
    s = get_secret("ESUP_TEST_SECRET")
    assert s is not None and s.reveal() == "from-file"
    assert "from-file" not in repr(s) and "from-file" not in str(s) and "from-file" not in f"{s}"
    monkeypatch.setenv("ESUP_TEST_SECRET", "from-env")
    assert get_secret("ESUP_TEST_SECRET") == Secret("from-env")
    with pytest.raises(SecretMissing):
        get_secret("ESUP_NO_SUCH_SECRET")


def test_a_send_interrupted_by_a_crash_is_finished_by_the_next_process(tmp_path: Path) -> None:
    """No replay needed: a notice left ``pending`` in the log is picked up by the next dispatcher's tick."""
    from alerting.model import DeliveryAttempt

    cfg = make_config()
    log = JsonlDeliveryLog(tmp_path / "log")
    yellow = [finding(90 + i, severity="yellow", rule="TIMEOUT.PROMISED_WARNING") for i in range(6)]
    deliver_findings(yellow[:5], cfg, log, NOW, outbox_dir=str(tmp_path / "out"))  # 5 e-mails to the chief
    # the 6th: its alert was stored and its send recorded as pending, then the process died
    f = yellow[5]
    log.put_alerts(
        [AlertState(alert_id=f.finding_id, finding=f, severity="yellow", opened_at=NOW, updated_at=NOW)]
    )
    did = delivery_id(f.finding_id, "chief", "email")
    log.record(
        DeliveryAttempt(
            delivery_id=did,
            kind="finding",
            recipient_id="chief",
            channel="email",
            result="pending",
            at=NOW,
            wall_at=NOW,
            attempt=1,
            alert_id=f.finding_id,
        )
    )
    d = Dispatcher(cfg, JsonlDeliveryLog(tmp_path / "log"), outbox_dir=str(tmp_path / "out"))
    # six notices within a minute: digest mode, so it waits one window rather than adding a 6th e-mail
    assert process_due(d, NOW + timedelta(seconds=2)).messages_sent == 0
    done = process_due(d, NOW + timedelta(seconds=62))
    assert done.messages_sent == 1 and log.already_delivered(did)
    assert (tmp_path / "out" / f"chief__{did}.eml").exists()


def test_deliveries_are_counted_in_the_process_metrics(tmp_path: Path) -> None:
    pytest.importorskip("esup.metrics")
    from prometheus_client import REGISTRY

    def sent() -> float:
        return (
            REGISTRY.get_sample_value("esup_alert_deliveries_total", {"channel": "email", "result": "sent"})
            or 0.0
        )

    before = sent()
    deliver_findings(
        [finding(95)], make_config(), JsonlDeliveryLog(tmp_path / "log"), NOW, outbox_dir=str(tmp_path / "o")
    )
    assert sent() - before == 2  # 纪检监察室 and 首席代表: messages, not bookkeeping rows
