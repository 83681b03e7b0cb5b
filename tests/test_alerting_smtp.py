"""E-mail alerts through a real SMTP server (aiosmtpd on loopback), read back and checked.

Covers: Chinese subject encoding, UTF-8 body, masking, Message-ID = delivery id, AUTH with the
password from the environment, STARTTLS with certificate verification, 4xx retried with backoff,
5xx given up and recorded, and a 10,000-finding burst arriving as one digest per recipient.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerting import JsonlDeliveryLog, deliver_findings
from alerting.config import AlertingConfig
from alerting.dispatcher import Dispatcher
from alerting.model import delivery_id
from tests.test_alerting_support import NOW, PII_MESSAGE, finding, free_port, leaks, make_config


class Mailbox:
    """An aiosmtpd handler that keeps every message; ``replies`` lets a test script 4xx/5xx answers."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.replies: list[str] = []
        self.data_commands = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(envelope)
        return "250 OK queued"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.messages]  # type: ignore[misc]


def _start(handler: Mailbox, **kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    c = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    c.start()
    return c, port


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    c, port = _start(box)
    try:
        yield box, port
    finally:
        c.stop()


def smtp_config(port: int, **smtp: Any) -> AlertingConfig:
    return make_config(
        transport={
            "retry": {"attempts": 3, "initial": 0.01, "max": 0.05},
            "email": {
                "kind": "smtp",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "timeout": 5,
                    "sender": "esup@jc.example.gov.cn",
                    **smtp,
                },
            },
        }
    )


