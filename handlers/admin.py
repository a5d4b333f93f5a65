"""Group settings that admins change: /lang (the group's language), /timezone (its clock) and /currency (the money
its prices are shown in)."""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc
from handlers.kit import CURRENCIES, fold, money
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
    CommandInfo("currency", __("Set the currency prices are shown in, e.g. /currency TWD"), "admin"),
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


# Common ways people write the currencies a group may choose (ISO codes, signs and names).
CURRENCY_ALIASES = {
    "rmb": "CNY", "¥": "CNY", "￥": "CNY", "人民币": "CNY", "人民幣": "CNY",
    "ntd": "TWD", "nt$": "TWD", "nt": "TWD", "新台币": "TWD", "新台幣": "TWD", "台币": "TWD", "台幣": "TWD",
    "hk$": "HKD", "港币": "HKD", "港幣": "HKD", "港元": "HKD",
    "mop$": "MOP", "澳门元": "MOP", "澳門元": "MOP", "澳门币": "MOP", "澳門幣": "MOP",
    "s$": "SGD", "新加坡元": "SGD", "新币": "SGD", "新幣": "SGD",
    "rm": "MYR", "令吉": "MYR", "马币": "MYR", "馬幣": "MYR",
    "us$": "USD", "美元": "USD", "美金": "USD",
}


def currency_choice(raw: str) -> str | None:
    """'twd', 'NT$', '新台幣' -> 'TWD'; None for anything else."""
    text = raw.strip()
    if text.upper() in CURRENCIES:
        return text.upper()
    return CURRENCY_ALIASES.get(text.lower())


@router.message(Command("currency"))
async def set_currency(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group) -> None:
    if not await require_admin(bot, message):
        return
    args = (command.args or "").strip()
    choice = currency_choice(args) if args else None
    if choice is None:
        lines = []
        if args:
            lines.append(_("“{currency}” is not a currency I can show.").format(currency=esc(args[:16])))
        lines.append(_("Usage: /currency CODE, e.g. /currency TWD\nCodes: {codes}\nNow: {current} ({example})").format(
            codes=" ".join(CURRENCIES), current=esc(group.currency),
            example=money(128000, currency=group.currency)))
        await message.reply("\n".join(lines))
        return
    await groups.set_group_currency(session, group.chat_id, choice)
    await message.reply(_("Prices in this group are now shown in {currency}, e.g. {example}.").format(
        currency=choice, example=money(128000, currency=choice)))
