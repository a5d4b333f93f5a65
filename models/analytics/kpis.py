"""The KPIs of a group (or an owner's several groups) over a period, each beside its value for the period before.

Every KPI's one definition is written beside its query and collected in `KPI_DEFINITIONS` (the README's table).
"Active" (a member, on a local day) means: at least one counted fact that day: a message that stayed after
moderation, a check-in, a topic reply or a showcase post (activity_member_days). Local days are the group's time
zone. Across several groups a person is counted once where a KPI counts people; counts of things add up.

`group_kpis` runs all queries in one read transaction as a plain synchronous function (`compute_kpis`), so it
can be run off the event loop (models.db.run_off_loop) as one unit of work.
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from models.analytics.facts import MESSAGE_KINDS, GroupDay, HourFact, MemberDay, MembershipEvent
from models.analytics.period import Period
from models.checkin import CheckinStreak
from models.db import run_off_loop, utcnow
from models.flashsale import FlashOrder, FlashRound
from models.groupbuy import GroupBuy, GroupBuyEntry
from models.groups import GONE_ROLES, Group, Member, User
from models.invites import Invitation
from models.lottery import Lottery, LotteryEntry
from models.moderation import ModAction
from models.points.ledger import PointsBalance, PointsEntry
from models.points.rules import rules_of
from models.shop import Coupon, ShopItem
from models.votes import Vote, VoteBallot

T = TypeVar("T")
Number = int | float | None

KPI_DEFINITIONS: dict[str, str] = {}


def defined(name: str, text: str) -> str:
    """Register a KPI's one definition (shown in the README table and beside its query)."""
    KPI_DEFINITIONS[name] = text
    return name


@dataclass(frozen=True)
class Figure:
    """A KPI's value in the period and in the period before. None: undefined (nothing to divide by)."""

    value: Number
    previous: Number

    @property
    def change(self) -> Number:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def relative(self) -> float | None:
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / self.previous


NONE = Figure(None, None)


@dataclass(frozen=True)
class Poster:
    user_id: int
    name: str
    messages: int  # for top inviters: vested invitations


@dataclass(frozen=True)
class Cohort:
    week_start: date
    joined: int
    retained: dict[int, float | None]  # {1: r1, 7: r7, 30: r30}; None while day N is still to come


@dataclass(frozen=True)
class MembersKpis:
    total: Figure
    joined: Figure
    left: Figure
    net_growth: Figure
    joined_by_source: dict[str, Figure]
    languages: dict[str, Figure]


@dataclass(frozen=True)
class ActivityKpis:
    dau: Figure
    wau: Figure
    mau: Figure
    actives: Figure
    speakers: Figure
    messages: Figure
    messages_by_kind: dict[str, Figure]
    heatmap: list[list[int]]
    heatmap_speakers: list[list[int]]
    top_hours: list[tuple[int, int]]
    top_weekdays: list[tuple[int, int]]
    daily: list[tuple[date, int, int]]
    top_posters: list[Poster]


@dataclass(frozen=True)
class RetentionKpis:
    cohorts: list[Cohort]
    day1: Figure
    day7: Figure
    day30: Figure
    still_active_30d: Figure


@dataclass(frozen=True)
class EngagementKpis:
    checkins: Figure
    checkin_rate: Figure
    streaks: dict[str, int]
    topic_replies: Figure
    showcases: Figure


@dataclass(frozen=True)
class EconomyKpis:
    issued: Figure
    spent: Figure
    issued_by_rule: dict[str, Figure]
    tiers: dict[str, int]


@dataclass(frozen=True)
class CommerceKpis:
    coupons_issued: Figure
    coupons_used: Figure
    coupons_expired: Figure
    coupon_use_rate: Figure
    coupons_by_item: dict[str, tuple[int, int]]
    vote_participation: Figure
    groupbuy_joins: Figure
    groupbuy_success_rate: Figure
    groupbuy_units: Figure
    flash_sell_through: Figure
    flash_seconds_to_sell_out: Figure
    flash_presses_per_order: Figure
    lottery_entrants: Figure


@dataclass(frozen=True)
class InviteKpis:
    joined: Figure
    vested: Figure
    voided: Figure
    void_rate: Figure
    top_inviters: list[Poster]


@dataclass(frozen=True)
class ModerationKpis:
    deleted: Figure
    warned: Figure
    muted: Figure
    banned: Figure
    reversals: Figure
    by_rule: dict[str, Figure]
    by_admin: dict[str, Figure]


