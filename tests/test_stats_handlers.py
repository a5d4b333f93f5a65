"""/stats through the real dispatcher: admins get the charts and the summary privately (the group sees only a
pointer), members are refused, a bad period gets the usage line, exports arrive as files that parse, the private
list covers the groups the person administers (and all combined), and the weekly report goes out once, only to
admins who asked for it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import openpyxl
from aiogram.methods import AnswerCallbackQuery, SendDocument, SendMessage, SendPhoto

from handlers.stats import StatsPick
from models import groups
from models.analytics import generate_history
from scheduler.stats import send_weekly_reports
from tests.factories import texts

MONDAY_0930_SHANGHAI = datetime(2026, 11, 30, 1, 30, tzinfo=UTC)  # Monday 09:30 in Asia/Shanghai
SUNDAY_2330_SHANGHAI = datetime(2026, 11, 29, 15, 30, tzinfo=UTC)


def photos(calls: list[Any], chat_id: int) -> list[SendPhoto]:
    return [call for call in calls if isinstance(call, SendPhoto) and call.chat_id == chat_id]


def messages(calls: list[Any], chat_id: int) -> list[str]:
    return [call.text for call in calls if isinstance(call, SendMessage) and call.chat_id == chat_id]


class Room:
    def __init__(self, world: Any, title: str = "Fans") -> None:
        self.world = world
        self.owner = world.user("Olga", language_code="en")
        self.bob = world.user("Bob", language_code="en")
        self.chat = world.group(title, owner=self.owner)
        self.gid = 0

    async def start(self, *, history: bool = True) -> Room:
        await self.world.send(self.chat, self.owner, "hello")
        await self.world.send(self.chat, self.bob, "hi")
        async with self.world.sessionmaker() as session:
            row = await groups.get_group(session, self.chat.id)
            assert row is not None and row.id is not None
            self.gid = row.id
        if history:
            await generate_history(self.world.sessionmaker, self.gid, days=21, members=30, end=date(2026, 11, 29))
        return self

    async def start_private(self, user: Any) -> None:
        await self.world.send(self.world.private(user), user, "/start")


async def test_admin_gets_charts_and_summary_privately(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    await room.start_private(room.owner)
    calls = await world.send(room.chat, room.owner, "/stats 2026-11")
    images = photos(calls, room.owner.id)
    assert len(images) == 4
    assert all(image.photo.data.startswith(b"\x89PNG") for image in images)  # type: ignore[union-attr]
    [text] = messages(calls, room.owner.id)
    assert text.splitlines()[:2] == ["📊 <b>Fans</b>", "2026-11, compared with 2026-10"]
    assert "👥 Members: " in text and "🔥 Actives: daily " in text
    assert messages(calls, room.chat.id) == ["📊 Sent to you privately."]
    assert not photos(calls, room.chat.id)


async def test_member_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start(history=False)
    await room.start_private(room.bob)
    calls = await world.send(room.chat, room.bob, "/stats")
    assert texts(calls) == ["Only group admins can do that."]
    assert not [call for call in calls if isinstance(call, SendPhoto | SendDocument)]


async def test_admin_who_never_started_the_bot_is_told_how(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start(history=False)
    calls = await world.send(room.chat, room.owner, "/stats week")
    assert texts(calls) == [
        "I send statistics privately. Open a chat with me (https://t.me/qunbot), press Start, then send the "
        "command again."
    ]
    assert not photos(calls, room.owner.id)


async def test_bad_period_gets_the_usage_line(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start(history=False)
    await room.start_private(room.owner)
    for command in ("/stats yesterday", "/stats 2026-13", "/stats week month", "/stats export soon"):
        [text] = texts(await world.send(room.chat, room.owner, command))
        assert text.startswith("Usage: /stats [today|week|month|YYYY-MM]"), command


async def test_export_sends_csv_and_xlsx_privately(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    await room.start_private(room.owner)
    calls = await world.send(room.chat, room.owner, "/stats export 2026-11")
    documents = [call for call in calls if isinstance(call, SendDocument)]
    assert [doc.chat_id for doc in documents] == [room.owner.id, room.owner.id]
    csv_file, xlsx_file = (doc.document for doc in documents)
    assert csv_file.filename == "stats-2026-11.csv" and xlsx_file.filename == "stats-2026-11.xlsx"  # type: ignore[union-attr]
    rows = list(csv.reader(io.StringIO(csv_file.data.decode("utf-8-sig"))))  # type: ignore[union-attr]
    assert rows[1] == ["Section", "KPI", "Label", "Value", "Previous period", "Change"]
    members = {row[1]: row for row in rows[2:] if row[0] == "members"}
    assert int(members["joined"][3]) > 0  # the generated history's joins
    book = openpyxl.load_workbook(io.BytesIO(xlsx_file.data))  # type: ignore[union-attr]
    assert book.sheetnames == ["KPIs", "Days", "Hours", "Retention"]
    assert book["Days"].max_row == 1 + 30
    assert messages(calls, room.chat.id) == ["📊 Sent to you privately."]


async def test_private_stats_lists_the_groups_one_administers(world) -> None:  # type: ignore[no-untyped-def]
    first = await Room(world, "Fans A").start()
    second = Room(world, "Fans B")
    second.owner = first.owner
    world.owners[second.chat.id] = first.owner.id
    await second.start()
    elsewhere = Room(world, "Not mine")  # Olga is only a member there
    await world.send(elsewhere.chat, first.owner, "hello")
    owner = first.owner
    private = world.private(owner)
    await first.start_private(owner)

    calls = await world.send(private, owner, "/stats 2026-11")
    [listing] = [call for call in calls if isinstance(call, SendMessage)]
    buttons = [button for row in listing.reply_markup.inline_keyboard for button in row]  # type: ignore[union-attr]
    assert [button.text for button in buttons] == ["Fans B", "Fans A", "All 2 groups combined"] or \
        [button.text for button in buttons] == ["Fans A", "Fans B", "All 2 groups combined"]
    assert buttons[-1].callback_data == StatsPick(group=0, period="2026-11").pack()

    calls = await world.press(private, owner, buttons[-1].callback_data or "")
    assert len(photos(calls, owner.id)) == 4
    [text] = messages(calls, owner.id)
    assert text.startswith("📊 <b>All 2 groups</b>")

    world.owners[second.chat.id] = second.bob.id  # Olga no longer owns Fans B
    pick_b = StatsPick(group=second.gid, period="2026-11").pack()
    calls = await world.press(private, owner, pick_b)
    answers = [call for call in calls if isinstance(call, AnswerCallbackQuery)]
    assert answers[0].text == "You are no longer an admin of that group." and answers[0].show_alert
    assert not photos(calls, owner.id)


async def test_private_stats_with_one_group_answers_at_once(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    await room.start_private(room.owner)
    calls = await world.send(world.private(room.owner), room.owner, "/stats export 2026-11")
    assert [call.document.filename for call in calls if isinstance(call, SendDocument)] == [  # type: ignore[union-attr]
        "stats-2026-11.csv", "stats-2026-11.xlsx"]
    [text] = texts(await world.send(world.private(room.owner), room.owner, "/stats someday"))
    assert text.startswith("Usage: /stats")


async def test_private_stats_for_someone_who_administers_nothing(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start(history=False)
    await room.start_private(room.bob)
    [text] = texts(await world.send(world.private(room.bob), room.bob, "/stats"))
    assert text.startswith("You are not an admin of any group I am in.")


async def test_weekly_report_goes_once_to_opted_in_admins_only(world) -> None:  # type: ignore[no-untyped-def]
    room = await Room(world).start()
    admin = world.user("Ada", language_code="en")
    world.admins[room.chat.id].add(admin.id)
    quiet_admin = world.user("Quinn", language_code="en")  # an admin who never asked for the report
    world.admins[room.chat.id].add(quiet_admin.id)
    for person in (room.owner, admin, quiet_admin, room.bob):
        await room.start_private(person)
    assert texts(await world.send(room.chat, room.owner, "/stats weekly on")) == [
        "📅 You will get this group's weekly report privately every Monday at 09:00."]
    await world.send(room.chat, admin, "/stats weekly on")
    assert texts(await world.send(room.chat, room.bob, "/stats weekly on")) == ["Only group admins can do that."]
    world.admins[room.chat.id].discard(admin.id)  # Ada is demoted before Monday (the bot hears of it
    await world.send(room.chat, room.bob, "hi")  # with the next update)

    assert await send_weekly_reports(world.jobs(), SUNDAY_2330_SHANGHAI) == 0
    start = len(world.session.calls)
    assert await send_weekly_reports(world.jobs(), MONDAY_0930_SHANGHAI) == 1
    calls = world.session.calls[start:]
    assert len(photos(calls, room.owner.id)) == 4
    [text] = messages(calls, room.owner.id)
    assert text.splitlines()[:2] == ["📅 Weekly report: <b>Fans</b>", "2026-11-23..2026-11-29, compared with "
                                     "2026-11-16..2026-11-22"]
    assert "<b>What moved most</b>" in text
    for person in (admin, quiet_admin, room.bob):
        assert not photos(calls, person.id) and not messages(calls, person.id)

    assert await send_weekly_reports(world.jobs(), MONDAY_0930_SHANGHAI.replace(hour=5)) == 0  # claimed once

    assert texts(await world.send(room.chat, room.owner, "/stats weekly off")) == [
        "You will no longer get this group's weekly report."]
    assert await send_weekly_reports(world.jobs(), datetime(2026, 12, 7, 2, 0, tzinfo=UTC)) == 0


async def test_forgetme_stops_weekly_reports_and_drops_their_claims(world) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from models import privacy
    from models.boards import Post

    room = await Room(world).start()
    await room.start_private(room.owner)
    await world.send(room.chat, room.owner, "/stats weekly on")
    assert await send_weekly_reports(world.jobs(), MONDAY_0930_SHANGHAI) == 1
    async with world.sessionmaker() as session:
        exported = await privacy.export_everything(session, room.owner.id)
        assert exported["stats"] == {"weekly_reports": [{"chat_id": room.chat.id, "group": "Fans"}]}
        await privacy.erase_everything(session, room.owner.id)
    async with world.sessionmaker() as session:
        slots = (await session.scalars(select(Post.slot).where(Post.kind == "stats_weekly"))).all()  # type: ignore[arg-type]
        assert not [slot for slot in slots if slot.endswith(str(room.owner.id))]
        assert (await privacy.export_everything(session, room.owner.id))["stats"] == {"weekly_reports": []}
    assert await send_weekly_reports(world.jobs(), datetime(2026, 12, 7, 2, 0, tzinfo=UTC)) == 0
