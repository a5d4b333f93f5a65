"""A month's KPIs for a group of 10,000 members with 365 days of activity facts.

The history is models.analytics.generate_history (10,000 members, 365 days ending yesterday). The figure is the
query time of models.analytics.group_kpis for the last whole month (every KPI section, with the previous month
beside it), the median of a few rounds, and the longest the event loop was held meanwhile (a ticker task).
Target: <= 300 ms of query time. The /stats images are timed by bench.stats_charts.chart_timing.

    python -m bench.stats                       # SQLite in a temporary file
    python -m bench.stats --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
    python -m bench.stats --members 2000 --days 90   # smaller, quicker
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from bench.lottery_draw import postgres_engine
from bench.stats_charts import chart_timing
from models.analytics import MemberDay, Period, generate_history, group_kpis
from models.db import create_all, create_engine, create_sessionmaker
from models.groups import ChatSeen, upsert_group

ROUNDS = 5
ZONE = "Asia/Shanghai"
TARGET_MS = 300


async def loop_stall(stop: asyncio.Event) -> float:
    """The longest gap between two wake-ups of a task that asks to run every millisecond (seconds)."""
    worst, last = 0.0, time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst, last = max(worst, now - last - 0.001), now
    return worst


async def bench(url: str, members: int, days: int) -> float:
    schema = None
    if url.startswith("postgresql"):
        engine, schema = await postgres_engine(url)
    else:
        engine = create_engine(url)
    try:
        await create_all(engine)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            group = await upsert_group(session, ChatSeen(-100_777, "Bench", "supergroup"), default_timezone=ZONE)
            await session.commit()
            assert group.id is not None
            group_id = group.id
        now = datetime.now(UTC)
        started = time.perf_counter()
        await generate_history(sessionmaker, group_id, days=days, members=members, seed=17)
        generated = time.perf_counter() - started
        async with engine.connect() as connection:  # a live database has its planner statistics
            await connection.execute(text("ANALYZE"))
            await connection.commit()
        async with sessionmaker() as session:
            rows = await session.scalar(select(func.count()).select_from(MemberDay))
        first_of_month = now.astimezone(Period.today(ZONE).zone).date().replace(day=1)
        last_month = first_of_month - timedelta(days=1)
        period = Period.of_month(last_month.year, last_month.month, ZONE)
        await group_kpis(sessionmaker, [group_id], period, now=now)  # warm the caches once, like a live database
        timings, stalls = [], []
        kpis = None
        for _ in range(ROUNDS):
            stop = asyncio.Event()
            ticker = asyncio.create_task(loop_stall(stop))
            await asyncio.sleep(0.005)
            started = time.perf_counter()
            kpis = await group_kpis(sessionmaker, [group_id], period, now=now)
            timings.append(time.perf_counter() - started)
            stop.set()
            stalls.append(await ticker)
        assert kpis is not None and kpis.activity.messages.value
        query = statistics.median(timings) * 1000
        print(f"database: {engine.dialect.name}; members: {members:,}; days: {days}; "
              f"activity_member_days rows: {rows:,} (generated in {generated:.1f} s)")
        print(f"period: {period.label()} (previous {kpis.previous.label()}); median of {ROUNDS} rounds")
        print(f"kpis_query_ms={query:.1f} (target <= {TARGET_MS}) {'OK' if query <= TARGET_MS else 'OVER'}")
        print(f"max_loop_stall_ms={max(stalls) * 1000:.1f}")
        print(f"  DAU {kpis.activity.dau.value:.0f}, MAU {kpis.activity.mau.value}, "
              f"messages {kpis.activity.messages.value:,}, members {kpis.members.total.value:,}")
        charts: dict[str, Any] | None = chart_timing(kpis)
        if charts is not None:
            for name, ms in charts.items():
                print(f"chart_ms[{name}]={ms:.1f}")
        return query
    finally:
        await engine.dispose()
        if schema is not None:
            admin = create_engine(url)
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qunbot-bench-") as folder:
        url = args.database or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        asyncio.run(bench(url, args.members, args.days))


if __name__ == "__main__":
    main()
