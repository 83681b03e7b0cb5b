"""Personal data of applicants (ID numbers, mobile numbers, names) appears in nothing ``esup demo`` produces
except where it must: the simulated events file (the input) and the warehouse (the record).

The demo runs in this process, so everything it emits is caught: stdout and stderr, every log record at
DEBUG from every logger, the alert outbox (.eml decoded — bodies are base64 and subjects RFC 2047 — and
.sms.txt), the findings JSON Lines, the ground truth, the monthly xlsx (its XML parts) and CSV files, and
the Prometheus metrics text of the process afterwards. The applicants are read from the events file.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import zipfile
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from typer.testing import CliRunner

from esup.cli import app
from tests.test_security_support import debug_logs

CASES = 800


def _text(path: Path) -> str:
    """What a person (or a program) reading the file would see, decoded."""
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as z:
            return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    if path.suffix == ".eml":
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [f"{k}: {v}" for k, v in msg.items()]
        parts += [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
        return "\n".join(parts)
    raw = path.read_bytes().decode("utf-8", "replace")
    if path.suffix == ".jsonl":  # \\u escapes decoded
        out = []
        for line in raw.splitlines():
            try:
                out.append(json.dumps(json.loads(line), ensure_ascii=False))
            except ValueError:
                out.append(line)
        return "\n".join(out)
    return raw


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("demo")
    with debug_logs() as records:
        result = CliRunner().invoke(app, ["demo", "--cases", str(CASES), "--data-dir", str(root / "data"),
                                          "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    outputs = {"stdout": result.stdout, "stderr": result.stderr if result.stderr_bytes is not None else "",
               "log records (DEBUG)": "\n".join(records.text),
               "metrics": generate_latest(REGISTRY).decode()}
    for path in sorted((root / "out").rglob("*")):
        if path.is_file() and path.name != "events.jsonl":  # the input itself holds the applicants
            outputs[str(path.relative_to(root))] = _text(path)
    applicants: dict[str, set[str]] = {"id_number": set(), "phone": set(), "name": set()}
    for line in (root / "out" / "events.jsonl").read_bytes().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        person = doc.get("applicant") if isinstance(doc, dict) else None
        for field in applicants:
            if isinstance(person, dict) and isinstance(person.get(field), str) and person[field]:
                applicants[field].add(person[field])
    return {"outputs": outputs, "applicants": applicants, "root": root}


def test_the_demo_produced_every_kind_of_output(demo: dict[str, object]) -> None:
    outputs = demo["outputs"]
    assert isinstance(outputs, dict)
    names = list(outputs)
    for kind in (".eml", ".sms.txt", ".xlsx", ".csv", "findings.jsonl"):
        assert any(n.endswith(kind) for n in names), kind
    applicants = demo["applicants"]
    assert isinstance(applicants, dict) and len(applicants["id_number"]) >= CASES * 0.9
    assert len(applicants["phone"]) >= CASES * 0.9


@pytest.mark.parametrize("field", ["id_number", "phone", "name"])
def test_no_applicant_detail_appears_in_any_output(demo: dict[str, object], field: str) -> None:
    outputs, applicants = demo["outputs"], demo["applicants"]
    assert isinstance(outputs, dict) and isinstance(applicants, dict)
    values = applicants[field]
    if field == "name":  # a two-character name may be an ordinary word: look for it as a person, after a label
        pattern = re.compile(r"(申请人|姓名|联系人|办事人)\s*[:：]?\s*(" + "|".join(map(re.escape, values)) + ")")
        leaks = {where: sorted({m.group(2) for m in pattern.finditer(text)}) for where, text in outputs.items()}
    else:  # whole tokens: a 15-digit ID number can occur inside a hexadecimal finding id by chance
        leaks = {where: sorted(values & set(re.findall(r"[0-9A-Za-z]+", text))) for where, text in outputs.items()}
    leaks = {where: found[:5] for where, found in leaks.items() if found}
    assert not leaks, f"unmasked applicant {field} in: {leaks}"


# Independent of alerting.masking on purpose, with whole-token boundaries (ids and hashes are hex;
# a run of digits after a decimal point is a fraction in the workbook).
_SHAPES = re.compile(r"(?<![0-9A-Za-z.])(?:[0-9]{17}[0-9Xx]|[0-9]{15}|(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2})"
                     r"(?![0-9A-Za-z])")


def test_nothing_in_the_outputs_looks_like_an_unmasked_id_or_mobile(demo: dict[str, object]) -> None:
    """Independent of the list of applicants: any ID-number or mobile shape left in clear is a leak."""
    outputs = demo["outputs"]
    assert isinstance(outputs, dict)
    leaks = {where: _SHAPES.findall(text)[:5] for where, text in outputs.items()}
    assert not {w: v for w, v in leaks.items() if v}, leaks
