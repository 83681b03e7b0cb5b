"""``esup catalog check [FILE]`` and ``esup catalog show CODE``: the item catalog (事项目录) for its editors.

The catalog decides what every rule finds, and a broken one is refused by the engine as a whole.
Editors (效能办, department liaisons) therefore need to check a draft before it is deployed and to
read one item the way the rules read it; both commands print Chinese for them, and ``check`` exits 1
so that CI or a deployment script can stop on a bad file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rules.catalog import DEFAULT_CATALOG, Catalog, CatalogError, Item, load_catalog

_KIND = {"on_the_spot": "即办件", "promised": "承诺件"}


def _load_or_exit(file: Path | None) -> Catalog:
    """Load the catalog, or print every problem in Chinese framing and exit 1."""
    path = file or DEFAULT_CATALOG
    try:
        return load_catalog(path)
    except CatalogError as exc:
        typer.echo(f"事项目录校验失败：{path}", err=True)
        typer.echo(f"共 {len(exc.problems)} 处问题：", err=True)
        for problem in exc.problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(code=1) from None


def summary_lines(cat: Catalog, path: Path) -> list[str]:
    """The check summary; separate from the command so tests and other reports can reuse the wording."""
    kinds = [i.kind for i in cat.items]
    with_fees = sum(1 for i in cat.items if i.fees)
    return [
        f"事项目录校验通过：{path}",
        f"名称：{cat.name or '（未命名）'}",
        f"版本：{cat.version}",
        f"生效日期：{cat.effective_from.isoformat()}",
        f"事项数：{len(cat.items)}",
        f"部门数：{len(cat.departments)}",
        f"即办件：{kinds.count('on_the_spot')}　承诺件：{kinds.count('promised')}",
        f"设有收费项目的事项：{with_fees}　不收费的事项：{len(cat.items) - with_fees}",
    ]


def _department_table(cat: Catalog) -> Table:
    table = Table(title="按部门统计", show_lines=False)
    for header in ("部门", "窗口数", "事项数", "即办件", "承诺件", "收费事项"):
        table.add_column(header, justify="left" if header == "部门" else "right")
    for dept in cat.departments:
        items = [i for i in cat.items if i.department == dept]
        windows = {i.window for i in items if i.window}
        table.add_row(
            Text(dept),
            str(len(windows)),
            str(len(items)),
            str(sum(1 for i in items if i.kind == "on_the_spot")),
            str(sum(1 for i in items if i.kind == "promised")),
            str(sum(1 for i in items if i.fees)),
        )
    return table


def _days(n: int) -> str:
    return f"{n} 个工作日"


def item_rows(item: Item) -> list[tuple[str, str]]:
    """One item as (label, value) rows in the order an inspector reads a 办事指南."""
    rows = [
        ("事项编码", item.code),
        ("事项名称", item.name),
        ("实施部门", item.department),
        ("办理窗口", item.window or "（未指定）"),
        ("办件类型", f"{_KIND[item.kind]}（{item.kind}）"),
        ("承诺时限", "当场办结（当日）" if item.kind == "on_the_spot" else _days(item.promised_days)),
        ("法定时限", _days(item.statutory_days)),
        ("办理环节", " → ".join(item.steps) if item.steps else "（未规定）"),
    ]
    if item.step_limits:
        limits = "；".join(f"{step} {_days(days)}" for step, days in item.step_limits.items())
    else:
        limits = "（无环节时限）"
    rows.append(("环节时限", limits))
    if item.separate_officers:
        pairs = "；".join(f"{a} 与 {b} 不得为同一人" for a, b in item.separate_officers)
    else:
        pairs = "（无）"
    rows.append(("审批分离", pairs))
    if item.fees:
        fees = "\n".join(
            f"{f.name}（{f.code}）：{f.amount} 元" + (f"\n  依据：{f.basis}" if f.basis else "") for f in item.fees
        )
    else:
        fees = "不收费（收取任何费用均属无依据收费）"
    rows.append(("收费项目", fees))
    rows.append(("最短办理时间", f"{item.min_minutes} 分钟" if item.min_minutes is not None else "（未规定）"))
    rows.append(("设定依据", item.basis or "（未填写）"))
    return rows


def register(app: typer.Typer) -> None:
    cat_app = typer.Typer(help="事项目录：校验目录文件、查看单个事项的时限、环节与收费标准。", no_args_is_help=True)

    @cat_app.command("check")
    def check(
        file: Annotated[
            Path | None, typer.Argument(metavar="[FILE]", help="事项目录文件（默认 config/catalog.yaml）")
        ] = None,
    ) -> None:
        """校验事项目录：通过则打印摘要（退出码 0），否则逐条列出问题（退出码 1）。"""
        path = file or DEFAULT_CATALOG
        cat = _load_or_exit(path)
        for line in summary_lines(cat, path):
            typer.echo(line)
        Console().print(_department_table(cat))

    @cat_app.command("show")
    def show(
        code: Annotated[str, typer.Argument(metavar="CODE", help="事项编码，例如 SC-001")],
        file: Annotated[
            Path | None, typer.Option("--file", "-f", help="事项目录文件（默认 config/catalog.yaml）")
        ] = None,
    ) -> None:
        """显示一个事项：类型、承诺/法定时限、办理环节、审批分离要求与收费标准。"""
        cat = _load_or_exit(file)
        item = cat.item(code.strip())
        if item is None:
            typer.echo(f"事项目录 {cat.version} 中没有事项编码 {code!r}", err=True)
            near = difflib.get_close_matches(code.strip(), [i.code for i in cat.items], n=3)
            if near:
                typer.echo(f"相近的编码：{'、'.join(near)}", err=True)
            raise typer.Exit(code=1)
        table = Table(title=f"{item.code} {item.name}（目录版本 {cat.version}）", show_header=False, show_lines=True)
        table.add_column("字段", style="bold", no_wrap=True)
        table.add_column("内容")
        for label, value in item_rows(item):
            table.add_row(Text(label), Text(value))
        Console().print(table)

    app.add_typer(cat_app, name="catalog")
