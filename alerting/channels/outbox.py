"""The outbox channel (发件箱): messages become files instead of network traffic.

``esup demo`` and unit tests need no mail server or SMS gateway: each e-mail is written as an
RFC 5322 ``.eml`` file (openable in any mail client) and each SMS as a ``.sms.txt`` file. The file
name carries the delivery id and is written atomically (temporary file, then rename), so delivering
the same message again after a crash replaces it instead of adding a second copy.
"""

from __future__ import annotations

import email.policy
import os
import tempfile
from pathlib import Path

from alerting.channels.email_message import build_email
from alerting.masking import mask_phone
from alerting.model import Channel, OutgoingMessage, SendResult
from alerting.render import cn_time, sms_segments, sms_units


class OutboxChannel:
    def __init__(
        self,
        directory: str | Path,
        channel: Channel,
        *,
        sender: str = "esupervision@localhost",
        sender_name: str = "政务服务电子监察系统",
    ) -> None:
        self.directory = Path(directory)
        self.channel: Channel = channel
        self.sender = sender
        self.sender_name = sender_name

    def path_for(self, msg: OutgoingMessage) -> Path:
        suffix = ".eml" if self.channel == "email" else ".sms.txt"
        return self.directory / f"{msg.recipient_id}__{msg.delivery_id}{suffix}"

    def send(self, msg: OutgoingMessage) -> SendResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.channel == "email":
            data = build_email(msg, sender=self.sender, sender_name=self.sender_name).as_bytes(
                policy=email.policy.SMTP
            )
        else:
            units, _ = sms_units(msg.body)
            data = (
                f"To: {msg.recipient_name} <{mask_phone(msg.address)}>\n"
                f"Date: {cn_time(msg.at, '%Y-%m-%d %H:%M:%S')}\n"
                f"Delivery-Id: {msg.delivery_id}\n"
                f"Kind: {msg.kind}\n"
                f"Length: {units} ({sms_segments(msg.body)} segment(s))\n"
                f"\n{msg.body}\n"
            ).encode()
        target = self.path_for(msg)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return SendResult(provider_id=target.name)

    def close(self) -> None:
        pass
