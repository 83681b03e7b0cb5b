"""The alert dispatcher of the live driver: findings from the ``findings`` topic to alerting/.

``alerting.Dispatcher`` routes, deduplicates (delivery ids derive from finding ids, so a finding
replayed after a crash is not sent twice), masks, sends and logs. It is synchronous and not
thread-safe, so every call runs on one worker thread, one at a time. The delivery log is the
warehouse by default (``alert_log: warehouse``) so that every worker and ``esup alerts`` see the same
alerts; a directory gives the JSON Lines log instead (one worker, or tests).

Escalations, yellow-to-red upgrades and held digests (``alerting.process_due``) run from a timer on
the Faust leader only: on every worker they would race on the same alerts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from rules.findings import Finding
from streams.settings import StreamSettings

log = logging.getLogger(__name__)


def with_smtp(cfg: Any, hostport: str) -> Any:
    """The routing configuration with its e-mail transport replaced by plain SMTP to ``host:port``.

    For a deployment's mail catcher (docker-compose runs mailpit) without editing routing.yaml.
    """
    import msgspec

    from alerting.config import EmailTransportConfig, SmtpTransport

    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"alert_smtp {hostport!r}: expected host:port")
    sender = cfg.transport.email.outbox.sender
    email = EmailTransportConfig(kind="smtp", smtp=SmtpTransport(host=host, port=int(port), security="none",
                                                                  sender=sender))
    return msgspec.structs.replace(cfg, transport=msgspec.structs.replace(cfg.transport, email=email))


class AlertHook:
    def __init__(self, settings: StreamSettings) -> None:
        from alerting import Dispatcher, JsonlDeliveryLog, load_alerting_config

        self.settings = settings
        cfg = load_alerting_config(settings.routing)
        if settings.alert_smtp:
            cfg = with_smtp(cfg, settings.alert_smtp)
        if settings.alert_log == "warehouse":
            from alerting.log_warehouse import WarehouseDeliveryLog

            delivery_log: Any = WarehouseDeliveryLog.open(settings.warehouse)
        else:
            delivery_log = JsonlDeliveryLog(settings.alert_log)
        self.delivery_log = delivery_log
        self.dispatcher = Dispatcher(cfg, delivery_log, outbox_dir=settings.alert_outbox)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="esup-alerts")
        self._lock = threading.Lock()
        log.info("alerting: routing version %s, delivery log %s", cfg.version, settings.alert_log)

    def _deliver(self, findings: list[Finding], now: datetime) -> Any:
        with self._lock:
            return self.dispatcher.deliver(findings, now)

    def _tick(self, now: datetime) -> Any:
        from alerting import process_due

        with self._lock:
            return process_due(self.dispatcher, now)

    async def deliver(self, findings: list[Finding], now: datetime) -> None:
        """Deliver (or hold for a digest) every notice of ``findings``; raises if the log cannot record it."""
        report = await asyncio.get_running_loop().run_in_executor(self._pool, self._deliver, findings, now)
        if report.failed:  # alerting counts every outcome in esup_alert_deliveries_total itself
            log.warning("alerting: %d messages failed (recorded; retried later)", report.failed)

    async def tick(self, now: datetime) -> None:
        report = await asyncio.get_running_loop().run_in_executor(self._pool, self._tick, now)
        if report.escalated or report.upgraded or report.messages_sent:
            log.info("alerting: %d escalated, %d upgraded to red, %d messages sent",
                     report.escalated, report.upgraded, report.messages_sent)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        try:
            self.dispatcher.close()
        finally:
            close = getattr(self.delivery_log, "close", None)
            if close is not None:
                close()
