"""A loopback Telegram Bot API emulator with a stateful world and a driver (see driver.py, server.py)."""

from bot.limits import TelegramLimits
from bot.sandbox.driver import Sandbox, SandboxError, SbAnswer
from bot.sandbox.server import ApiError, BotApiServer, SbCall
from bot.sandbox.world import (
    Membership,
    SbChat,
    SbDocument,
    SbInviteLink,
    SbMessage,
    SbPoll,
    SbStats,
    SbUser,
    TranscriptEntry,
    World,
)

# The sandbox enforces Telegram's limits as described by bot/limits.py.
SandboxLimits = TelegramLimits

__all__ = [
    "ApiError",
    "BotApiServer",
    "Membership",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SbAnswer",
    "SbCall",
    "SbChat",
    "SbDocument",
    "SbInviteLink",
    "SbMessage",
    "SbPoll",
    "SbStats",
    "SbUser",
    "TelegramLimits",
    "TranscriptEntry",
    "World",
]
