"""``esup db migrate`` and ``esup db counts``: the warehouse's schema and a look at what it holds.

Operators run ``migrate`` once per deployment (it is idempotent: nothing happens when the schema is
current) and ``counts`` to see that data arrives. ``migrate --print`` renders the DDL without
connecting, for the DBA of a cluster who applies it by hand (``--cluster`` gives ON CLUSTER and
Replicated engines, ``--dialect legacy`` the ClickHouse 18.16–19.x types).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

_TARGET_HELP = "数据仓库目标：目录或 chdb:DIR（内嵌 chDB），或 clickhouse://用户:密码@主机:9000/库（默认 $CLICKHOUSE_URL，否则 ./data）"
_TABLE_NAMES = {
    "events": "原始事件（含无效）", "events_invalid": "　其中无效事件", "case_facts": "办件事实",
    "findings": "监察发现", "notes": "引擎说明", "alert_deliveries": "告警投递记录", "alert_lifecycle": "告警状态记录",
    "event_chain": "事件哈希链（防篡改）",
    "daily_case_metrics": "日统计：办件", "daily_findings": "日统计：监察发现", "daily_deliveries": "日统计：投递",
}


def _open(target: str | None) -> Any:
    from warehouse import WarehouseError, open_warehouse

    try:
        return open_warehouse(target)
    except WarehouseError as exc:
        typer.echo(f"无法打开数据仓库：{exc}", err=True)
        raise typer.Exit(code=1) from None


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="数据仓库（ClickHouse / chDB）：建表迁移、各表行数。", no_args_is_help=True)

    @db_app.command("migrate")
    def migrate(
        target: Annotated[str | None, typer.Option("--target", help=_TARGET_HELP)] = None,
        print_ddl: Annotated[bool, typer.Option("--print", help="只打印建表语句，不连接数据库")] = False,
        dialect: Annotated[str, typer.Option(help="与 --print 合用：modern（chDB、ClickHouse ≥ 20.1）或 legacy（18.16–19.x）")] = "modern",
        cluster: Annotated[str | None, typer.Option(help="与 --print 合用：集群名（ON CLUSTER，Replicated 引擎）")] = None,
        database: Annotated[str, typer.Option(help="与 --print 合用：库名（用于 Replicated 的 ZooKeeper 路径）")] = "default",
        as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出")] = False,
    ) -> None:
        """应用尚未执行的迁移（可重复执行，已是最新则不做任何事）。"""
        from warehouse.base import LEDGER_DDL, WarehouseError, migration_files
        from warehouse.sql import LEGACY, MODERN, render

        if print_ddl:
            d = {"modern": MODERN, "legacy": LEGACY}.get(dialect)
            if d is None:
                typer.echo("--dialect 只能是 modern 或 legacy", err=True)
                raise typer.Exit(code=2)
            typer.echo(render(LEDGER_DDL, d, cluster, database) + ";\n")
            for name, _checksum, statements in migration_files():
                typer.echo(f"-- {name}")
                for st in statements:
                    sql = render(st, d, cluster, database)
                    if sql:  # a guarded statement the dialect does without
                        typer.echo(sql + ";\n")
            return
        wh = _open(target)
        try:
            applied = wh.migrate()
            where = wh.describe()
        except WarehouseError as exc:
            typer.echo(f"迁移失败：{exc}", err=True)
            raise typer.Exit(code=1) from None
        finally:
            wh.close()
        if as_json:
            typer.echo(json.dumps({"target": where, "applied": applied}, ensure_ascii=False))
        elif applied:
            typer.echo(f"{where}：已应用迁移 {', '.join(applied)}")
        else:
            typer.echo(f"{where}：结构已是最新，无需迁移")

    @db_app.command("counts")
    def counts_cmd(
        target: Annotated[str | None, typer.Option("--target", help=_TARGET_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出")] = False,
    ) -> None:
        """各表行数（去重后的逻辑行数；日统计表为存储行数）。"""
        from warehouse.base import WarehouseError
        from warehouse.reads import counts

        wh = _open(target)
        try:
            result = counts(wh)
            where = wh.describe()
        except WarehouseError as exc:
            typer.echo(f"读取失败：{exc}", err=True)
            raise typer.Exit(code=1) from None
        finally:
            wh.close()
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
            return
        table = Table(title=where)
        table.add_column("表")
        table.add_column("说明")
        table.add_column("行数", justify="right")
        for name, n in result.items():
            table.add_row(name, _TABLE_NAMES.get(name, ""), f"{n:,}")
        Console().print(table)

    app.add_typer(db_app, name="db")
