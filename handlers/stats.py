"""/stats: the numbers an owner runs a group by, for admins, answered privately.

In a group, `/stats [today|week|month|YYYY-MM]` sends the asking admin, in private, four chart images (the board
of main KPIs, activity by weekday and hour, the retention cohorts, the commerce funnel) and a text summary with
the changes against the previous period; the group sees only a short pointer. `/stats export [period]` sends
the figures as CSV and XLSX; `/stats weekly on|off` asks for the Monday report (scheduler/stats.py).

In private, `/stats [period]` lists the groups the person administers now, and all of them combined (a brand's
network: people counted once across groups where a KPI counts people); `/stats weekly on|off` there applies to
every group they administer. Admin rights are asked of Telegram at the moment of every command and press.

KPIs come from models.analytics (group_kpis); the charts are drawn in a worker process (stats_charts.draw_charts).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.common import CommandInfo, esc
from handlers.roles import is_group_admin, require_admin
from handlers.stats_text import summary
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint
from models import groups
from models import stats as stats_model
from models.analytics import Period, group_kpis
from models.groups import Group

if TYPE_CHECKING:
    from models.analytics import Kpis

log = logging.getLogger("qunbot.stats")

router = Blueprint("stats")

COMMANDS = [
    CommandInfo(
        "stats",
        __("Statistics and charts, sent privately: /stats [today|week|month|YYYY-MM], /stats export, "
           "/stats weekly on|off"),
        "admin",
    ),
]

DEFAULT_PERIOD = "week"
MAX_BUTTONS = 20  # groups listed in private (the most recently active first)


class StatsPick(CallbackData, prefix="st"):
    """A group chosen from the private list (group 0: all of them combined), with the period asked for."""

    group: int
    period: str
    export: bool = False


def usage() -> str:
    return _(
        "Usage: /stats [today|week|month|YYYY-MM] — charts and figures, sent to you privately (default: this week)\n"
        "/stats export [period] — the figures as CSV and XLSX files\n"
        "/stats weekly on|off — a report every Monday at 09:00"
    )


def parse_period(arg: str, zone: str) -> Period | None:
    try:
        return Period.parse(arg or DEFAULT_PERIOD, zone)
    except ValueError:
        return None


async def start_pointer(bot: Bot) -> str:
    me = await bot.me()
    return _("I send statistics privately. Open a chat with me (https://t.me/{bot}), press Start, then send the "
             "command again.").format(bot=me.username or "")


# -- sending ---------------------------------------------------------------------------------------------------


def group_title(chosen: list[Group]) -> str:
    if len(chosen) == 1:
        return chosen[0].title or str(chosen[0].chat_id)
    return _("All {count} groups").format(count=len(chosen))


async def load_kpis(sessionmaker: async_sessionmaker[AsyncSession], chosen: list[Group], period: Period) -> Kpis:
    return await group_kpis(sessionmaker, [group.id for group in chosen if group.id is not None], period)


async def send_report(bot: Bot, chat_id: int, kpis: Kpis, title: str, *, weekly: bool = False) -> None:
    """The charts, then the summary, to one private chat. The charts are drawn off the event loop."""
    from handlers.stats_charts import draw_charts  # matplotlib loads on the first /stats, not at start-up

    charts = await draw_charts(kpis)
    captions = {"board": _("Key numbers"), "activity": _("Activity"), "retention": _("Retention by join week"),
                "commerce": _("Commerce")}
    for name, png in charts:
        await bot.send_photo(chat_id, BufferedInputFile(png, filename=f"stats-{name}.png"),
                             caption=f"{captions.get(name, name)} · {kpis.period.label()}")
    await bot.send_message(chat_id, summary(kpis, title, weekly=weekly))


async def send_export(bot: Bot, chat_id: int, kpis: Kpis, title: str) -> None:
    from handlers.stats_files import export_csv, export_xlsx

    csv_bytes, xlsx_bytes = await asyncio.to_thread(lambda: (export_csv(kpis), export_xlsx(kpis)))
    stem = f"stats-{kpis.period.label()}"
    caption = _("{title}: {period}").format(title=esc(title), period=kpis.period.label())
    await bot.send_document(chat_id, BufferedInputFile(csv_bytes, filename=f"{stem}.csv"), caption=caption)
    await bot.send_document(chat_id, BufferedInputFile(xlsx_bytes, filename=f"{stem}.xlsx"))


async def deliver(
    bot: Bot, sessionmaker: async_sessionmaker[AsyncSession], chat_id: int, chosen: list[Group], period: Period,
    *, export: bool = False,
) -> None:
    kpis = await load_kpis(sessionmaker, chosen, period)
    title = group_title(chosen)
    if export:
        await send_export(bot, chat_id, kpis, title)
    else:
        await send_report(bot, chat_id, kpis, title)


# -- in a group ------------------------------------------------------------------------------------------------


@router.message(Command("stats"), IN_GROUP)
async def stats_in_group(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert group.id is not None
    if not await require_admin(bot, message):
        return
    words = (command.args or "").split()
    sub = words[0].lower() if words else ""
    if message.sender_chat is not None or message.from_user is None:
        await message.reply(_("Anonymous admins cannot get statistics privately: send the command as yourself."))
        return
    user_id = message.from_user.id
    if sub == "weekly":
        choice = words[1].lower() if len(words) > 1 else ""
        if choice not in ("on", "off") or len(words) > 2:
            await message.reply(esc(usage()))
            return
        await stats_model.set_weekly_report(session, group.id, user_id, choice == "on")
        if choice == "on":
            text = _("📅 You will get this group's weekly report privately every Monday at 09:00.")
            if not await groups.can_write_privately(session, user_id):
                text += "\n" + await start_pointer(bot)
        else:
            text = _("You will no longer get this group's weekly report.")
        await message.reply(text)
        return
    export = sub == "export"
    arg = " ".join(words[1:] if export else words)
    period = parse_period(arg, group.timezone)
    if period is None or len(words) > (2 if export else 1):
        await message.reply(esc(usage()))
        return
    if not await groups.can_write_privately(session, user_id):
        await message.reply(await start_pointer(bot))
        return
    try:
        await deliver(bot, sessionmaker, user_id, [group], period, export=export)
    except (TelegramForbiddenError, TelegramBadRequest) as error:
        log.info("stats for %s not delivered privately: %s", user_id, error)
        await message.reply(await start_pointer(bot))
        return
    await message.reply(_("📊 Sent to you privately."))


# -- in private ------------------------------------------------------------------------------------------------


async def administered_groups(bot: Bot, session: AsyncSession, user_id: int) -> list[Group]:
    """The groups (with the bot) the person administers right now, asked of Telegram (through the admin cache)."""
    candidates = await stats_model.groups_of_member(session, user_id)
    checks = await asyncio.gather(*(is_group_admin(bot, group.chat_id, user_id) for group in candidates))
    return [group for group, admin in zip(candidates, checks, strict=True) if admin]


@router.message(Command("stats"), IN_PRIVATE)
async def stats_in_private(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert message.from_user is not None
    user_id = message.from_user.id
    words = (command.args or "").split()
    sub = words[0].lower() if words else ""
    administered = await administered_groups(bot, session, user_id)
    if not administered:
        await message.answer(_("You are not an admin of any group I am in. Add me to your group, make me an admin, "
                               "then send /stats there or here."))
        return
    if sub == "weekly":
        choice = words[1].lower() if len(words) > 1 else ""
        if choice not in ("on", "off") or len(words) > 2:
            await message.answer(esc(usage()))
            return
        for group in administered:
            assert group.id is not None
            await stats_model.set_weekly_report(session, group.id, user_id, choice == "on")
        names = "\n".join(f"• {esc(group.title)}" for group in administered)
        text = (_("📅 Every Monday at 09:00 you will get the weekly report of these groups:") if choice == "on"
                else _("You will no longer get the weekly report of these groups:"))
        await message.answer(text + "\n" + names)
        return
    export = sub == "export"
    arg = " ".join(words[1:] if export else words) or DEFAULT_PERIOD
    period = parse_period(arg, administered[0].timezone)
    if period is None or len(words) > (2 if export else 1):
        await message.answer(esc(usage()))
        return
    if len(administered) == 1:
        await deliver(bot, sessionmaker, user_id, administered, period, export=export)
        return
    builder = InlineKeyboardBuilder()
    for group in administered[:MAX_BUTTONS]:
        assert group.id is not None
        builder.button(text=group.title or str(group.chat_id),
                       callback_data=StatsPick(group=group.id, period=arg, export=export))
    builder.button(text=_("All {count} groups combined").format(count=len(administered)),
                   callback_data=StatsPick(group=0, period=arg, export=export))
    builder.adjust(1)
    await message.answer(_("Which group? ({period})").format(period=esc(arg)), reply_markup=builder.as_markup())


@router.callback_query(StatsPick.filter(), IN_PRIVATE)
async def stats_pick(
    query: CallbackQuery, callback_data: StatsPick, bot: Bot, session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = query.from_user.id
    administered = await administered_groups(bot, session, user_id)
    chosen = administered if callback_data.group == 0 else [
        group for group in administered if group.id == callback_data.group
    ]
    if not chosen:
        await query.answer(_("You are no longer an admin of that group."), show_alert=True)
        return
    period = parse_period(callback_data.period, chosen[0].timezone)
    if period is None:
        await query.answer(esc(usage())[:200], show_alert=True)
        return
    await query.answer(_("Preparing the charts…"))
    await deliver(bot, sessionmaker, user_id, chosen, period, export=callback_data.export)
