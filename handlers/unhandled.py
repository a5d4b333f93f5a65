"""The last word on a button press no feature took: data that does not unpack (a stale or forged button: `fs:abc`,
`vp:1`, a number past what its column holds), a press in the wrong kind of chat, a prefix nobody owns. It gets a
short alert, so the button stops spinning. It is the last feature, so it only sees what every other one passed."""

from __future__ import annotations

from aiogram.types import CallbackQuery
from aiogram.utils.i18n import gettext as _

from handlers.switchboard import Blueprint

router = Blueprint("unhandled")


@router.callback_query()
async def answer_unknown_press(query: CallbackQuery) -> None:
    await query.answer(_("This button does not work (any more)."), show_alert=True)
