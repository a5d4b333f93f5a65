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
    topics,
    unhandled,
    votes,
)
from handlers.common import CommandInfo, Switchboard

# Order matters: guard first (a command holding control characters is refused before any parser sees it),
# service and membership updates next, then commands, catch-all listeners (chat points, moderation), and
# unhandled last (it answers every button press nobody else took).
# roles comes first: it only watches chat_member updates (keeping the admin cache current) and lets them pass.
# invites comes next for the same reason: it attributes joins and counts newcomers' messages, letting both pass.
# newcomers (captcha, anti-raid) acts on a join before invites attributes it, and lets the update pass too.
FEATURES: list[ModuleType] = [
    guard, roles, newcomers, invites, membership, start, admin, privacy, checkin, shop, votes, groupbuy, flashsale,
    schedule, topics, lottery, moderation, points, unhandled,
]


def install(dispatcher: Router) -> None:
    """Every feature's handlers, behind the switchboard, on the Dispatcher."""
    Switchboard([feature.router for feature in FEATURES]).install(dispatcher)


def all_commands() -> list[CommandInfo]:
    return [command for feature in FEATURES for command in getattr(feature, "COMMANDS", [])]
