"""What is safe to send to Telegram again after a failure, how soon, and for how long (used by bot/flow.py).

The decision, written down
--------------------------
A failed call falls in one of three cases, by what the bot can know about whether Telegram acted on it:

1. **It never left.** The connection was refused or could not be made (aiohttp's ClientConnectorError: refused,
   unreachable, DNS). Telegram did nothing, so every method is retried.
2. **Telegram's front said no.** A 5xx answer (TelegramServerError), or a page that is not the Bot API's JSON
   (ClientDecodeError: nginx's HTML "502 Bad Gateway"/"504 Gateway Time-out" in front of the Bot API). Every
   method is retried. For a send this is a judgement: the gateway's error usually means the Bot API never
   answered it, and a lost answer (a member whose /lang was saved and who hears nothing) is the worse harm, but
   a duplicate is possible — node-red-contrib-telegrambot-home#14 reports a message sent twice after 502s.
3. **It left and no answer came back**: a timeout (each attempt has one) or a connection dropped mid-request
   (ServerDisconnectedError, a reset). Telegram may have acted. A method whose repeat is harmless is retried:
   reads (get*), answers to presses (a second answer of an answered press gets "query is too old", which then
   counts as success), edits (a repeat is "message is not modified"), deletes, bans, restrictions, pins,
   approvals, set*. A method that creates something new — sendMessage and every send*, copy/forward,
   createChatInviteLink — is NOT repeated: it raises `DeliveryUnknown`. The caller decides; the scheduler keeps
   the post's claim (posted at most once; in the worst case not at all, which it logs).

Bounds. Every attempt has a timeout (`attempt_timeout`), every call a total budget (`budget`). An answer to a
press gets 10 s in all: Telegram refuses answers to presses older than about 15 s ("query is too old and
response timeout expired", measured in the d-Rickyy-b gist "timeout of answerCallbackQuery" and telegraf#1839),
and the press has already spent time in transit and in the handler. A call that may carry a file (an export, a
chart) gets 60 s an attempt and 120 s in all. Everything else gets 30 s, which also bounds
how long one scheduled post can hold a scheduler tick (a minute). Backoff is exponential from 0.2 s up to 3 s with
jitter (a random pause between a quarter of the step and the step), so several workers do not knock again in
step.
A 429 is not handled here: flow.py waits its retry_after (Telegram did nothing with a refused call).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import aiohttp
from aiogram.exceptions import ClientDecodeError, TelegramNetworkError, TelegramServerError

# Methods that create something new each time they succeed: never repeated once they may have reached Telegram.
CREATING_PREFIXES = ("send", "copyMessage", "forwardMessage", "createChatInviteLink", "createInvoiceLink")
HARMLESS_SENDS = frozenset({"sendChatAction"})
# Calls that may carry a file (an export, a chart): a slow uplink needs longer than a text message.
UPLOADS = frozenset({"sendDocument", "sendPhoto", "sendMediaGroup", "sendVideo", "sendAudio", "sendAnimation",
                     "sendVoice", "editMessageMedia"})


def creates_something(method: str) -> bool:
    """True if a repeat of `method` could put a second copy of something into Telegram."""
    return method.startswith(CREATING_PREFIXES) and method not in HARMLESS_SENDS


class DeliveryUnknown(TelegramNetworkError):
    """A call that creates something (a send) may or may not have reached Telegram; it was not repeated."""


class TelegramUnavailable(TelegramNetworkError):
    """Telegram could not be reached (or kept failing) for the whole of the call's budget."""


@dataclass(frozen=True)
class Verdict:
    """What a failure means: `retry` it now, and whether an earlier attempt `maybe_delivered`."""

    kind: str  # "unreachable", "server error", "no answer"
    retry: bool
    maybe_delivered: bool

    def __str__(self) -> str:
        return self.kind


def classify(method: str, error: BaseException) -> Verdict | None:
    """The verdict on a failed call of `method`, or None for an error that is not the road's (re-raise it)."""
    if isinstance(error, TelegramNetworkError) and not isinstance(error, DeliveryUnknown | TelegramUnavailable):
        cause = error.__cause__
        if isinstance(cause, aiohttp.ClientConnectorError):
            return Verdict("unreachable", retry=True, maybe_delivered=False)
        return Verdict("no answer", retry=not creates_something(method), maybe_delivered=True)
    if isinstance(error, TimeoutError):
        return Verdict("no answer", retry=not creates_something(method), maybe_delivered=True)
    if isinstance(error, TelegramServerError | ClientDecodeError):
        return Verdict("server error", retry=True, maybe_delivered=False)
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts, budgets and backoff (see the module docstring for why these figures)."""

    answer_budget: float = 10.0  # answerCallbackQuery, in all
    call_budget: float = 30.0  # any other call, in all
    answer_attempt: float = 4.0  # one attempt of answerCallbackQuery
    call_attempt: float = 10.0  # one attempt of any other call
    upload_attempt: float = 60.0  # one attempt of a call that may carry a file (its budget: twice that)
    first_backoff: float = 0.2
    max_backoff: float = 3.0

    def budget(self, method: str) -> float:
        if method in UPLOADS:
            return max(self.call_budget, 2 * self.upload_attempt)
        return self.answer_budget if method == "answerCallbackQuery" else self.call_budget

    def attempt_timeout(self, method: str) -> float:
        if method in UPLOADS:
            return self.upload_attempt
        return self.answer_attempt if method == "answerCallbackQuery" else self.call_attempt

    def backoff(self, failures: int) -> float:
        """A random pause between a quarter of the failures-th exponential step and the step itself."""
        step = min(self.max_backoff, self.first_backoff * 2 ** (failures - 1))
        return random.uniform(step / 4, step)  # noqa: S311 - jitter, not secrecy
