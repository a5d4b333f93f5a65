"""/schedule as admins use it: the list (with the check-in board's default), set with days, off, quiet hours;
members are refused; bad input gets a usage message. /checkin board writes the same rows."""

from __future__ import annotations

from models import groups, schedules
from tests.factories import texts


async def setup(world):  # type: ignore[no-untyped-def]
    owner, bob = world.user("Owner", language_code="en"), world.user("Bob", language_code="en")
    chat = world.group("Fans", owner=owner)
    await world.send(chat, bob, "hello")
    return owner, bob, chat


async def rows(world, chat_id: int) -> dict[str, tuple[str, str, bool]]:  # type: ignore[no-untyped-def]
    async with world.sessionmaker() as session:
        group = await groups.get_group(session, chat_id)
        return {r.kind: (r.at, r.weekdays, r.enabled) for r in await schedules.list_schedules(session, group.id)}


async def test_the_list_shows_the_default_board_and_quiet_hours(world) -> None:  # type: ignore[no-untyped-def]
    owner, _bob, chat = await setup(world)
    [listing] = texts(await world.send(chat, owner, "/schedule"))
    assert "Scheduled posts</b> (Asia/Shanghai)" in listing
    assert "Check-in board — 08:00, every day · on (default)" in listing
    assert "Quiet hours: none" in listing


async def test_members_are_refused(world) -> None:  # type: ignore[no-untyped-def]
    _owner, bob, chat = await setup(world)
    assert texts(await world.send(chat, bob, "/schedule set topic 20:00")) == ["Only group admins can do that."]
    assert texts(await world.send(chat, bob, "/schedule")) == ["Only group admins can do that."]
    assert await rows(world, chat.id) == {}


async def test_set_with_days_then_off(world) -> None:  # type: ignore[no-untyped-def]
    owner, _bob, chat = await setup(world)
    [reply] = texts(await world.send(chat, owner, "/schedule set topic 20:30 1-5"))
    assert reply == "✅ Daily topic: 20:30, Mon–Fri (Asia/Shanghai)."
    assert await rows(world, chat.id) == {"topic": ("20:30", "12345", True)}
    [reply] = texts(await world.send(chat, owner, "/schedule set 话题 9:00 135"))
    assert reply == "✅ Daily topic: 09:00, Mon, Wed, Fri (Asia/Shanghai)."
    listing = texts(await world.send(chat, owner, "/schedule"))[0]
    assert "Daily topic — 09:00, Mon, Wed, Fri · on" in listing
    assert texts(await world.send(chat, owner, "/schedule off topic")) == [
        "Daily topic is off. Turn it on again with /schedule set."]
    assert await rows(world, chat.id) == {"topic": ("09:00", "135", False)}
    assert "Daily topic — 09:00, Mon, Wed, Fri · off" in texts(await world.send(chat, owner, "/schedule"))[0]
    assert texts(await world.send(chat, owner, "/schedule off board")) == [
        "Check-in board is off. Turn it on again with /schedule set."]
    assert (await rows(world, chat.id))["checkin_board"] == ("08:00", "1234567", False)


async def test_bad_input_gets_usage(world) -> None:  # type: ignore[no-untyped-def]
    owner, _bob, chat = await setup(world)
    assert "is not a time" in texts(await world.send(chat, owner, "/schedule set topic 25:00"))[0]
    assert "is not a list of days" in texts(await world.send(chat, owner, "/schedule set topic 20:00 8-9"))[0]
    for wrong in ("/schedule set lottery 20:00", "/schedule set topic", "/schedule nonsense", "/schedule off"):
        assert texts(await world.send(chat, owner, wrong))[0].startswith("Usage (admins):")
    assert "HH:MM-HH:MM" in texts(await world.send(chat, owner, "/schedule quiet 23:00"))[0]
    assert await rows(world, chat.id) == {}


async def test_quiet_hours_are_set_shown_and_warned_about(world) -> None:  # type: ignore[no-untyped-def]
    owner, _bob, chat = await setup(world)
    [reply] = texts(await world.send(chat, owner, "/schedule quiet 23:00-8:30"))
    assert reply.startswith("Quiet hours: 23:00–08:30 (Asia/Shanghai).")
    [reply] = texts(await world.send(chat, owner, "/schedule set board 07:00"))
    assert "inside quiet hours (23:00–08:30): it will be posted at 08:30" in reply
    [reply] = texts(await world.send(chat, owner, "/schedule set topic 23:30"))
    assert "will not be posted" in reply
    assert "Quiet hours: 23:00–08:30" in texts(await world.send(chat, owner, "/schedule"))[0]
    assert texts(await world.send(chat, owner, "/schedule quiet off")) == ["Quiet hours are off."]
    async with world.sessionmaker() as session:
        group = await groups.get_group(session, chat.id)
        assert schedules.quiet_hours_of(group) is None


async def test_checkin_board_command_writes_the_schedule_row(world) -> None:  # type: ignore[no-untyped-def]
    owner, _bob, chat = await setup(world)
    await world.send(chat, owner, "/schedule set board 07:30 1-5")
    await world.send(chat, owner, "/checkin board 09:15")
    assert (await rows(world, chat.id))["checkin_board"] == ("09:15", "12345", True)  # days kept
    await world.send(chat, owner, "/checkin board off")
    assert (await rows(world, chat.id))["checkin_board"] == ("09:15", "12345", False)
