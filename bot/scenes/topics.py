"""Demo scene: the scheduler and daily topics. The owner schedules the daily topic at 20:00 and adds one to the
pool; the scheduler's minute job runs once, directly, as if it were 20:00 in the group, and posts it; /schedule
lists what is scheduled; Alice replies to the topic and earns the topic points (silently; /me shows them)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.scenes import Cast, run_job, settle
from models.clock import local_day
from models.db import create_engine, create_sessionmaker, utcnow
from models.points import PointsEntry
from models.schedules import local_moment

ZONE = "Asia/Shanghai"  # the group's zone (set in the group-settings scene)


async def run_scheduler_at_eight_pm(cast: Cast) -> int:
    """Run the scheduler's minute job once, with the bot's own settings, as if it were 20:00:05 today in the
    group. Returns how many posts went out."""
    from scheduler.runner import run_schedules

    eight_pm = local_moment(local_day(utcnow(), ZONE), "20:00", ZoneInfo(ZONE)) + timedelta(seconds=5)
    return await run_job(cast, run_schedules, eight_pm, kinds={"topic"})


async def topic_points_of(cast: Cast, user_id: int) -> int:
    """The topic points in the ledger for one person (read straight from the bot's database)."""
    assert cast.settings is not None
    engine = create_engine(cast.settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.scalars(
                select(PointsEntry.delta).where(PointsEntry.kind == "topic", PointsEntry.user_id == user_id)  # type: ignore[arg-type]
            )
            return sum(rows.all())
    finally:
        await engine.dispose()


async def scene_topics(cast: Cast) -> None:
    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/schedule set topic 20:00")
    await sb.send(cast.group, cast.owner, "/topic add 你最近入手的宝藏好物是什么？晒出来让大家种草 🌱")
    await settle(sb)
    assert await run_scheduler_at_eight_pm(cast) == 1, "the scheduler did not post the daily topic"
    await settle(sb)
    topic = sb.last_message(cast.group)
    assert topic is not None and "宝藏好物" in (topic.text or ""), "the topic post did not arrive"
    await sb.send(cast.group, cast.owner, "/schedule")
    await settle(sb)
    await sb.send(cast.group, cast.alice, "最近入手了一个保温杯，颜值高还不漏水！", reply_to=topic)
    await settle(sb)
    assert await topic_points_of(cast, cast.alice.id) > 0, "the reply to the topic earned no points"
    await sb.send(cast.group, cast.alice, "积分")
    await settle(sb)
