"""A generated, plausible history of a group's activity: for the demo (30 days, so a newcomer sees the charts)
and for bench/stats.py (10,000 members, 365 days).

`generate_history` writes, for one existing group, `members` synthetic people (user ids from SYNTHETIC_BASE up,
with names), their joins (by source), some departures, and `days` local days of activity facts ending on `end`
(default: yesterday in the group's time zone): messages by kind in the hours people talk (evenings and weekends
busier), check-ins, topic replies and showcase posts, the hourly table, the group's daily member count, and a few
moderation actions in the audit log. It writes facts only (no points, coupons or check-in rows), and the same seed
gives the same history. Running it twice for the same group adds on top (use a fresh group).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.analytics.facts import (
    COUNTERS,
    GroupDay,
    HourFact,
    MemberDay,
    MembershipEvent,
    refresh_day_totals,
    zone_of,
)
from models.db import dialect_insert, is_postgres
from models.groups import Group, Member, User
from models.moderation import ModAction

SYNTHETIC_BASE = 9_000_000_000  # synthetic people's user ids start here (no real account has ids this high yet)
FIRST_NAMES = ("小明", "小红", "阿强", "Lily", "美美", "大伟", "Tom", "婷婷", "阿杰", "Anna", "晓峰", "佳佳")
LANGUAGES = (("zh-hans", 70), ("en", 15), ("zh-hant", 10), ("ru", 5))
SOURCES = (("member_link", 35), ("admin_link", 20), ("join_request", 15), ("added", 10), ("public", 20))
KIND_WEIGHTS = (("text", 70), ("photo", 12), ("video", 3), ("voice", 5), ("sticker", 8), ("other", 2))
HOUR_WEIGHTS = (1, 0, 0, 0, 0, 0, 1, 3, 5, 6, 5, 5, 7, 6, 4, 4, 5, 5, 6, 8, 10, 12, 10, 5)
CHUNK = 5_000


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


async def generate_history(sessionmaker: async_sessionmaker[AsyncSession], group_id: int, *, days: int = 30,
                           members: int = 200, seed: int = 17, end: date | None = None) -> None:
    """Write `days` days of generated activity for `members` synthetic people in the group `group_id` (see the
    module docstring). About a third of the people were there before the first day; the rest join during it."""
    rng = random.Random(seed)
    async with sessionmaker() as session:
        group = await session.get(Group, group_id)
        if group is None:
            raise LookupError(f"no group {group_id}")
        zone = zone_of(group.timezone)
    end = end or (datetime.now(UTC).astimezone(zone).date() - timedelta(days=1))
    start = end - timedelta(days=days - 1)
    kinds = [k for k, _ in KIND_WEIGHTS]
    kind_weights = [w for _, w in KIND_WEIGHTS]
    hours = list(range(24))

    users, memberships, events, actions = [], [], [], []
    member_days: list[dict[str, Any]] = []
    hour_messages: dict[tuple[date, int], int] = defaultdict(int)
    hour_speakers: dict[tuple[date, int], int] = defaultdict(int)
    joins_on: dict[date, int] = defaultdict(int)
    leaves_on: dict[date, int] = defaultdict(int)
    before = 0
    for n in range(members):
        user_id = SYNTHETIC_BASE + n
        name = f"{rng.choice(FIRST_NAMES)}{n}"
        language = _pick(rng, LANGUAGES)
        users.append({"user_id": user_id, "first_name": name, "language_code": language, "is_bot": False,
                      "seen_at": _at(end, 20, zone)})
        old = rng.random() < 1 / 3
        joined = start - timedelta(days=rng.randint(1, 60)) if old else start + timedelta(
            days=min(days - 1, int(rng.random() ** 1.3 * days)))
        source = _pick(rng, SOURCES)
        inviter = SYNTHETIC_BASE + rng.randrange(max(1, n)) if source in ("member_link", "added") and n else None
        events.append({"group_id": group_id, "user_id": user_id, "kind": "join", "source": source,
                       "actor_id": inviter, "day": joined, "at": _at(joined, 12, zone)})
        if old:
            before += 1
        else:
            joins_on[joined] += 1
        left: date | None = None
        if rng.random() < 0.08:
            left = joined + timedelta(days=rng.randint(1, 40))
            if left <= end:
                events.append({"group_id": group_id, "user_id": user_id,
                               "kind": "removed" if rng.random() < 0.2 else "leave", "source": None,
                               "actor_id": None, "day": left, "at": _at(left, 18, zone)})
                leaves_on[left] += 1
            else:
                left = None
        memberships.append({"group_id": group_id, "user_id": user_id, "role": "left" if left else "member",
                            "language_code": language, "joined_at": _at(joined, 12, zone),
                            "last_seen_at": _at(min(left or end, end), 20, zone)})
        # how talkative: most people rarely, a few every day; interest fades after joining
        keen = min(0.95, rng.lognormvariate(-1.6, 0.9))
        checks_in = rng.random() < 0.4
        chat_hour = rng.choices(hours, HOUR_WEIGHTS)[0]
        day = max(joined, start)
        last = min(left - timedelta(days=1), end) if left else end
        while day <= last:
            age = (day - joined).days
            chance = keen * (0.5 + 0.5 * math.exp(-age / 20)) * (1.3 if day.weekday() >= 5 else 1.0)
            if rng.random() < chance:
                counts = dict.fromkeys(COUNTERS, 0)
                messages = 1 + int(rng.expovariate(1 / (1 + 6 * keen)))
                for kind in rng.choices(kinds, kind_weights, k=messages):
                    counts[kind] += 1
                counts["replies"] = sum(rng.random() < 0.3 for _ in range(messages))
                counts["checkins"] = int(checks_in and rng.random() < 0.8)
                counts["topic_replies"] = int(rng.random() < 0.1)
                counts["showcases"] = int(counts["photo"] > 0 and rng.random() < 0.2)
                member_days.append({"group_id": group_id, "user_id": user_id, "day": day, "language": language,
                                    **counts})
                hour = chat_hour if rng.random() < 0.7 else rng.choices(hours, HOUR_WEIGHTS)[0]
                hour_messages[day, hour] += messages
                hour_speakers[day, hour] += 1
            day += timedelta(days=1)

    group_days = []
    count = before
    day = start
    while day <= end:
        count += joins_on[day] - leaves_on[day]
        group_days.append({"group_id": group_id, "day": day, "members": count})
        if rng.random() < 0.5:
            target = SYNTHETIC_BASE + rng.randrange(members)
            action = rng.choice(("delete", "delete", "delete", "warn", "warn", "mute", "ban", "unmute"))
            actions.append({"group_id": group_id, "actor_id": None if rng.random() < 0.7 else SYNTHETIC_BASE,
                            "target_id": target, "action": action, "rule": rng.choice(("links", "flood", None)),
                            "dry_run": False, "created_at": _at(day, rng.randrange(24), zone)})
        day += timedelta(days=1)
    hour_rows = [{"group_id": group_id, "day": d, "hour": h, "messages": m, "speakers": hour_speakers[d, h]}
                 for (d, h), m in hour_messages.items()]

    async with sessionmaker() as session:
        async with session.begin():
            postgres = is_postgres(session)
            known = set((await session.scalars(select(User.user_id).where(  # type: ignore[call-overload]
                User.user_id.in_([u["user_id"] for u in users[:1]])))).all())  # type: ignore[attr-defined]
            if not known:
                await _insert(session, dialect_insert(postgres, User).on_conflict_do_nothing(), users)
            await _insert(session, dialect_insert(postgres, Member).on_conflict_do_nothing(), memberships)
            await _insert(session, insert(MembershipEvent), events)
            await _insert(session, insert(MemberDay), member_days)
            await _insert(session, insert(HourFact), hour_rows)
            await _insert(session, dialect_insert(postgres, GroupDay).on_conflict_do_nothing(), group_days)
            await refresh_day_totals(session, group_id, start, end)
            await _insert(session, insert(ModAction), actions)


async def _insert(session: AsyncSession, statement: Any, rows: list[dict[str, Any]]) -> None:
    for offset in range(0, len(rows), CHUNK):
        await session.execute(statement, rows[offset:offset + CHUNK])


def _at(day: date, hour: int, zone: Any) -> datetime:
    return datetime.combine(day, time(hour), zone).astimezone(UTC)
