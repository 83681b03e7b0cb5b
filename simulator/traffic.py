"""Normal case lifecycles (正常办件): what a clean service center's approval systems emit.

A case is planned on whole working days first, then given times of day. Days are walked with the
same working-day calendar the engine uses, and every limit of docs/rules.md is respected *by
construction*: completion before the PROMISED_WARNING instant, each step within its step limit,
special procedures resumed within their planned days, complaints resolved in time. A normal case
therefore fires nothing, however long the clock runs afterwards — which is what lets the truth file
list only injected violations.

Day positions are tracked as ``pos2 = 2·idx + paused``: ``idx`` counts unpaused working days after the
clock start date S, and a paused date sits between two unpaused ones. A deadline "WD#n after" a date
at ``pos2 = p`` (paused dates skipped) is the unpaused day at ``idx = p // 2 + n``; an event is in time
when its ``pos2`` is at most ``2·(p // 2 + n)``.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from rules.catalog import Catalog, Fee, Item
from rules.config import RuleConfig
from simulator import people
from simulator.timeline import OFFICE_LEN, DayTable, day_end, day_start, office_second

# ----------------------------------------------------------------------------------- vocabulary

SPECIAL_PROCEDURES: tuple[tuple[str, int], ...] = (
    ("专家评审", 10), ("现场勘查", 5), ("公示", 7), ("听证", 10), ("检验检测", 8), ("技术鉴定", 6),
)
"""特别程序 and the working days a center typically plans for each (第45条: not counted in the limit)."""

SUPPLEMENT_MATERIALS: tuple[str, ...] = (
    "申请人身份证明复印件", "营业执照副本复印件", "法定代表人授权委托书", "场地使用证明", "平面布局图",
    "技术人员资格证明", "不动产权属证明", "环境影响评价文件", "卫生许可相关材料", "申请表（签字盖章）",
)
INTAKE_REJECT_REASONS: tuple[str, ...] = (
    "申请事项不属于本机关职权范围", "申请人不具备申请资格", "申请事项依法不需要取得行政许可",
    "申请材料存在虚假内容", "同一事项已在办理中，不得重复申请",
)
RATING_COMMENTS: dict[int, tuple[str, ...]] = {
    5: ("办事效率高，工作人员很耐心", "一次办好，点赞", "窗口服务热情周到"),
    4: ("整体满意", "流程清楚，等候时间稍长"),
    3: ("还可以", "材料要求可以再说明清楚一些"),
    2: ("等候时间太长", "来回跑了两次"),
    1: ("工作人员态度差", "材料被要求重复提交，非常不满意"),
}

SRC_WINDOW = "政务服务中心综合受理系统"
SRC_ONLINE = "一体化政务服务平台"
SRC_PAY = "非税收入收缴系统"
SRC_RATING = "政务服务好差评系统"
SRC_HOTLINE = "12345政务服务便民热线"

# ----------------------------------------------------------------------------------- data shapes


class PEvent:
    """One planned event: an instant (UTC epoch seconds), a type and its type-specific fields.

    ``delay`` is recorded_at − occurred_at in seconds; -1 until the writer assigns a normal one.
    """

    __slots__ = ("ts", "type", "officer", "src", "f", "delay")

    def __init__(self, ts: int, type: str, officer: str | None, src: str, f: dict | None = None,
                 delay: int = -1):
        self.ts = ts
        self.type = type
        self.officer = officer
        self.src = src
        self.f = f if f is not None else {}
        self.delay = delay

    def __repr__(self) -> str:  # debugging aid only
        from datetime import datetime

        from schemas.events import CHINA_TZ
        return f"PEvent({datetime.fromtimestamp(self.ts, CHINA_TZ):%m-%d %H:%M:%S} {self.type} {self.officer} {self.f})"


def warning_day(n: int, cfg: RuleConfig) -> int:
    """k of docs/rules.md: the warning fires at the start of WD#k (exact decimal share, no float drift).

    Written from the rule text rather than imported from ``rules.timeouts``: the truth is meant to be
    an independent reading, so a mistake in the engine's formula shows up as a disagreement.
    """
    by_left = n - cfg.warning_days_left + 1
    by_share = math.ceil(Decimal(repr(cfg.warning_fraction)) * n) + 1
    return min(n, max(1, min(by_left, by_share)))


class ItemProfile:
    """Everything the planner needs about one catalog item, computed once."""

    __slots__ = ("item", "code", "spot", "n", "m", "k", "steps", "limits", "pairs", "fees", "min_minutes",
                 "window", "department", "source", "weight", "wcode")

    def __init__(self, item: Item, cfg: RuleConfig, wcode: str, weight: float):
        self.item = item
        self.code = item.code
        self.spot = item.kind == "on_the_spot"
        self.n = item.promised_days
        self.m = item.statutory_days
        self.k = warning_day(item.promised_days, cfg) if not self.spot else 0
        self.steps: tuple[str, ...] = tuple(item.steps)
        self.limits: tuple[int | None, ...] = tuple(item.step_limits.get(s) for s in item.steps)
        idx = {s: i for i, s in enumerate(item.steps)}
        self.pairs: tuple[tuple[int, int], ...] = tuple(
            (idx[a], idx[b]) for a, b in item.separate_officers if a in idx and b in idx and a != b)
        self.fees: tuple[Fee, ...] = tuple(f for f in item.fees if f.amount > 0)
        self.min_minutes = item.min_minutes or 0
        self.window = item.window or f"{item.department}综合窗口"
        self.department = item.department
        self.source = f"{item.department}审批系统"
        self.weight = weight
        self.wcode = wcode


class Center:
    """One service center (政务服务中心): its region code, windows and officers."""

    __slots__ = ("index", "region", "officers", "heads", "serial", "weight")

    def __init__(self, index: int, region: str, windows: Sequence[tuple[str, str, int]], suffix: str,
                 weight: float):
        self.index = index
        self.region = region
        self.weight = weight
        self.officers: dict[str, tuple[str, ...]] = {}
        self.heads: dict[str, str] = {}
        for window, wcode, size in windows:
            self.officers[window] = tuple(f"OF-{wcode}{suffix}-{i:02d}" for i in range(1, size + 1))
            self.heads[window] = f"HD-{wcode}{suffix}-01"
        self.serial: dict[int, int] = {}

    def next_case_id(self, ordinal: int, ymd: str) -> str:
        n = self.serial.get(ordinal, 0) + 1
        self.serial[ordinal] = n
        return f"{self.region}{ymd}{n:06d}"


@dataclass(slots=True)
class FeeLine:
    """One fee on a case and how it is settled; violations bend these fields."""

    code: str
    assessed: Decimal
    settle: str = "bank"  # bank | online | window_cash | waive | none
    paid: Decimal | None = None  # None: the assessed amount
    approval: str | None = "auto"  # waiver approval reference; None = missing (a violation)
    twice: bool = False  # assessed (and paid) a second time


@dataclass(slots=True)
class Knobs:
    """How a case deviates from the default random lifecycle. None means "as a normal case would"."""

    plain: bool = False  # no random extras (supplements, suspension, extension, complaint, withdrawal …)
    outcome: str | None = None  # approved | denied | withdrawn | rejected (at intake) | open (after steps)
    intake_gap: int | None = None  # working days from submission to acceptance / rejection
    late_intake: bool = False  # acceptance after the intake limit: clock start = D(submitted) (第32条)
    accept: bool = True  # False: no `accepted` event at all
    completion_idx: int | None = None  # forced working-day index (from S) of decision and completion
    step_moves: list[int] | None = None  # forced active-day moves of steps[1:] and the decision
    supplements: int | None = None
    suspension: tuple[str, int, int] | None = None  # (procedure, planned_days, actual working days)
    extension: int | None = None
    fees: list[FeeLine] | None = None  # None: the item's normal fees
    fee_mode: str | None = None  # pre (right after acceptance) | post (after the decision)
    deliver_before_pay: bool = False
    refund: str = "normal"  # after a denial with fees paid: normal | late | none
    night_decision: int | None = None  # second of day for `decided` (PROCEDURE.OFF_HOURS)
    rating: int | None = None  # forced level
    rating_fix: int | None = None  # working days after a bad rating until `rating_resolved`; -1: never
    complaint: int | None = None  # working days until `complaint_resolved`; -1: never
    due_at: bool | None = None


@dataclass(slots=True)
class Case:
    """A planned case: identity, item, and its events in occurred order."""

    cid: str
    prof: ItemProfile
    center: Center
    events: list[PEvent]
    kind: str | None = None  # injected violation kind
    rule: str | None = None  # the rule the injection targets


class _Walk:
    """Moves along working days from the clock start date, counting unpaused ones."""

    __slots__ = ("tab", "date", "idx", "paused")

    def __init__(self, tab: DayTable, date: int):
        self.tab = tab
        self.date = date
        self.idx = 0
        self.paused = False

    def active(self, n: int) -> None:
        if n > 0:
            self.date = self.tab.nth_after(self.date, n)
            self.idx += n
            self.paused = False

    def pause(self, n: int) -> None:
        """Move n working days inside a pause: those dates do not count for the case."""
        self.date = self.tab.nth_after(self.date, n)
        self.paused = True


# ----------------------------------------------------------------------------------- the planner


def item_weight(item: Item) -> float:
    """Stable popularity of an item (not seed-dependent), so the mix is the same in every run."""
    return 0.35 + (zlib.crc32(item.code.encode()) % 1000) / 1000.0


def build_profiles(catalog: Catalog, cfg: RuleConfig, spot_share: float = 0.66) -> list[ItemProfile]:
    """Item profiles with weights giving 即办件 about ``spot_share`` of all cases (as the seed documents)."""
    items = list(catalog.items)
    prefix_count: dict[str, int] = {}
    wcodes: dict[str, str] = {}
    for it in items:
        window = it.window or f"{it.department}综合窗口"
        if window not in wcodes:
            prefix = "".join(c for c in it.code.split("-")[0] if c.isalnum()).upper()[:3] or "W"
            prefix_count[prefix] = prefix_count.get(prefix, 0) + 1
            wcodes[window] = f"{prefix}{prefix_count[prefix]}"
    spot_w = sum(item_weight(i) for i in items if i.kind == "on_the_spot")
    prom_w = sum(item_weight(i) for i in items if i.kind != "on_the_spot")
    out = []
    for it in items:
        w = item_weight(it)
        if spot_w and prom_w:
            w = w / spot_w * spot_share if it.kind == "on_the_spot" else w / prom_w * (1 - spot_share)
        out.append(ItemProfile(it, cfg, wcodes[it.window or f"{it.department}综合窗口"], w))
    return out


def _pick(rng: random.Random, seq: Sequence[str]) -> str:
    return seq[int(rng.random() * len(seq))]


def fast_randint(rng: random.Random):
    """``randint`` through one C call: the simulator draws millions of them."""
    rnd = rng.random

    def ri(a: int, b: int) -> int:
        return a + int(rnd() * (b - a + 1))

    return ri


class Planner:
    """Plans one case at a time; all randomness comes from the one ``rng`` (determinism)."""

    def __init__(self, rng: random.Random, tab: DayTable, cfg: RuleConfig):
        self.rng = rng
        self.ri = fast_randint(rng)
        self.tab = tab
        self.cfg = cfg

    # -- helpers -------------------------------------------------------------------------------

    def _officers(self, prof: ItemProfile, center: Center) -> list[str]:
        """An officer per step; the two steps of every 审批分离 pair by different people."""
        pool = center.officers[prof.window]
        rnd = self.rng.random
        offs = [pool[int(rnd() * len(pool))] for _ in prof.steps]
        if len(offs) > 1 and rnd() < 0.5:
            offs[1] = offs[0]  # the intake officer often does the next step too
        for a, b in prof.pairs:
            if offs[a] == offs[b]:
                # Avoid every partner of b, so no pair already checked clashes again: one pass suffices.
                taken = {offs[x if y == b else y] for x, y in prof.pairs if b in (x, y)}
                free = [o for o in pool if o not in taken] or list(pool)
                offs[b] = free[int(rnd() * len(free))]
        return offs

    def _normal_fees(self, prof: ItemProfile) -> list[FeeLine]:
        rng = self.rng
        if not prof.fees:
            return []
        count = 2 if len(prof.fees) > 1 and rng.random() < 0.25 else 1
        chosen = rng.sample(prof.fees, count)
        lines = []
        for fee in chosen:
            r = rng.random()
            settle = "waive" if r < 0.03 else ("bank" if r < 0.58 else "online")
            lines.append(FeeLine(fee.code, fee.amount, settle))
        return lines

    # -- the lifecycle -------------------------------------------------------------------------

    def plan(self, cid: str, prof: ItemProfile, center: Center, arrival: int, arrival_off: int,
             knobs: Knobs) -> Case:
        rng = self.rng
        ri = self.ri
        tab = self.tab
        cfg = self.cfg
        spot = prof.spot
        plain = knobs.plain
        slots: list[tuple[int, PEvent, int, int]] = []  # (date, event, min gap, max gap) in minutes
        night: dict[PEvent, int] = {}  # events at a fixed second of day (night work)
        offs = self._officers(prof, center)
        clerk = offs[0] if offs else center.officers[prof.window][0]
        approver = offs[-1] if offs else clerk
        dep_src = prof.source
        applicant = (people.person_name(rng), people.id_number(rng, center.region), people.mobile(rng))

        def add(date: int, typ: str, officer: str | None, src: str, lo: int, hi: int, **f: object) -> PEvent:
            ev = PEvent(0, typ, officer, src, f)
            slots.append((date, ev, lo, hi))
            return ev

        intake = {"item_code": prof.code, "region_code": center.region, "department": prof.department,
                  "window": prof.window}
        online = not spot and rng.random() < 0.3
        sub_src = SRC_ONLINE if online else SRC_WINDOW
        outcome = knobs.outcome
        if outcome is None:
            r = rng.random()
            if plain:
                outcome = "approved"
            elif r < 0.02:
                outcome = "rejected"
            elif not spot and r < 0.04:
                outcome = "denied"
            elif not spot and r < 0.05:
                outcome = "withdrawn"
            else:
                outcome = "approved"

        gap = knobs.intake_gap
        if gap is None:
            gap = ri(1, 3) if online and rng.random() < 0.5 else 0
        submitted = dict(intake)
        submitted["applicant"] = applicant
        add(arrival, "submitted", None if online else clerk, sub_src, 0, 0, **submitted)

        if outcome == "rejected":
            day = tab.nth_after(arrival, gap)
            add(day, "intake_rejected", clerk, SRC_WINDOW, 5, 40, reason=_pick(rng, INTAKE_REJECT_REASONS))
            return self._finish(cid, prof, center, slots, night, arrival_off)

        acc_date = tab.nth_after(arrival, gap)
        start = arrival if knobs.late_intake else acc_date
        walk = _Walk(tab, start)
        if knobs.late_intake:
            walk.active(gap)
        if knobs.accept:
            acc_fields = dict(intake)
            want_due = knobs.due_at if knobs.due_at is not None else (not spot and rng.random() < 0.4)
            if want_due and not spot and not knobs.late_intake:
                acc_fields["due_at"] = day_end(tab.nth_after(start, prof.n))
            add(acc_date, "accepted", clerk, SRC_WINDOW, 2, 15, **acc_fields)

        # Budget: the completion's working-day index may not reach the warning day k.
        ext = knobs.extension
        if ext is None:
            ext = rng.choice((5, 10)) if not plain and not spot and prof.n >= 5 and rng.random() < 0.015 else 0
        k_orig = prof.k
        budget = (warning_day(prof.n + ext, cfg) if not spot else 1) - 1
        idx0 = walk.idx
        if knobs.completion_idx is not None:
            target = knobs.completion_idx
        elif spot:
            target = 0
        else:
            target = idx0 + int((budget - idx0 + 1) * rng.random() ** 1.6)
            target = min(max(target, idx0), max(budget, idx0))
            if target == idx0 and budget > idx0 and prof.min_minutes * 60 > OFFICE_LEN - arrival_off - 5400:
                target += 1  # a long job accepted late in the day is not finished the same day

        nsteps = len(prof.steps)
        # Where pauses go: after step j (before step j+1).
        supp_after: list[int] = []
        nsupp = knobs.supplements
        if nsupp is None:
            nsupp = 1 if not plain and not spot and rng.random() < 0.08 else 0
        for _ in range(nsupp):
            supp_after.append(int(rng.random() * max(nsteps - 1, 1)))
        supp_after.sort()
        susp = knobs.suspension
        if susp is None and not plain and not spot and nsteps >= 3 and rng.random() < 0.05:
            proc, planned = SPECIAL_PROCEDURES[int(rng.random() * len(SPECIAL_PROCEDURES))]
            susp = (proc, planned, ri(1, planned))
        susp_after = (max(supp_after[-1] if supp_after else 0, 1 + int(rng.random() * (max(nsteps - 1, 2) - 1)))
                      if susp else -1)
        withdraw_after = int(rng.random() * nsteps) if outcome == "withdrawn" and nsteps else -1

        # Active-day moves of steps[1:] and of the decision: a random split of the days available.
        moves = knobs.step_moves
        if moves is None:
            parts = max(nsteps - 1, 0) + 1
            room = max(target - idx0, 0)
            cuts = sorted(ri(0, room) for _ in range(parts - 1))
            moves = [b - a for a, b in zip([0, *cuts], [*cuts, room], strict=True)]
            for i in range(1, nsteps):
                lim = prof.limits[i]
                if lim is not None and moves[i - 1] > lim:
                    moves[i - 1] = lim
            moves[-1] = max(0, room - sum(moves[:-1]))

        fee_lines = knobs.fees if knobs.fees is not None else self._normal_fees(prof)
        fee_mode = knobs.fee_mode or ("pre" if not spot and (outcome == "denied" or rng.random() < 0.3)
                                      else "post")
        if outcome == "withdrawn":
            fee_lines = []  # withdrawn before anything was charged

        settled = [False]

        def fee_events(date: int, settle: bool) -> None:
            """Assessment (and, unless delivery comes first, settlement) of every fee line on ``date``."""
            for line in fee_lines:
                for _ in range(2 if line.twice else 1):
                    add(date, "fee_assessed", clerk, dep_src, 1, 6, fee_code=line.code, amount=line.assessed)
            if settle:
                fee_settle(date)

        def fee_settle(date: int) -> None:
            settled[0] = True
            for line in fee_lines:
                amount = line.paid if line.paid is not None else line.assessed
                for _ in range(2 if line.twice else 1):
                    if line.settle == "waive":
                        f: dict[str, object] = {"fee_code": line.code, "amount": amount}
                        if line.approval is not None:
                            f["approval_ref"] = (line.approval if line.approval != "auto"
                                                 else f"减免审批〔{1 + date % 9}〕{ri(10, 999)}号")
                        add(date, "fee_waived", approver, dep_src, 2, 10, **f)
                    elif line.settle != "none":
                        add(date, "fee_paid", None, SRC_PAY, 3, 40 if spot else 90, fee_code=line.code,
                            amount=amount, channel=line.settle)

        paid_any = any(line.settle not in ("waive", "none") for line in fee_lines)
        # The extension is granted at the last step still before the original warning day.
        ext_at = -1
        if ext:
            idx = idx0
            for i in range(nsteps):
                if i > 0:
                    idx += moves[i - 1]
                if idx <= k_orig - 1:
                    ext_at = i

        # Steps, with the pauses and the extension between them.
        for i in range(nsteps):
            if i > 0:
                walk.active(moves[i - 1])
            add(walk.date, "step_completed", offs[i], dep_src, 1 if i == 0 else 3,
                5 if i == 0 else (12 if spot else 90), step=prof.steps[i])
            if i == 0 and fee_mode == "pre" and fee_lines and not spot:
                fee_events(walk.date, not knobs.deliver_before_pay)
            if i == ext_at:
                add(walk.date, "extension_granted", center.heads[prof.window], dep_src, 10, 60, days=ext,
                    approved_by=center.heads[prof.window])
            for _ in range(supp_after.count(i)):
                n_mat = ri(1, 3)
                add(walk.date, "supplement_requested", clerk, SRC_WINDOW, 5, 30,
                    materials=rng.sample(SUPPLEMENT_MATERIALS, n_mat))
                walk.pause(ri(1, 3 if knobs.supplements else 5))
                add(walk.date, "supplement_received", clerk, SRC_WINDOW, 0, 0)
            if susp and i == susp_after:
                proc, planned, actual = susp
                add(walk.date, "suspended", offs[min(i + 1, nsteps - 1)], dep_src, 10, 60, procedure=proc,
                    planned_days=planned)
                walk.pause(actual)
                add(walk.date, "resumed", offs[min(i + 1, nsteps - 1)], dep_src, 0, 0)
            if i == withdraw_after:
                add(walk.date, "withdrawn", None, sub_src, 10, 90)
                return self._finish(cid, prof, center, slots, night, arrival_off)

        if outcome == "open":
            return self._finish(cid, prof, center, slots, night, arrival_off)

        # Decision and completion on the same day.
        walk.active(moves[-1] if moves else target - walk.idx)
        decision_day = walk.date
        if spot and fee_lines:
            fee_events(decision_day, not knobs.deliver_before_pay)
        night_at = knobs.night_decision
        dec = add(decision_day, "decided", approver, dep_src, 2, 30 if not spot else 5,
                  outcome="denied" if outcome == "denied" else "approved")
        if night_at is not None:
            night[dec] = night_at
        if not spot and fee_mode == "post" and fee_lines and outcome != "denied":
            fee_events(decision_day, not knobs.deliver_before_pay)
        delivered_early = False
        if knobs.deliver_before_pay and fee_lines and not settled[0]:
            add(decision_day, "delivered", clerk, SRC_WINDOW, 3, 15)
            fee_settle(decision_day)
            delivered_early = True
        comp = add(decision_day, "completed", clerk, dep_src, 1, 10)
        if night_at is not None:
            night[comp] = night_at + ri(60, 600)
        done_day = decision_day

        if outcome == "denied" and paid_any and fee_mode == "pre":
            if knobs.refund != "none":
                days = (ri(0, cfg.refund_days - 1) if knobs.refund == "normal"
                        else cfg.refund_days + ri(1, 3))
                rday = tab.nth_after(done_day, days)
                for line in fee_lines:
                    if line.settle in ("bank", "online", "window_cash"):
                        amount = line.paid if line.paid is not None else line.assessed
                        add(rday, "fee_refunded", clerk, SRC_PAY, 5, 60, fee_code=line.code,
                            amount=amount * (2 if line.twice else 1))

        last_day = done_day
        if outcome == "approved" and not delivered_early:
            dday = done_day if (spot or rng.random() < 0.5) and night_at is None else \
                tab.nth_after(done_day, ri(1, 3))
            add(dday, "delivered", clerk, SRC_WINDOW, 1, 10)
            last_day = dday

        level = knobs.rating
        if level is None and rng.random() < 0.75:
            level = 3 + min(2, int(rng.random() * 3.3))
        if level is not None:
            rday = last_day if (spot or rng.random() < 0.6) and night_at is None else \
                tab.nth_after(last_day, ri(1, 3))
            add(rday, "rated", None, SRC_RATING, 1, 10, level=level,
                comment=_pick(rng, RATING_COMMENTS[level]))
            if level <= cfg.bad_rating_max_level and knobs.rating_fix is not None and knobs.rating_fix >= 0:
                add(tab.nth_after(rday, knobs.rating_fix), "rating_resolved", approver, SRC_RATING, 0, 0)
            last_day = rday

        fix = knobs.complaint
        if fix is None and not plain and rng.random() < 0.005:
            fix = ri(0, cfg.complaint_days - 1)
        if fix is not None:
            fday = tab.nth_after(last_day, ri(0, 3))
            cid_ = f"TS{fday % 100000:05d}{ri(0, 9999):04d}"
            add(fday, "complaint_filed", None, SRC_HOTLINE, 0, 0, complaint_id=cid_)
            if fix >= 0:
                add(tab.nth_after(fday, fix), "complaint_resolved", None, SRC_HOTLINE, 30 if fix == 0 else 0,
                    120 if fix == 0 else 0, complaint_id=cid_)
        return self._finish(cid, prof, center, slots, night, arrival_off)

    # -- times of day --------------------------------------------------------------------------

    def _finish(self, cid: str, prof: ItemProfile, center: Center, slots: list[tuple[int, PEvent, int, int]],
                night: dict[PEvent, int], arrival_off: int) -> Case:
        """Give every event a time: each day's events are a chain of gaps laid out in office hours."""
        ri = self.ri
        slots.sort(key=_by_date)  # stable: same-day events keep their planned order
        events: list[PEvent] = []
        i = 0
        n = len(slots)
        first_day = slots[0][0]
        min_gap = prof.min_minutes * 60 + 180
        while i < n:
            j = i
            day = slots[i][0]
            while j < n and slots[j][0] == day:
                j += 1
            offsets = [0]
            acc_at = comp_at = -1
            for g in range(i, j):
                _, ev, lo, hi = slots[g]
                if g > i:
                    offsets.append(offsets[-1] + ri(lo * 60, hi * 60 + 59) + 60)
                t = ev.type
                if t == "accepted":
                    acc_at = g - i
                elif t == "completed":
                    comp_at = g - i
            if 0 <= acc_at < comp_at and offsets[comp_at] - offsets[acc_at] < min_gap:
                extra = min_gap - (offsets[comp_at] - offsets[acc_at]) + ri(0, 600)
                for g in range(comp_at, len(offsets)):
                    offsets[g] += extra
            total = offsets[-1]
            room = OFFICE_LEN - 120 - total
            if day == first_day and arrival_off <= room:
                base = arrival_off
            else:
                base = ri(0, room) if room > 0 else ri(0, 900)  # a chain longer than the day runs on late
            d0 = day_start(day)
            night_base = None
            for g in range(i, j):
                ev = slots[g][1]
                if night and ev in night:
                    night_base = night[ev]
                    ev.ts = d0 + night_base
                elif night_base is not None:  # after night work on the same day: keep going at night
                    night_base += ri(60, 300)
                    ev.ts = d0 + night_base
                else:
                    ev.ts = d0 + office_second(base + offsets[g - i])
                events.append(ev)
            i = j
        # Instants strictly increase within a case, so every driver orders its events the same way.
        for a in range(1, len(events)):
            if events[a].ts <= events[a - 1].ts:
                events[a].ts = events[a - 1].ts + 1
        return Case(cid, prof, center, events)


def _by_date(slot: tuple[int, PEvent, int, int]) -> int:
    return slot[0]
