"""A month's KPIs for a group of 10,000 members with 365 days of activity facts.

The history is models.analytics.generate_history (10,000 members, 365 days ending yesterday). The figure is the
query time of models.analytics.group_kpis for the last whole month (every KPI section, with the previous month
beside it), the median of a few rounds, and the longest the event loop was held meanwhile (a ticker task).
Target: <= 300 ms of query time. The /stats images (and the whole answer) are bench/stats_charts.py's.

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

from bench.database import bench_engine, bench_group, timed
from models.analytics import MemberDay, Period, generate_history, group_kpis
from models.db import create_sessionmaker

ROUNDS = 5
ZONE = "Asia/Shanghai"
TARGET_MS = 300


async def month_of_history(sessionmaker: Any, group_id: int, members: int, days: int) -> tuple[Period, datetime, float]:
    """Generate the group's history (models.analytics.generate_history, ending yesterday); the last whole month
    as the period to ask for, the moment asked at, and the seconds the generation took."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    await generate_history(sessionmaker, group_id, days=days, members=members, seed=17)
    generated = time.perf_counter() - started
    first_of_month = now.astimezone(Period.today(ZONE).zone).date().replace(day=1)
    last_month = first_of_month - timedelta(days=1)
    return Period.of_month(last_month.year, last_month.month, ZONE), now, generated


async def bench(url: str, members: int, days: int) -> float:
    async with bench_engine(url) as engine:
        sessionmaker = create_sessionmaker(engine)
        group_id = await bench_group(sessionmaker, -100_777, ZONE)
        period, now, generated = await month_of_history(sessionmaker, group_id, members, days)
        async with engine.connect() as connection:  # a live database has its planner statistics
            await connection.execute(text("ANALYZE"))
            await connection.commit()
        async with sessionmaker() as session:
            rows = await session.scalar(select(func.count()).select_from(MemberDay))
        await group_kpis(sessionmaker, [group_id], period, now=now)  # warm the caches once, like a live database
        timings, stalls = [], []
        kpis = None
        for _ in range(ROUNDS):
            kpis, elapsed, stall = await timed(group_kpis(sessionmaker, [group_id], period, now=now))
            timings.append(elapsed)
            stalls.append(stall)
        assert kpis is not None and kpis.activity.messages.value
        query = statistics.median(timings) * 1000
        print(f"database: {engine.dialect.name}; members: {members:,}; days: {days}; "
              f"activity_member_days rows: {rows:,} (generated in {generated:.1f} s)")
        print(f"period: {period.label()} (previous {kpis.previous.label()}); median of {ROUNDS} rounds")
        print(f"kpis_query_ms={query:.1f} (target <= {TARGET_MS}) {'OK' if query <= TARGET_MS else 'OVER'}")
        print(f"max_loop_stall_ms={max(stalls) * 1000:.1f}")
        print(f"  DAU {kpis.activity.dau.value:.0f}, MAU {kpis.activity.mau.value}, "
              f"messages {kpis.activity.messages.value:,}, members {kpis.members.total.value:,}")
        return query


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
