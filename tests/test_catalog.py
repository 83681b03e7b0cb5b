"""The shipped item catalog and its loader.

The catalog decides what every rule finds, so two things are pinned here: the shipped file is
realistic enough to exercise every rule in docs/rules.md, and a broken file is refused with a message
an editor can act on (which item, which field, which step) instead of being half-loaded.
"""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from esup.cli import app
from rules.catalog import DEFAULT_CATALOG, Catalog, CatalogError, CatalogSet, load_catalog, parse_catalog

DECISION_STEPS = {"审核", "审查", "批准", "决定"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture()
def raw() -> dict:
    """The shipped catalog as plain YAML data, to break in one place per test."""
    return yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _item(data: dict, code: str) -> dict:
    return next(i for i in data["items"] if i["code"] == code)


# ── the shipped catalog ────────────────────────────────────────────────────────────────────────────


def test_default_catalog_loads_with_enough_items_and_departments(catalog: Catalog) -> None:
    assert catalog.version == "2026.10"
    assert catalog.effective_from == date(2026, 1, 1)
    assert catalog.name
    assert len(catalog.items) >= 45
    assert len(catalog.departments) >= 9


def test_lookup_by_code(catalog: Catalog) -> None:
    item = catalog.item("SC-001")
    assert item is not None and item.name == "有限责任公司设立登记"
    assert catalog.item("NO-SUCH") is None
    assert catalog.item(None) is None
    assert CatalogSet.single(catalog).in_force(date(2026, 6, 1)) is catalog


def test_seed_document_limits(catalog: Catalog) -> None:
    """彭州市政务服务中心: 分公司设立登记 2 个工作日, 农民专业合作社设立登记 5 个工作日, 公司登记 1 个工作日内."""
    by_name = {i.name: i for i in catalog.items}
    assert by_name["分公司设立登记"].promised_days == 2
    assert by_name["农民专业合作社设立登记"].promised_days == 5
    assert by_name["有限责任公司设立登记"].promised_days == 1
    assert by_name["有限责任公司设立登记"].min_minutes <= 55  # the seed's fastest case took 55 minutes
    for name in ("建设用地规划许可证核发", "建设工程规划许可证核发", "林木采伐许可证核发", "最低生活保障审核确认",
                 "个体工商户设立登记"):
        assert name in by_name
    assert any(i.name.startswith("户口迁") for i in catalog.items)


def test_every_item_is_complete(catalog: Catalog) -> None:
    for it in catalog.items:
        assert it.window and it.basis and it.min_minutes is not None, it.code
        assert len(it.steps) >= 2, it.code
        assert it.steps[0] == "受理", it.code
        # The decision is the last step: PROCEDURE.SKIPPED_STEP checks steps at the first `decided`,
        # so a 办结/送达 step (those are events) would be reported as skipped on every case.
        assert it.steps[-1] in DECISION_STEPS, it.code
        assert "办结" not in it.steps and "送达" not in it.steps, it.code
        if it.kind == "on_the_spot":
            assert it.promised_days == 0 and not it.step_limits, it.code
            assert it.min_minutes <= 30, it.code
        else:
            assert 1 <= it.promised_days <= 15, it.code
            assert it.min_minutes >= 30, it.code
            assert sum(it.step_limits.values()) <= it.promised_days, it.code


def test_mix_of_kinds_limits_and_fees(catalog: Catalog) -> None:
    items = catalog.items
    promised = [i for i in items if i.kind == "promised"]
    on_the_spot = [i for i in items if i.kind == "on_the_spot"]
    with_fees = [i for i in items if i.fees]
    assert len(on_the_spot) >= 15 and len(promised) >= 15
    assert 0.15 <= len(with_fees) / len(items) <= 0.35  # about a quarter charge a published fee
    assert sum(1 for i in promised if i.separate_officers) > len(promised) / 2  # most 承诺件: 审批分离
    assert sum(1 for i in items if i.step_limits) >= 10
    assert {i.statutory_days for i in items} >= {3, 10, 20, 30, 45, 60}  # statute-specific limits, not only 20
    for it in items:
        if it.statutory_days != 20:
            assert "《" in (it.basis or ""), f"{it.code}: a non-default statutory limit must name its law"
        for a, b in it.separate_officers:
            assert it.steps.index(a) < it.steps.index(b), it.code


def test_published_fee_standards(catalog: Catalog) -> None:
    fees = {(i.code, f.code): f for i in catalog.items for f in i.fees}
    assert fees[("BDC-001", "DJF-ZZ")].amount == Decimal(80)
    assert fees[("BDC-001", "DJF-FZZ")].amount == Decimal(550)
    assert fees[("BDC-001", "DJF-GBF")].amount == Decimal(10)
    assert fees[("GA-001", "SFZ-GBF")].amount == Decimal(20)
    assert fees[("GA-009", "HZ-GBF")].amount == Decimal(120)
    assert all(f.basis for f in fees.values())
    # one fee code means one standard wherever it appears
    by_code: dict[str, set[Decimal]] = {}
    for (_, code), f in fees.items():
        by_code.setdefault(code, set()).add(f.amount)
    assert all(len(v) == 1 for v in by_code.values()), by_code


def test_items_exercising_each_rule_family_exist(catalog: Catalog) -> None:
    items = catalog.items
    assert any(i.fees for i in items) and any(not i.fees for i in items)  # FEE.* and FEE.NO_BASIS
    assert any(i.step_limits for i in items)  # TIMEOUT.STEP_OVERDUE
    assert any(i.separate_officers for i in items)  # PROCEDURE.SAME_OFFICER
    assert any(i.kind == "on_the_spot" for i in items)  # PROCEDURE.ON_THE_SPOT_LATE
    assert any(i.kind == "promised" for i in items)  # TIMEOUT.PROMISED_*
    assert any(len(i.fees) >= 2 for i in items)  # FEE.NO_BASIS with a code outside a real schedule
    assert any("现场勘查" in i.steps for i in items)


def test_windows_are_per_department(catalog: Catalog) -> None:
    windows: dict[str, set[str]] = {}
    for it in catalog.items:
        windows.setdefault(it.window or "", set()).add(it.department)
    assert all(len(depts) == 1 for depts in windows.values()), windows
    assert max(sum(1 for w, d in windows.items() if dep in d) for dep in catalog.departments) >= 3


def test_codes_are_unique(catalog: Catalog) -> None:
    codes = [i.code for i in catalog.items]
    assert len(codes) == len(set(codes))


# ── broken copies are refused with item and field named ──────────────────────────────────────────


def test_missing_promised_days_names_item_and_field(raw: dict, tmp_path: Path) -> None:
    del _item(raw, "SC-001")["promised_days"]
    with pytest.raises(CatalogError) as exc:
        load_catalog(_write(tmp_path, raw))
    msg = str(exc.value)
    assert "item 'SC-001' (有限责任公司设立登记): missing required field `promised_days`" in msg
    assert str(tmp_path) in msg


def test_step_limit_on_unknown_step_names_item_field_and_step(raw: dict, tmp_path: Path) -> None:
    _item(raw, "ZR-003")["step_limits"]["专家论证"] = 2
    with pytest.raises(CatalogError) as exc:
        load_catalog(_write(tmp_path, raw))
    msg = str(exc.value)
    assert "ZR-003" in msg and "建设工程规划许可证核发" in msg
    assert "`step_limits`" in msg and "'专家论证'" in msg


def test_duplicate_code_fails(raw: dict, tmp_path: Path) -> None:
    twin = copy.deepcopy(_item(raw, "SC-002"))
    twin["name"] = "分公司设立登记（重复）"
    raw["items"].append(twin)
    with pytest.raises(CatalogError) as exc:
        load_catalog(_write(tmp_path, raw))
    assert "SC-002" in str(exc.value) and "duplicate `code`" in str(exc.value)


def test_misspelt_field_is_refused_not_dropped(raw: dict, tmp_path: Path) -> None:
    it = _item(raw, "LY-001")
    it["step_limit"] = it.pop("step_limits")
    with pytest.raises(CatalogError) as exc:
        load_catalog(_write(tmp_path, raw))
    assert "LY-001" in str(exc.value)
    assert "unknown field `step_limit` (did you mean `step_limits`?)" in str(exc.value)


def test_every_problem_is_reported_at_once(raw: dict, tmp_path: Path) -> None:
    del _item(raw, "SC-001")["kind"]
    _item(raw, "GA-009")["fees"][0]["amount"] = -120
    _item(raw, "MZ-001")["promised_days"] = 40
    _item(raw, "WJ-001")["separate_officers"] = [["审核", "签发"]]
    with pytest.raises(CatalogError) as exc:
        load_catalog(_write(tmp_path, raw))
    problems = exc.value.problems
    assert len(problems) == 4, problems
    joined = "\n".join(problems)
    assert "SC-001" in joined and "`kind`" in joined
    assert "GA-009" in joined and "`fees[0].amount`" in joined
    assert "MZ-001" in joined and "`promised_days` (40) exceeds `statutory_days` (30)" in joined
    assert "WJ-001" in joined and "`separate_officers[0]` names unknown step '签发'" in joined


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda it: it.update(kind="on_the_spot"), "`promised_days` must be 0 for an on_the_spot item"),
        (lambda it: it.update(kind="urgent"), "field `kind`: Invalid enum value 'urgent'"),
        (lambda it: it.update(promised_days="一天"), "field `promised_days`: Expected `int`"),
        (lambda it: it.update(steps=["受理", "审核", "审核"]), "`steps` lists step '审核' twice"),
        (lambda it: it.update(separate_officers=[["审核", "审核"]]), "pairs step '审核' with itself"),
        (lambda it: it["fees"].append({"code": "X", "name": "无金额"}), "missing required field `fees[0].amount`"),
        (lambda it: it.update(min_minutes=-1), "`min_minutes` must be >= 0"),
    ],
)
def test_field_level_errors(raw: dict, change, expected: str) -> None:
    change(_item(raw, "SC-001"))
    with pytest.raises(CatalogError) as exc:
        parse_catalog(raw, "draft.yaml")
    assert "item 'SC-001'" in str(exc.value)
    assert expected in str(exc.value)


