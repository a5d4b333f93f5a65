"""A lottery draw over 100,000 entrants, against a full scan of the entries table measured in the same run.

The draw is models.lottery.draw_lottery: the conditional UPDATE that claims it, reading the entrant ids in
order, hashing the frozen list, storing it, picking the winners and handing over their prizes (points), in one
transaction. The full scan reads every column of every row of lottery_entries. Target: draw <= 3x scan.

    python -m bench.lottery_draw                       # SQLite, 100,000 entrants
    python -m bench.lottery_draw --entrants 20000 --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text

from bench.database import bench_engine, bench_group
from models import lottery
from models.db import create_sessionmaker, insert, utcnow
from models.lottery import LotteryEntry, LotterySpec

ROUNDS = 3


async def fill(sessionmaker, group_id: int, entrants: int) -> int:  # type: ignore[no-untyped-def]
    """An open lottery with `entrants` entries (bulk insert: the bench measures the draw, not the entries)."""
    now = utcnow()
    async with sessionmaker() as session:
        spec = LotterySpec(prize_kind="points", prize_points=100, winners=10, ends_at=now + timedelta(hours=1))
        lot = await lottery.create_lottery(session, group_id, 1, spec, now=now)
        assert lot.id is not None
        lottery_id = lot.id
        ids = random.Random(lottery_id).sample(range(10**8, 10**10), entrants)  # distinct, in no order
        rows = [{"lottery_id": lottery_id, "user_id": user_id, "cost": 0, "created_at": now} for user_id in ids]
        async with session.begin():
            for start in range(0, entrants, 5000):
                await session.execute(insert(session, LotteryEntry), rows[start:start + 5000])
            await session.execute(
                text("UPDATE lotteries SET entrant_count = :n WHERE id = :id"), {"n": entrants, "id": lottery_id}
            )
    return lottery_id


async def full_scan(sessionmaker) -> float:  # type: ignore[no-untyped-def]
    async with sessionmaker() as session:
        started = time.perf_counter()
        rows = (await session.execute(select(LotteryEntry.__table__))).all()  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - started
    assert rows
    return elapsed


async def bench(url: str, entrants: int) -> float:
    async with bench_engine(url) as engine:
        sessionmaker = create_sessionmaker(engine)
        group_id = await bench_group(sessionmaker, -100123, "Asia/Shanghai")
        scans, draws = [], []
        for _ in range(ROUNDS):
            lottery_id = await fill(sessionmaker, group_id, entrants)
            await full_scan(sessionmaker)  # warm the cache once, like a live table
            scans.append(await full_scan(sessionmaker))
            async with sessionmaker() as session:
                started = time.perf_counter()
                result = await lottery.draw_lottery(session, lottery_id, force=True)
                draws.append(time.perf_counter() - started)
            assert result is not None and len(result.winners) == 10 and result.entrants == entrants
            assert len({w.user_id for w in result.winners}) == 10
            assert lottery.pick_winners(result.lottery.seed, map(int, result.list_text.split("\n")), 10) == [
                w.user_id for w in result.winners]
            async with sessionmaker() as session, session.begin():  # the next round scans one lottery's rows too
                await session.execute(text("DELETE FROM lottery_entries"))
        scan, draw = statistics.median(scans), statistics.median(draws)
        ratio = draw / scan
        print(f"database: {engine.dialect.name}; entrants: {entrants:,}; median of {ROUNDS} rounds")
        print(f"full scan of lottery_entries: {scan * 1000:.1f} ms")
        print(f"draw (claim, freeze, hash, store, 10 winners with points): {draw * 1000:.1f} ms")
        print(f"ratio draw / scan: {ratio:.2f} (target <= 3.00) {'OK' if ratio <= 3 else 'OVER'}")
        return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entrants", type=int, default=100_000)
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qunbot-bench-") as folder:
        url = args.database or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        asyncio.run(bench(url, args.entrants))


if __name__ == "__main__":
    main()
