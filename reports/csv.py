"""The monthly report as CSV: one file per sheet, UTF-8 with a byte-order mark so Excel shows Chinese.

Written to a directory (``01-cover.csv`` … ``09-scoring.csv``) or, when the path ends in ``.zip``, to
one zip archive holding the same files. The bytes depend only on the report: values are formatted
as text here (China time, percentages to 0.01 %, scores to 0.01), lines end in CRLF as Excel
expects, and zip entries carry the report's generation time rather than the clock, so the same data
and configuration give byte-identical files.
"""

from __future__ import annotations

import csv as _csv
import io
import zipfile
from pathlib import Path

from reports.monthly import MonthlyReport
from reports.sheets import Sheet, as_text, build_sheets
from schemas.events import CHINA_TZ

BOM = "\ufeff"


def sheet_bytes(sheet: Sheet) -> bytes:
    """One sheet as CSV bytes (BOM, header row, CRLF line ends, minimal quoting)."""
    buf = io.StringIO()
    w = _csv.writer(buf, lineterminator="\r\n")
    w.writerow([c.header for c in sheet.columns])
    kinds = [c.kind for c in sheet.columns]
    for row in sheet.rows:
        w.writerow([as_text(v, k) for v, k in zip(row, kinds, strict=True)])
    return (BOM + buf.getvalue()).encode("utf-8")


def csv_files(report: MonthlyReport) -> dict[str, bytes]:
    """File name -> content, in sheet order."""
    return {f"{s.key}.csv": sheet_bytes(s) for s in build_sheets(report)}


def write_csv(report: MonthlyReport, path: str | Path) -> Path:
    """Write every sheet as CSV into the directory ``path`` or the zip file ``path`` (``*.zip``)."""
    p = Path(path)
    files = csv_files(report)
    if p.suffix.lower() == ".zip":
        p.parent.mkdir(parents=True, exist_ok=True)
        stamp = report.generated_at.astimezone(CHINA_TZ).timetuple()[:6]
        stamp = (max(stamp[0], 1980),) + tuple(stamp[1:])  # zip dates start in 1980
        tmp = p.with_name(p.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        tmp.replace(p)
        return p
    p.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        tmp = p / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(p / name)
    return p
