"""Faults an operator meets, against a real `qunbot run` process and the sandbox: kill -9 during press bursts,
a database outage, SIGTERM during a burst, a second poller on the token, and start-up with something missing.
Nothing a member did is lost or applied twice, and nobody is told "sorry" about a press that was recorded."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from bot.runner import run
from bot.sandbox import Sandbox
from bot.settings import load_settings
from models.db import create_engine, utcnow
from tests.conftest import POSTGRES_URL

APOLOGY = "Sorry, something went wrong"
ZONE = "Asia/Shanghai"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpProxy:
    """A TCP forwarder the test controls: `down()` refuses new connections and cuts the open ones (the database
    unreachable), `up()` serves again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database for a qunbot process: an SQLite file, or on PostgreSQL a schema of its own, reached as a
    role of the same name whose search_path is that schema (a child process cannot be handed a search_path)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'faults.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    name = f"qb_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        for statement in (f'CREATE ROLE "{name}" LOGIN', f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"',
                          f'ALTER ROLE "{name}" SET search_path = "{name}"'):
            await connection.execute(text(statement))
    scheme, rest = POSTGRES_URL.split("://", 1)
    try:
        yield f"{scheme}://{name}@{rest.split('@', 1)[1]}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                          f"WHERE usename = '{name}'"))
            await connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            await connection.execute(text(f'DROP ROLE "{name}"'))
        await admin.dispose()


class Qunbot:
    """`python -m bot run` as a child process, its output in a file."""

    def __init__(self, sb: Sandbox, url: str, tmp_path: Path, **env: str) -> None:
        self.sb, self.url, self.tmp_path = sb, url, tmp_path
        self.env = {**os.environ, "BOT_TOKEN": sb.token, "TELEGRAM_API_URL": sb.base_url, "DATABASE_URL": url,
                    "WEBHOOK_URL": "", "DEFAULT_LOCALE": "en", "DEFAULT_TIMEZONE": ZONE, "LOG_LEVEL": "INFO",
                    "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env}
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.tmp_path / f"qunbot-{id(self)}-{self.runs}.log"

    async def start(self, *, ready: bool = True) -> None:
        self.runs += 1
        mark = self.sb.mark()
        out = self.log_path.open("wb")  # noqa: ASYNC230 - a local file, opened once
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=self.env, cwd=self.tmp_path, stdout=out, stderr=out,
        )
        out.close()
        if ready:  # deleteWebhook comes right before the replay and the first getUpdates
            await self.sb.wait_for("deleteWebhook", timeout=90, since=mark)
            await asyncio.sleep(0.3)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no clean-up of any kind
        await self.process.wait()

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)

    def log(self) -> str:
        return "\n".join(
            (self.tmp_path / f"qunbot-{id(self)}-{n}.log").read_text(errors="replace") for n in range(1, self.runs + 1)
        )