@dataclass(frozen=True)
class Kpis:
    period: Period
    previous: Period
    group_ids: tuple[int, ...]
    members: MembersKpis
    activity: ActivityKpis
    retention: RetentionKpis
    engagement: EngagementKpis
    economy: EconomyKpis
    commerce: CommerceKpis
    invites: InviteKpis
    moderation: ModerationKpis
    sections: tuple[str, ...] = field(default=("members", "activity", "retention", "engagement", "economy",
                                               "commerce", "invites", "moderation"), repr=False)

    def headline(self) -> dict[str, Figure]:
        """Every scalar KPI as "section.name" -> Figure."""
        out: dict[str, Figure] = {}
        for section in self.sections:
            part = getattr(self, section)
            for name, value in vars(part).items():
                if isinstance(value, Figure):
                    out[f"{section}.{name}"] = value
        return out

    def rows(self) -> list[tuple[str, str, object, object]]:
        """(section, name, value, previous) for exports; breakdowns flattened as "name[key]"."""
        rows: list[tuple[str, str, object, object]] = []
        for section in self.sections:
            for name, value in vars(getattr(self, section)).items():
                if isinstance(value, Figure):
                    rows.append((section, name, value.value, value.previous))
                elif isinstance(value, dict):
                    for key, item in value.items():
                        if isinstance(item, Figure):
                            rows.append((section, f"{name}[{key}]", item.value, item.previous))
                        elif isinstance(item, tuple):
                            rows.append((section, f"{name}[{key}]", item[0], item[1]))
                        else:
                            rows.append((section, f"{name}[{key}]", item, None))
        return rows


# -- running ---------------------------------------------------------------------------------------------------


async def group_kpis(sessionmaker: async_sessionmaker[AsyncSession], group_ids: list[int], period: Period, *,
                     now: datetime | None = None) -> Kpis:
    """The KPIs of `group_ids` (Group.id values; several are combined) over `period`, each with the previous
    period's value. One read transaction; the work is `compute_kpis`, a synchronous unit of work."""
    at = now or utcnow()
    async with sessionmaker() as session:
        # known-long work: on SQLite all of it runs on the connection's thread, never stalling the event loop
        return await run_off_loop(session, lambda s: compute_kpis(s, group_ids, period, at))


def compute_kpis(s: Session, group_ids: list[int], period: Period, now: datetime) -> Kpis:
    gids = list(dict.fromkeys(group_ids))
    previous = period.previous()
    today = now.astimezone(period.zone).date()
    q = _Query(s, gids, today)
    return Kpis(
        period=period, previous=previous, group_ids=tuple(gids),
        members=q.members(period, previous),
        activity=q.activity(period, previous),
        retention=q.retention(period, previous),
        engagement=q.engagement(period, previous),
        economy=q.economy(period, previous),
        commerce=q.commerce(period, previous),
        invites=q.invites(period, previous),
        moderation=q.moderation(period, previous),
    )


def _both(fn: Callable[[Period], Number], period: Period, previous: Period) -> Figure:
    return Figure(fn(period), fn(previous))


def _ratio(part: Number, whole: Number) -> float | None:
    if part is None or not whole:
        return None
    return part / whole


def _breakdown(now: dict[str, int | float], before: dict[str, int | float]) -> dict[str, Figure]:
    keys = sorted(set(now) | set(before), key=lambda k: (-(now.get(k) or 0), k))
    return {k: Figure(now.get(k, 0), before.get(k, 0)) for k in keys}


M = MemberDay.__table__.c  # type: ignore[attr-defined]
H = HourFact.__table__.c  # type: ignore[attr-defined]
E = MembershipEvent.__table__.c  # type: ignore[attr-defined]
MESSAGES = sum((M[kind] for kind in MESSAGE_KINDS[1:]), M[MESSAGE_KINDS[0]])


