"""Logging: text (default) or one JSON object a line (LOG_FORMAT=json), each line with the update and chat it
belongs to when there is one, and never a secret.

The update pipeline (bot/middlewares.py) sets `current_update_id` and `current_chat_id` for the time it handles
an update; every log line written meanwhile (handlers, models, the flow controller) carries them. Secrets (the
bot token, the webhook secret, passwords in DATABASE_URL and REDIS_URL) are replaced in the finished line,
tracebacks included.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bot.settings import Settings

current_update_id: ContextVar[int | None] = ContextVar("current_update_id", default=None)
current_chat_id: ContextVar[int | None] = ContextVar("current_chat_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"


class RedactToken(logging.Filter):
    """Keeps the bot token out of every log message (it is part of every Bot API URL)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = message.replace(self.token, "<BOT_TOKEN>"), None
        return True


class UpdateIds(logging.Filter):
    """Puts the current update and chat ids on the record (`update_id`, `chat_id`, and `ids` for text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        update_id, chat_id = current_update_id.get(), current_chat_id.get()
        record.update_id, record.chat_id = update_id, chat_id
        parts = []
        if update_id is not None:
            parts.append(f"update={update_id}")
        if chat_id is not None:
            parts.append(f"chat={chat_id}")
        record.ids = f" [{' '.join(parts)}]" if parts else ""
        return True


class Redacting(logging.Formatter):
    """Formats, then replaces every secret in the finished line (message, arguments and traceback)."""

    def __init__(self, secrets: dict[str, str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        # longest first, so a secret that contains another is replaced whole
        self.secrets = sorted(((s, name) for s, name in secrets.items() if s), key=lambda p: -len(p[0]))

    def redact(self, line: str) -> str:
        for secret, name in self.secrets:
            if secret in line:
                line = line.replace(secret, f"<{name}>")
        return line

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonLines(Redacting):
    """One JSON object a line: time, level, logger, message, update_id and chat_id when set, exc when raised."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("update_id", "chat_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def secrets_of(settings: Settings) -> dict[str, str]:
    """Every secret a setting holds, with the name it is shown as instead."""
    found = {settings.token: "BOT_TOKEN"}
    if settings.token:
        found[settings.token.split(":", 1)[-1]] = "BOT_TOKEN"  # the part after the bot id alone
    if settings.webhook_secret is not None:
        found[settings.webhook_secret.get_secret_value()] = "WEBHOOK_SECRET"
    for url, name in ((settings.database_url, "DATABASE_PASSWORD"), (settings.redis_url, "REDIS_PASSWORD")):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password and len(password) >= 4:  # a one-letter password would blank ordinary words
            found[password] = name
    return found


def log_handler(settings: Settings, log_format: str = "text") -> logging.Handler:
    """A stderr handler with the chosen format, the update ids and redaction."""
    handler = logging.StreamHandler()
    secrets = secrets_of(settings)
    handler.setFormatter(JsonLines(secrets) if log_format == "json" else Redacting(secrets, TEXT_FORMAT))
    handler.addFilter(UpdateIds())
    handler.addFilter(RedactToken(settings.token))
    return handler
