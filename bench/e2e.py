"""The real bot over HTTP (webhook), 1, 2 and 3 workers on PostgreSQL + Redis, beside a minimal aiogram echo bot
on the same sandbox, in one run.

Each contestant runs as its own processes (`qunbot run`, `qunbot run --workers N --no-scheduler`, or the echo
bot below) on a fresh database, behind the sandbox's webhook (a connection per update, so SO_REUSEPORT spreads
them). Members press a check-in board's button; each press is a new member (the full path: arrival, check-in,
points, the board's edit). Two phases per contestant:

- paced: RATE presses a second for SECONDS seconds: p50/p99 press-to-answer (the sandbox's press until the
  bot's answerCallbackQuery arrives) and CPU per update (user+system CPU of every process of the contestant,
  read from /proc, divided by the presses);
- burst: BURST presses at once (200 in flight): updates per second.

Targets (issue 16): CPU per update <= 2x the echo bot's; p99 <= 250 ms at 100 updates/s; CPU per update with 3
workers <= 1.2x one worker's. The machine is shared: figures drift between runs; compare within one run.

    python -m bench.e2e [--database postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--redis redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-e2e-secret"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the echo bot ----------------------------------------------------------------------------------------------


def echo_bot(token: str, api: str, port: int) -> None:
    """Minimal aiogram webhook bot: /start posts a button; a press is answered. Nothing else."""
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.filters import Command
    from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api)))
    dp = Dispatcher()

    @dp.message(Command("start"))
    async def start(message: Message) -> None:
        button = InlineKeyboardButton(text="ci", callback_data="ci")
        await message.answer("echo", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]))

    @dp.callback_query()
    async def press(query: CallbackQuery) -> None:
        await query.answer("ok")

    async def on_startup(bot: Bot) -> None:
        await bot.set_webhook(f"http://127.0.0.1:{port}/tg/webhook", secret_token=SECRET)

    dp.startup.register(on_startup)
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=SECRET).register(app, path="/tg/webhook")
    setup_application(app, dp, bot=bot)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- processes and their CPU -----------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


@dataclass
class Result:
    name: str
    cpu_per_update_ms: float
    p50_ms: float
    p99_ms: float
    paced_rate: float
    burst_rate: float
    unanswered: int


async def create_database(server: str) -> str:
    """A fresh, empty database for one contestant: a new role whose search_path is its own new schema (cheaper
    than CREATE/DROP DATABASE, which waits for a checkpoint). Returns the role's name."""
    import asyncpg

    name = f"bench_e2e_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN')
        await admin.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"')
        await admin.execute(f'ALTER ROLE "{name}" SET search_path = "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(server: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


async def contestant(sb: Any, name: str, workers: int, args: argparse.Namespace) -> Result:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOT_TOKEN": sb.token, "TELEGRAM_API_URL": sb.base_url,
           "WEBHOOK_URL": f"http://127.0.0.1:{port}/tg/webhook", "WEBHOOK_SECRET": SECRET,
           "WEBHOOK_LISTEN": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING",
           "REDIS_URL": args.redis, "REDIS_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
           "DB_POOL_SIZE": "5", "DB_MAX_OVERFLOW": "5"}
    database = None
    if workers == 0:
        command = [sys.executable, "-m", "bench.e2e", "--echo-bot", str(port)]
    else:
        database = await create_database(args.database)
        env["DATABASE_URL"] = f"postgresql+asyncpg://{database}@{args.database.split('@', 1)[1]}"
        command = [sys.executable, "-m", "bot", "run"]
        if workers > 1:
            command += ["--workers", str(workers), "--no-scheduler"]
    log = open(f"/tmp/bench_e2e_{name.replace(' ', '_')}.log", "wb")  # noqa: SIM115, ASYNC230
    since = len(sb.calls)
    process = await asyncio.create_subprocess_exec(*command, cwd=str(ROOT), env=env, stdout=log, stderr=log)
    try:
        await sb.wait_for("setWebhook", timeout=120, since=since)
        owner = sb.add_user(f"Owner {name}", language_code="en")
        groups = []
        for g in range(4):
            group = sb.create_group(f"{name} {g}", owner=owner)
            await sb.add_bot(group, by=owner, admin=True)
            groups.append(group)
        await asyncio.sleep(1.0)
        boards = []
        for group in groups:
            await sb.send(group, owner, "/start" if workers == 0 else "/checkin")
            boards.append(await board_of(sb, group))
        total = args.rate * args.seconds + args.burst
        members = [sb.add_user(f"{name} m{i}", language_code="en") for i in range(total)]
        for i, member in enumerate(members):
            sb.add_member(groups[i % 4], member)
        warm = members[: 2 * 4]
        await asyncio.gather(*(sb.press(m, boards[i % 4], "ci", timeout=15) for i, m in enumerate(warm)))
        paced = members[len(warm): len(warm) + args.rate * args.seconds]
        burst = members[len(warm) + len(paced):]

        pids = descendants(process.pid)
        latencies: list[float] = []
        unanswered = 0

        async def press(member: Any, board: Any) -> None:
            nonlocal unanswered
            started = time.perf_counter()
            answer = await sb.press(member, board, "ci", timeout=15)
            if not answer.answered:
                unanswered += 1
            latencies.append(time.perf_counter() - started)

        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        tasks = []
        for i, member in enumerate(paced):
            due = t0 + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(press(member, boards[(len(warm) + i) % 4])))
        await asyncio.gather(*tasks)
        paced_seconds = time.perf_counter() - t0
        cpu1 = cpu_seconds(pids)
        gate = asyncio.Semaphore(200)

        async def gated(member: Any, board: Any) -> None:
            async with gate:
                await press(member, board)

        t1 = time.perf_counter()
        await asyncio.gather(*(gated(m, boards[(len(warm) + len(paced) + i) % 4]) for i, m in enumerate(burst)))
        burst_seconds = time.perf_counter() - t1
        ordered = sorted(latencies[: len(paced)])
        return Result(
            name=name,
            cpu_per_update_ms=(cpu1 - cpu0) / len(paced) * 1000,
            p50_ms=statistics.median(ordered) * 1000,
            p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            paced_rate=len(paced) / paced_seconds,
            burst_rate=len(burst) / burst_seconds,
            unanswered=unanswered,
        )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 40)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()
        if database is not None:
            await drop_database(args.database, database)


