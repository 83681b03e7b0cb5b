"""The published JSON Schema and the msgspec decoder are one contract: they must accept and refuse alike.

Vendors build against ``schemas/case_event.schema.json``; the pipeline decodes with
``schemas.events.decode_event``. If the two drift, a vendor passes its own tests and still loses events
at the door (or we accept events the document says are wrong), so every example here goes through both.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import msgspec
import pytest

from schemas.events import (
    CHINA_TZ,
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    InvalidEvent,
    decode_all_valid,
    decode_event,
)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "case_event.schema.json"
README_PATH = SCHEMA_DIR / "README.md"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _base(event_type: str, **fields: object) -> dict:
    ev: dict = {
        "event_id": f"t-{event_type}",
        "event_type": event_type,
        "case_id": "510182-GA-20260302-0001",
        "occurred_at": "2026-03-02T09:30:00+08:00",
        "source": "test-vendor",
    }
    ev.update(fields)
    return ev


# One hand-written valid event per type, with the per-type fields a vendor would send.
VALID: dict[str, dict] = {
    "submitted": _base("submitted", item_code="GA-009", region_code="510182", department="公安局",
                       window="出入境窗口", applicant={"name": "李四", "id_number": "510182200001010000"}),
    "accepted": _base("accepted", item_code="GA-009", region_code="510182", officer_id="GA0101",
                      due_at="2026-03-11T17:30:00+08:00", recorded_at="2026-03-02T09:30:02Z"),
    "intake_rejected": _base("intake_rejected", reason="材料不齐且无法补正"),
    "supplement_requested": _base("supplement_requested", materials=["户口簿原件"]),
    "supplement_received": _base("supplement_received"),
    "step_completed": _base("step_completed", step="审核", officer_id="GA0102"),
    "suspended": _base("suspended", procedure="专家评审", planned_days=5),
    "resumed": _base("resumed"),
    "extension_granted": _base("extension_granted", days=10, approved_by="GA0001"),
    "fee_assessed": _base("fee_assessed", fee_code="HZ-GBF", amount="120.00"),
    "fee_paid": _base("fee_paid", fee_code="HZ-GBF", amount=120, channel="online"),
    "fee_waived": _base("fee_waived", fee_code="HZ-GBF", amount=120, approval_ref="减免〔2026〕3号"),
    "fee_refunded": _base("fee_refunded", fee_code="HZ-GBF", amount=120.0),
    "decided": _base("decided", outcome="denied", officer_id="GA0009"),
    "completed": _base("completed", schema_version=1),
    "delivered": _base("delivered"),
    "withdrawn": _base("withdrawn"),
    "rated": _base("rated", level=1, comment="等了很久"),
    "rating_resolved": _base("rating_resolved"),
    "complaint_filed": _base("complaint_filed", complaint_id="TS-1"),
    "complaint_resolved": _base("complaint_resolved", complaint_id="TS-1"),
}


def _without(ev: dict, key: str) -> dict:
    out = dict(ev)
    del out[key]
    return out


# (label, event, the field decode_event's error must name)
INVALID: list[tuple[str, dict, str]] = [
    ("missing case_id", _without(VALID["completed"], "case_id"), "case_id"),
    ("missing event_type", _without(VALID["completed"], "event_type"), "event_type"),
    ("missing occurred_at", _without(VALID["completed"], "occurred_at"), "occurred_at"),
    ("empty event_id", _base("completed", event_id=""), "event_id"),
    ("unknown event_type", _base("approved_quickly"), "event_type"),
    ("bad channel", _base("fee_paid", fee_code="HZ-GBF", amount=120, channel="cash"), "channel"),
    ("missing channel", _base("fee_paid", fee_code="HZ-GBF", amount=120), "channel"),
    ("level 7", _base("rated", level=7), "level"),
    ("level 0", _base("rated", level=0), "level"),
    ("region_code 12345", _base("accepted", region_code="12345"), "region_code"),
    ("region_code with letters", _base("submitted", region_code="51018A"), "region_code"),
    ("naive occurred_at", _base("completed", occurred_at="2026-03-02T09:30:00"), "occurred_at"),
    ("naive recorded_at", _base("completed", recorded_at="2026-03-02T09:30:00"), "recorded_at"),
    ("naive due_at", _base("accepted", due_at="2026-03-11T17:30:00"), "due_at"),
    ("date without time", _base("completed", occurred_at="2026-03-02"), "occurred_at"),
    ("negative amount", _base("fee_assessed", fee_code="HZ-GBF", amount=-5), "amount"),
    ("negative amount string", _base("fee_paid", fee_code="HZ-GBF", amount="-5.00", channel="bank"), "amount"),
    ("amount not a number", _base("fee_assessed", fee_code="HZ-GBF", amount="八十元"), "amount"),
    ("missing amount", _base("fee_assessed", fee_code="HZ-GBF"), "amount"),
    ("missing step", _base("step_completed"), "step"),
    ("bad outcome", _base("decided", outcome="maybe"), "outcome"),
    ("extension of 0 days", _base("extension_granted", days=0, approved_by="GA0001"), "days"),
    ("schema_version 2", _base("completed", schema_version=2), "schema_version"),
    ("planned_days negative", _base("suspended", procedure="听证", planned_days=-1), "planned_days"),
    ("fee_code null", _base("fee_assessed", fee_code=None, amount=1), "fee_code"),
]


def _decode(ev: dict) -> object:
    return decode_event(json.dumps(ev, ensure_ascii=False))


def test_schema_is_valid_draft_2020_12(schema: dict) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_event_type_has_a_valid_example() -> None:
    assert set(VALID) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_example_accepted_by_both(event_type: str, validator: jsonschema.Draft202012Validator) -> None:
    ev = VALID[event_type]
    errors = [e.message for e in validator.iter_errors(ev)]
    assert errors == [], errors
    decoded = _decode(ev)
    assert not isinstance(decoded, InvalidEvent), decoded.describe()
    assert decoded.event_type == event_type


@pytest.mark.parametrize(("label", "ev", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_example_rejected_by_both(label: str, ev: dict, field: str,
                                         validator: jsonschema.Draft202012Validator) -> None:
    errors = list(validator.iter_errors(ev))
    assert errors, f"JSON Schema accepted: {label}"
    assert any(field in e.absolute_path or field in e.message for e in errors), [e.message for e in errors]
    decoded = _decode(ev)
    assert isinstance(decoded, InvalidEvent), f"decode_event accepted: {label}"
    assert field in decoded.error, decoded.error
    assert decoded.error.startswith("schema:")


def _readme_examples() -> list[dict]:
    text = README_PATH.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.S)]


def test_readme_has_one_example_per_type_and_each_passes_both(
        validator: jsonschema.Draft202012Validator) -> None:
    examples = _readme_examples()
    assert sorted(e["event_type"] for e in examples) == sorted(EVENT_TYPES)
    for ev in examples:
        assert validator.is_valid(ev), [e.message for e in validator.iter_errors(ev)]
        decoded = _decode(ev)
        assert not isinstance(decoded, InvalidEvent), decoded.describe()


def test_schema_fields_match_the_msgspec_structs(schema: dict) -> None:
    """Same event types, same fields, same required fields: the two documents cannot drift apart."""
    assert set(schema["properties"]["event_type"]["enum"]) == set(EVENT_TYPES)
    common_props = set(schema["properties"])
    common_required = set(schema["required"])
    for name, cls in EVENT_TYPES.items():
        fields = msgspec.structs.fields(cls)
        branch = schema["$defs"][name]
        props = common_props | set(branch.get("properties", {}))
        required = common_required | set(branch.get("required", []))
        assert props == {f.encode_name for f in fields} | {"event_type"}, name
        assert required == {f.encode_name for f in fields if f.required} | {"event_type"}, name


def test_schema_has_a_branch_and_descriptions_for_every_type(schema: dict) -> None:
    branches = {b["if"]["properties"]["event_type"]["const"]: b["then"]["$ref"] for b in schema["allOf"]}
    assert branches == {name: f"#/$defs/{name}" for name in EVENT_TYPES}
    for name, spec in schema["properties"].items():
        assert re.search(r"[\u4e00-\u9fff]", spec["description"]) and " / " in spec["description"], name
    for name in EVENT_TYPES:
        for field, spec in schema["$defs"][name].get("properties", {}).items():
            assert re.search(r"[\u4e00-\u9fff]", spec["description"]) and " / " in spec["description"], field


def test_extra_fields_and_nulls_in_optional_fields_are_accepted(validator: jsonschema.Draft202012Validator) -> None:
    ev = copy.deepcopy(VALID["submitted"])
    ev.update({"vendor_trace_id": "abc", "flow_node": {"id": 7}, "officer_id": None, "recorded_at": None,
               "applicant": {"name": None, "ethnicity": "汉"}})
    assert validator.is_valid(ev), [e.message for e in validator.iter_errors(ev)]
    assert not isinstance(_decode(ev), InvalidEvent)
    # a field another type defines is just an extra field here: neither side checks it
    ev = _base("completed", region_code="12345")
    assert validator.is_valid(ev)
    assert not isinstance(_decode(ev), InvalidEvent)


@pytest.mark.parametrize("ts", ["2026-03-02T01:30:00Z", "2026-03-02T09:30:00.123+08:00",
                                "2026-03-01T20:30:00-05:00", "2026-03-02t09:30:00z"])
def test_offsets_and_z_accepted_by_both(ts: str, validator: jsonschema.Draft202012Validator) -> None:
    ev = _base("completed", occurred_at=ts)
    assert validator.is_valid(ev)
    assert not isinstance(_decode(ev), InvalidEvent)


def test_naive_time_only_with_configured_timezone() -> None:
    raw = json.dumps(_base("completed", occurred_at="2026-03-02T09:30:00"))
    assert isinstance(decode_event(raw), InvalidEvent)
    ev = decode_event(raw, naive_tz=CHINA_TZ)
    assert not isinstance(ev, InvalidEvent)
    assert ev.occurred_at.utcoffset().total_seconds() == 8 * 3600


def test_event_over_64_kib_is_rejected_with_the_limit_named() -> None:
    ev = _base("intake_rejected", reason="x", padding="y" * MAX_EVENT_BYTES)
    bad = _decode(ev)
    assert isinstance(bad, InvalidEvent)
    assert str(MAX_EVENT_BYTES) in bad.error and "limit" in bad.error
    assert MAX_EVENT_BYTES == 64 * 1024


def test_decoding_a_batch_at_once_gives_what_decoding_line_by_line_gives() -> None:
    """An audit replay decodes a bucket of stored lines in one call; any line that would not pass
    ``decode_event`` as it is sends the whole batch back to the line-by-line path (None)."""
    lines = [json.dumps({**ev, "event_id": f"b-{i}"}, ensure_ascii=False).encode() for i, ev in enumerate(VALID.values())]
    assert len(lines) == len(EVENT_TYPES)
    batch = decode_all_valid(lines)
    assert batch == [decode_event(line) for line in lines]
    assert decode_all_valid([]) == []
    naive = json.dumps(_base("completed", occurred_at="2026-03-02T09:30:00"))
    naive_due = json.dumps(_base("accepted", item_code="X", due_at="2026-03-20T17:00:00"))
    naive_rec = json.dumps(_base("completed", recorded_at="2026-03-02T09:30:00"))
    wrong = json.dumps(_base("completed", occurred_at="soon"))
    two = lines[0] + b"," + lines[1]  # one "line" holding two events
    huge = json.dumps(_base("intake_rejected", reason="x", padding="y" * MAX_EVENT_BYTES))
    for odd in (naive.encode(), naive_due.encode(), naive_rec.encode(), wrong.encode(), two, huge.encode(), b"", b"[]"):
        assert decode_all_valid([*lines, odd]) is None, odd[:80]