class _Query:
    def __init__(self, s: Session, gids: list[int], today: date) -> None:
        self.s, self.gids, self.today = s, gids, today
        self._daily: dict[tuple[date, date], dict[date, dict[str, int]]] = {}
        self._people_seen: dict[tuple[date, date], list[Any]] = {}

    def one(self, stmt: Any) -> Any:
        return self.s.execute(stmt).scalar()

    def in_days(self, column: Any, start: date, end: date) -> Any:
        return and_(column >= start, column <= end)

    def facts(self, start: date, end: date) -> Any:
        return and_(M.group_id.in_(self.gids), M.day >= start, M.day <= end)

    def names(self, user_ids: Iterable[int]) -> dict[int, str]:
        ids = list(user_ids)
        if not ids:
            return {}
        rows = self.s.execute(select(User.user_id, User.first_name, User.username)  # type: ignore[call-overload]
                              .where(User.user_id.in_(ids))).all()  # type: ignore[attr-defined]
        return {u: (first or (f"@{username}" if username else "")) for u, first, username in rows}

    # -- members ---------------------------------------------------------------------------------------------

    defined("members.total", "Members at the end of the period: the group's member count at the end "
                    "of the last day on or before the period's end with a fact (several groups: the sum; when "
                    "the period reaches today, people in several of the groups are counted once)")
    defined("members.joined", "People who joined in the period (membership events, each person once)")
    defined("members.left", "People who left or were removed in the period (each person once)")
    defined("members.net_growth", "joined - left")
    defined("members.joined_by_source", "joined, by how they came: a member's invite link, an admin's link, "
            "a join request, added by a member, public join")
    defined("members.languages", "Active members in the period by Telegram language (language_code)")

    def members(self, p: Period, b: Period) -> MembersKpis:
        t = _both(self._total, p, b)
        j = _both(lambda q: self._people(q, ("join",)), p, b)
        lft = _both(lambda q: self._people(q, ("leave", "removed")), p, b)
        net = Figure(_sub(j.value, lft.value), _sub(j.previous, lft.previous))
        return MembersKpis(t, j, lft, net, _breakdown(self._sources(p), self._sources(b)),
                           _breakdown(self._languages(p), self._languages(b)))

    def _total(self, p: Period) -> int:
        if len(self.gids) > 1 and p.end >= self.today:
            return self.one(select(func.count(distinct(Member.user_id))).where(  # type: ignore[arg-type]
                Member.group_id.in_(self.gids), Member.role.not_in(GONE_ROLES)))  # type: ignore[attr-defined]
        total = 0
        for gid in self.gids:
            last = self.one(select(GroupDay.members).where(GroupDay.group_id == gid, GroupDay.day <= p.end,  # type: ignore[arg-type]
                                                           GroupDay.members.is_not(None))  # type: ignore[union-attr]
                            .order_by(GroupDay.day.desc()).limit(1))  # type: ignore[attr-defined]
            if last is None and p.end >= self.today:
                last = self.one(select(func.count()).select_from(Member).where(
                    Member.group_id == gid, Member.role.not_in(GONE_ROLES)))  # type: ignore[attr-defined]
            total += last or 0
        return total

    def _people(self, p: Period, kinds: tuple[str, ...]) -> int:
        return self.one(select(func.count(distinct(E.user_id))).where(
            E.group_id.in_(self.gids), E.kind.in_(kinds), self.in_days(E.day, p.start, p.end)))

    def _sources(self, p: Period) -> dict[str, int]:
        rows = self.s.execute(select(E.source, func.count(distinct(E.user_id))).where(
            E.group_id.in_(self.gids), E.kind == "join", self.in_days(E.day, p.start, p.end)
        ).group_by(E.source)).all()
        out: Counter[str] = Counter()
        for source, people in rows:
            out[source or "public"] += people
        return dict(out)

    def _languages(self, p: Period) -> dict[str, int]:
        return dict(Counter(r[5] for r in self.people(p) if r[1] and r[5]))

    # -- activity --------------------------------------------------------------------------------------------

    DAILY = ("actives", *MESSAGE_KINDS, "checkins", "topic_replies", "showcases", "member_days")

    def daily(self, p: Period) -> dict[date, dict[str, int]]:
        """Per day with facts: active people, messages by kind, check-ins, topic replies, showcases and
        member-days. One group: its day totals (one row a day); several: one scan of their member days (a
        person in several groups is one active person that day)."""
        key = (p.start, p.end)
        if key in self._daily:
            return self._daily[key]
        if len(self.gids) == 1:
            D = GroupDay.__table__.c  # type: ignore[attr-defined]
            rows = self.s.execute(
                select(D.day, D.actives, *(D[k] for k in MESSAGE_KINDS), D.checkins, D.topic_replies,
                       D.showcases, D.actives)
                .where(D.group_id == self.gids[0], D.day >= p.start, D.day <= p.end)
            ).all()
        else:
            rows = self.s.execute(
                select(M.day, func.count(distinct(M.user_id)), *(func.sum(M[k]) for k in MESSAGE_KINDS),
                       func.sum(M.checkins), func.sum(M.topic_replies), func.sum(M.showcases), func.count())
                .where(self.facts(p.start, p.end)).group_by(M.day)
            ).all()
        self._daily[key] = {row[0]: dict(zip(self.DAILY, (int(v or 0) for v in row[1:]), strict=True))
                            for row in rows if row[1]}
        return self._daily[key]

    def total(self, p: Period, name: str) -> int:
        return sum(day[name] for day in self.daily(p).values())

    def people(self, p: Period) -> list[Any]:
        """Per person active in the period or in the 30 days ending on its last day (one scan):
        (user_id, active in the period 0/1, messages in the period, active in the 7 days ending on its last day
        0/1, in the 30 days 0/1, their Telegram language in the period)."""
        key = (p.start, p.end)
        if key not in self._people_seen:
            week, month = p.end - timedelta(days=6), p.end - timedelta(days=29)
            self._people_seen[key] = self.s.execute(select(
                M.user_id,
                func.max(case((M.day >= p.start, 1), else_=0)),
                func.sum(case((M.day >= p.start, MESSAGES), else_=0)),
                func.max(case((M.day >= week, 1), else_=0)),
                func.max(case((M.day >= month, 1), else_=0)),
                func.max(case((M.day >= p.start, M.language))),
            ).where(self.facts(min(p.start, month), p.end)).group_by(M.user_id)).all()
        return self._people_seen[key]

    def counts(self, p: Period) -> dict[str, int]:
        """actives, speakers, wau, mau of the period (from `people`)."""
        rows = self.people(p)
        return {"actives": sum(r[1] for r in rows), "speakers": sum(1 for r in rows if r[1] and r[2]),
                "wau": sum(r[3] for r in rows), "mau": sum(r[4] for r in rows)}

    defined("activity.dau", "Daily active members: the mean over the period's days of the active members "
            "each day (a person in several groups counted once a day)")
    defined("activity.wau", "Active members in the 7 days ending on the period's last day")
    defined("activity.mau", "Active members in the 30 days ending on the period's last day")
    defined("activity.actives", "Members active at least once in the period")
    defined("activity.speakers", "Members who sent at least one message that stayed in the period")
    defined("activity.messages", "Messages that stayed after moderation (commands excluded only when a "
            "feature answered them)")
    defined("activity.messages_by_kind", "messages by kind: text, photo, video, voice, sticker, other")
    defined("activity.heatmap", "Messages by local weekday and hour over the period")
    defined("activity.top_posters", "The 10 members with the most messages in the period")

    def activity(self, p: Period, b: Period) -> ActivityKpis:

        def dau(q: Period) -> float:
            return self.total(q, "actives") / q.days

        now_kinds = {k: self.total(p, k) for k in MESSAGE_KINDS}
        before_kinds = {k: self.total(b, k) for k in MESSAGE_KINDS}
        now, before = self.counts(p), self.counts(b)
        heat = [[0] * 24 for _ in range(7)]
        heat_speakers = [[0] * 24 for _ in range(7)]
        for day, hour, messages, speakers in self.s.execute(
            select(H.day, H.hour, func.sum(H.messages), func.sum(H.speakers))
            .where(H.group_id.in_(self.gids), self.in_days(H.day, p.start, p.end)).group_by(H.day, H.hour)
        ).all():
            heat[day.weekday()][hour] += int(messages)
            heat_speakers[day.weekday()][hour] += int(speakers)
        hours = sorted(((h, sum(heat[w][h] for w in range(7))) for h in range(24)), key=lambda x: (-x[1], x[0]))
        weekdays = sorted(((w, sum(heat[w])) for w in range(7)), key=lambda x: (-x[1], x[0]))
        posters = [(r[0], r[2]) for r in heapq.nsmallest(10, (r for r in self.people(p) if r[2]),
                                                         key=lambda r: (-r[2], r[0]))]
        names = self.names(u for u, _ in posters)
        by_day = self.daily(p)
        return ActivityKpis(
            dau=_both(dau, p, b), wau=Figure(now["wau"], before["wau"]), mau=Figure(now["mau"], before["mau"]),
            actives=Figure(now["actives"], before["actives"]), speakers=Figure(now["speakers"], before["speakers"]),
            messages=Figure(sum(now_kinds.values()), sum(before_kinds.values())),
            messages_by_kind={k: Figure(now_kinds[k], before_kinds[k]) for k in MESSAGE_KINDS},
            heatmap=heat, heatmap_speakers=heat_speakers,
            top_hours=[h for h in hours if h[1]][:5], top_weekdays=[w for w in weekdays if w[1]],
            daily=[(d, by_day[d]["actives"], sum(by_day[d][k] for k in MESSAGE_KINDS)) if d in by_day else (d, 0, 0)
                   for d in p.each_day()],
            top_posters=[Poster(u, names.get(u, ""), int(n)) for u, n in posters],
        )

    # -- retention -------------------------------------------------------------------------------------------

    def _active_on(self, wanted: set[tuple[int, date]]) -> set[tuple[int, date]]:
        """The (person, day) pairs of `wanted` on which the person was active (one range read per 5,000 people,
        through the members' index)."""
        if not wanted:
            return set()
        users = sorted({u for u, _ in wanted})
        first, last = min(d for _, d in wanted), max(d for _, d in wanted)
        found: set[tuple[int, date]] = set()
        for start in range(0, len(users), 5_000):
            chunk = users[start:start + 5_000]
            rows = self.s.execute(select(M.user_id, M.day).where(
                M.user_id.in_(chunk), M.group_id.in_(self.gids), M.day >= first, M.day <= last)).all()
            found.update((u, d) for u, d in rows if (u, d) in wanted)
        return found

    defined("retention.day1", "Of the people who joined in the period (and whose day N has come), the share "
            "active on the 1st day after joining")
    defined("retention.day7", "The same on the 7th day after joining")
    defined("retention.day30", "The same on the 30th day after joining (a cohort of 10 with 3 active on "
            "day 30: 30%)")
    defined("retention.cohorts", "Per join week (Monday to Sunday, local) overlapping the period: joins and "
            "day-1/7/30 retention")
    defined("retention.still_active_30d", "Of the people who joined 30 or more days before the period's end "
            "and had not left by then, the share active in the 30 days ending on the period's end")

    def retention(self, p: Period, b: Period) -> RetentionKpis:
        offsets = (1, 7, 30)
        first_monday = p.start - timedelta(days=p.start.weekday())
        joins = self.s.execute(select(E.user_id, E.day).where(
            E.group_id.in_(self.gids), E.kind == "join", E.day >= min(b.start, first_monday), E.day <= p.end)
            .order_by(E.day)).all()

        def first_joins(start: date, end: date) -> dict[int, date]:
            """Each person's first join day in [start, end]."""
            out: dict[int, date] = {}
            for user, day in joins:
                if start <= day <= end:
                    out.setdefault(user, day)
            return out

        now_joins, before_joins = first_joins(p.start, p.end), first_joins(b.start, b.end)
        cohort_joins = first_joins(first_monday, p.end)
        active = self._active_on({(u, d + timedelta(days=n)) for group in (now_joins, before_joins, cohort_joins)
                                  for u, d in group.items() for n in offsets})

        def rates(joined: dict[int, date]) -> dict[int, float | None]:
            out: dict[int, float | None] = {}
            for n in offsets:
                due = [(u, d + timedelta(days=n)) for u, d in joined.items() if d + timedelta(days=n) <= self.today]
                out[n] = _ratio(sum(pair in active for pair in due), len(due))
            return out

        now, before = rates(now_joins), rates(before_joins)
        weeks: dict[date, dict[int, date]] = defaultdict(dict)
        for user, day in cohort_joins.items():
            weeks[day - timedelta(days=day.weekday())][user] = day
        cohorts = [Cohort(week, len(joined), rates(joined)) for week, joined in sorted(weeks.items())]
        return RetentionKpis(cohorts, Figure(now[1], before[1]), Figure(now[7], before[7]),
                             Figure(now[30], before[30]), _both(self._still_active, p, b))

    def _still_active(self, p: Period) -> float | None:
        cutoff = p.end - timedelta(days=30)
        joined = case((E.kind == "join", 1), else_=-1)
        old = set(self.s.execute(select(E.user_id).where(E.group_id.in_(self.gids), E.day <= p.end)
                                 .group_by(E.user_id)
                                 .having(func.min(case((E.kind == "join", E.day))) <= cutoff,
                                         func.sum(joined) > 0)).scalars().all())
        if not old:
            return None
        return sum(1 for r in self.people(p) if r[4] and r[0] in old) / len(old)

    # -- engagement ------------------------------------------------------------------------------------------

    defined("engagement.checkins", "Check-ins in the period")
    defined("engagement.checkin_rate", "Check-ins / active member-days in the period (the share of active "
            "days on which the member also checked in)")
    defined("engagement.streaks", "Members by current check-in streak length (1, 2-6, 7-29, 30+), now")
    defined("engagement.topic_replies", "Replies to the daily topic that earned topic points")
    defined("engagement.showcases", "Showcase (晒单) posts")

    def engagement(self, p: Period, b: Period) -> EngagementKpis:

        def sums(q: Period) -> tuple[int, int, int, int]:
            return (self.total(q, "checkins"), self.total(q, "member_days"), self.total(q, "topic_replies"),
                    self.total(q, "showcases"))

        now, before = sums(p), sums(b)
        buckets = Counter[str]()
        for current in self.s.execute(select(CheckinStreak.current).where(  # type: ignore[call-overload]
                CheckinStreak.group_id.in_(self.gids), CheckinStreak.current > 0)).scalars().all():  # type: ignore[attr-defined]
            buckets["1" if current == 1 else "2-6" if current < 7 else "7-29" if current < 30 else "30+"] += 1
        return EngagementKpis(
            checkins=Figure(now[0], before[0]),
            checkin_rate=Figure(_ratio(now[0], now[1]), _ratio(before[0], before[1])),
            streaks={k: buckets.get(k, 0) for k in ("1", "2-6", "7-29", "30+")},
            topic_replies=Figure(now[2], before[2]), showcases=Figure(now[3], before[3]),
        )

    # -- economy ---------------------------------------------------------------------------------------------

    defined("economy.issued", "Points given in the period: the sum of the ledger's positive entries")
    defined("economy.spent", "Points spent in the period: the sum of redemptions, lottery and vote costs "
            "(the ledger's negative entries of kind redeem, lottery, vote)")
    defined("economy.issued_by_rule", "issued, by ledger kind (checkin, chat, topic, showcase, invite, ...)")
    defined("economy.tiers", "Members by tier now (lifetime points against the group's tiers)")

    def economy(self, p: Period, b: Period) -> EconomyKpis:
        L = PointsEntry.__table__.c  # type: ignore[attr-defined]

        def by_kind(q: Period) -> dict[str, int]:
            start, stop = q.utc_bounds()
            rows = self.s.execute(select(L.kind, func.sum(L.delta)).where(
                L.group_id.in_(self.gids), L.created_at >= start, L.created_at < stop, L.delta > 0).group_by(L.kind)
            ).all()
            return {k: int(v) for k, v in rows}

        def spent(q: Period) -> int:
            start, stop = q.utc_bounds()
            return -int(self.one(select(func.coalesce(func.sum(L.delta), 0)).where(
                L.group_id.in_(self.gids), L.created_at >= start, L.created_at < stop, L.delta < 0,
                L.kind.in_(("redeem", "lottery", "vote")))))

        now, before = by_kind(p), by_kind(b)
        tiers = Counter[str]()
        groups = {g.id: g for g in self.s.execute(select(Group).where(Group.id.in_(self.gids))).scalars()}  # type: ignore[union-attr]
        for gid, lifetime in self.s.execute(select(PointsBalance.group_id, PointsBalance.lifetime_earned).where(  # type: ignore[call-overload]
                PointsBalance.group_id.in_(self.gids))).all():  # type: ignore[attr-defined]
            tiers[rules_of(groups[gid]).tier_for(lifetime)] += 1
        return EconomyKpis(Figure(sum(now.values()), sum(before.values())), _both(spent, p, b),
                           _breakdown(now, before), dict(tiers.most_common()))

    # -- commerce --------------------------------------------------------------------------------------------

    defined("commerce.coupons_issued", "Coupons bought in the period")
    defined("commerce.coupons_used", "Of the coupons bought in the period, those used (verified) so far")
    defined("commerce.coupons_expired", "Coupons whose validity ended in the period unused and not cancelled")
    defined("commerce.coupon_use_rate", "核销率: coupons_used / coupons_issued (a coupon issued and used: 100%)")
    defined("commerce.coupons_by_item", "(issued, used) per shop item, for coupons bought in the period")
    defined("commerce.vote_participation", "People who voted in the period / active members in the period")
    defined("commerce.groupbuy_joins", "Entries in group buys whose deadline falls in the period")
    defined("commerce.groupbuy_success_rate", "Of the group buys whose deadline fell in the period and that "
            "closed, the share that succeeded (成团)")
    defined("commerce.groupbuy_units", "Units sold in group buys that succeeded, deadline in the period")
    defined("commerce.flash_sell_through", "Flash-sale units sold / units offered, rounds starting in the period")
    defined("commerce.flash_seconds_to_sell_out", "Median seconds from a round's start to its last unit's "
            "order, over rounds that sold out")
    defined("commerce.flash_presses_per_order", "Not recorded (presses are answered from memory): None")
    defined("commerce.lottery_entrants", "Lottery entries made in the period")

    def commerce(self, p: Period, b: Period) -> CommerceKpis:
        C = Coupon.__table__.c  # type: ignore[attr-defined]

        def coupons(q: Period) -> tuple[int, int, int]:
            start, stop = q.utc_bounds()
            row = self.s.execute(select(func.count(), func.count(C.used_at)).where(
                C.group_id.in_(self.gids), C.issued_at >= start, C.issued_at < stop)).one()
            expired = self.one(select(func.count()).select_from(Coupon).where(
                C.group_id.in_(self.gids), C.expires_at >= start, C.expires_at < stop, C.used_at.is_(None),
                C.cancelled_at.is_(None), C.expires_at <= utcnow()))
            return int(row[0]), int(row[1]), int(expired)

        cn, cb = coupons(p), coupons(b)
        start, stop = p.utc_bounds()
        items = self.s.execute(select(ShopItem.name, func.count(), func.count(C.used_at)).join(  # type: ignore[call-overload]
            ShopItem, ShopItem.id == C.item_id).where(  # type: ignore[arg-type]
            C.group_id.in_(self.gids), C.issued_at >= start, C.issued_at < stop).group_by(ShopItem.name)
            .order_by(func.count().desc())).all()

        def participation(q: Period) -> float | None:
            start, stop = q.utc_bounds()
            voters = self.one(select(func.count(distinct(VoteBallot.user_id))).join(  # type: ignore[arg-type]
                Vote, Vote.id == VoteBallot.vote_id).where(  # type: ignore[arg-type]
                Vote.group_id.in_(self.gids), VoteBallot.cast_at >= start, VoteBallot.cast_at < stop))  # type: ignore[attr-defined]
            return _ratio(voters, self.counts(q)["actives"])

        GB, GE = GroupBuy.__table__.c, GroupBuyEntry.__table__.c  # type: ignore[attr-defined]

        def groupbuys(q: Period) -> tuple[int, float | None, int]:
            start, stop = q.utc_bounds()
            in_q = and_(GB.group_id.in_(self.gids), GB.deadline >= start, GB.deadline < stop)
            joins = self.one(select(func.count()).select_from(GroupBuyEntry).join(
                GroupBuy, GB.id == GE.groupbuy_id).where(in_q))
            closed = dict(self.s.execute(select(GB.status, func.count()).where(
                in_q, GB.status.in_(("succeeded", "failed"))).group_by(GB.status)).all())
            units = self.one(select(func.coalesce(func.sum(GB.sold), 0)).where(in_q, GB.status == "succeeded"))
            return int(joins), _ratio(closed.get("succeeded", 0), sum(closed.values())), int(units)

        gn, gb = groupbuys(p), groupbuys(b)
        R, FO = FlashRound.__table__.c, FlashOrder.__table__.c  # type: ignore[attr-defined]

        def flash(q: Period) -> tuple[float | None, float | None]:
            start, stop = q.utc_bounds()
            in_q = and_(R.group_id.in_(self.gids), R.starts_at >= start, R.starts_at < stop)
            offered, left = self.s.execute(select(func.coalesce(func.sum(R.stock_total), 0),
                                                  func.coalesce(func.sum(R.stock), 0)).where(in_q)).one()
            orders = FlashOrder.__table__  # type: ignore[attr-defined]
            rows = self.s.execute(select(R.starts_at, func.max(FO.created_at)).join(orders, FO.round_id == R.id).where(
                in_q, R.stock == 0, R.stock_total > 0).group_by(R.id, R.starts_at)).all()
            seconds = [(last - first).total_seconds() for first, last in rows if first and last]
            sold_out = statistics.median(seconds) if seconds else None
            return _ratio(offered - left, offered), sold_out

        fn, fb = flash(p), flash(b)
        LE = LotteryEntry.__table__.c  # type: ignore[attr-defined]

        def entrants(q: Period) -> int:
            start, stop = q.utc_bounds()
            return int(self.one(select(func.count()).select_from(LotteryEntry).join(
                Lottery, Lottery.id == LE.lottery_id).where(  # type: ignore[arg-type]
                Lottery.group_id.in_(self.gids), LE.created_at >= start, LE.created_at < stop)))  # type: ignore[attr-defined]

        return CommerceKpis(
            coupons_issued=Figure(cn[0], cb[0]), coupons_used=Figure(cn[1], cb[1]),
            coupons_expired=Figure(cn[2], cb[2]),
            coupon_use_rate=Figure(_ratio(cn[1], cn[0]), _ratio(cb[1], cb[0])),
            coupons_by_item={name: (int(i), int(u)) for name, i, u in items},
            vote_participation=_both(participation, p, b),
            groupbuy_joins=Figure(gn[0], gb[0]), groupbuy_success_rate=Figure(gn[1], gb[1]),
            groupbuy_units=Figure(gn[2], gb[2]),
            flash_sell_through=Figure(fn[0], fb[0]), flash_seconds_to_sell_out=Figure(fn[1], fb[1]),
            flash_presses_per_order=NONE, lottery_entrants=_both(entrants, p, b),
        )

    # -- invites ---------------------------------------------------------------------------------------------

    defined("invites.joined", "Invitations whose invitee joined in the period (through a member's link)")
    defined("invites.vested", "Of those, the invitations that vested (the reward was paid) so far")
    defined("invites.voided", "Of those, the invitations voided or reversed (left early, duplicate, bot...)")
    defined("invites.void_rate", "voided / joined")
    defined("invites.top_inviters", "The 10 members with the most invitations vested in the period")

    def invites(self, p: Period, b: Period) -> InviteKpis:
        INV = Invitation.__table__.c  # type: ignore[attr-defined]

        def counts(q: Period) -> tuple[int, int, int]:
            start, stop = q.utc_bounds()
            rows = dict(self.s.execute(select(INV.status, func.count()).where(
                INV.group_id.in_(self.gids), INV.joined_at >= start, INV.joined_at < stop).group_by(INV.status)).all())
            return (sum(rows.values()), rows.get("vested", 0), rows.get("void", 0) + rows.get("reversed", 0))

        now, before = counts(p), counts(b)
        start, stop = p.utc_bounds()
        top = self.s.execute(select(INV.inviter_id, func.count()).where(
            INV.group_id.in_(self.gids), INV.vested_at >= start, INV.vested_at < stop)
            .group_by(INV.inviter_id).order_by(func.count().desc(), INV.inviter_id).limit(10)).all()
        names = self.names(u for u, _ in top)
        return InviteKpis(Figure(now[0], before[0]), Figure(now[1], before[1]), Figure(now[2], before[2]),
                          Figure(_ratio(now[2], now[0]), _ratio(before[2], before[0])),
                          [Poster(u, names.get(u, ""), int(n)) for u, n in top])

    # -- moderation ------------------------------------------------------------------------------------------

    defined("moderation.deleted", "Messages removed by moderation (automatic or by an admin), not dry runs")
    defined("moderation.warned", "Warnings given")
    defined("moderation.muted", "Mutes")
    defined("moderation.banned", "Bans (and kicks)")
    defined("moderation.reversals", "Warnings revoked, mutes and bans lifted")
    defined("moderation.by_rule", "Actions (deleted, warned, muted, banned) by the rule that caused them "
            "(\"manual\": an admin's own decision)")
    defined("moderation.by_admin", "Actions by who took them (\"auto\": the bot's rules)")

    def moderation(self, p: Period, b: Period) -> ModerationKpis:
        A = ModAction.__table__.c  # type: ignore[attr-defined]
        kinds = {"delete": "deleted", "warn": "warned", "mute": "muted", "ban": "banned", "kick": "banned",
                 "ban_sender_chat": "banned", "unwarn": "reversals", "unmute": "reversals", "unban": "reversals"}
        acting = ("delete", "warn", "mute", "ban", "kick", "ban_sender_chat")

        def rows(q: Period) -> list[Any]:
            start, stop = q.utc_bounds()
            return self.s.execute(select(A.action, A.rule, A.actor_id, func.count()).where(
                A.group_id.in_(self.gids), A.created_at >= start, A.created_at < stop, A.dry_run.is_(False),
                A.action.in_(list(kinds))).group_by(A.action, A.rule, A.actor_id)).all()

        now, before = rows(p), rows(b)

        def tally(rs: list[Any], key: Callable[[Any], str | None]) -> dict[str, int]:
            out = Counter[str]()
            for r in rs:
                k = key(r)
                if k is not None:
                    out[k] += r[3]
            return dict(out)

        actors = {r[2] for r in now + before if r[2] is not None}
        names = self.names(actors)

        def kind_of(r: Any) -> str:
            return kinds[r[0]]

        def rule_of(r: Any) -> str | None:
            return (r[1] or "manual") if r[0] in acting else None

        def admin_of(r: Any) -> str | None:
            if r[0] not in acting:
                return None
            return "auto" if r[2] is None else (names.get(r[2]) or str(r[2]))

        kn, kb = tally(now, kind_of), tally(before, kind_of)
        return ModerationKpis(
            *(Figure(kn.get(k, 0), kb.get(k, 0)) for k in ("deleted", "warned", "muted", "banned", "reversals")),
            by_rule=_breakdown(tally(now, rule_of), tally(before, rule_of)),
            by_admin=_breakdown(tally(now, admin_of), tally(before, admin_of)),
        )


def _sub(a: Number, b: Number) -> Number:
    return None if a is None or b is None else a - b

