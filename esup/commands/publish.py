"""``esup publish FILE.jsonl``: send events to the input topic, one record per line, as they are.

The key is the line's ``case_id`` (so a case's events stay in order on one partition); the value is
the raw line, unparsed beyond finding that key, so a broken line still reaches the workers and ends
in the dead-letter topic with its reason instead of vanishing here. Lines whose case number cannot be
read are sent without a key.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, BinaryIO

import msgspec
import typer
from rich.console import Console

console = Console(stderr=True)


class _Key(msgspec.Struct):
    case_id: str | None = None


_key_decoder = msgspec.json.Decoder(_Key)


def case_key(line: bytes) -> bytes | None:
    """The record key of one JSON line: its ``case_id``, or None when the line does not give one."""
    try:
        cid = _key_decoder.decode(line).case_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return cid.encode("utf-8") if isinstance(cid, str) and cid else None


def publish_lines(lines: BinaryIO, *, bootstrap: list[str], topic: str, rate: float | None = None,
                  batch_bytes: int = 256 * 1024, linger_ms: int = 5,
                  on_progress=None, on_oversized=None) -> dict[str, float]:
    """Send every non-blank line; returns counts and timing. ``rate`` caps events per second.

    A line over the contract's per-event limit (``MAX_EVENT_BYTES``) is not sent: the workers would
    only dead-letter it, and past the broker's message size it would stop the whole run half way.
    It is counted in ``oversized`` and reported to ``on_oversized(line_number, size)``.
    """
    from kafka import KafkaProducer

    from schemas.events import MAX_EVENT_BYTES

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                             batch_size=batch_bytes, max_request_size=2 * 1024 * 1024,
                             client_id="esup-publish")
    sent = unkeyed = oversized = 0
    started = time.monotonic()
    try:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            if len(line) > MAX_EVENT_BYTES:
                oversized += 1
                if on_oversized is not None:
                    on_oversized(number, len(line))
                continue
            key = case_key(line)
            if key is None:
                unkeyed += 1
            producer.send(topic, value=line, key=key)
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if on_progress is not None and sent % 1000 == 0:
                on_progress(sent)
        producer.flush()
    finally:
        producer.close()
    elapsed = time.monotonic() - started
    return {"sent": sent, "unkeyed": unkeyed, "oversized": oversized, "seconds": round(elapsed, 3),
            "per_second": round(sent / elapsed, 1) if elapsed > 0 else 0.0}


def publish_command(
    file: Annotated[Path | None, typer.Argument(metavar="FILE.jsonl", help="事件文件（JSON Lines），- 表示标准输入")] = None,
    broker: Annotated[str | None, typer.Option(help="Kafka 地址（$ESUP_BROKER）")] = None,
    topic: Annotated[str | None, typer.Option(help="目标主题（默认 case-events）")] = None,
    rate: Annotated[float | None, typer.Option(help="限速：每秒事件数")] = None,
    batch_bytes: Annotated[int, typer.Option(
        "--batch-bytes", help="生产者批大小（字节），0 表示不合批")] = 256 * 1024,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="worker 配置文件（主题与分区）")] = None,
    no_declare: Annotated[bool, typer.Option("--no-declare", help="不创建主题")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出结果")] = False,
    serve: Annotated[str | None, typer.Option(
        "--serve", metavar="HOST:PORT", help="改为启动 HTTP 接收服务：POST /events（JSON 或 JSON Lines）")] = None,
) -> None:
    """把 JSON Lines 事件逐行发送到输入主题（键为办件编号，值为原始行；无效行由 worker 转入死信主题）。

    --serve 时改为运行 HTTP 接收服务：逐条校验，合格事件写入输入主题，不合格的逐条返回原因。
    """
    from streams.settings import SettingsError, load_settings
    from streams.topics import TopicMismatch, declare_topics

    try:
        settings = load_settings(config, broker=broker)
    except SettingsError as exc:
        console.print(f"[red]配置错误[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    target = topic or settings.topics.events
    if not no_declare:
        try:
            declare_topics(settings)
        except TopicMismatch as exc:
            console.print(f"[red]主题不一致[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    if serve:
        import logging

        from streams.ingest_http import serve as serve_http

        host, _, port = serve.rpartition(":")
        if not port.isdigit():
            console.print(f"[red]--serve 应为 HOST:PORT[/]，收到 {serve!r}", highlight=False)
            raise typer.Exit(2)
        logging.basicConfig(level="INFO", format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
        console.print(f"HTTP 接收服务：http://{host or '0.0.0.0'}:{port}/events → {target}", highlight=False)
        if target != settings.topics.events:
            settings = msgspec.structs.replace(
                settings, topics=msgspec.structs.replace(settings.topics, events=target))
        serve_http(settings, host or "0.0.0.0", int(port))
        return
    if file is None:
        console.print("[red]需要事件文件[/]（或 --serve HOST:PORT）", highlight=False)
        raise typer.Exit(2)

    def progress(n: int) -> None:
        if not as_json and n % 10000 == 0:
            console.print(f"已发送 {n} 条", highlight=False)

    def oversized(number: int, size: int) -> None:
        from schemas.events import MAX_EVENT_BYTES

        console.print(f"[red]错误[/] 第 {number} 行 {size} 字节，超过单个事件 {MAX_EVENT_BYTES} 字节的上限，未发送",
                      highlight=False)

    if str(file) == "-":
        result = publish_lines(sys.stdin.buffer, bootstrap=settings.bootstrap_servers, topic=target, rate=rate,
                               batch_bytes=batch_bytes, on_progress=progress, on_oversized=oversized)
    else:
        if not file.exists():
            console.print(f"[red]文件不存在[/] {file}", highlight=False)
            raise typer.Exit(2)
        with open(file, "rb") as fh:
            result = publish_lines(fh, bootstrap=settings.bootstrap_servers, topic=target, rate=rate,
                                   batch_bytes=batch_bytes, on_progress=progress, on_oversized=oversized)
    if as_json:
        sys.stdout.write(msgspec.json.encode({"topic": target, **result}).decode() + "\n")
    else:
        Console().print(f"已发送 {result['sent']} 条到 {target}（{result['seconds']} 秒，"
                        f"{result['per_second']} 条/秒；无办件编号 {result['unkeyed']} 条）", highlight=False)
    if result["oversized"]:
        console.print(f"[red]{result['oversized']} 行超过大小上限未发送[/]：请拆分或去掉附件内容后重发这些行",
                      highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)
