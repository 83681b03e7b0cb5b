"""Publish the dashboards and their data sources to a Grafana server over its HTTP API.

For a Grafana we do not provision from files (a shared city or provincial instance), ``esup
dashboards push`` does what provisioning does: the folder, the ClickHouse and Prometheus data
sources (created or updated by uid, so panels find them), then every dashboard, overwriting the
previous version. Run it again after an upgrade; it is idempotent.

The client is ``grafana-client`` (``GrafanaApi``): the maintained fork of ``grafana-api`` with the
same interface, current Grafana endpoints and token auth. The token travels only in the
``Authorization`` header; it is never printed or logged by this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dashboards.build import FOLDER_TITLE, FOLDER_UID


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which step and why (never the token)."""


@dataclass
class Pushed:
    kind: str  # folder | datasource | dashboard
    uid: str
    title: str
    action: str  # created | updated
    url: str = ""


def safe_url(url: str) -> str:
    """The URL without any user:password part, fit to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def connect(url: str, token: str | None, timeout: float = 15.0) -> Any:
    """A ``GrafanaApi`` for ``url`` with a service-account token (or user:password in the URL)."""
    from grafana_client import GrafanaApi

    if not token and not urlsplit(url).password:
        raise PushError("缺少 Grafana 令牌：请用 --token 或环境变量 GRAFANA_TOKEN 提供服务账号令牌")
    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout)


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status_code", None)


def _explain(step: str, exc: Exception) -> PushError:
    code = _status(exc)
    if code == 401:
        why = "令牌无效或已过期（HTTP 401）"
    elif code == 403:
        why = "令牌权限不足（HTTP 403），需要能管理数据源与仪表盘的服务账号"
    elif code:
        why = f"HTTP {code}：{getattr(exc, 'message', exc)}"
    else:
        why = f"无法连接（{type(exc).__name__}）"
    return PushError(f"{why}（步骤：{step}）")


def _exists(get: Any, *args: Any) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        get(*args)
    except GrafanaClientError as exc:
        if _status(exc) == 404:
            return False
        raise
    return True


def push(api: Any, boards: Mapping[str, Mapping[str, Any]], datasources: Sequence[Mapping[str, Any]] = (),
         folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE) -> list[Pushed]:
    """Create or update the folder, ``datasources`` and ``boards``; what was done, in order."""
    from grafana_client.client import GrafanaException
    from niquests.exceptions import RequestException  # grafana-client's HTTP library: refused, DNS, TLS

    done: list[Pushed] = []
    step = "连接 Grafana"
    try:
        api.client.GET("/health")
        step = f"创建文件夹 {folder_title}"
        if _exists(api.folder.get_folder, folder_uid):
            done.append(Pushed("folder", folder_uid, folder_title, "updated"))
        else:
            api.folder.create_folder(folder_title, uid=folder_uid)
            done.append(Pushed("folder", folder_uid, folder_title, "created"))
        for ds in datasources:
            step = f"写入数据源 {ds['name']}"
            if _exists(api.datasource.get_datasource_by_uid, ds["uid"]):
                api.datasource.update_datasource_by_uid(ds["uid"], dict(ds))
                done.append(Pushed("datasource", ds["uid"], ds["name"], "updated"))
            else:
                api.datasource.create_datasource(dict(ds))
                done.append(Pushed("datasource", ds["uid"], ds["name"], "created"))
        for board in boards.values():
            step = f"发布仪表盘 {board['title']}"
            body = {"dashboard": {**board, "id": None}, "folderUid": folder_uid, "overwrite": True,
                    "message": "esup dashboards push"}
            reply = api.dashboard.update_dashboard(body) or {}
            action = "created" if reply.get("version", 1) == 1 else "updated"
            done.append(Pushed("dashboard", board["uid"], board["title"], action, reply.get("url", "")))
    except (GrafanaException, RequestException) as exc:
        raise _explain(step, exc) from None
    return done
