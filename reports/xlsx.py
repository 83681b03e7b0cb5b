"""The monthly report as an Excel workbook (openpyxl, write-only so 100,000 cases stay fast).

Numbers are written as numbers with a number format (percentages as percentages, scores to two
decimals, times as Excel date-times in China time), so departments can sort, filter and re-add the
figures themselves. The header row is frozen (with the name columns on the ranking sheets) and
filterable. Cell values depend only on the report; the zip container's timestamps do not, so a
re-run gives identical cells but not identical bytes (use the CSV export for byte-level comparison).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from reports.monthly import MonthlyReport
from reports.sheets import Column, Sheet, as_text, build_sheets, display_width
from schemas.events import CHINA_TZ

FORMATS = {"rate": "0.00%", "score": "0.00", "money": "#,##0.00"}
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_HEADER_ALIGN = Alignment(horizontal="center", vertical="center", wrap_text=True)
_THIN = Side(style="thin", color="9BC2E6")
_HEADER_BORDER = Border(bottom=_THIN)
_ROW_FILLS = {"best": PatternFill("solid", fgColor="E2EFDA"), "worst": PatternFill("solid", fgColor="FCE4D6"),
              "total": PatternFill("solid", fgColor="F2F2F2")}
_WRAP = Alignment(wrap_text=True, vertical="top")
_WIDTH_SAMPLE = 500  # rows measured for column widths
_MAX_WIDTH = {"text": 60, "datetime": 20}


def _widths(sheet: Sheet) -> list[float]:
    out = []
    for i, col in enumerate(sheet.columns):
        w = display_width(col.header)
        for row in sheet.rows[:_WIDTH_SAMPLE]:
            w = max(w, display_width(as_text(row[i], col.kind)))
        if col.kind == "rate":
            w = max(w, 8)
        w = min(w, _MAX_WIDTH.get(col.kind, 40))
        out.append(w + 2)
    return out


def _header(ws: Any, columns: list[Column]) -> list[WriteOnlyCell]:
    cells = []
    for col in columns:
        c = WriteOnlyCell(ws, value=col.header)
        c.font, c.fill, c.alignment, c.border = _HEADER_FONT, _HEADER_FILL, _HEADER_ALIGN, _HEADER_BORDER
        cells.append(c)
    return cells


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(CHINA_TZ).replace(tzinfo=None)


def _number(value: Any) -> Any:
    return None if value is None else float(value)


def _write_sheet(wb: Workbook, sheet: Sheet) -> None:
    ws = wb.create_sheet(sheet.title)
    widths = _widths(sheet)
    for i, w in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = w
    ws.freeze_panes = sheet.freeze
    if sheet.rows and sheet.key != "01-cover":
        ws.auto_filter.ref = f"A1:{get_column_letter(len(sheet.columns))}{len(sheet.rows) + 1}"
    ws.append(_header(ws, sheet.columns))
    kinds = [c.kind for c in sheet.columns]
    # Per column: how a value is stored, and the number format a cell needs. Times keep openpyxl's own
    # date-time format (a plain value is the cheap path; 100,000 cases make this loop the export's cost).
    convert = [_naive if k == "datetime" else _number if k in ("rate", "score", "money") else None for k in kinds]
    formats = [FORMATS.get(k) if k != "datetime" else None for k in kinds]
    wrap_text = sheet.key in ("01-cover", "09-scoring")
    styles = sheet.styles if any(sheet.styles) else None
    plain = not any(formats) and not wrap_text
    for r, row in enumerate(sheet.rows):
        values = [v if f is None else f(v) for v, f in zip(row, convert, strict=True)]
        style = styles[r] if styles else ""
        if plain and not style:
            ws.append(values)
            continue
        cells: list[Any] = []
        for value, fmt in zip(values, formats, strict=True):
            if value is None or (fmt is None and not style and not wrap_text):
                cells.append(value)
                continue
            c = WriteOnlyCell(ws, value=value)
            if fmt is not None:
                c.number_format = fmt
            if style:
                c.fill = _ROW_FILLS[style]
                if style == "total":
                    c.font = _HEADER_FONT
            if wrap_text:
                c.alignment = _WRAP
            cells.append(c)
        ws.append(cells)


def write_xlsx(report: MonthlyReport, path: str | Path) -> Path:
    """Write the workbook to ``path`` (parent directories are created); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook(write_only=True)
    wb.properties.creator = report.generated_by or "esup"
    wb.properties.title = f"月度考核 {report.month}"
    gen = report.generated_at.astimezone(CHINA_TZ).replace(tzinfo=None)
    wb.properties.created = gen
    wb.properties.modified = gen
    for sheet in build_sheets(report):
        _write_sheet(wb, sheet)
    tmp = p.with_name(p.name + ".tmp")
    wb.save(tmp)
    tmp.replace(p)
    return p
