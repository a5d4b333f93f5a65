"""Settings, the CLI's first answers, and the update pipeline (dedupe, membership rows, error boundary)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import func, select

from bot.settings import SettingsError, load_settings
from models.groups import Group, Member, User
from tests.factories import texts


def test_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOT_TOKEN", "DATABASE_URL", "DEFAULT_LOCALE", "DEFAULT_TIMEZONE", "WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:///data/qunbot.db"
    assert settings.default_locale == "zh_Hans"
    assert settings.default_timezone == "Asia/Shanghai"
    assert settings.bot_token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOT_TOKEN", "not-a-token"),
        ("DATABASE_URL", "mysql://x"),
        ("DEFAULT_LOCALE", "fr"),
        ("DEFAULT_TIMEZONE", "Mars/Olympus"),
        ("WEBHOOK_LISTEN", "8080"),
        ("LOG_LEVEL", "LOUD"),
        ("TELEGRAM_API_URL", "ftp://x"),
        ("SQLITE_DRIVER", "fast"),
    ],
)
def test_a_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(_env_file=None)


def test_webhook_url_without_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.com/hook")
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        load_settings(_env_file=None)


def test_cli_bad_setting_prints_one_line_and_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin:/bin", "DEFAULT_TIMEZONE": "Nowhere/City", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DEFAULT_TIMEZONE" in result.stderr and "Traceback" not in result.stderr


def test_cli_run_without_token_points_to_demo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "@BotFather" in result.stderr and "qunbot demo" in result.stderr


def test_cli_help_lists_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, timeout=60)
    for command in ("run", "migrate", "scheduler", "demo"):
        assert command in result.stdout
    for command in ("run", "migrate", "scheduler", "demo"):
        sub = subprocess.run([sys.executable, "-m", "bot", command, "--help"], capture_output=True, text=True,
                             timeout=60)
        assert sub.returncode == 0 and "usage: qunbot" in sub.stdout


async def test_redelivered_update_has_no_second_effect(world, session) -> None:  # type: ignore[no-untyped-def]
    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)
    update_calls = await world.send(group, owner, "/timezone Asia/Taipei")
    assert texts(update_calls)
    # The same update_id again: Telegram redelivers when it did not see the first delivery confirmed.
    again = await world.send(group, owner, "/timezone Asia/Taipei", update_id=world.last_update_id)
    assert again == []


async def test_first_message_creates_group_user_and_member_rows(world, session) -> None:  # type: ignore[no-untyped-def]
    alice = world.user("Alice")
    group = world.group("Fans")
    await world.send(group, alice, "hello")
    await world.send(group, alice, "again")
    assert await session.scalar(select(func.count()).select_from(Group)) == 1
    assert await session.scalar(select(func.count()).select_from(User)) == 1
    member = await session.scalar(select(Member))
    assert member.user_id == alice.id and member.role == "member"
    row = await session.scalar(select(Group))
    assert row.chat_id == group.id and row.title == "Fans" and row.timezone == "Asia/Shanghai"


async def test_a_failing_handler_apologizes_and_the_bot_goes_on(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import models.groups as groups_module

    owner = world.user("Owner", language_code="en")
    group = world.group("Fans", owner=owner)

    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(groups_module, "set_group_timezone", broken)
    calls = await world.send(group, owner, "/timezone Asia/Taipei")
    assert any("Sorry, something went wrong" in t for t in texts(calls))
    monkeypatch.undo()
    calls = await world.send(group, owner, "/timezone Asia/Taipei")
    assert any("Asia/Taipei" in t for t in texts(calls))


async def test_admin_check_uses_telegram_now(world) -> None:  # type: ignore[no-untyped-def]
    owner, mod = world.user("Owner", language_code="en"), world.user("Mod", language_code="en")
    group = world.group("Fans", owner=owner)
    world.admins[group.id].add(mod.id)
    assert "Asia/Taipei" in texts(await world.send(group, mod, "/timezone Asia/Taipei"))[0]
    world.admins[group.id].discard(mod.id)  # demoted a moment ago
    assert "Only group admins" in texts(await world.send(group, mod, "/timezone Asia/Tokyo"))[0]


async def test_redis_url_adds_no_per_chat_lock_that_could_fail_after_the_update_was_acknowledged(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """With several workers the database is the judge of once-only effects; aiogram's Redis per-chat lock raised
    MaxConnectionsError after the webhook's 200, losing the update, so there is none."""
    from bot.factory import create_dispatcher, create_runtime

    settings = load_settings(_env_file=None, redis_url="redis://127.0.0.1:6379/0")
    dp = create_dispatcher(create_runtime(settings, sessionmaker))
    try:
        assert dp.fsm.events_isolation is None or type(dp.fsm.events_isolation).__name__ != "RedisEventIsolation"
        assert dp.fsm not in list(dp.update.outer_middleware)
    finally:
        await dp.storage.close()


async def test_one_process_runs_no_fsm_layer(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    """qunbot keeps no FSM state: without Redis (nothing to isolate across workers) the layer is not run at all."""
    from bot.factory import create_dispatcher, create_runtime

    dp = create_dispatcher(create_runtime(load_settings(_env_file=None), sessionmaker))
    assert dp.fsm not in list(dp.update.outer_middleware)
    await dp.storage.close()
