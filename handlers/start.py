"""/start and /help: what the bot does and which commands there are (more for admins)."""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import Command, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from handlers.common import CommandInfo, esc
from handlers.roles import actor_is_admin
from handlers.switchboard import IN_PRIVATE, Blueprint

router = Blueprint("start")

COMMANDS = [
    CommandInfo("help", __("What I can do"), "member"),
    CommandInfo("start", __("Start talking to me"), "private"),
]


def help_text(*, admin: bool) -> str:
    from handlers import all_commands  # the registry of every feature's commands

    lines = [_("<b>qunbot</b> keeps brand, VIP and group-buy groups lively and tidy."), "", _("<b>Commands</b>")]
    lines += [f"/{c.name} — {esc(c.description)}" for c in all_commands() if c.audience != "admin"]
    if admin:
        lines += ["", _("<b>For admins</b>")]
        lines += [f"/{c.name} — {esc(c.description)}" for c in all_commands() if c.audience == "admin"]
    else:
        lines += ["", _("Group admins see more commands with /help in their group.")]
    return "\n".join(lines)


@router.message(CommandStart(), IN_PRIVATE)
async def start(message: Message) -> None:
    await message.answer(
        _("Hello! I look after brand fan groups, VIP groups and group-buy groups. "
          "Add me to your group and make me an admin to begin.")
        + "\n\n"
        + help_text(admin=True)
    )


@router.message(Command("help"))
async def show_help(message: Message, bot: Bot) -> None:
    admin = message.chat.type == "private" or await actor_is_admin(bot, message)
    await message.answer(help_text(admin=admin))
