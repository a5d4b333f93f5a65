"""Demo scene: /stats. The group gets 30 days of generated history (models.analytics.generate_history: 200
members, joins by source, evenings and weekends busier); a member's /stats is refused; the owner's /stats for
those 30 days arrives privately as four charts and a summary, with one short pointer in the group; the owner
exports the figures (CSV and XLSX) and asks for the Monday weekly report."""

from __future__ import annotations

from datetime import timedelta

from bot.scenes import Cast, settle
from models import groups
from models.analytics import Period, generate_history
from models.db import create_engine, create_sessionmaker

DAYS = 30


async def write_history(cast: Cast) -> Period:
    """30 days of activity facts for the scene's group, ending yesterday; returns that period."""
    assert cast.settings is not None, "the stats scene needs the bot's settings (its database)"
    engine = create_engine(cast.settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            group = await groups.get_group(session, cast.group.id)
        assert group is not None and group.id is not None, "the bot has not seen the stats group"
        yesterday = Period.today(group.timezone).start - timedelta(days=1)
        await generate_history(sessionmaker, group.id, days=DAYS, members=200, end=yesterday)
        return Period.custom(yesterday - timedelta(days=DAYS - 1), yesterday, group.timezone)
    finally:
        await engine.dispose()


async def answered_in_group(cast: Cast, command: str) -> None:
    """The owner sends `command` in the group; wait for the group's pointer, which comes after the private
    answer (computing and drawing can take longer than settle's quiet window)."""
    sb = cast.sb
    since = sb.mark()
    await sb.send(cast.group, cast.owner, command)
    await sb.wait_for(lambda call: call.method == "sendMessage" and call.chat_id == cast.group.id, timeout=60,
                      since=since)
    await settle(sb)


async def scene_stats(cast: Cast) -> None:
    sb = cast.sb
    await sb.send(sb.private_chat(cast.owner), cast.owner, "/start")
    await settle(sb)
    period = await write_history(cast)
    days = f"{period.start.isoformat()}..{period.end.isoformat()}"
    await sb.send(cast.group, cast.alice, "/stats")
    await settle(sb)
    await answered_in_group(cast, f"/stats {days}")
    private = sb.private_chat(cast.owner)
    charts = [message for message in sb.messages(private) if message.photo is not None]
    assert len(charts) >= 4, "the /stats charts did not arrive privately"
    await answered_in_group(cast, f"/stats export {days}")
    await sb.send(cast.group, cast.owner, "/stats weekly on")
    await settle(sb)
