"""Channels (发送渠道): thin adapters that put one rendered message on the wire.

Each channel sends one ``OutgoingMessage`` and says how it went by raising ``TransientError`` (worth
retrying: timeouts, 4xx SMTP replies, HTTP 5xx/429) or ``PermanentError`` (retrying cannot help:
a refused address, a bad signature, a missing secret). Retries, backoff and the delivery log live
in the dispatcher, once, not in every adapter. Error texts never carry secrets or full addresses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from alerting.config import AlertingConfig
from alerting.model import Channel, OutgoingMessage, SendResult


class ChannelError(Exception):
    """A message was not accepted."""


class TransientError(ChannelError):
    """The same message may succeed if tried again later."""


class PermanentError(ChannelError):
    """The same message will fail again; record it and stop trying in this run."""


class Sender(Protocol):
    channel: Channel

    def send(self, msg: OutgoingMessage) -> SendResult: ...

    def close(self) -> None: ...


def build_senders(cfg: AlertingConfig, *, outbox_dir: str | Path | None = None) -> dict[Channel, Sender]:
    """The configured sender for each channel. ``outbox_dir`` overrides where outbox channels write."""
    from alerting.channels.outbox import OutboxChannel

    t = cfg.transport
    senders: dict[Channel, Sender] = {}
    if t.email.kind == "smtp" and t.email.smtp is not None:
        from alerting.channels.smtp import SmtpChannel

        senders["email"] = SmtpChannel(t.email.smtp)
    else:
        ob = t.email.outbox
        senders["email"] = OutboxChannel(
            outbox_dir or ob.directory, "email", sender=ob.sender, sender_name=ob.sender_name
        )
    if t.sms.kind == "webhook" and t.sms.webhook is not None:
        from alerting.channels.sms_webhook import WebhookSmsChannel

        senders["sms"] = WebhookSmsChannel(t.sms.webhook)
    elif t.sms.kind == "aliyun" and t.sms.aliyun is not None:
        from alerting.channels.sms_aliyun import AliyunSmsChannel

        senders["sms"] = AliyunSmsChannel(t.sms.aliyun, default_sign=cfg.sms.sign)
    else:
        senders["sms"] = OutboxChannel(outbox_dir or t.sms.outbox.directory, "sms")
    return senders