async def rows(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def check_invariants(url: str) -> None:
    """What must hold whatever happened: points, stock and once-only keys."""
    bad_balances = await rows(url, """
        SELECT b.user_id FROM points_balances b
        LEFT JOIN (SELECT group_id, user_id, SUM(delta) AS s FROM points_ledger GROUP BY group_id, user_id) l
          ON l.group_id = b.group_id AND l.user_id = b.user_id
        WHERE b.balance < 0 OR b.balance != COALESCE(l.s, 0)""")
    assert bad_balances == [], "ledger sum != balance, or a balance below 0"
    assert await rows(url, "SELECT group_id, user_id, day FROM checkins GROUP BY group_id, user_id, day "
                           "HAVING COUNT(*) > 1") == []
    assert await rows(url, "SELECT code FROM coupons GROUP BY code HAVING COUNT(*) > 1") == []
    assert await rows(url, "SELECT round_id, user_id FROM flash_orders GROUP BY round_id, user_id "
                           "HAVING COUNT(*) > 1") == []
    assert await rows(url, """
        SELECT r.id FROM flash_rounds r WHERE r.stock_total - r.stock !=
          (SELECT COUNT(*) FROM flash_orders o WHERE o.round_id = r.id)""") == []
    assert await rows(url, "SELECT group_id, kind, slot FROM posts GROUP BY group_id, kind, slot "
                           "HAVING COUNT(*) > 1") == []
    spends = await rows(url, "SELECT COUNT(*) FROM points_ledger WHERE key LIKE 'redeem:%'")
    coupons = await rows(url, "SELECT COUNT(*) FROM coupons")
    assert spends == coupons  # one spend per coupon, never two


async def settle(sb: Sandbox, quiet: float = 1.2) -> None:
    await sb.settle(timeout=30, quiet=quiet)


async def burst(sb: Sandbox, people: list[Any], post: Any) -> list[Any]:
    """Every person presses the post's first button at once; the presses, to be read later."""
    data = sb.buttons(post)[0][1] or ""
    before = set(sb.server.queries)
    for person in people:
        await sb.press(person, post, data, timeout=0)
    return [q for qid, q in sb.server.queries.items() if qid not in before]


async def kill_mid_burst(sb: Sandbox, bot: Qunbot, presses: list[Any]) -> None:
    """kill -9 once the bot has answered its first press of the burst (the rest are in flight or queued)."""
    for _ in range(2000):
        if any(q.answered for q in presses):
            break
        await asyncio.sleep(0.005)
    await bot.kill()


async def answered_all(presses: list[Any], seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if all(q.answered for q in presses):
            return
        await asyncio.sleep(0.05)


async def setup_group(sb: Sandbox, members: int) -> tuple[Any, Any, list[Any]]:
    owner = sb.add_user("Lin", username="lin", language_code="en")
    group = sb.create_group("Fans", owner=owner)
    await sb.add_bot(group, by=owner, admin=True)
    people = [sb.add_user(f"M{n}", username=f"m{n}", language_code="en") for n in range(members)]
    for person in people:
        sb.add_member(group, person)
    return owner, group, people


async def post_flash_sale(sb: Sandbox, bot_settings: Any, group: Any, owner: Any) -> Any:
    """The owner adds a product and a sale starting now; the scheduler's job runs once, from here."""
    from bot.factory import create_bot, create_runtime
    from models.db import create_sessionmaker
    from models.schedules import local_moment
    from scheduler.runner import JobContext, run_schedules

    await sb.send(group, owner, "/product add Mask | 99 | 39.9 | 15 | 1")
    await settle(sb)
    added = sb.last_message(group)
    product_id = (added.text or "").split("#", 1)[1].split()[0]
    now = utcnow().astimezone(ZoneInfo(ZONE))
    await sb.send(group, owner, f"/flashsale new {product_id} {now:%H:%M} 30m daily notice=10")
    await settle(sb)
    engine = create_engine(bot_settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    bot = create_bot(bot_settings, sessionmaker=sessionmaker)
    try:
        moment = local_moment(now.date(), f"{now:%H:%M}", ZoneInfo(ZONE)) + timedelta(seconds=5)
        await run_schedules(JobContext(bot, create_runtime(bot_settings, sessionmaker)), moment, kinds={"flash_sale"})
    finally:
        await bot.session.close()
        await engine.dispose()
    await settle(sb)
    post = next(m for m in reversed(sb.messages(group)) if sb.buttons(m) and "Mask" in (m.text or ""))
    return post


def settings_for(sb: Sandbox, url: str) -> Any:
    return load_settings(_env_file=None, database_url=url, default_timezone=ZONE, default_locale="en").model_copy(
        update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url}
    )


def no_apology(sb: Sandbox, presses: list[Any]) -> None:
    assert not [q for q in presses if APOLOGY in ((q.answer or {}).get("text") or "")]
    for chat in sb.world.chats.values():
        assert not [m for m in sb.all_messages(chat) if APOLOGY in (m.text or "")]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_kill_9_during_checkin_redeem_and_grab_bursts_loses_and_doubles_nothing(  # type: ignore[no-untyped-def]
    kind, tmp_path
) -> None:
    async with Sandbox() as sb, database(kind, tmp_path) as url:
        bot = Qunbot(sb, url, tmp_path)
        await bot.start()
        owner, group, people = await setup_group(sb, 40)
        gid = group.id

        # 1. Check-in: one keyword check-in posts the board, then everyone presses it; kill -9 mid-burst.
        await sb.send(group, people[0], "签到")
        await settle(sb)
        board = next(m for m in reversed(sb.messages(group)) if sb.buttons(m))
        checkins = await burst(sb, people[1:], board)
        await kill_mid_burst(sb, bot, checkins)
        await bot.start()
        await answered_all(checkins)
        await settle(sb)
        checked = await rows(url, f"SELECT user_id FROM checkins c JOIN groups g ON g.id = c.group_id "
                                  f"WHERE g.chat_id = {gid}")
        assert sorted(u for (u,) in checked) == sorted(p.id for p in people)  # each once, none lost

        # 2. Redeem: an item of 1 point with 20 in stock, 40 presses; kill -9 mid-burst.
        await sb.send(group, owner, "/shop add Coupon | 1 | 20 | 1 | - | 30")
        await settle(sb)
        await sb.send(group, people[0], "/shop")
        await settle(sb)
        shop = next(m for m in reversed(sb.messages(group)) if sb.buttons(m) and "Coupon" in (m.text or ""))
        redeems = await burst(sb, people, shop)
        await kill_mid_burst(sb, bot, redeems)
        await bot.start()
        await answered_all(redeems)
        await settle(sb)
        coupons = await rows(url, "SELECT user_id FROM coupons")
        assert len(coupons) == 20 and len({u for (u,) in coupons}) == 20  # all the stock, one a member
        assert await rows(url, "SELECT stock FROM shop_items") == [(0,)]

        # 3. Grab: a flash sale of 15, 40 presses; kill -9 mid-burst.
        settings = settings_for(sb, url)
        post = await post_flash_sale(sb, settings, group, owner)
        grabs = await burst(sb, people, post)
        await kill_mid_burst(sb, bot, grabs)
        await bot.start()
        await answered_all(grabs)
        await settle(sb)
        orders = await rows(url, "SELECT user_id FROM flash_orders")
        assert len(orders) == 15 and len({u for (u,) in orders}) == 15

        everyone = checkins + redeems + grabs
        assert [q for q in everyone if not q.answered] == []  # every press answered
        no_apology(sb, everyone)
        await check_invariants(url)
        assert await rows(url, "SELECT COUNT(*) FROM inbox WHERE state != 'done'") == [(0,)]
        assert await bot.terminate() == 0


async def test_sigterm_during_a_press_burst_finishes_or_keeps_every_press_and_apologizes_for_none(  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    async with Sandbox() as sb, database("sqlite", tmp_path) as url:
        bot = Qunbot(sb, url, tmp_path)
        await bot.start()
        owner, group, people = await setup_group(sb, 40)
        await sb.send(group, people[0], "签到")
        await settle(sb)
        board = next(m for m in reversed(sb.messages(group)) if sb.buttons(m))
        presses = await burst(sb, people[1:], board)
        for _ in range(2000):
            if any(q.answered for q in presses):
                break
            await asyncio.sleep(0.005)
        assert await bot.terminate() == 0
        no_apology(sb, presses)
        await bot.start()  # what the stop left in the inbox is handled now
        await answered_all(presses)
        await settle(sb)
        checked = await rows(url, "SELECT user_id FROM checkins")
        assert sorted(u for (u,) in checked) == sorted(p.id for p in people)
        assert [q for q in presses if not q.answered] == []
        no_apology(sb, presses)
        await check_invariants(url)
        assert await bot.terminate() == 0


async def test_a_postgresql_outage_loses_no_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, database("postgres", tmp_path) as real_url:
        host_port = real_url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        proxy = TcpProxy(host, int(port))
        await proxy.up()
        url = real_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        bot = Qunbot(sb, url, tmp_path)
        await bot.start()
        owner, group, people = await setup_group(sb, 3)
        await sb.send(group, owner, "/help")
        await settle(sb)
        await proxy.down()
        for person in people:
            await sb.send(group, person, "/checkin")
        await asyncio.sleep(5)  # the database is away for a while
        await proxy.up()
        await settle(sb, quiet=2)
        for _ in range(200):
            if len(await rows(real_url, "SELECT user_id FROM checkins")) == len(people):
                break
            await asyncio.sleep(0.1)
        checked = await rows(real_url, "SELECT user_id FROM checkins")
        assert sorted(u for (u,) in checked) == sorted(p.id for p in people)
        assert not [m for m in sb.all_messages(group) if APOLOGY in (m.text or "")]
        assert await bot.terminate() == 0
        assert "the database is unavailable" in bot.log()
        await proxy.down()


async def test_a_locked_sqlite_database_loses_no_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, database("sqlite", tmp_path) as url:
        bot = Qunbot(sb, url, tmp_path)
        await bot.start()
        owner, group, people = await setup_group(sb, 5)
        await sb.send(group, owner, "/help")
        await settle(sb)
        lock = sqlite3.connect(tmp_path / "faults.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the database
        for person in people:
            await sb.send(group, person, "/checkin")
        await asyncio.sleep(5)
        lock.execute("COMMIT")
        lock.close()
        await settle(sb, quiet=2)
        checked = await rows(url, "SELECT user_id FROM checkins")
        assert sorted(u for (u,) in checked) == sorted(p.id for p in people)
        assert not [m for m in sb.all_messages(group) if APOLOGY in (m.text or "")]
        assert await bot.terminate() == 0


async def test_a_second_poller_on_the_same_token_gets_a_clear_error_and_a_non_zero_exit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb, database("sqlite", tmp_path) as url:
        first = Qunbot(sb, url, tmp_path)
        await first.start()
        second = Qunbot(sb, url, tmp_path)
        await second.start(ready=False)
        done, _ = await asyncio.wait(
            {asyncio.create_task(first.process.wait()), asyncio.create_task(second.process.wait())},  # type: ignore[union-attr]
            timeout=60, return_when=asyncio.FIRST_COMPLETED,
        )
        assert done, "neither poller stopped"
        loser, winner = (first, second) if first.process.returncode is not None else (second, first)  # type: ignore[union-attr]
        assert loser.process.returncode == 3  # type: ignore[union-attr]
        assert "another program is polling with this bot token" in loser.log()
        assert "Traceback" not in loser.log()
        assert await winner.terminate() == 0


async def test_start_up_waits_for_an_unreachable_database_with_one_line(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    async with Sandbox() as sb, database("postgres", tmp_path) as real_url:
        host_port = real_url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        proxy = TcpProxy(host, int(port))  # down: nothing listens yet
        settings = settings_for(sb, real_url.replace(host_port, f"127.0.0.1:{proxy.port}"))
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, stop=stop, polling_timeout=1))
        await asyncio.sleep(3)
        assert not sb.calls  # not started
        lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(lines) == 1 and "the database (postgresql" in lines[0].getMessage()
        assert not any(r.exc_info for r in caplog.records)
        await proxy.up()
        await sb.wait_for("setMyCommands", timeout=60, since=0)
        stop.set()
        await asyncio.wait_for(task, 20)
        await proxy.down()


async def test_start_up_waits_for_an_unreachable_telegram_with_one_line(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}").model_copy(
        update={"bot_token": SecretStr("123:abc"), "telegram_api_url": f"http://127.0.0.1:{free_port()}"}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, polling_timeout=1))
    await asyncio.sleep(3)
    stop.set()
    await asyncio.wait_for(task, 20)
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("Telegram (http://127.0.0.1:")


async def test_what_retrying_cannot_fix_exits_2_with_one_line(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    async with Sandbox() as sb:
        settings = settings_for(sb, f"sqlite+aiosqlite:///{tmp_path / 's.db'}").model_copy(
            update={"bot_token": SecretStr(sb.token.split(":")[0] + ":wrong")}
        )
        with pytest.raises(SystemExit) as exited:
            await run(settings, stop=asyncio.Event(), polling_timeout=1)
        assert exited.value.code == 2
        assert any("Telegram refused BOT_TOKEN" in r.getMessage() for r in caplog.records)
    if POSTGRES_URL:
        missing = POSTGRES_URL.rsplit("/", 1)[0] + f"/qb_missing_{uuid.uuid4().hex[:8]}"
        settings = load_settings(_env_file=None, database_url=missing)
        with pytest.raises(SystemExit) as exited:
            await run(settings, stop=asyncio.Event(), polling_timeout=1)
        assert exited.value.code == 2
        assert any("does not exist" in r.getMessage() for r in caplog.records)


