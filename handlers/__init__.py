"""Every feature's Router. `get_routers()` is the order they see updates in; `all_commands()` feeds /help and
the command menus."""

from __future__ import annotations

from types import ModuleType

from aiogram import Router

from handlers import admin, checkin, membership, points, privacy, shop, start
from handlers.common import CommandInfo

# Order matters: service and membership updates first, commands next, catch-all listeners (chat points,
# moderation) last.
FEATURES: list[ModuleType] = [membership, start, admin, privacy, checkin, shop, points]


def get_routers() -> list[Router]:
    return [feature.router.build() for feature in FEATURES]


def all_commands() -> list[CommandInfo]:
    return [command for feature in FEATURES for command in getattr(feature, "COMMANDS", [])]
