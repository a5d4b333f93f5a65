"""Telegram's outbound limits, shared by the flow controller and the sandbox that enforces them.

Figures from Telegram's Bot FAQ ("My bot is hitting limits, how do I avoid this?"): about one message per
second in a chat, no more than 20 messages per minute in a group, about 30 messages per second overall.
Edits count as messages.
"""

from __future__ import annotations

from dataclasses import dataclass

# Methods that put a new or changed message into a chat: these are what the limits count.
COUNTED_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendPoll",
        "sendAnimation",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendSticker",
        "sendMediaGroup",
        "sendDice",
        "sendLocation",
        "sendContact",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "editMessageMedia",
        "stopPoll",
    }
)


@dataclass(frozen=True)
class TelegramLimits:
    """Message budgets: `global_per_second` overall, `chat_per_second` per chat, `group_per_minute` per group."""

    global_per_second: int = 30
    chat_per_second: int = 1
    group_per_minute: int = 20
    # Length of the windows in seconds; tests shrink these to run fast while keeping Telegram's shape.
    second: float = 1.0
    minute: float = 60.0

    def scaled(self, factor: float) -> TelegramLimits:
        """The same limits with windows `factor` times as long (0.05 = twenty times faster)."""
        return TelegramLimits(
            self.global_per_second,
            self.chat_per_second,
            self.group_per_minute,
            self.second * factor,
            self.minute * factor,
        )


def is_group_chat(chat_id: int) -> bool:
    """Group and supergroup ids are negative; private chats are positive user ids."""
    return chat_id < 0
