"""A month's /stats with its images, for a group of 10,000 members with 365 days of activity facts.

What an admin waits for: models.analytics.group_kpis for the last whole month, then the four /stats charts drawn
off the event loop (handlers.stats_charts.draw_charts: in a worker process), the median of a few rounds,
and the longest the event loop was held meanwhile (a ticker task asking to run every millisecond).
Targets: <= 1 s for the whole answer with the images; a loop stall <= 20 ms while the charts are drawn.

It also prints each chart's drawing time (`chart_timing`); bench/stats.py times the queries alone.

    python -m bench.stats_charts                       # SQLite in a temporary file
    python -m bench.stats_charts --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
    python -m bench.stats_charts --members 2000 --days 90   # smaller, quicker
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.database import bench_engine, bench_group, timed
from bench.stats import month_of_history
from bot.i18n import create_i18n
from handlers.stats_charts import CHARTS, draw_charts, drawing, render_charts
from models.analytics import Kpis, Period, group_kpis
from models.db import create_sessionmaker

ROUNDS = 5
ZONE = "Asia/Shanghai"
TARGET_TOTAL_MS = 1000
TARGET_STALL_MS = 20


def chart_timing(kpis: Kpis) -> dict[str, float]:
    """Each /stats chart drawn from `kpis` (zh_Hans): {name: milliseconds}, plus "all" for render_charts."""
    i18n = create_i18n("zh_Hans")
    timings: dict[str, float] = {}
    with i18n.context(), i18n.use_locale("zh_Hans"):
        render_charts(kpis)  # the first render loads the font and matplotlib's caches
        with drawing():
            for name, draw in CHARTS:
                started = time.perf_counter()
                draw(kpis)
                timings[name] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        render_charts(kpis)
        timings["all"] = (time.perf_counter() - started) * 1000
    return timings


async def bench(url: str, members: int, days: int) -> float:
    async with bench_engine(url) as engine:
        sessionmaker = create_sessionmaker(engine)
        group_id = await bench_group(sessionmaker, -100_778, ZONE)
        period, now, generated = await month_of_history(sessionmaker, group_id, members, days)
        i18n = create_i18n("zh_Hans")
        with i18n.context(), i18n.use_locale("zh_Hans"):
            kpis = await group_kpis(sessionmaker, [group_id], period, now=now)  # warm caches, like a live bot
            await draw_charts(kpis)  # starts the worker process
            totals, queries, chart_stalls, total_stalls = [], [], [], []
            for _ in range(ROUNDS):
                kpis, query, _stall = await timed(group_kpis(sessionmaker, [group_id], period, now=now))
                _charts, _drawn, chart_stall = await timed(draw_charts(kpis))
                _both, total, total_stall = await timed(answer(sessionmaker, group_id, period, now))
                queries.append(query)
                totals.append(total)
                chart_stalls.append(chart_stall)
                total_stalls.append(total_stall)
        total_ms = statistics.median(totals) * 1000
        stall_ms = max(chart_stalls) * 1000
        print(f"database: {engine.dialect.name}; members: {members:,}; days: {days} (generated in {generated:.1f} s)")
        print(f"period: {period.label()}; median of {ROUNDS} rounds")
        print(f"kpis_query_ms={statistics.median(queries) * 1000:.1f}")
        print(f"stats_with_images_ms={total_ms:.1f} (target <= {TARGET_TOTAL_MS}) "
              f"{'OK' if total_ms <= TARGET_TOTAL_MS else 'OVER'}")
        print(f"max_loop_stall_while_drawing_ms={stall_ms:.1f} (target <= {TARGET_STALL_MS}) "
              f"{'OK' if stall_ms <= TARGET_STALL_MS else 'OVER'}")
        print(f"max_loop_stall_whole_answer_ms={max(total_stalls) * 1000:.1f} (queries included)")
        for name, ms in chart_timing(kpis).items():
            print(f"chart_ms[{name}]={ms:.1f}")
        return total_ms


async def answer(sessionmaker: Any, group_id: int, period: Period, now: datetime) -> list[tuple[str, bytes]]:
    """What /stats does before sending: the KPIs, then the images off the event loop."""
    kpis = await group_kpis(sessionmaker, [group_id], period, now=now)
    return await draw_charts(kpis)


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
