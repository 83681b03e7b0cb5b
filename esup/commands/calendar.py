"""``esup calendar check DATE``: answers "是不是工作日" and says which calendar decided it.

Inspectors dispute deadlines around 调休 weekends; showing the deciding source (library, override
file, or the Monday–Friday fallback) settles whether the engine or the calendar data is at fault.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import chinese_calendar
import typer

from rules.calendar import DEFAULT_OVERRIDES, CalendarError, WorkCalendar

_WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
_STATUS = {"official": "正式", "provisional": "暂定，调休安排未公布"}


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"日期格式应为 YYYY-MM-DD，收到：{text!r}") from None


def describe(cal: WorkCalendar, day: date) -> str:
    """One line in Chinese; kept separate from the command so tests can check the wording."""
    working = cal.is_working_day(day)
    weekend = day.weekday() >= 5
    if working and weekend:
        kind = "调休上班"
    elif working:
        kind = "工作日"
    elif weekend:
        kind = "休息日（周末）"
    else:
        kind = "休息日（法定节假日）"
    source = cal.source_of(day)
    if source == "library":
        by = f"chinesecalendar 库 v{chinese_calendar.__version__}"
    elif source == "override":
        status, origin = cal.override_status(day.year) or ("", "")
        by = f"覆盖文件 {cal.overrides_path}（{_STATUS.get(status, status)}；来源：{origin}）"
    else:
        by = f"兜底规则：{day.year} 年不在任何日历中，仅按周一至周五计算"
    return f"{day.isoformat()}（{_WEEKDAYS[day.weekday()]}）：{kind}　依据：{by}"


def register(app: typer.Typer) -> None:
    cal_app = typer.Typer(help="工作日历：查询某日是否为工作日（含法定节假日与调休）。", no_args_is_help=True)

    @cal_app.command("check")
    def check(
        day: Annotated[str, typer.Argument(metavar="DATE", help="日期，格式 YYYY-MM-DD")],
        overrides: Annotated[
            Path | None, typer.Option("--overrides", help="节假日覆盖文件（默认 config/holidays.yaml）")
        ] = None,
        strict: Annotated[
            bool, typer.Option("--strict", help="日期不在任何日历中时报错，而不是按周一至周五兜底")
        ] = False,
    ) -> None:
        """查询 DATE 是工作日、休息日还是调休上班，并说明判定依据。"""
        parsed = _parse_date(day)
        cal = WorkCalendar(overrides or DEFAULT_OVERRIDES, fallback="error" if strict else "weekends")
        try:
            typer.echo(describe(cal, parsed))
        except CalendarError as exc:
            years = cal.covered_years
            if not years:
                covered = "无"
            elif isinstance(years, range):
                covered = f"{years[0]}–{years[-1]}"
            else:
                covered = "、".join(map(str, years))
            typer.echo(f"{parsed.isoformat()} 不在任何已知工作日历中（已覆盖年份：{covered}）", err=True)
            raise typer.Exit(code=1) from exc

    app.add_typer(cal_app, name="calendar")
