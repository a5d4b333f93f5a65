"""/schedule: what the bot posts on the group's clock, and quiet hours. Admins only.

/schedule                              the group's scheduled posts, its time zone and quiet hours
/schedule set <kind> HH:MM [days]      post <kind> (board, topic) at HH:MM on days (1-7 ISO, 1-5, weekdays ...)
/schedule off <kind>                   stop posting <kind>
/schedule quiet HH:MM-HH:MM | off      quiet hours: scheduled posts wait until they end (same day) or skip

The scheduler reads the rows every minute, so a change applies from the next minute on.
"""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc
from handlers.kit import fold
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, Blueprint
from models import schedules
from models.groups import Group

router = Blueprint("schedule")
router.filter("message", IN_GROUP)

COMMANDS = [
    CommandInfo("schedule", __("Scheduled posts: /schedule set board|topic HH:MM [days], /schedule off topic, "
                               "/schedule quiet 23:00-08:00"), "admin"),
]

# Group-level kinds an admin schedules here (others, like a flash sale's, belong to their own command).
KIND_ALIASES = {
    "board": "checkin_board", "checkin": "checkin_board", "checkin_board": "checkin_board",
    "签到": "checkin_board", "簽到": "checkin_board", "签到榜": "checkin_board", "簽到榜": "checkin_board",
    "topic": "topic", "topics": "topic", "话题": "topic", "話題": "topic",
}
KIND_NAMES: dict[str, LazyProxy] = {
    "checkin_board": __("Check-in board"),
    "topic": __("Daily topic"),
    "flash_sale": __("Flash sale"),
    "flash_notice": __("Flash sale notice"),
}
DAY_NAMES = [__("Mon"), __("Tue"), __("Wed"), __("Thu"), __("Fri"), __("Sat"), __("Sun")]


def usage() -> str:
    return _(
        "Usage (admins):\n/schedule — the scheduled posts\n"
        "/schedule set board|topic HH:MM [days] — days: 1-7 (Mon=1), e.g. 1-5, 135, weekdays, weekend; "
        "default every day\n/schedule off board|topic — stop it\n"
        "/schedule quiet 23:00-08:00 | off — quiet hours: scheduled posts wait until they end"
    )


def kind_label(kind: str, ref_id: int = 0) -> str:
    name = KIND_NAMES.get(kind)
    label = str(name) if name is not None else kind
    return f"{label} #{ref_id}" if ref_id else label


def days_label(weekdays: str) -> str:
    if weekdays == schedules.ALL_DAYS:
        return _("every day")
    if weekdays == "12345":
        return _("Mon–Fri")
    if weekdays == "67":
        return _("weekends")
    return ", ".join(str(DAY_NAMES[int(day) - 1]) for day in weekdays)


def quiet_label(span: tuple[str, str] | None) -> str:
    return f"{span[0]}–{span[1]}" if span else _("none")


@router.message(Command("schedule"))
async def schedule_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                           group: Group | None) -> None:
    if group is None or group.id is None or not await require_admin(bot, message):
        return
    args = (command.args or "").split()
    action = fold(args[0]) if args else "list"
    if action == "list" and len(args) <= 1:
        await show_schedules(message, session, group)
    elif action == "set":
        await set_kind(message, session, group, args[1:])
    elif action == "off" and len(args) == 2:
        await turn_off(message, session, group, args[1])
    elif action == "quiet" and len(args) == 2:
        await set_quiet(message, session, group, args[1])
    else:
        await message.reply(usage())


