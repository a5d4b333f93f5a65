"""The first look at a command: one whose text holds a NUL byte or another control character is answered with
what is wrong and goes no further (no parser, no database: PostgreSQL refuses NUL in text, and nobody means to
type the others). It is the first feature, so every command is covered by this one check."""

from __future__ import annotations

from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from handlers.kit import has_control
from handlers.switchboard import Blueprint

router = Blueprint("guard")


def command_with_control(message: Message) -> bool:
    text = message.text or message.caption
    return bool(text) and text[0] == "/" and has_control(text)  # type: ignore[index]


@router.message(command_with_control)
async def refuse_control_characters(message: Message) -> None:
    await message.reply(_("That command contains control characters (such as a NUL byte). Send it again without "
                          "them."))
