"""Bad input to every command and every button, table-driven, on both engines: numbers past what a column holds
(2^31, 2^63, 10^30), negative ones, NUL and other control characters, 4,096-character arguments, malformed and
foreign callback data. Each one is answered (usage or an alert), no handler fails, and nothing is stored.

One world per engine: a group with an owner, a member with points, and one row of each kind (shop item, flash
product, vote, lottery, group buy, topic), so that ids in the table reach real rows where the input is good."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiogram.methods import AnswerCallbackQuery, SendDocument, SendMessage, TelegramMethod
from sqlalchemy import func, select
from sqlmodel import SQLModel

from handlers import all_commands
from models.groups import Group
from models.points import RULE_NAMES
from tests.factories import texts

NUMBERS = ["2147483648", "9223372036854775808", "-1", "1" + "0" * 30, "²", "１" + "０" * 25]
TEXTS = ["a\x00b", "bell\x07", "\x1b[31mred", "x" * 4096]
DURATIONS = ["2147483648m", "99999999999999999999d", "-5m", "1e9s", "0m", "999999w", "5\x00m"]
USER_IDS = [value for value in NUMBERS if value != "2147483648"]  # 2^31 is a fine Telegram user id
SLOTS = {"{n}": NUMBERS, "{u}": USER_IDS, "{t}": TEXTS, "{d}": DURATIONS}

# (chat, command with one slot). "group": the owner sends it in the group; "private": in a private chat with the bot.
COMMANDS: list[tuple[str, str]] = [
    ("group", "/lang {t}"), ("group", "/timezone {t}"), ("group", "/currency {t}"),
    ("group", "/checkin {t}"), ("group", "/checkin keywords {t}"), ("group", "/checkin info {t}"),
    ("group", "/flashsale new {n} 10:00 30m"), ("group", "/flashsale new 1 10:00 {d}"),
    ("group", "/flashsale new 1 10:00 30m notice={n}"), ("group", "/flashsale new 1 {t} 30m"),
    ("group", "/flashsale cancel {n}"), ("group", "/flashsale orders {n}"), ("group", "/flashsale {t}"),
    ("group", "/product add {t} | 99 | 39.9 | 10"), ("group", "/product add x | {n} | 39.9 | 10"),
    ("group", "/product add x | 99 | {n} | 10"), ("group", "/product add x | 99 | {n}p | 10"),
    ("group", "/product add x | 99 | 39.9 | {n}"), ("group", "/product add x | 99 | 39.9 | 10 | {n}"),
    ("group", "/product edit {n} stock=1"), ("group", "/product edit 1 stock={n}"),
    ("group", "/product edit 1 price={n}"), ("group", "/product edit 1 limit={n}"),
    ("group", "/product edit 1 name={t}"), ("group", "/product remove {n}"),
    ("group", "/groupbuy new {t} | 59 | 39.9 | 5 | 100"), ("group", "/groupbuy new x | {n} | 39.9 | 5 | 100"),
    ("group", "/groupbuy new x | 59 | 39.9 | {n} | 100"), ("group", "/groupbuy new x | 59 | 39.9 | 5 | {n}"),
    ("group", "/groupbuy new x | 59 | 39.9 | 5 | 100 | {n}"),
    ("group", "/groupbuy new x | 59 | 39.9 | 5 | 100 | 2 | {d}"),
    ("group", "/groupbuy close {n}"), ("group", "/groupbuy export {n}"), ("group", "/groupbuy {t}"),
    ("group", "/invite {t}"), ("group", "/invites {t}"), ("group", "/invites set reward {n}"),
    ("group", "/invites set {t} 1"),
    ("group", "/lottery new {t}"), ("group", "/lottery new x winners={n}"), ("group", "/lottery new x end={d}"),
    ("group", "/lottery new x max={n}"), ("group", "/lottery new x keyword={t}"),
    ("group", "/lottery new x hours={n}"), ("group", "/lottery new x streak={n}"),
    ("group", "/lottery new x cost={n}"), ("group", "/lottery new x claim={n}"),
    ("group", "/lottery new {n} points"), ("group", "/lottery new coupon #{n}"),
    ("group", "/lottery draw {n}"), ("group", "/lottery cancel {n}"), ("group", "/lottery reroll {n} 1"),
    ("group", "/lottery reroll 1 {n}"),
    ("group", "/rules {t}"), ("group", "/report {t}"), ("group", "/warns {u}"), ("group", "/warns {t}"),
    ("group", "/warn {u} spam"), ("group", "/warn @bobby {t}"), ("group", "/unwarn {u}"),
    ("group", "/mute {u} 10m"), ("group", "/mute @bobby {d}"), ("group", "/mute @bobby 10m {t}"),
    ("group", "/unmute {u}"), ("group", "/kick {u}"), ("group", "/kick @bobby {t}"), ("group", "/ban {u}"),
    ("group", "/ban @bobby {d}"), ("group", "/unban {u}"),
    ("group", "/setrules {t}"), ("group", "/modset {t}"), ("group", "/modset flood_messages {n}"),
    ("group", "/modset banned add {t}"), ("group", "/modset ladder {t}"), ("group", "/modset ladder {n}:ban"),
    ("group", "/setlog -{n}"), ("group", "/setlog {t}"), ("group", "/modlog {n}"), ("group", "/modlog {t}"),
    ("group", "/captcha timeout {d}"), ("group", "/captcha {t}"), ("group", "/setwelcome {t}"),
    ("group", "/antiraid threshold {n}"), ("group", "/antiraid duration {d}"), ("group", "/antiraid {t}"),
    ("group", "/me {t}"), ("group", "/rank {t}"), ("group", "/rank pin {t}"),
    ("group", "/give @bobby {n}"), ("group", "/give @bobby 10 {t}"), ("group", "/give {u} 10"),
    ("group", "/take @bobby {n}"), ("group", "/take {t} 10"),
    ("group", "/set checkin_base {n}"), ("group", "/set showcase_hashtag {t}"), ("group", "/set {t} 1"),
    ("group", "/set checkin_streak_bonus {n}:5"), ("group", "/settings {t}"),
    ("group", "/mydata {t}"), ("private", "/mydata {t}"), ("group", "/forgetme {t}"), ("private", "/forgetme {t}"),
    ("group", "/mod add {u}"), ("group", "/mod remove {u}"), ("group", "/mod {t}"),
    ("group", "/schedule set board {t}"), ("group", "/schedule quiet {t}"), ("group", "/schedule off {t}"),
    ("group", "/schedule {t}"),
    ("group", "/shop add {t} | 10 | 5"), ("group", "/shop add x | {n} | 5"), ("group", "/shop add x | 10 | {n}"),
    ("group", "/shop add x | 10 | 5 | {n}"), ("group", "/shop add x | 10 | 5 | - | {t}"),
    ("group", "/shop add x | 10 | 5 | - | - | {n}"),
    ("group", "/shop edit {n} cost=1"), ("group", "/shop edit 1 cost={n}"), ("group", "/shop edit 1 stock={n}"),
    ("group", "/shop edit 1 limit={n}"), ("group", "/shop edit 1 days={n}"), ("group", "/shop edit 1 name={t}"),
    ("group", "/shop edit 1 desc={t}"), ("group", "/shop remove {n}"), ("group", "/shop codes {n}\nCODE1"),
    ("group", "/shop codes 1\n{t}"), ("group", "/shop {t}"),
    ("group", "/mycoupons {t}"), ("private", "/mycoupons {t}"), ("group", "/verify {t}"), ("private", "/verify {t}"),
    ("group", "/coupon cancel {t}"), ("group", "/coupon {t}"),
    ("group", "/help {t}"), ("private", "/help {t}"), ("private", "/start {t}"),
    ("group", "/topic add {t}"), ("group", "/topic remove {n}"), ("group", "/topic {t}"),
    ("group", "/vote new {t} | 2d | a 1 | b 2"), ("group", "/vote new x | {d} | a 1 | b 2"),
    ("group", "/vote new x | 2d | {t} 1 | b 2"), ("group", "/vote new x | 2d | a {n} | b 2"),
    ("group", "/vote new x | 2d | a 1 | b 2 | min_hours={n}"),
    ("group", "/vote new x | 2d | a 1 | b 2 | weights=silver:{n}"), ("group", "/vote close {n}"),
    ("group", "/vote {t}"),
    ("group", "/stats {t}"), ("private", "/stats {t}"), ("group", "/stats weekly {t}"), ("group", "/stats export {t}"),
    ("group", "/spam {t}"), ("group", "/spamsamples {t}"),
]

HUGE = "9" * 30
# (chat, callback data): malformed, out of range, or pressed where it does not belong.
PRESSES: list[tuple[str, str]] = [
    ("group", "fs:abc"), ("group", "fs:"), ("group", f"fs:{HUGE}"), ("group", "fs:-1"), ("group", "fs:1:2"),
    ("group", "vp:1"), ("group", f"vp:1:{HUGE}"), ("group", "vp:x:y"), ("group", "vgb:"), ("group", f"vgb:{HUGE}"),
    ("group", "ci:extra"), ("group", "showcase:1:1"), ("group", f"showcase:approve:{HUGE}:1"),
    ("group", "forget:1"), ("private", "forget:x"), ("private", "forget:1:2"),
    ("group", "gb:1:x"), ("group", f"gb:{HUGE}:1"), ("group", f"gb:1:{HUGE}"), ("group", "gb:1"),
    ("group", "lot:x"), ("group", f"lot:{HUGE}"), ("group", "lotc:1:2"), ("group", f"lotc:{HUGE}"),
    ("group", "mod:ban:1:2"), ("group", f"mod:ban:{HUGE}:1:1"), ("group", "mod:x:1:1:1"),
    ("group", "nc:1"), ("group", f"nc:{HUGE}:1:a"), ("group", f"nc:1:{HUGE}:a"),
    ("group", "pset:x"), ("group", "pset:x:y"), ("group", "shop:abc"), ("group", f"shop:{HUGE}"),
    ("group", "shop:-5"), ("group", "zzz:1"), ("group", "a\x00b"), ("group", ":"), ("group", "x" * 64),
    ("private", "fs:1"), ("private", "vp:1:1"), ("private", "ci"),
]

# Tables that record that an update arrived (its id, who was seen, the activity counted, the inbox row) rather
# than what a command did.
ARRIVAL_TABLES = {"processed_updates", "users", "members", "groups", "inbox",
                  "activity_member_days", "activity_hours", "activity_group_days"}


def cases() -> list[tuple[str, str]]:
    out = []
    for chat, form in COMMANDS:
        slot = next(s for s in SLOTS if s in form)
        out += [(chat, form.replace(slot, value)) for value in SLOTS[slot]]
    return out


def test_the_table_covers_every_command() -> None:
    named = {re.match(r"/(\w+)", form)[1] for _chat, form in COMMANDS}  # type: ignore[index]
    assert {command.name for command in all_commands()} <= named
    assert "set" not in named or "checkin_base" in RULE_NAMES


def answered(calls: list[TelegramMethod[Any]], press: bool) -> bool:
    if press:
        return any(isinstance(call, AnswerCallbackQuery) for call in calls)
    return any(isinstance(call, SendMessage | SendDocument) for call in calls)


async def snapshot(world: Any) -> dict[str, int]:
    """Rows per table (but the arrival records), every balance, each group's settings: what a refused input must
    leave alone. One query, so that checking after every input stays cheap."""
    tables = [table for table in SQLModel.metadata.sorted_tables if table.name not in ARRIVAL_TABLES]
    balances = SQLModel.metadata.tables["points_balances"]
    columns = [select(func.count()).select_from(table).scalar_subquery().label(table.name) for table in tables]
    columns.append(select(func.coalesce(func.sum(balances.c.balance), 0)).scalar_subquery().label("sum(balance)"))
    async with world.sessionmaker() as session:
        counts = dict((await session.execute(select(*columns))).one()._mapping)
        for group in await session.scalars(select(Group)):  # a group's settings, language and zone
            settings = repr((group.locale, group.timezone, group.currency, sorted(group.settings.items())))
            counts[f"group {group.chat_id}"] = hash(settings)
    return {key: int(value) for key, value in counts.items()}


async def build(world: Any) -> dict[str, Any]:
    owner = world.user("Olga", language_code="en")
    bob = world.user("Bob", language_code="en", username="bobby")
    chat = world.group("Fans", owner=owner)
    private = world.private(owner)
    world.private(bob)
    await world.send(chat, bob, "hello everyone")
    for setup in (
        "/shop add 面膜 | 10 | 5", "/product add 面膜 | 99 | 39.9 | 10", "/vote new 选品 | 2d | 面膜 39.9 | 精华 129",
        "/lottery new 免单一份 end=2h", "/groupbuy new 面膜 | 59 | 39.9 | 5 | 100", "/topic add 今天买了什么？",
        "/give @bobby 100",
    ):
        said = texts(await world.send(chat, owner, setup))
        assert said, setup
    return {"owner": owner, "bob": bob, "group": chat, "private": private}


async def test_bad_input_is_answered_and_changes_nothing(world, caplog) -> None:  # type: ignore[no-untyped-def]
    people = await build(world)
    owner = people["owner"]
    caplog.set_level(logging.ERROR)
    state = await snapshot(world)
    failures: list[str] = []
    inputs = [("send", chat, text) for chat, text in cases()] + [("press", chat, data) for chat, data in PRESSES]
    for action, chat_kind, value in inputs:
        caplog.clear()
        press = action == "press"
        chat = people[chat_kind]
        calls = await (world.press(chat, owner, value) if press else world.send(chat, owner, value))
        errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
        now = await snapshot(world)
        changed = sorted(key for key in now if now[key] != state.get(key))
        if errors or not answered(calls, press) or changed:
            failures.append(f"{action} in {chat_kind} {value[:60]!r}: failed={errors} "
                            f"answered={answered(calls, press)} changed={changed}")
        state = now
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("prize", ["coupon #-5", "coupon #x", "优惠券 -1", "coupon"])
async def test_a_coupon_prize_that_names_no_item_is_a_usage_error(  # type: ignore[no-untyped-def]
    world, prize: str
) -> None:
    owner = world.user("Olga", language_code="en")
    chat = world.group("Fans", owner=owner)
    said = texts(await world.send(chat, owner, f"/lottery new {prize}"))
    assert said and said[0].startswith("A coupon prize names an item of /shop"), said
