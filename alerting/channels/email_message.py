"""Building the RFC 5322 e-mail itself, shared by the SMTP channel and the outbox.

Chinese subjects and display names are encoded as RFC 2047 UTF-8 words by the standard library's
``email`` package; the body is UTF-8 in base64, which every relay passes unchanged (8-bit bodies
are not guaranteed without 8BITMIME). The Message-ID is the delivery id, so a copy sent twice after
a crash is recognisably the same message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from alerting.model import OutgoingMessage


def build_email(msg: OutgoingMessage, *, sender: str, sender_name: str) -> EmailMessage:
    m = EmailMessage()
    m["Subject"] = msg.subject
    s_user, _, s_domain = sender.partition("@")
    m["From"] = Address(display_name=sender_name, username=s_user, domain=s_domain or "localhost")
    r_user, _, r_domain = msg.address.partition("@")
    m["To"] = Address(display_name=msg.recipient_name, username=r_user, domain=r_domain)
    m["Date"] = format_datetime(msg.at or datetime.now(UTC))
    domain = s_domain or "esupervision.local"
    m["Message-ID"] = f"<{msg.delivery_id}@{domain}>"
    m["X-Esup-Delivery-Id"] = msg.delivery_id
    m["X-Esup-Kind"] = msg.kind
    if msg.alert_id:
        m["X-Esup-Alert-Id"] = msg.alert_id
    m["Auto-Submitted"] = "auto-generated"  # RFC 3834: keeps vacation replies away
    m.set_content(msg.body, charset="utf-8", cte="base64")
    return m
