"""/healthz, /readyz and /metrics on the real `qunbot run` path against the sandbox: in webhook mode beside the
webhook, while polling on WEB_LISTEN; the counters after a burst of presses; JSON logs with the update's ids and
no secret."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.logs import current_chat_id, current_update_id, log_handler
from bot.sandbox import Sandbox
from bot.settings import load_settings
from tests.test_end_to_end import free_port, play_basic_group, running_bot


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


async def get(url: str) -> tuple[int, str]:
    """GET, waiting up to 10 s for the server to start listening (it starts after the command menus)."""
    for _ in range(100):
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                return response.status, await response.text()
        except aiohttp.ClientConnectorError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens at {url}")


async def test_webhook_mode_answers_health_readiness_and_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Sandbox() as sb, running_bot(
        sb, tmp_path, webhook_url=f"{base}/tg/webhook", webhook_secret=SecretStr("s3cret-token"),
        webhook_listen=f"127.0.0.1:{port}",
    ):
        await sb.wait_for("setWebhook", timeout=10, since=0)
        owner, group = await play_basic_group(sb)
        status, body = await get(f"{base}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = await get(f"{base}/readyz")
        assert status == 200, body
        checks = json.loads(body)["checks"]
        assert checks["database"] == "ok" and checks["telegram"] == "ok" and checks["redis"] == "off"
        status, body = await get(f"{base}/metrics")
        assert status == 200
        found = samples(body)
        assert total(found, "qunbot_updates_received_total", type="message") >= 1
        assert total(found, "qunbot_updates_handled_total", type="message") >= 1
        assert total(found, "qunbot_outbound_calls_total", method="sendMessage", result="ok") >= 1
        assert total(found, "qunbot_outbound_calls_total", method="setWebhook", result="ok") == 1
        assert total(found, "qunbot_handler_seconds_count", type="message") >= 1
        assert any(n == "qunbot_db_pool_connections" for n, _ in found)
        assert sb.token not in body


async def test_polling_mode_serves_health_and_metrics_on_web_listen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Sandbox() as sb, running_bot(sb, tmp_path, web_listen=f"127.0.0.1:{port}", metrics=True):
        await play_basic_group(sb)
        assert (await get(f"{base}/healthz"))[0] == 200
        status, body = await get(f"{base}/readyz")
        assert status == 200, body
        status, body = await get(f"{base}/metrics")
        assert status == 200 and "qunbot_updates_received_total" in body
        assert total(samples(body), "qunbot_outbound_calls_total", method="getUpdates") >= 1


async def test_counters_after_a_burst_of_presses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Sandbox() as sb, running_bot(sb, tmp_path, web_listen=f"127.0.0.1:{port}"):
        owner, group = await play_basic_group(sb)
        before = samples((await get(f"{base}/metrics"))[1])
        members = [sb.add_user(f"M{i}", language_code="en") for i in range(12)]
        for member in members:
            sb.add_member(group, member)  # members already (no join update)
        for member in members:
            await sb.send(group, member, "/checkin")
        await sb.settle(timeout=20, quiet=1.5)
        after = samples((await get(f"{base}/metrics"))[1])

        def grew(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        assert grew("qunbot_updates_received_total") == 12
        assert grew("qunbot_updates_handled_total", type="message") == 12
        assert grew("qunbot_updates_failed_total") == 0
        assert grew("qunbot_handler_seconds_count", type="message") == 12
        sent = grew("qunbot_outbound_calls_total", result="ok")
        assert sent >= 1  # the check-ins were answered (privately, on a board or in the group)
        assert any(n == "qunbot_limiter_wait_seconds_total" for n, _ in after)


async def test_metrics_can_be_turned_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Sandbox() as sb, running_bot(sb, tmp_path, web_listen=f"127.0.0.1:{port}", metrics=False):
        assert (await get(f"{base}/healthz"))[0] == 200
        assert (await get(f"{base}/metrics"))[0] == 404


@dataclass
class FakeStats:
    depth: int
    oldest_age_s: float
    set_aside: int


async def test_readyz_fails_when_the_inbox_is_stuck_and_metrics_show_its_depth(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.factory import create_runtime
    from bot.web import create_web_app, start_web
    from models.db import create_all, create_engine, create_sessionmaker

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await create_all(engine)
    settings = load_settings(_env_file=None, ready_inbox_max_age=60)
    runtime = create_runtime(settings, create_sessionmaker(engine))
    stats = FakeStats(depth=3, oldest_age_s=10.0, set_aside=1)

    async def inbox_stats() -> Any:
        return stats

    runtime.metrics.inbox_stats = inbox_stats
    port = free_port()
    runner = await start_web(create_web_app(runtime, None), "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        status, body = await get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["checks"]["inbox"] == "ok"
        found = samples((await get(f"{base}/metrics"))[1])
        assert found[("qunbot_inbox_depth", ())] == 3 and found[("qunbot_inbox_set_aside", ())] == 1
        stats.oldest_age_s = 600.0
        status, body = await get(f"{base}/readyz")
        assert status == 503 and "3 pending" in json.loads(body)["checks"]["inbox"]
        await engine.dispose()
        (tmp_path / "r.db").unlink()
        (tmp_path / "r.db").mkdir()  # the database cannot be opened any more
        status, body = await get(f"{base}/readyz")
        assert status == 503 and json.loads(body)["checks"]["database"].startswith("unreachable")
        assert (await get(f"{base}/healthz"))[0] == 200
    finally:
        await runner.cleanup()
        await engine.dispose()


def test_json_logs_carry_the_update_and_chat_and_never_a_secret(capsys) -> None:  # type: ignore[no-untyped-def]
    token = "123456789:AAHsecretsecretsecret"
    settings = load_settings(_env_file=None, bot_token=token, webhook_url="https://example.org/hook",
                             webhook_secret="hook-secret-1",
                             database_url="postgresql+asyncpg://qunbot:pg-password@db/qunbot")
    handler = log_handler(settings, "json")
    logger = logging.getLogger("qunbot.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        u, c = current_update_id.set(41), current_chat_id.set(-100123)
        try:
            logger.warning("calling https://api.telegram.org/bot%s/getMe", token)
            try:
                raise RuntimeError(f"failed with hook-secret-1 and pg-password and {token}")
            except RuntimeError:
                logger.exception("boom")
        finally:
            current_chat_id.reset(c)
            current_update_id.reset(u)
        logger.info("outside an update")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["update_id"] == 41 and lines[0]["chat_id"] == -100123 and lines[0]["level"] == "WARNING"
    assert "<BOT_TOKEN>" in lines[0]["message"]
    assert "exc" in lines[1] and "RuntimeError" in lines[1]["exc"]
    assert "update_id" not in lines[2]
    whole = json.dumps(lines)
    for secret in (token, token.split(":")[1], "hook-secret-1", "pg-password"):
        assert secret not in whole


def test_text_logs_carry_the_ids_and_redact_tracebacks(capsys) -> None:  # type: ignore[no-untyped-def]
    token = "123456789:AAHsecretsecretsecret"
    handler = log_handler(load_settings(_env_file=None, bot_token=token), "text")
    logger = logging.getLogger("qunbot.test-text")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        u = current_update_id.set(7)
        try:
            raise ValueError(token)
        except ValueError:
            logger.exception("failed")
        finally:
            current_update_id.reset(u)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "[update=7]" in err and token not in err and "<BOT_TOKEN>" in err


async def test_a_webhook_worker_also_answers_on_its_own_web_listen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.web import worker_listen

    hook_port, own_port = free_port(), free_port()
    async with Sandbox() as sb, running_bot(
        sb, tmp_path, webhook_url=f"http://127.0.0.1:{hook_port}/tg/webhook", webhook_secret=SecretStr("s3cret"),
        webhook_listen=f"127.0.0.1:{hook_port}", web_listen=f"127.0.0.1:{own_port}",
    ):
        await sb.wait_for("setWebhook", timeout=10, since=0)
        for port in (hook_port, own_port):
            assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
            assert (await get(f"http://127.0.0.1:{port}/readyz"))[0] == 200
    assert worker_listen("0.0.0.0:9100", 2) == "0.0.0.0:9102" and worker_listen("", 2) == ""


async def test_scheduler_lag_and_errors_are_recorded() -> None:
    from datetime import UTC, datetime, timedelta

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.metrics import Metrics

    metrics = Metrics()
    scheduler = AsyncIOScheduler(timezone="UTC")
    metrics.watch_scheduler(scheduler)
    ran = asyncio.Event()

    async def late_job() -> None:
        ran.set()

    async def failing_job() -> None:
        raise RuntimeError("boom")

    planned = datetime.now(UTC) - timedelta(seconds=2)  # due two seconds ago: starts about two seconds late
    scheduler.add_job(late_job, "date", run_date=planned, id="late", misfire_grace_time=60)
    scheduler.add_job(failing_job, "date", run_date=datetime.now(UTC), id="failing")
    scheduler.start()
    try:
        await asyncio.wait_for(ran.wait(), 10)
        await asyncio.sleep(0.3)
    finally:
        scheduler.shutdown(wait=False)
    found = samples((await metrics.render()).decode())
    assert found[("qunbot_scheduler_lag_seconds_count", (("job", "late"),))] == 1
    assert found[("qunbot_scheduler_lag_seconds_sum", (("job", "late"),))] >= 1.5
    assert found[("qunbot_scheduler_job_errors_total", (("job", "failing"),))] == 1


async def test_qunbot_run_with_json_logs_never_logs_a_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import sys

    port = free_port()
    async with Sandbox() as sb:
        env = {
            **os.environ,
            "BOT_TOKEN": sb.token,
            "TELEGRAM_API_URL": sb.base_url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "json",
            "WEB_LISTEN": f"127.0.0.1:{port}",
            "WEBHOOK_URL": "",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await sb.wait_for("setMyCommands", timeout=30, since=0)
            owner = sb.add_user("Lin", language_code="en")
            await sb.send(sb.private_chat(owner), owner, "/help")
            await sb.settle(timeout=10, quiet=0.5)
            status, body = await get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200 and total(samples(body), "qunbot_updates_handled_total", type="message") == 1
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    log = output.decode()
    assert sb.token not in log and sb.token.split(":")[1] not in log
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(entries) >= len(log.splitlines()) - 2  # (a stray line from a library is tolerated)
    assert any(e["logger"] == "qunbot" and "stopped" in e["message"] for e in entries)
    assert {"time", "level", "logger", "message"} <= set(entries[0])


async def test_a_failed_update_is_counted_and_its_log_line_names_the_update_and_chat(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import models.groups as groups_module
    from bot.logs import UpdateIds

    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)

    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    records: list[logging.LogRecord] = []
    catcher = logging.Handler(logging.DEBUG)
    catcher.emit = records.append  # type: ignore[method-assign]
    catcher.addFilter(UpdateIds())
    logging.getLogger("qunbot").addHandler(catcher)
    try:
        monkeypatch.setattr(groups_module, "set_group_timezone", broken)
        await world.send(group, owner, "/timezone Asia/Taipei", update_id=777)
        monkeypatch.undo()
        await world.send(group, owner, "/timezone Asia/Taipei")
    finally:
        logging.getLogger("qunbot").removeHandler(catcher)
    failed = [r for r in records if r.getMessage() == "update 777 failed"]
    assert failed and failed[0].update_id == 777 and failed[0].chat_id == group.id  # type: ignore[attr-defined]
    found = samples((await world.runtime.metrics.render()).decode())
    assert found[("qunbot_updates_failed_total", (("type", "message"),))] == 1
    assert found[("qunbot_updates_handled_total", (("type", "message"),))] == 1
    assert found[("qunbot_updates_received_total", (("type", "message"),))] == 2
