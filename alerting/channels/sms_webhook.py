"""SMS through a generic JSON webhook (an in-house SMS platform or a gateway relay), over httpx.

The request is ``POST {url}`` with JSON ``{"id", "to", "sign", "content", "text", "segments"}``;
``Idempotency-Key`` carries the delivery id so a gateway that honours it drops a repeat after a
crash. A bearer token, when configured, comes from the environment or the secrets file. 2xx is
success; 408, 429, 5xx and network errors are retried; any other status is permanent.
"""

from __future__ import annotations

import httpx

from alerting.channels import PermanentError, TransientError
from alerting.config import WebhookTransport
from alerting.model import Channel, OutgoingMessage, SendResult
from alerting.render import sms_segments
from alerting.secrets import SecretMissing, get_secret


class WebhookSmsChannel:
    channel: Channel = "sms"

    def __init__(self, cfg: WebhookTransport, *, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self._client = client or httpx.Client(timeout=cfg.timeout)

    def send(self, msg: OutgoingMessage) -> SendResult:
        headers = {"Idempotency-Key": msg.delivery_id, **self.cfg.headers}
        if self.cfg.token_env:
            try:
                token = get_secret(self.cfg.token_env)
            except SecretMissing as exc:
                raise PermanentError(f"sms webhook: {exc}") from None
            assert token is not None
            headers["Authorization"] = f"Bearer {token.reveal()}"
        payload = {
            "id": msg.delivery_id,
            "to": msg.address,
            "sign": msg.sms_sign,
            "content": msg.sms_content,
            "text": msg.body,
            "segments": sms_segments(msg.body),
        }
        try:
            resp = self._client.post(self.cfg.url, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(f"sms webhook timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise TransientError(f"sms webhook {type(exc).__name__}: {exc}"[:300]) from None
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise TransientError(f"sms webhook HTTP {resp.status_code}")
        if not 200 <= resp.status_code < 300:
            raise PermanentError(f"sms webhook HTTP {resp.status_code}: {resp.text[:200]}")
        provider_id = None
        try:
            body = resp.json()
            if isinstance(body, dict):
                provider_id = str(body.get("id") or body.get("message_id") or "") or None
        except ValueError:
            pass
        return SendResult(provider_id=provider_id)

    def close(self) -> None:
        self._client.close()
