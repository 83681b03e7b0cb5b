"""The item catalog (事项目录): what each approval item promises, requires and may charge.

The catalog is data, versioned: a rule decision uses the version in force when the case was
accepted, and every finding records that version. A broken catalog is refused as a whole with a
message that names the item and the field, because a half-loaded catalog silently mis-supervises.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec
import yaml

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "config" / "catalog.yaml"


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the item and the field.

    ``problems`` lists every problem found (the message joins them), so that one run of
    ``esup catalog check`` shows an editor everything to fix rather than one error per run.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


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


class Catalog(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """One version of the catalog. ``dict=True`` only lets the code index live beside the fields."""

    version: str
    effective_from: date
    items: tuple[Item, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        # A frozen Struct refuses attribute assignment; the instance __dict__ holds the derived index.
        self.__dict__["_by_code"] = {i.code: i for i in self.items}

    def item(self, code: str | None) -> Item | None:
        if code is None:
            return None
        return self.__dict__["_by_code"].get(code)

    @property
    def departments(self) -> list[str]:
        return sorted({i.department for i in self.items})


_ITEM_FIELDS = tuple(f.encode_name for f in msgspec.structs.fields(Item))
_FEE_FIELDS = tuple(f.encode_name for f in msgspec.structs.fields(Fee))
_TOP_FIELDS = tuple(f.encode_name for f in msgspec.structs.fields(Catalog))


def _unknown_keys(raw: dict, known: Sequence[str], where: str) -> list[str]:
    """Unknown keys are refused: a misspelt ``step_limit`` would otherwise be dropped silently."""
    out = []
    for key in raw:
        if key in known:
            continue
        hint = difflib.get_close_matches(str(key), known, n=1)
        also = f" (did you mean `{hint[0]}`?)" if hint else ""
        out.append(f"{where}: unknown field `{key}`{also}")
    return out


def _explain(exc: msgspec.ValidationError) -> str:
    """Reword a msgspec error so that it names the catalog field, e.g. ``fees[0].amount``."""
    text = str(exc)
    msg, sep, at = text.partition(" - at `")
    path = at.rstrip("`").removeprefix("$").removeprefix(".") if sep else ""
    if msg.startswith("Object missing required field `"):
        field = msg.split("`")[1]
        return f"missing required field `{path + '.' if path else ''}{field}`"
    if msg.startswith("Expected `str`, got `int`") or msg.startswith("Expected `str`, got `float`"):
        msg += " (quote the value in YAML)"
    return f"field `{path}`: {msg}" if path else msg


def _item_problems(it: Item, where: str) -> list[str]:
    """Checks msgspec's types cannot express; each message names the field."""
    out: list[str] = []
    for field in ("code", "name", "department"):
        if not getattr(it, field).strip():
            out.append(f"{where}: `{field}` must not be empty")
    if it.window is not None and not it.window.strip():
        out.append(f"{where}: `window` must not be empty when given")
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
    if any(not s.strip() for s in it.steps):
        out.append(f"{where}: `steps` contains an empty step name")
    if len(set(it.steps)) != len(it.steps):
        dup = sorted({s for s in it.steps if it.steps.count(s) > 1})
        out.append(f"{where}: `steps` lists step {', '.join(map(repr, dup))} twice")
    for step, days in it.step_limits.items():
        if step not in it.steps:
            known = ", ".join(it.steps) or "none"
            out.append(f"{where}: `step_limits` names unknown step {step!r} (steps: {known})")
        if days < 1:
            out.append(f"{where}: `step_limits.{step}` must be >= 1 working day")
        elif days > it.statutory_days:
            out.append(f"{where}: `step_limits.{step}` ({days}) exceeds `statutory_days` ({it.statutory_days})")
    for n, (a, b) in enumerate(it.separate_officers):
        if a == b:
            out.append(f"{where}: `separate_officers[{n}]` pairs step {a!r} with itself")
        for s in (a, b):
            if s not in it.steps:
                out.append(f"{where}: `separate_officers[{n}]` names unknown step {s!r}")
    codes = [f.code for f in it.fees]
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        out.append(f"{where}: `fees` lists fee code {code!r} twice")
    for n, f in enumerate(it.fees):
        if not f.code.strip():
            out.append(f"{where}: `fees[{n}].code` must not be empty")
        if not f.amount.is_finite() or f.amount < 0:
            out.append(f"{where}: `fees[{n}].amount` (fee {f.code!r}) must be a finite amount >= 0")
    if it.min_minutes is not None and it.min_minutes < 0:
        out.append(f"{where}: `min_minutes` must be >= 0")
    return out


def _fail(source: str, problems: list[str]) -> CatalogError:
    return CatalogError(f"{source}: " + "; ".join(problems), [f"{source}: {p}" for p in problems])


def parse_catalog(data: object, source: str = "<catalog>") -> Catalog:
    """Turn parsed YAML into a checked Catalog, or raise CatalogError naming item and field.

    Every item is checked before anything is refused, so the error lists all problems at once.
    """
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise _fail(source, [f"the catalog must be a mapping with `version`, `effective_from` and `items`, "
                             f"but the file is {kind}"])
    problems: list[str] = _unknown_keys(data, _TOP_FIELDS, "catalog")
    head: Catalog | None = None
    if isinstance(data.get("version"), int | float) and not isinstance(data.get("version"), bool):
        problems.append(f"catalog: `version` must be a quoted string such as version: \"2026.10\" "
                        f"(YAML read the unquoted value as the number {data['version']!r})")
    else:
        try:
            head = msgspec.convert({k: v for k, v in data.items() if k != "items"} | {"items": []},
                                   Catalog, strict=False)
        except msgspec.ValidationError as exc:
            problems.append(f"catalog: {_explain(exc)}")
            head = None
    raw_items = data.get("items")
    items: list[Item] = []
    if raw_items is None:
        problems.append("catalog: missing required field `items`")
        raw_items = []
    elif not isinstance(raw_items, list):
        problems.append("catalog: `items` must be a list of items")
        raw_items = []
    elif not raw_items:
        problems.append("catalog has no items")
    first_at: dict[str, int] = {}
    for n, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            problems.append(f"items[{n}] is not a mapping")
            continue
        label = f"item {raw.get('code', f'#{n}')!r}"
        if raw.get("name"):
            label += f" ({raw['name']})"
        problems.extend(_unknown_keys(raw, _ITEM_FIELDS, label))
        for k, fee in enumerate(raw.get("fees") or []):
            if isinstance(fee, dict):
                problems.extend(_unknown_keys(fee, _FEE_FIELDS, f"{label}: fees[{k}]"))
        try:
            item = msgspec.convert(raw, Item, strict=False)
        except msgspec.ValidationError as exc:
            problems.append(f"{label}: {_explain(exc)}")
            continue
        if item.code in first_at:
            problems.append(f"{label}: duplicate `code` (also items[{first_at[item.code]}])")
        first_at.setdefault(item.code, n)
        problems.extend(_item_problems(item, label))
        items.append(item)
    if problems or head is None:
        raise _fail(source, problems)
    return Catalog(version=head.version, effective_from=head.effective_from, items=tuple(items), name=head.name)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and check a catalog file (default: the shipped ``config/catalog.yaml``)."""
    path = Path(path) if path else DEFAULT_CATALOG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
