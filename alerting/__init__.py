"""Alerting (告警): findings reach the right inspector by e-mail and SMS — once, masked, escalated, logged.

The entry points:

* ``deliver_findings(findings, cfg, log, now) -> DeliveryReport`` — what ``esup demo`` and the live
  stream call; ``Dispatcher`` is the reusable form (keeps channels open between calls).
* ``process_due(dispatcher, now)`` — the lifecycle tick: escalates unacknowledged red cards, turns
  uncleared yellow cards red, and sends held digests. Drive it from a ticker.
* ``acknowledge`` / ``resolve`` / ``dismiss`` — what ``esup alerts`` does.
* ``load_alerting_config()`` reads ``config/routing.yaml``; ``JsonlDeliveryLog`` and
  ``WarehouseDeliveryLog`` implement the ``DeliveryLog`` protocol.
"""

from __future__ import annotations

from alerting.config import AlertingConfig, RoutingConfigError, load_alerting_config, parse_alerting_config
from alerting.delivery_log import DeliveryLog
from alerting.dispatcher import Dispatcher, deliver_findings
from alerting.lifecycle import AlertLifecycleError, acknowledge, dismiss, find_alert, process_due, resolve
from alerting.log_jsonl import JsonlDeliveryLog
from alerting.masking import find_unmasked, mask_id_number, mask_name, mask_phone, mask_text
from alerting.model import AlertState, DeliveryAttempt, DeliveryReport

__all__ = [
    "AlertLifecycleError",
    "AlertState",
    "AlertingConfig",
    "DeliveryAttempt",
    "DeliveryLog",
    "DeliveryReport",
    "Dispatcher",
    "JsonlDeliveryLog",
    "RoutingConfigError",
    "acknowledge",
    "deliver_findings",
    "dismiss",
    "find_alert",
    "find_unmasked",
    "load_alerting_config",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "mask_text",
    "parse_alerting_config",
    "process_due",
    "resolve",
]
