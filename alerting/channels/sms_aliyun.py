"""SMS through Alibaba Cloud Short Message Service, ``SendSms`` (API version 2017-05-25).

Implemented from the documented RPC request format rather than the vendor SDK, which would pull in
a large dependency for one call. The request carries the common parameters (``AccessKeyId``,
``Action``, ``Format``, ``RegionId``, ``SignatureMethod=HMAC-SHA1``, ``SignatureNonce``,
``SignatureVersion=1.0``, ``Timestamp`` in UTC, ``Version``) and the business ones
(``PhoneNumbers``, ``SignName``, ``TemplateCode``, ``TemplateParam`` as JSON, ``OutId`` = our
delivery id). Signature version 1.0:

1. percent-encode every name and value as RFC 3986 (UTF-8; space → %20, ``*`` → %2A, ``~`` kept);
2. sort by name and join ``name=value`` with ``&`` — the canonicalized query string;
3. StringToSign = ``METHOD & percentEncode("/") & percentEncode(canonicalized query)``;
4. Signature = Base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign)).

Configuration (``transport.sms.aliyun`` in ``config/routing.yaml``): ``endpoint`` (default
https://dysmsapi.aliyuncs.com/; tests point it at a local server), ``region_id``, ``sign_name``
(the approved 签名, default ``sms.sign``), ``template_code`` (the approved template, SMS_…),
``template_param`` (variable → Jinja expression, default ``{"content": "{{ content }}"}``),
``method`` (POST form body, or GET query), ``timeout``. The AccessKeyId is read from the environment
variable named by ``access_key_id_env`` (default ALIBABA_CLOUD_ACCESS_KEY_ID) and the AccessKeySecret
from ``access_key_secret_env`` (default ALIBABA_CLOUD_ACCESS_KEY_SECRET) — environment or secrets
file only, never the config file, never logged.

Responses: ``{"Code": "OK", "BizId": …}`` is success; throttling and system errors are retried;
other codes (e.g. ``isv.MOBILE_NUMBER_ILLEGAL``, ``SignatureDoesNotMatch``) are permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from alerting.channels import PermanentError, TransientError
from alerting.config import AliyunTransport
from alerting.model import Channel, OutgoingMessage, SendResult
from alerting.secrets import Secret, SecretMissing, get_secret

API_VERSION = "2017-05-25"

RETRYABLE_CODES = frozenset(
    {
        "isp.SYSTEM_ERROR",
        "isp.GATEWAY_ERROR",
        "isv.BUSINESS_LIMIT_CONTROL",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "ServiceUnavailable",
        "InternalError",
        "SignatureNonceUsed",
    }
)


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding as the signature requires: only A–Z a–z 0–9 - _ . ~ stay as they are."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(access_key_secret: str, method: str, params: Mapping[str, str]) -> str:
    """Base64(HMAC-SHA1(secret + "&", StringToSign)) — the value of the ``Signature`` parameter."""
    digest = hmac.new(
        (access_key_secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


class AliyunSmsChannel:
    channel: Channel = "sms"

    def __init__(
        self,
        cfg: AliyunTransport,
        *,
        default_sign: str | None = None,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] | None = None,
        access_key_id: str | None = None,
        access_key_secret: Secret | None = None,
    ) -> None:
        self.cfg = cfg
        self.sign_name = cfg.sign_name or default_sign or ""
        self._client = client or httpx.Client(timeout=cfg.timeout)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._nonce = nonce or (lambda: str(uuid.uuid4()))
        self._key_id = access_key_id
        self._secret = access_key_secret

    def _credentials(self) -> tuple[str, Secret]:
        try:
            key_id = self._key_id or get_secret(self.cfg.access_key_id_env).reveal()  # type: ignore[union-attr]
            secret = self._secret or get_secret(self.cfg.access_key_secret_env)
        except SecretMissing as exc:
            raise PermanentError(f"aliyun sms: {exc}") from None
        assert secret is not None
        return key_id, secret

    def params(self, msg: OutgoingMessage, access_key_id: str) -> dict[str, str]:
        """Every request parameter except ``Signature``; a fresh nonce and timestamp per try."""
        template_param = msg.sms_params or {"content": msg.sms_content or msg.body}
        return {
            "AccessKeyId": access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.cfg.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "Timestamp": self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            "PhoneNumbers": "".join(ch for ch in msg.address if ch.isdigit())[-11:],
            "SignName": self.sign_name,
            "TemplateCode": self.cfg.template_code,
            "TemplateParam": json.dumps(template_param, ensure_ascii=False, separators=(",", ":")),
            "OutId": msg.delivery_id,
        }

    def send(self, msg: OutgoingMessage) -> SendResult:
        key_id, secret = self._credentials()
        params = self.params(msg, key_id)
        method = self.cfg.method
        signature = sign(secret.reveal(), method, params)
        query = f"Signature={percent_encode(signature)}&{canonical_query(params)}"
        try:
            if method == "GET":
                sep = "&" if "?" in self.cfg.endpoint else "?"
                resp = self._client.get(f"{self.cfg.endpoint}{sep}{query}")
            else:
                resp = self._client.post(
                    self.cfg.endpoint,
                    content=query.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                )
        except httpx.TimeoutException as exc:
            raise TransientError(f"aliyun sms timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise TransientError(f"aliyun sms {type(exc).__name__}: {exc}"[:300]) from None
        code, message, biz_id = "", "", None
        try:
            body = resp.json()
            if isinstance(body, dict):
                code = str(body.get("Code", ""))
                message = str(body.get("Message", ""))
                biz_id = body.get("BizId")
        except ValueError:
            pass
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"aliyun sms HTTP {resp.status_code} {code}".strip())
        if code == "OK" and resp.status_code == 200:
            return SendResult(provider_id=str(biz_id) if biz_id else None)
        if code in RETRYABLE_CODES:
            raise TransientError(f"aliyun sms {code}: {message[:200]}")
        raise PermanentError(f"aliyun sms HTTP {resp.status_code} {code or 'no Code'}: {message[:200]}")

    def close(self) -> None:
        self._client.close()
