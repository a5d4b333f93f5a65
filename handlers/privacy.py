"""A member's data: /mydata exports everything qunbot stores about them (a JSON file, in private chat);
/forgetme erases it after a confirmation button."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint
from models import privacy

if TYPE_CHECKING:
    from bot.runtime import Runtime

router = Blueprint("privacy")

COMMANDS = [
    CommandInfo("mydata", __("Get a copy of everything stored about you (private chat)"), "private"),
    CommandInfo("forgetme", __("Erase everything stored about you (private chat)"), "private"),
]


class ForgetMe(CallbackData, prefix="forget"):
    confirm: bool


@router.message(Command("mydata", "forgetme"), IN_GROUP)
async def privacy_in_group(message: Message) -> None:
    await message.reply(_("For your privacy, send this command to me in a private chat."))


@router.message(Command("mydata"), IN_PRIVATE)
async def export_my_data(message: Message, session: AsyncSession, runtime: Runtime) -> None:
    assert message.from_user is not None
    await runtime.activity.flush(session)  # the person's latest counts are in the export too
    data = await privacy.export_everything(session, message.from_user.id)
    payload = json.dumps(data, ensure_ascii=False, indent=2, default=str).encode()
    await message.answer_document(
        BufferedInputFile(payload, filename=f"qunbot-mydata-{message.from_user.id}.json"),
        caption=_("Everything qunbot stores about you. /forgetme erases it."),
    )


@router.message(Command("forgetme"), IN_PRIVATE)
async def ask_to_forget(message: Message) -> None:
    keyboard = InlineKeyboardBuilder()
    keyboard.button(text=_("Yes, erase my data"), callback_data=ForgetMe(confirm=True))
    keyboard.button(text=_("No, keep it"), callback_data=ForgetMe(confirm=False))
    await message.answer(
        _("This erases your profile, memberships, points balances, check-ins and coupons in every group. "
          "Ledgers and orders that others rely on keep an anonymous placeholder instead of you. "
          "It cannot be undone."),
        reply_markup=keyboard.as_markup(),
    )


@router.callback_query(ForgetMe.filter(), IN_PRIVATE)
async def forget(query: CallbackQuery, callback_data: ForgetMe, session: AsyncSession, runtime: Runtime) -> None:
    if not callback_data.confirm:
        await query.answer(_("Nothing was erased."))
        if isinstance(query.message, Message):
            await query.message.edit_text(_("Nothing was erased."))
        return
    await runtime.activity.flush(session)  # counts not yet written go in first, so they too lose the person's id
    await privacy.erase_everything(session, query.from_user.id)
    await query.answer(_("Your data has been erased."), show_alert=True)
    if isinstance(query.message, Message):
        await query.message.edit_text(_("Your data has been erased. If you talk to me again, I will start afresh."))
