"""SMS alerts through real local HTTP servers: the generic JSON webhook and the Aliyun SendSms adapter.

The Aliyun server side recomputes the signature from the received parameters with the secret it
knows, exactly as the gateway does, and refuses a mismatch; the tests check request shape, the
signature, retry on 5xx with backoff, give-up after N tries with the failure recorded, and that
no secret appears in the delivery log.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from alerting import JsonlDeliveryLog
from alerting.channels.sms_aliyun import canonical_query, percent_encode, sign, string_to_sign
from alerting.config import AlertingConfig
from alerting.dispatcher import Dispatcher
from alerting.model import delivery_id
from alerting.render import sms_units
from tests.test_alerting_support import NOW, PII_MESSAGE, HttpServer, Recorded, finding, leaks, make_config

KEY_ID = "LTAI-test-key"
SECRET = "test-secret/+=~*"  # characters that need percent-encoding in the signature


# -------------------------------------------------------------------------------------- webhook


def webhook_config(url: str, **extra: Any) -> AlertingConfig:
    return make_config(
        transport={
            "retry": {"attempts": 3, "initial": 0.01, "max": 0.05},
            "sms": {
                "kind": "webhook",
                "webhook": {"url": url, "token_env": "ESUP_TEST_SMS_TOKEN", "timeout": 5, **extra},
            },
        }
    )


def test_webhook_request_shape_and_retry_on_5xx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESUP_TEST_SMS_TOKEN", "tok-123")

    def respond(req: Recorded, n: int) -> tuple[int, Any]:
        return (503, {"error": "busy"}) if n <= 2 else (200, {"id": f"gw-{n}"})

    with HttpServer(respond) as srv:
        sleeps: list[float] = []
        log = JsonlDeliveryLog(tmp_path / "log")
        d = Dispatcher(webhook_config(srv.url), log, outbox_dir=str(tmp_path / "mail"), sleep=sleeps.append)
        f = finding(1, message=PII_MESSAGE)
        d.deliver([f], NOW)
    sms_requests = srv.requests
    # first message: 503, 503, then 200; the second recipient's message goes through at once
    assert len(sms_requests) == 4 and sleeps == [0.01, 0.02]
    req = sms_requests[0]
    assert req.method == "POST" and req.headers["authorization"] == "Bearer tok-123"
    body = req.json()
    assert set(body) == {"id", "to", "sign", "content", "text", "segments"}
    assert req.headers["idempotency-key"] == body["id"]
    assert body["sign"] == "政务监察" and body["text"] == "【政务监察】" + body["content"]
    assert body["segments"] == 1 and sms_units(body["text"])[0] <= 70
    assert leaks(body["text"]) == []
    to = {r.json()["to"]: r.json()["id"] for r in sms_requests}
    assert to == {
        "13900000101": delivery_id(f.finding_id, "jjjc", "sms"),
        "13900000301": delivery_id(f.finding_id, "chief", "sms"),
    }
    did = (
        delivery_id(f.finding_id, "jjjc", "sms")
        if sms_requests[0].json()["to"] == "13900000101"
        else delivery_id(f.finding_id, "chief", "sms")
    )
    assert [(a.result, a.attempt) for a in log.attempts(delivery_id=did)] == [
        ("pending", 1),
        ("error", 1),
        ("error", 2),
        ("sent", 3),
    ]
    assert log.attempts(delivery_id=did)[-1].provider_id == "gw-3"
    assert "tok-123" not in (tmp_path / "log" / "deliveries.jsonl").read_text(encoding="utf-8")


def test_webhook_gives_up_after_n_tries_and_records_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ESUP_TEST_SMS_TOKEN", "tok-123")
    with HttpServer(lambda req, n: (502, {"error": "bad gateway"})) as srv:
        log = JsonlDeliveryLog(tmp_path / "log")
        d = Dispatcher(webhook_config(srv.url), log, outbox_dir=str(tmp_path / "mail"), sleep=lambda s: None)
        f = finding(2, department="其他部门")  # red in 510105: only 纪检监察室
        report = d.deliver([f], NOW)
    assert len(srv.requests) == 3  # attempts: 3
    assert report.failed == 1 and report.failures[0].channel == "sms" and "502" in report.failures[0].error
    did = delivery_id(f.finding_id, "jjjc", "sms")
    results = [(a.result, a.attempt) for a in log.attempts(delivery_id=did)]
    assert results == [("pending", 1), ("error", 1), ("error", 2), ("error", 3), ("failed", 3)]
    last = log.attempts(delivery_id=did)[-1]
    assert last.failures == 1 and "retries exhausted" in (last.error or "")
    assert any("failed after 3 tries" in r.getMessage() for r in caplog.records)
    # not lost: a later tick tries again once redeliver_after has passed
    assert [a.delivery_id for a in log.unfinished()] == [did]


def test_webhook_4xx_is_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESUP_TEST_SMS_TOKEN", "tok-123")
    with HttpServer(lambda req, n: (400, {"error": "invalid number"})) as srv:
        report = Dispatcher(
            webhook_config(srv.url), JsonlDeliveryLog(tmp_path / "log"), outbox_dir=str(tmp_path / "mail")
        ).deliver([finding(3, department="其他部门")], NOW)
    assert len(srv.requests) == 1 and report.failed == 1 and "HTTP 400" in report.failures[0].error


# --------------------------------------------------------------------------------------- aliyun


def test_signature_matches_the_documented_example() -> None:
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert string_to_sign("GET", params).startswith("GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26")
    assert "SignName%3D%25E9%2598%25BF" in string_to_sign("GET", params)
    assert sign("testSecret", "GET", params) == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert percent_encode("a b*c~d/") == "a%20b%2Ac~d%2F"


class FakeAliyunGateway:
    """The server side of SendSms: parse, recompute the signature with the known secret, check."""

    def __init__(self, secret: str, script: list[tuple[int, dict[str, Any]]] | None = None) -> None:
        self.secret = secret
        self.script = list(script or [])
        self.seen: list[dict[str, str]] = []

    def params_of(self, req: Recorded) -> dict[str, str]:
        raw = req.body.decode() if req.method == "POST" else urlsplit(req.path).query
        return dict(parse_qsl(raw, keep_blank_values=True, strict_parsing=True))

    def __call__(self, req: Recorded, n: int) -> tuple[int, Any]:
        p = self.params_of(req)
        self.seen.append(p)
        given = p.pop("Signature")
        if sign(self.secret, req.method, p) != given:
            return 400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
        if self.script:
            return self.script.pop(0)
        return 200, {"Code": "OK", "Message": "OK", "BizId": f"biz-{n}", "RequestId": f"req-{n}"}


def aliyun_config(url: str, *, method: str = "POST") -> AlertingConfig:
    return make_config(
        transport={
            "retry": {"attempts": 3, "initial": 0.01, "max": 0.05},
            "sms": {
                "kind": "aliyun",
                "aliyun": {
                    "endpoint": url,
                    "template_code": "SMS_460000001",
                    "method": method,
                    "timeout": 5,
                    "access_key_id_env": "ESUP_TEST_AK_ID",
                    "access_key_secret_env": "ESUP_TEST_AK_SECRET",
                    "template_param": {"case": "{{ case_id }}", "content": "{{ content }}"},
                },
            },
        }
    )


@pytest.fixture
def aliyun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESUP_TEST_AK_ID", KEY_ID)
    monkeypatch.setenv("ESUP_TEST_AK_SECRET", SECRET)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_aliyun_request_is_signed_and_shaped_like_sendsms(
    tmp_path: Path, aliyun_env: None, method: str
) -> None:
    gw = FakeAliyunGateway(SECRET)
    with HttpServer(gw) as srv:
        log = JsonlDeliveryLog(tmp_path / "log")
        f = finding(4, department="其他部门", message=PII_MESSAGE)
        report = Dispatcher(
            aliyun_config(srv.url, method=method), log, outbox_dir=str(tmp_path / "mail")
        ).deliver([f], NOW)
    assert report.sent == {"jjjc": {"email": 1, "sms": 1}} and report.failed == 0
    [p] = gw.seen
    assert srv.requests[0].method == method
    assert p["Action"] == "SendSms" and p["Version"] == "2017-05-25" and p["Format"] == "JSON"
    assert (
        p["SignatureMethod"] == "HMAC-SHA1"
        and p["SignatureVersion"] == "1.0"
        and p["RegionId"] == "cn-hangzhou"
    )
    assert p["AccessKeyId"] == KEY_ID and p["PhoneNumbers"] == "13900000101"
    assert p["SignName"] == "政务监察" and p["TemplateCode"] == "SMS_460000001"
    assert p["OutId"] == delivery_id(f.finding_id, "jjjc", "sms")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["Timestamp"])
    ts = datetime.strptime(p["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 120  # the gateway rejects stale timestamps
    tp = json.loads(p["TemplateParam"])
    assert tp["case"] == "QY-2026-000004" and leaks(tp["content"]) == [] and "申请人" not in p["SignName"]
    sent = log.attempts(delivery_id=p["OutId"])[-1]
    assert sent.result == "sent" and sent.provider_id == "biz-1"
    logged = (tmp_path / "log" / "deliveries.jsonl").read_text(encoding="utf-8")
    assert SECRET not in logged and "13900000101" not in logged


def test_aliyun_retries_5xx_and_throttling_with_a_fresh_nonce(tmp_path: Path, aliyun_env: None) -> None:
    gw = FakeAliyunGateway(
        SECRET,
        [
            (500, {"Code": "InternalError", "Message": "x"}),
            (200, {"Code": "Throttling.User", "Message": "Request was denied due to user flow control."}),
        ],
    )
    with HttpServer(gw) as srv:
        sleeps: list[float] = []
        log = JsonlDeliveryLog(tmp_path / "log")
        report = Dispatcher(
            aliyun_config(srv.url), log, outbox_dir=str(tmp_path / "mail"), sleep=sleeps.append
        ).deliver([finding(5, department="其他部门")], NOW)
    assert report.failed == 0 and report.sent["jjjc"]["sms"] == 1
    assert len(gw.seen) == 3 and sleeps == [0.01, 0.02]
    assert len({p["SignatureNonce"] for p in gw.seen}) == 3  # a nonce is never reused


def test_aliyun_gives_up_after_n_server_errors(tmp_path: Path, aliyun_env: None) -> None:
    with HttpServer(lambda req, n: (503, {"Code": "ServiceUnavailable", "Message": "down"})) as srv:
        log = JsonlDeliveryLog(tmp_path / "log")
        f = finding(6, department="其他部门")
        report = Dispatcher(
            aliyun_config(srv.url), log, outbox_dir=str(tmp_path / "mail"), sleep=lambda s: None
        ).deliver([f], NOW)
    assert len(srv.requests) == 3 and report.failed == 1
    last = log.attempts(delivery_id=delivery_id(f.finding_id, "jjjc", "sms"))[-1]
    assert last.result == "failed" and last.attempt == 3 and "503" in (last.error or "")


def test_aliyun_wrong_secret_or_bad_number_is_permanent(tmp_path: Path, aliyun_env: None) -> None:
    with HttpServer(FakeAliyunGateway("another-secret")) as srv:
        r = Dispatcher(
            aliyun_config(srv.url), JsonlDeliveryLog(tmp_path / "a"), outbox_dir=str(tmp_path / "mail")
        ).deliver([finding(7, department="其他部门")], NOW)
    assert len(srv.requests) == 1 and r.failed == 1 and "SignatureDoesNotMatch" in r.failures[0].error
    assert SECRET not in r.failures[0].error
    bad_number = FakeAliyunGateway(
        SECRET, [(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"})]
    )
    with HttpServer(bad_number) as srv:
        r = Dispatcher(
            aliyun_config(srv.url), JsonlDeliveryLog(tmp_path / "b"), outbox_dir=str(tmp_path / "mail")
        ).deliver([finding(8, department="其他部门")], NOW)
    assert len(srv.requests) == 1 and r.failed == 1 and "isv.MOBILE_NUMBER_ILLEGAL" in r.failures[0].error


def test_aliyun_without_credentials_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESUP_TEST_AK_ID", raising=False)
    monkeypatch.delenv("ESUP_TEST_AK_SECRET", raising=False)
    monkeypatch.delenv("ESUP_SECRETS_FILE", raising=False)
    with HttpServer(FakeAliyunGateway(SECRET)) as srv:
        r = Dispatcher(
            aliyun_config(srv.url), JsonlDeliveryLog(tmp_path / "a"), outbox_dir=str(tmp_path / "mail")
        ).deliver([finding(9, department="其他部门")], NOW)
    assert not srv.requests and r.failed == 1 and "ESUP_TEST_AK_ID is not set" in r.failures[0].error


def test_canonical_query_sorts_and_encodes() -> None:
    assert canonical_query({"b": "2 3", "a": "中", "Signature": "x"}) == "a=%E4%B8%AD&b=2%203"