def test_top_level_errors(raw: dict) -> None:
    with pytest.raises(CatalogError, match="quoted string"):
        parse_catalog(raw | {"version": 2026.1})
    with pytest.raises(CatalogError, match="missing required field `effective_from`"):
        parse_catalog({k: v for k, v in raw.items() if k != "effective_from"})
    with pytest.raises(CatalogError, match="has no items"):
        parse_catalog(raw | {"items": []})
    with pytest.raises(CatalogError, match="file is empty"):
        parse_catalog(None)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("items: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)


# ── esup catalog check / show ────────────────────────────────────────────────────────────────────

runner = CliRunner()


def test_cli_check_default_catalog(catalog: Catalog) -> None:
    result = runner.invoke(app, ["catalog", "check"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "事项目录校验通过" in out
    assert "版本：2026.10" in out and "生效日期：2026-01-01" in out
    assert f"事项数：{len(catalog.items)}" in out and f"部门数：{len(catalog.departments)}" in out
    n_spot = sum(1 for i in catalog.items if i.kind == "on_the_spot")
    assert f"即办件：{n_spot}" in out and f"承诺件：{len(catalog.items) - n_spot}" in out


def test_cli_check_broken_file_exits_1_naming_item_and_field(raw: dict, tmp_path: Path) -> None:
    del _item(raw, "SC-001")["promised_days"]
    result = runner.invoke(app, ["catalog", "check", str(_write(tmp_path, raw))])
    assert result.exit_code == 1
    assert "事项目录校验失败" in result.output
    assert "SC-001" in result.output and "promised_days" in result.output


def test_cli_check_missing_file_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalog", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read catalog" in result.output


def test_cli_show_item(catalog: Catalog) -> None:
    result = runner.invoke(app, ["catalog", "show", "BDC-002"])
    assert result.exit_code == 0, result.output
    for text in ("不动产转移登记", "承诺件", "审批分离", "DJF-ZZ", "80 元", "30 个工作日"):
        assert text in result.output, text
    result = runner.invoke(app, ["catalog", "show", "SW-001"])
    assert result.exit_code == 0 and "不收费" in result.output and "当场办结" in result.output


def test_cli_show_unknown_code_exits_1() -> None:
    result = runner.invoke(app, ["catalog", "show", "SC-01"])
    assert result.exit_code == 1
    assert "SC-01" in result.output and "SC-001" in result.output  # suggests the near codes
