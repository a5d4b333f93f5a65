"""Every feature's handlers. `FEATURES` is the order they see updates in; `install()` puts them all behind
one switchboard (see handlers.common.Switchboard); `all_commands()` feeds /help and the command menus."""

from __future__ import annotations

from types import ModuleType

from aiogram import Router

from handlers import (
    admin,
    checkin,
    flashsale,
    groupbuy,
    invites,
    lottery,
    membership,
    moderation,
    newcomers,
    points,
    privacy,
    roles,
    schedule,
    shop,
    start,
    stats,
    topics,
    votes,
)
from handlers.common import CommandInfo, Switchboard

# Order matters: service and membership updates first, commands and keywords next. Ordinary group messages do
# not walk this list: the group-message pipeline (bot/pipeline.py) runs the moderation verdict first and then its
# observers in a declared order, asking these handlers only for keyword features.
# roles comes first: it only watches chat_member updates (keeping the admin cache current) and lets them pass.
# invites comes next for the same reason: it attributes joins and notices service-message joins, letting both pass.
# newcomers (captcha, anti-raid) acts on a join before invites attributes it, and lets the update pass too.
FEATURES: list[ModuleType] = [
    roles, newcomers, invites, membership, start, admin, privacy, checkin, shop, votes, groupbuy, flashsale,
    schedule, topics, lottery, moderation, points, stats,
]


def install(dispatcher: Router) -> None:
    """Every feature's handlers, behind the switchboard, on the Dispatcher."""
    Switchboard([feature.router for feature in FEATURES]).install(dispatcher)


def all_commands() -> list[CommandInfo]:
    return [command for feature in FEATURES for command in getattr(feature, "COMMANDS", [])]
