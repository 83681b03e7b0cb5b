"""The item catalog (事项目录): what each approval item promises, requires and may charge.

The catalog is data, versioned: a rule decision uses the version in force when the case was
accepted, and every finding records that version. A broken catalog is refused as a whole with a
message that names the item and the field, because a half-loaded catalog silently mis-supervises.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec
import yaml

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "config" / "catalog.yaml"


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the item and the field."""


class Fee(msgspec.Struct, frozen=True, kw_only=True):
    """One fee in an item's schedule (收费项目) and its standard amount in yuan (收费标准)."""

    code: str
    name: str
    amount: Decimal
    basis: str | None = None  # the pricing document that allows the fee


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One approval item (事项)."""

    code: str
    name: str
    department: str
    kind: Literal["on_the_spot", "promised"]  # 即办件 | 承诺件
    promised_days: int  # 承诺时限, working days (0 for 即办件: the same working day)
    statutory_days: int = 20  # 法定时限, 行政许可法 第42条 default
    window: str | None = None
    steps: tuple[str, ...] = ()
    step_limits: dict[str, int] = {}
    separate_officers: tuple[tuple[str, str], ...] = ()  # steps one officer may not both do (审批分离)
    fees: tuple[Fee, ...] = ()  # empty: no fee may be charged
    min_minutes: int | None = None  # a completion faster than this is implausible (PROCEDURE.TOO_FAST)
    basis: str | None = None  # the law or document that creates the item

    def fee(self, code: str) -> Fee | None:
        for f in self.fees:
            if f.code == code:
                return f
        return None


class Catalog(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    effective_from: date
    items: tuple[Item, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {i.code: i for i in self.items})

    def item(self, code: str | None) -> Item | None:
        if code is None:
            return None
        return self._by_code.get(code)  # type: ignore[attr-defined]

    @property
    def departments(self) -> list[str]:
        return sorted({i.department for i in self.items})


def _problems(cat: Catalog) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for n, it in enumerate(cat.items):
        where = f"item {it.code!r} ({it.name})"
        if it.code in seen:
            out.append(f"{where}: duplicate `code`")
        seen.add(it.code)
        if it.promised_days < 0:
            out.append(f"{where}: `promised_days` must be >= 0")
        if it.statutory_days < 1:
            out.append(f"{where}: `statutory_days` must be >= 1")
        if it.promised_days > it.statutory_days:
            out.append(f"{where}: `promised_days` ({it.promised_days}) exceeds `statutory_days` ({it.statutory_days})")
        if it.kind == "on_the_spot" and it.promised_days != 0:
            out.append(f"{where}: `promised_days` must be 0 for an on_the_spot item (即办件)")
        if it.kind == "promised" and it.promised_days < 1:
            out.append(f"{where}: `promised_days` must be >= 1 for a promised item (承诺件)")
        if len(set(it.steps)) != len(it.steps):
            out.append(f"{where}: `steps` lists a step twice")
        for step, days in it.step_limits.items():
            if step not in it.steps:
                out.append(f"{where}: `step_limits` names unknown step {step!r} (steps: {', '.join(it.steps)})")
            if days < 1:
                out.append(f"{where}: `step_limits.{step}` must be >= 1 working day")
        for a, b in it.separate_officers:
            for s in (a, b):
                if s not in it.steps:
                    out.append(f"{where}: `separate_officers` names unknown step {s!r}")
        codes = [f.code for f in it.fees]
        if len(set(codes)) != len(codes):
            out.append(f"{where}: `fees` lists a fee code twice")
        for f in it.fees:
            if f.amount < 0:
                out.append(f"{where}: fee {f.code!r} `amount` must be >= 0")
        if it.min_minutes is not None and it.min_minutes < 0:
            out.append(f"{where}: `min_minutes` must be >= 0")
    if not cat.items:
        out.append("catalog has no items")
    return out




def parse_catalog(data: object, source: str = "<catalog>") -> Catalog:
    """Turn parsed YAML into a checked Catalog, or raise CatalogError naming item and field."""
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        for n, raw in enumerate(data["items"]):
            if not isinstance(raw, dict):
                raise CatalogError(f"{source}: items[{n}] is not a mapping")
            label = f"item {raw.get('code', f'#{n}')!r}"
            if "name" in raw:
                label += f" ({raw['name']})"
            try:
                msgspec.convert(raw, Item, strict=False)
            except msgspec.ValidationError as exc:
                msg = str(exc)
                if msg.startswith("Object missing required field"):
                    field = msg.split("`")[1]
                    raise CatalogError(f"{source}: {label}: missing required field `{field}`") from None
                raise CatalogError(f"{source}: {label}: {msg}") from None
    try:
        cat = msgspec.convert(data, Catalog, strict=False)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{source}: {exc}") from None
    problems = _problems(cat)
    if problems:
        raise CatalogError(f"{source}: " + "; ".join(problems))
    return cat


def load_catalog(path: str | Path | None = None) -> Catalog:
    path = Path(path) if path else DEFAULT_CATALOG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_catalog(data, str(path))


class CatalogSet:
    """All known catalog versions; picks the one in force on a given day."""

    def __init__(self, catalogs: Iterable[Catalog]):
        self._cats: list[Catalog] = sorted(catalogs, key=lambda c: c.effective_from)
        if not self._cats:
            raise CatalogError("no catalog versions given")
        self._starts = [c.effective_from for c in self._cats]
        self._by_version = {c.version: c for c in self._cats}

    @classmethod
    def single(cls, catalog: Catalog) -> CatalogSet:
        return cls([catalog])

    @property
    def versions(self) -> Sequence[Catalog]:
        return self._cats

    @property
    def latest(self) -> Catalog:
        return self._cats[-1]

    def version(self, version: str) -> Catalog | None:
        return self._by_version.get(version)

    def in_force(self, day: date) -> Catalog:
        """The version in force on ``day``; before the first version, the first one (and say so upstream)."""
        i = bisect.bisect_right(self._starts, day) - 1
        return self._cats[max(i, 0)]
