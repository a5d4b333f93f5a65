"""Every feature's handlers. `FEATURES` is the order they see updates in; `install()` puts them all behind
one switchboard (see handlers.switchboard.Switchboard); `all_commands()` feeds /help and the command menus."""

from __future__ import annotations

from types import ModuleType

from aiogram import Router

from handlers import (
    admin,
    checkin,
    flashsale,
    groupbuy,
    guard,
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
    unhandled,
    votes,
)
from handlers.common import CommandInfo
from handlers.switchboard import Switchboard

# roles comes first: it only watches chat_member updates (keeping the admin cache current) and lets them pass.
# invites comes next for the same reason: it attributes joins and notices service-message joins, letting both pass.
# newcomers (captcha, anti-raid) acts on a join before invites attributes it, and lets the update pass too.
FEATURES: list[ModuleType] = [
    guard, roles, newcomers, invites, membership, start, admin, privacy, checkin, shop, votes, groupbuy, flashsale,
    schedule, topics, lottery, moderation, points, stats, unhandled,
]


def install(dispatcher: Router) -> Switchboard:
    """Every feature's handlers, behind the switchboard, on the Dispatcher."""
    switchboard = Switchboard([feature.router for feature in FEATURES])
    switchboard.install(dispatcher)
    return switchboard


def all_commands() -> list[CommandInfo]:
    return [command for feature in FEATURES for command in getattr(feature, "COMMANDS", [])]