async def board_of(sb: Any, group: Any) -> Any:
    for _ in range(300):
        for message in reversed(sb.messages(group)):
            if not message.deleted and any(data == "ci" for _, data in sb.buttons(message)):
                return message
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no board in {group.title}")


async def main(args: argparse.Namespace) -> None:
    from bot.sandbox import Sandbox

    results = []
    async with Sandbox() as sb:  # Telegram's limits on
        for name, workers in (("echo", 0), ("qunbot x1", 1), ("qunbot x2", 2), ("qunbot x3", 3)):
            result = await contestant(sb, name, workers, args)
            results.append(result)
            print(f"{result.name:10} cpu/update={result.cpu_per_update_ms:.2f} ms  p50={result.p50_ms:.0f} ms  "
                  f"p99={result.p99_ms:.0f} ms  paced={result.paced_rate:.0f}/s  burst={result.burst_rate:.0f}/s  "
                  f"unanswered={result.unanswered}", flush=True)
        rate_limited = sb.stats.rate_limited_total
    echo, one, three = results[0], results[1], results[3]
    print(f"cpu_per_update_vs_echo={one.cpu_per_update_ms / echo.cpu_per_update_ms:.2f} (target <= 2)")
    print(f"p99_at_{args.rate}_per_s={max(r.p99_ms for r in results[1:]):.0f} ms (target <= 250)")
    print(f"cpu_per_update_3_vs_1={three.cpu_per_update_ms / one.cpu_per_update_ms:.2f} (target <= 1.2)")
    print(f"429s={rate_limited}  load average={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server URL (each contestant gets a fresh role and schema on it)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--rate", type=int, default=100, help="presses a second in the paced phase")
    parser.add_argument("--seconds", type=int, default=10, help="length of the paced phase")
    parser.add_argument("--burst", type=int, default=1000, help="presses at once in the burst phase")
    parser.add_argument("--echo-bot", type=int, default=0, help=argparse.SUPPRESS)  # internal: run the echo bot
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    if arguments.echo_bot:
        echo_bot(os.environ["BOT_TOKEN"], os.environ["TELEGRAM_API_URL"], arguments.echo_bot)
    else:
        asyncio.run(main(arguments))