def test_alert_email_arrives_with_chinese_subject_masked_body_and_stable_message_id(
    mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    box, port = mailbox
    cfg = smtp_config(port)
    f = finding(1, message=PII_MESSAGE)
    log = JsonlDeliveryLog(tmp_path / "log")
    report = deliver_findings([f], cfg, log, NOW, outbox_dir=str(tmp_path / "sms"))
    assert report.sent["jjjc"]["email"] == 1 and report.sent["chief"]["email"] == 1
    assert len(box.messages) == 2
    by_rcpt = {tuple(e.rcpt_tos): e for e in box.messages}
    env = by_rcpt[("jjjc@qy.example.gov.cn",)]
    assert env.mail_from == "esup@jc.example.gov.cn"
    raw = env.content
    assert raw.isascii() and b"Subject: =?utf-8?" in raw  # RFC 2047 encoded-words
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "【电子监察·红牌】超承诺时限：办件 QY-2026-000001（市场监督管理局）"
    assert msg["From"].addresses[0].display_name == "政务服务电子监察系统"
    assert msg["To"].addresses[0].display_name == "青羊区纪检监察室"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "base64"
    did = delivery_id(f.finding_id, "jjjc", "email")
    assert msg["Message-ID"] == f"<{did}@jc.example.gov.cn>" and msg["X-Esup-Alert-Id"] == f.finding_id
    body = msg.get_content()
    assert "办件编号：QY-2026-000001" in body and "部门：市场监督管理局" in body and "窗口：A12" in body
    assert "时限截止：2026-11-23 09:00" in body and "第四十二条" in body
    assert "http://grafana.test/d/esup-case?var-case=QY-2026-000001" in body
    assert "申请人：张**" in body and "110101********1234" in body and "138****5678" in body
    assert leaks(body) == [] and leaks(msg["Subject"]) == []
    # the log knows the SMTP Message-ID of the delivery
    sent = [a for a in log.attempts(delivery_id=did) if a.result == "sent"]
    assert sent[0].provider_id == msg["Message-ID"] and sent[0].address == "j***@qy.example.gov.cn"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_auth_uses_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Mailbox()
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        seen.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == "s3cret-口令".encode(), handled=False)

    c, port = _start(box, authenticator=authenticator, auth_required=True, auth_require_tls=False)
    try:
        cfg = smtp_config(port, username="esup", password_env="ESUP_TEST_SMTP_PASSWORD")
        monkeypatch.setenv("ESUP_TEST_SMTP_PASSWORD", "s3cret-口令")
        ok = deliver_findings(
            [finding(2, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")],
            cfg,
            JsonlDeliveryLog(tmp_path / "ok"),
            NOW,
        )
        assert ok.messages_sent == 1 and len(box.messages) == 1 and seen[-1][0] == b"esup"
        monkeypatch.setenv("ESUP_TEST_SMTP_PASSWORD", "wrong-password")
        log = JsonlDeliveryLog(tmp_path / "bad")
        bad = deliver_findings(
            [finding(3, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")], cfg, log, NOW
        )
        assert bad.failed == 1 and bad.messages_sent == 0
        [failed] = [a for a in log.attempts() if a.result == "failed" and a.kind != "digest"]
        assert failed.attempt == 1 and "auth refused (535)" in (failed.error or "")  # permanent: no retry
        text = (tmp_path / "bad" / "deliveries.jsonl").read_text(encoding="utf-8")
        assert "wrong-password" not in text and "s3cret" not in text
    finally:
        c.stop()


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate"
)
def test_starttls_with_a_verified_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    box = Mailbox()
    c, port = _start(box, tls_context=server_ctx, require_starttls=True)
    try:
        untrusted = deliver_findings(
            [finding(4)],
            smtp_config(port, security="starttls"),
            JsonlDeliveryLog(tmp_path / "l1"),
            NOW,
            outbox_dir=str(tmp_path / "sms"),
        )
        assert untrusted.sent.get("jjjc", {}).get("email") is None and untrusted.failed == 2
        assert "certificate" in untrusted.failures[0].error
        trusted = deliver_findings(
            [finding(4)],
            smtp_config(port, security="starttls", ca_file=str(cert)),
            JsonlDeliveryLog(tmp_path / "l2"),
            NOW,
            outbox_dir=str(tmp_path / "sms"),
        )
        assert trusted.sent["jjjc"]["email"] == 1 and len(box.messages) == 2
    finally:
        c.stop()


def test_temporary_smtp_failure_is_retried_with_backoff(mailbox: tuple[Mailbox, int], tmp_path: Path) -> None:
    box, port = mailbox
    box.replies = ["451 4.3.0 try again later", "421 4.4.2 busy"]
    sleeps: list[float] = []
    log = JsonlDeliveryLog(tmp_path / "log")
    d = Dispatcher(smtp_config(port), log, sleep=sleeps.append)
    f = finding(5, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")
    report = d.deliver([f], NOW)
    assert report.messages_sent == 1 and len(box.messages) == 1 and box.data_commands == 3
    assert sleeps == [0.01, 0.02]  # exponential backoff
    did = delivery_id(f.finding_id, "chief", "email")
    assert [(a.result, a.attempt) for a in log.attempts(delivery_id=did)] == [
        ("pending", 1),
        ("error", 1),
        ("error", 2),
        ("sent", 3),
    ]


def test_permanent_smtp_failure_is_recorded_not_retried(mailbox: tuple[Mailbox, int], tmp_path: Path) -> None:
    box, port = mailbox
    box.replies = ["550 5.1.1 mailbox unavailable"]
    log = JsonlDeliveryLog(tmp_path / "log")
    f = finding(6, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")
    report = deliver_findings([f], smtp_config(port), log, NOW)
    assert report.failed == 1 and box.data_commands == 1 and not box.messages
    did = delivery_id(f.finding_id, "chief", "email")
    last = log.attempts(delivery_id=did)[-1]
    assert last.result == "failed" and last.failures == 1 and "550" in (last.error or "")
    assert report.failures[0].recipient_id == "chief"


def test_burst_of_ten_thousand_arrives_as_one_digest_per_recipient(
    mailbox: tuple[Mailbox, int], tmp_path: Path
) -> None:
    box, port = mailbox
    findings = [finding(i, fired_at=NOW + timedelta(milliseconds=5 * i)) for i in range(10_000)]
    report = deliver_findings(
        findings,
        smtp_config(port),
        JsonlDeliveryLog(tmp_path / "log", fsync=False),
        NOW + timedelta(minutes=1),
        outbox_dir=str(tmp_path / "sms"),
    )
    assert report.digests_sent == 4 and report.messages_sent == 4
    assert len(box.messages) == 2  # 纪检监察室 and 首席代表; the two SMS digests went to the SMS outbox
    for msg in box.parsed():
        assert msg["Subject"] == "【电子监察·汇总】新增告警 10000 条（红牌 10000，黄牌 0）"
        body = msg.get_content()
        assert "超承诺时限（TIMEOUT.PROMISED_OVERDUE）：10000 条" in body and "另有 9990 件" in body
