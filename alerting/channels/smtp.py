"""E-mail over SMTP with the standard library (smtplib + email.message).

Security is chosen per relay: ``none`` (a local relay on loopback), ``starttls`` (submission on
587) or ``ssl`` (implicit TLS on 465); certificates are verified against the system store or a
configured ``ca_file``. AUTH is used when a username is configured, with the password read from the
environment or the secrets file at send time, never stored on the object in clear or logged.
SMTP replies are classified: 4xx and connection trouble are worth a retry, 5xx are not.
"""

from __future__ import annotations

import base64
import smtplib
import ssl

from alerting.channels import PermanentError, TransientError
from alerting.channels.email_message import build_email
from alerting.config import SmtpTransport
from alerting.masking import mask_email
from alerting.model import Channel, OutgoingMessage, SendResult
from alerting.secrets import Secret, SecretMissing, get_secret


class SmtpChannel:
    channel: Channel = "email"

    def __init__(self, cfg: SmtpTransport, *, password: Secret | None = None) -> None:
        self.cfg = cfg
        self._password = password

    def _context(self) -> ssl.SSLContext:
        return (
            ssl.create_default_context(cafile=self.cfg.ca_file)
            if self.cfg.ca_file
            else ssl.create_default_context()
        )

    def _connect(self) -> smtplib.SMTP:
        c = self.cfg
        if c.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout, context=self._context(), local_hostname=c.local_hostname
            )
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout, local_hostname=c.local_hostname)
        try:
            smtp.ehlo()
            if c.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if c.username:
                password = self._password
                if password is None:
                    if not c.password_env:
                        raise PermanentError("smtp: username set but no password_env configured")
                    password = get_secret(c.password_env)
                assert password is not None
                _login(smtp, c.username, password.reveal())
        except BaseException:
            _quiet_close(smtp)
            raise
        return smtp

    def send(self, msg: OutgoingMessage) -> SendResult:
        email = build_email(msg, sender=self.cfg.sender, sender_name=self.cfg.sender_name)
        to = mask_email(msg.address)
        try:
            smtp = self._connect()
            try:
                refused = smtp.send_message(email)
            finally:
                _quiet_close(smtp)
        except SecretMissing as exc:
            raise PermanentError(f"smtp: {exc}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"smtp auth refused ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            cls = PermanentError if codes and all(code >= 500 for code in codes) else TransientError
            raise cls(f"smtp recipient {to} refused ({','.join(map(str, codes))})") from None
        except smtplib.SMTPResponseException as exc:
            cls = PermanentError if 500 <= exc.smtp_code < 600 else TransientError
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise cls(f"smtp {exc.smtp_code} {text[:200]}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"smtp tls certificate not trusted: {exc.verify_message}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"smtp: {exc}") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"smtp {type(exc).__name__}: {exc}"[:300]) from None
        if refused:
            raise TransientError(f"smtp recipient {to} refused")
        return SendResult(provider_id=str(email["Message-ID"]))

    def close(self) -> None:
        pass


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH PLAIN (RFC 4616, UTF-8 credentials) when offered, else smtplib's own choice.

    One mechanism, one answer: smtplib's ``login`` falls through mechanisms after a refusal, which
    turns a clear "535 wrong password" into a timeout on some servers and hides a permanent error.
    """
    smtp.ehlo_or_helo_if_needed()
    if "plain" not in smtp.esmtp_features.get("auth", "").lower().split():
        if not (user.isascii() and password.isascii()):
            raise PermanentError(
                "smtp: non-ASCII credentials need AUTH PLAIN, which the server does not offer"
            )
        smtp.login(user, password)
        return
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    code, resp = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


def _quiet_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:
        try:
            smtp.close()
        except Exception:
            pass
