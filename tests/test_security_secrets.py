"""Secrets (密钥): the SMTP password, the SMS gateway key, the Grafana token come from the environment or
the secrets file and are never logged, printed, or carried in an exception; and nothing in the
repository looks like a real secret. (The ClickHouse password, against the 18.16 server:
``tests/test_security_clickhouse.py``.)

Each secret is made up at run time, so it cannot be in the repository either. Every code path that uses
one runs here against a real server — aiosmtpd with AUTH, an Aliyun SendSms stand-in that checks the
signature with the secret, a Grafana stand-in that checks the bearer token — with every logger at DEBUG
captured, stdout/stderr captured, and the text and repr of every error kept.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from typer.testing import CliRunner

from alerting import JsonlDeliveryLog
from alerting.dispatcher import Dispatcher
from tests.test_alerting_sms import FakeAliyunGateway, aliyun_config
from tests.test_alerting_support import NOW, HttpServer, finding, free_port, make_config
from tests.test_dashboards_push import FakeGrafana, grafana  # noqa: F401 - fixture
from tests.test_security_support import CapturedLogs, debug_logs

SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(16)
SMS_SECRET = "ak-" + secrets.token_urlsafe(22)
SMS_KEY_ID = "LTAI" + secrets.token_hex(8)
GRAFANA_TOKEN = "glsa_" + secrets.token_hex(16) + "_" + secrets.token_hex(4)
ALL = (SMTP_PASSWORD, SMS_SECRET, GRAFANA_TOKEN)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CapturedLogs]:
    secrets_file = tmp_path / "esup.secrets"
    secrets_file.write_text(f"# service secrets\nESUP_SMTP_PASSWORD={SMTP_PASSWORD}\nGRAFANA_TOKEN='{GRAFANA_TOKEN}'\n",
                            encoding="utf-8")
    monkeypatch.setenv("ESUP_SECRETS_FILE", str(secrets_file))
    monkeypatch.delenv("ESUP_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.setenv("ESUP_TEST_AK_ID", SMS_KEY_ID)
    monkeypatch.setenv("ESUP_TEST_AK_SECRET", SMS_SECRET)
    with debug_logs() as captured:
        yield captured


def _errors(report: Any) -> list[str]:
    return [f"{f.error} {f!r}" for f in report.failures]


def _assert_clean(texts: list[str]) -> None:
    leaks = [(secret[:8] + "…", t[:300]) for t in texts for secret in ALL if secret in t]
    assert not leaks, leaks


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_password_from_the_secrets_file_is_used_and_never_shown(
        seen: CapturedLogs, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    logins: list[bytes] = []

    class Box:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append(auth_data.password)
        return AuthResult(success=auth_data.password == SMTP_PASSWORD.encode(), handled=False)

    port = free_port()
    controller = Controller(Box(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    texts: list[str] = []
    try:
        smtp = {"host": "127.0.0.1", "port": port, "timeout": 5, "sender": "esup@jc.example.gov.cn",
                "username": "esup", "password_env": "ESUP_SMTP_PASSWORD"}
        cfg = make_config(transport={"retry": {"attempts": 2, "initial": 0.01, "max": 0.02},
                                     "email": {"kind": "smtp", "smtp": smtp}})
        d = Dispatcher(cfg, JsonlDeliveryLog(tmp_path / "ok"))
        ok = d.deliver([finding(1, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")], NOW)
        assert ok.messages_sent == 1 and logins == [SMTP_PASSWORD.encode()]
        texts += [repr(d.senders), repr(cfg), str(d.senders["email"].__dict__)]
        d.close()
        wrong = tmp_path / "wrong.secrets"
        wrong.write_text("ESUP_SMTP_PASSWORD=not-the-" + SMTP_PASSWORD + "\n", encoding="utf-8")
        import os

        os.environ["ESUP_SECRETS_FILE"] = str(wrong)  # restored by monkeypatch at teardown
        bad = Dispatcher(cfg, JsonlDeliveryLog(tmp_path / "bad")).deliver(
            [finding(2, severity="yellow", rule="TIMEOUT.PROMISED_WARNING")], NOW)
        assert bad.failed == 1 and "auth refused" in bad.failures[0].error
        texts += _errors(bad)
        texts += [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*.jsonl")]
    finally:
        controller.stop()
    captured = capfd.readouterr()
    _assert_clean([*texts, *seen.text, captured.out, captured.err])


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_sms_gateway_key_signs_requests_and_is_never_shown(
        seen: CapturedLogs, tmp_path: Path, capfd: pytest.CaptureFixture[str], method: str) -> None:
    texts: list[str] = []
    gateway = FakeAliyunGateway(SMS_SECRET)
    with HttpServer(gateway) as srv:
        d = Dispatcher(aliyun_config(srv.url, method=method), JsonlDeliveryLog(tmp_path / "log"),
                       outbox_dir=str(tmp_path / "mail"))
        ok = d.deliver([finding(3)], NOW)
        assert ok.failed == 0 and ok.sent["jjjc"]["sms"] == 1  # the stand-in checked the signature
        texts += [repr(d.senders), str(d.senders["sms"].__dict__)]
        d.close()
    impostor = FakeAliyunGateway("another-secret")  # the gateway knows another secret: refused, permanently
    with HttpServer(impostor) as srv:
        bad = Dispatcher(aliyun_config(srv.url, method=method), JsonlDeliveryLog(tmp_path / "bad"),
                         outbox_dir=str(tmp_path / "mail")).deliver([finding(4)], NOW)
        assert bad.failed >= 1 and any("SignatureDoesNotMatch" in e for e in _errors(bad))
        texts += _errors(bad)
    texts += [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*.jsonl")]
    captured = capfd.readouterr()
    _assert_clean([*texts, *seen.text, captured.out, captured.err])
    if method == "POST":  # the key id travels in the body only; GET puts it in the URL, which httpx logs
        assert not [t for t in seen.text if SMS_KEY_ID in t]


def test_grafana_token_from_the_secrets_file_and_never_shown(
        seen: CapturedLogs, grafana: FakeGrafana, capfd: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from esup.cli import app

    grafana.token = GRAFANA_TOKEN
    runner = CliRunner()
    ok = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--no-datasources"])
    assert ok.exit_code == 0, ok.output
    assert all(h.get("Authorization") == f"Bearer {GRAFANA_TOKEN}" for _m, _p, h, _b in grafana.requests)
    grafana.token = "rotated-" + GRAFANA_TOKEN  # the server no longer accepts it
    refused = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--no-datasources"])
    assert refused.exit_code == 1 and "401" in refused.output
    on_command_line = runner.invoke(app, ["dashboards", "push", "--url", grafana.url, "--no-datasources",
                                          "--token", GRAFANA_TOKEN])
    assert "GRAFANA_TOKEN" in on_command_line.output  # works, with advice to use the environment instead
    captured = capfd.readouterr()
    texts = [ok.output, refused.output, on_command_line.output, repr(refused.exception),
             repr(on_command_line.exception)]
    _assert_clean([*texts, *seen.text, captured.out, captured.err])


# --------------------------------------------------------------------------------- the repository

_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])"),
    "Aliyun AccessKey ID": re.compile(r"(?<![A-Za-z0-9])LTAI[0-9A-Za-z]{12,28}(?![A-Za-z0-9])"),
    "Grafana token": re.compile(r"glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}|glc_[A-Za-z0-9+/]{32,}|eyJrIjoi[A-Za-z0-9+/=]{20,}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,}"),
    "Slack token": re.compile(r"xox[baprs]-[0-9A-Za-z-]{10,}"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"{}$<>*]{4,})@"),
    "secret in configuration": re.compile(
        r"(?im)^\s*[\w.-]*(?:password|passwd|secret|token|api_?key|access_?key)[\w.-]*\s*[:=]\s*['\"]?([^\s'\"#]{6,})"),
}
_CONFIG_SUFFIXES = {".yaml", ".yml", ".env", ".ini", ".toml", ".cfg", ".conf", ".properties", ".json", ".xml", ".secrets"}
# References to where a secret lives (an environment variable, a compose interpolation, a template slot)
# and the documentation's obvious stand-ins.
_PLACEHOLDER = re.compile(r"^(?:\$\{.*|\$[A-Z_][A-Z0-9_]*|[A-Z][A-Z0-9_]*|REPLACE_WITH_\w+|<[^>]*>|x+|\*+|\.\.\.|…"
                          r"|pass|password|PASSWORD|secret|token|密码.*|.*change-?me.*)$")


def _repository_files() -> list[Path]:
    top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                              check=True).stdout.strip())
    names = subprocess.run(["git", "ls-files", "-z"], cwd=top, capture_output=True, check=True).stdout.split(b"\0")
    return [top / n.decode() for n in names if n]


def test_nothing_in_the_repository_looks_like_a_real_secret() -> None:
    found = []
    files = _repository_files()
    assert len(files) > 100
    for path in files:
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary
        text = data.decode("utf-8", "replace")
        for kind, rx in _PATTERNS.items():
            if kind == "secret in configuration" and path.suffix not in _CONFIG_SUFFIXES:
                continue
            for m in rx.finditer(text):
                value = m.group(1) if rx.groups else m.group(0)
                if rx.groups and _PLACEHOLDER.match(value):
                    continue  # a reference to where the secret lives, not the secret
                found.append(f"{path.name}: {kind}: {m.group(0)[:60]}")
    assert not found, found


def test_the_scanner_finds_what_it_looks_for() -> None:
    """Each pattern against a made-up secret of its kind (assembled here, so the file itself stays clean)."""
    samples = {
        "private key": "-----BEGIN " + "RSA PRIVATE KEY-----",
        "AWS access key": "AKIA" + secrets.token_hex(8).upper(),
        "Aliyun AccessKey ID": SMS_KEY_ID,
        "Grafana token": GRAFANA_TOKEN,
        "GitHub token": "ghp_" + secrets.token_hex(18),
        "password in a URL": "clickhouse://esup_writer:" + secrets.token_hex(6) + "@db:9000/esup",
        "secret in configuration": "  password: " + secrets.token_hex(6),
    }
    for kind, sample in samples.items():
        m = _PATTERNS[kind].search(sample)
        assert m is not None, kind
        assert not (_PATTERNS[kind].groups and _PLACEHOLDER.match(m.group(1))), kind
    for reference in ("password_env: ESUP_SMTP_PASSWORD", "token: ${GRAFANA_TOKEN}", "password: REPLACE_WITH_SHA256"):
        m = _PATTERNS["secret in configuration"].search(reference)
        assert m is not None and _PLACEHOLDER.match(m.group(1)), reference
