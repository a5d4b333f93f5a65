"""Group settings that admins change: /lang (the group's language) and /timezone (its clock)."""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc
from handlers.kit import fold
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, Blueprint
from models import groups
from models.clock import is_time_zone
from models.groups import LOCALES, Group

router = Blueprint("admin")
router.filter("message", IN_GROUP)

COMMANDS = [
    CommandInfo("lang", __("Set the group's language: zh_Hans, zh_Hant or en"), "admin"),
    CommandInfo("timezone", __("Set the group's time zone, e.g. Asia/Shanghai"), "admin"),
]

LANGUAGE_NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "en": "English"}
# Common ways people write the three languages.
LANGUAGE_ALIASES = {
    "zh_hans": "zh_Hans", "zh-hans": "zh_Hans", "zh": "zh_Hans", "zh-cn": "zh_Hans", "cn": "zh_Hans",
    "简体": "zh_Hans", "简体中文": "zh_Hans",
    "zh_hant": "zh_Hant", "zh-hant": "zh_Hant", "zh-tw": "zh_Hant", "zh-hk": "zh_Hant", "tw": "zh_Hant",
    "繁體": "zh_Hant", "繁体": "zh_Hant", "繁體中文": "zh_Hant", "繁体中文": "zh_Hant",
    "en": "en", "english": "en",
}


@router.message(Command("lang"))
async def set_language(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group, i18n: I18n
) -> None:
    if not await require_admin(bot, message):
        return
    choice = LANGUAGE_ALIASES.get(fold(command.args or ""))  # 簡體 is 简体, 繁體中文 is 繁体中文
    if choice is None or choice not in LOCALES:
        current = LANGUAGE_NAMES.get(group.locale or "", _("each member's own language"))
        await message.reply(
            _("Usage: /lang zh_Hans | zh_Hant | en\nNow: {current}").format(current=esc(current))
        )
        return
    await groups.set_group_locale(session, group.chat_id, choice)
    with i18n.use_locale(choice):
        await message.reply(_("This group now speaks {language}.").format(language=LANGUAGE_NAMES[choice]))


@router.message(Command("timezone"))
async def set_timezone(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group) -> None:
    if not await require_admin(bot, message):
        return
    name = (command.args or "").strip()
    if not name:
        await message.reply(
            _("Usage: /timezone Area/City, e.g. /timezone Asia/Shanghai\nNow: {zone}").format(zone=esc(group.timezone))
        )
        return
    if not is_time_zone(name):
        await message.reply(
            _("“{zone}” is not a time zone I know. Use an IANA name such as Asia/Shanghai, Asia/Taipei, "
              "Asia/Hong_Kong or Europe/London.").format(zone=esc(name[:64]))
        )
        return
    await groups.set_group_timezone(session, group.chat_id, name)
    await message.reply(_("Time zone set to {zone}. Days and schedules now follow this clock.").format(zone=esc(name)))