async def show_schedules(message: Message, session: AsyncSession, group: Group) -> None:
    views = await schedules.effective_schedules(session, group)
    lines = [_("<b>Scheduled posts</b> ({zone})").format(zone=esc(group.timezone))]
    if not views:
        lines.append(_("Nothing is scheduled."))
    for view in views:
        when = _("{time}, {days}").format(time=view.at, days=days_label(view.weekdays))
        if view.once_on is not None:
            when = _("{time} on {day}").format(time=view.at, day=view.once_on.isoformat())
        state = _("on") if view.enabled else _("off")
        line = f"• {esc(kind_label(view.kind, view.ref_id))} — {when} · {state}"
        if view.default:
            line += " " + _("(default)")
        lines.append(line)
    lines.append(_("Quiet hours: {span}").format(span=quiet_label(schedules.quiet_hours_of(group))))
    lines.append(_("Change: /schedule set topic 20:00 · /schedule off board · /schedule quiet 23:00-08:00"))
    await message.reply("\n".join(lines))


def _kind(raw: str) -> str | None:
    return KIND_ALIASES.get(fold(raw))


async def set_kind(message: Message, session: AsyncSession, group: Group, args: list[str]) -> None:
    assert group.id is not None
    if len(args) < 2 or _kind(args[0]) is None:
        await message.reply(usage())
        return
    kind = _kind(args[0])
    assert kind is not None
    when = schedules.parse_hh_mm(args[1])
    if when is None:
        await message.reply(_("“{value}” is not a time. Use HH:MM, e.g. 08:00 or 20:30.").format(
            value=esc(args[1][:16])))
        return
    try:
        days = schedules.parse_weekdays(" ".join(args[2:])) if len(args) > 2 else schedules.ALL_DAYS
    except schedules.ScheduleError:
        await message.reply(_("“{value}” are not days. Use 1-7 (Monday is 1), e.g. 1-5, 135, weekdays or "
                              "weekend.").format(value=esc(" ".join(args[2:])[:32])))
        return
    await schedules.set_schedule(session, group.id, kind, when, weekdays=days)
    await message.reply(scheduled_text(group, kind, when, days))


def scheduled_text(group: Group, kind: str, when: str, days: str) -> str:
    """The confirmation for a schedule, with what quiet hours will do to it."""
    lines = [_("✅ {kind}: {time}, {days} ({zone}).").format(
        kind=esc(kind_label(kind)), time=when, days=days_label(days), zone=esc(group.timezone))]
    span = schedules.quiet_hours_of(group)
    if schedules.in_quiet_hours(when, span):
        release = schedules.quiet_release(when, span)
        if release is None:
            lines.append(_("⚠️ That is inside quiet hours ({span}) until the next day, so it will not be "
                           "posted.").format(span=quiet_label(span)))
        else:
            lines.append(_("⚠️ That is inside quiet hours ({span}): it will be posted at {time}.").format(
                span=quiet_label(span), time=release))
    return "\n".join(lines)


async def turn_off(message: Message, session: AsyncSession, group: Group, raw: str) -> None:
    assert group.id is not None
    kind = _kind(raw)
    if kind is None:
        await message.reply(usage())
        return
    if await schedules.disable_schedule(session, group.id, kind):
        await message.reply(_("{kind} is off. Turn it on again with /schedule set.").format(
            kind=esc(kind_label(kind))))
    else:
        await message.reply(_("{kind} was not scheduled.").format(kind=esc(kind_label(kind))))


async def set_quiet(message: Message, session: AsyncSession, group: Group, raw: str) -> None:
    assert group.id is not None
    if fold(raw) in ("off", "none", "关", "关闭"):
        await schedules.set_quiet_hours(session, group.id, None)
        await message.reply(_("Quiet hours are off."))
        return
    try:
        span = schedules.parse_quiet_span(raw)
    except schedules.ScheduleError:
        await message.reply(_("Use /schedule quiet HH:MM-HH:MM (e.g. 23:00-08:00), or /schedule quiet off."))
        return
    await schedules.set_quiet_hours(session, group.id, span)
    await message.reply(_("Quiet hours: {span} ({zone}). Scheduled posts due then wait until {end} the same "
                          "day, or are skipped that day.").format(
        span=quiet_label(span), zone=esc(group.timezone), end=span[1]))
