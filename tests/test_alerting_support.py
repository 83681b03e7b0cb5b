"""Shared helpers for the alerting tests: a small routing configuration, findings, real local servers.

Kept in a ``test_alerting*`` module (imported by the others) so the alerting suite needs nothing
from conftest. The servers are real: aiosmtpd on loopback and ``http.server`` in a thread.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alerting.config import AlertingConfig, parse_alerting_config
from rules.findings import Finding, finding_id
from schemas.events import CHINA_TZ

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)  # a Monday

# Personal data a careless upstream might put into a finding's text: every message must mask it.
PII_MESSAGE = (
    "承诺 10 个工作日办结，已超期 1 个工作日。申请人：张三丰，身份证号 110101199003071234，"
    "联系电话 13812345678，代理人 欧阳娜娜 +86 139-1234-5678。"
)

# Independent of alerting.masking on purpose: any 18-char ID shape or 11-digit mobile is a leak.
LEAK = re.compile(
    r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])|(?<![0-9])1[3-9][0-9][- ]?[0-9]{4}[- ]?[0-9]{4}(?![0-9])"
)
NAMES = ("张三丰", "欧阳娜娜")


def leaks(text: str) -> list[str]:
    return LEAK.findall(text) + [n for n in NAMES if n in text]


def config_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "test-1",
        "dashboard_url": "http://grafana.test",
        "recipients": {
            "jjjc": {"name": "青羊区纪检监察室", "email": "jjjc@qy.example.gov.cn", "mobile": "13900000101"},
            "chief": {
                "name": "市场监督管理局首席代表",
                "email": "chief@qy.example.gov.cn",
                "mobile": "13900000301",
            },
            "city": {"name": "市纪检监察组", "email": "city@cd.example.gov.cn", "mobile": "13900000001"},
            "duty": {"name": "中心值班长", "email": "duty@cd.example.gov.cn", "mobile": "13900000009"},
            "mailonly": {"name": "效能办", "email": "xn@cd.example.gov.cn"},
        },
        "routes": [
            {
                "name": "red-jjjc",
                "match": {"region": ["510105"], "severity": ["red"]},
                "to": ["jjjc"],
                "channels": {"red": ["email", "sms"]},
                "escalate_to": ["city"],
            },
            {
                "name": "market-chief",
                "match": {"department": ["市场监督管理局"]},
                "to": ["chief"],
                "channels": {"yellow": ["email"], "red": ["email", "sms"]},
                "escalate_to": ["city"],
            },
            {
                "name": "quality",
                "match": {"rule": ["QUALITY.*"]},
                "to": ["mailonly"],
                "channels": {"yellow": ["email", "sms"], "red": ["email"]},
            },
        ],
        "fallback": {
            "to": ["duty"],
            "channels": {"yellow": ["email"], "red": ["email", "sms"]},
            "escalate_to": ["city"],
        },
        "digest": {"window": "60s", "threshold": 5, "max_cases": 10},
        "lifecycle": {"red_ack_within": "2h", "yellow_clear_within": "4h"},
        "sms": {"sign": "政务监察", "max_segments": 1},
        "transport": {
            "retry": {
                "attempts": 3,
                "initial": 0.01,
                "max": 0.05,
                "redeliver_after": "10m",
                "redeliver_max": 3,
            }
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def make_config(**overrides: Any) -> AlertingConfig:
    return parse_alerting_config(config_dict(**overrides), "<test>")


def finding(
    i: int,
    *,
    rule: str = "TIMEOUT.PROMISED_OVERDUE",
    severity: str = "red",
    department: str | None = "市场监督管理局",
    region: str | None = "510105",
    fired_at: datetime = NOW,
    message: str = "承诺 10 个工作日办结，已超期 1 个工作日。",
) -> Finding:
    case_id = f"QY-2026-{i:06d}"
    return Finding(
        finding_id=finding_id(case_id, rule, rule),
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        case_id=case_id,
        item_code="SC-0101",
        department=department,
        window="A12",
        region_code=region,
        officer_id="officer-7",
        fired_at=fired_at,
        message=message,
        basis="《中华人民共和国行政许可法》第四十二条；事项目录 2026.1 承诺时限 10 个工作日",
        catalog_version="2026.1",
        occurrence=rule,
        deadline=fired_at - timedelta(hours=1),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorded:
    """One HTTP request the test server received."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class HttpServer:
    """A real HTTP server on loopback; ``respond`` decides each answer from the recorded request."""

    def __init__(self, respond: Callable[[Recorded, int], tuple[int, Any]]) -> None:
        self.requests: list[Recorded] = []
        self.respond = respond
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                req = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(n),
                )
                outer.requests.append(req)
                status, body = outer.respond(req, len(outer.requests))
                data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def iter_files(directory: Any, suffix: str) -> Iterator[Any]:
    yield from sorted(p for p in directory.iterdir() if p.name.endswith(suffix))
