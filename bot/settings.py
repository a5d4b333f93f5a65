"""Settings from the environment or `.env` (pydantic-settings). Each one is documented in `.env.example`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.clock import is_time_zone
from models.groups import LOCALES

_TOKEN_SHAPE = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{10,}$")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = Field(default=None, description="Token from @BotFather")
    database_url: str = "sqlite+aiosqlite:///data/qunbot.db"
    # How SQLite is driven: "loop" (LoopSQLite: statements on the event loop's thread, known-long work on
    # aiosqlite's) or "aiosqlite" (SQLAlchemy's stock adapter: every call on aiosqlite's thread).
    sqlite_driver: Literal["loop", "aiosqlite"] = "loop"
    telegram_api_url: str = ""
    webhook_url: str = ""
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0:8080"
    redis_url: str = ""
    redis_prefix: str = "qunbot"  # every Redis key starts with it (several bots may share one Redis)
    workers: int = Field(default=1, ge=1, le=64)  # webhook worker processes `qunbot run` starts (needs WEBHOOK_URL)
    db_pool_size: int = Field(default=5, ge=1, le=1000)  # PostgreSQL connections a process keeps open
    db_max_overflow: int = Field(default=5, ge=0, le=1000)  # and may open beyond them at a peak
    default_locale: str = "zh_Hans"
    default_timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    activity_retention_days: int = Field(
        default=400, ge=0, description="Days of activity facts (statistics) kept; 0 keeps them forever"
    )
    log_format: str = "text"  # text, or json: one JSON object a line (bot/logs.py)
    web_listen: str = ""  # host:port for /healthz, /readyz, /metrics while polling (or in `qunbot scheduler`)
    metrics: bool = True  # serve /metrics (Prometheus) on the web server
    ready_inbox_max_age: float = Field(default=300.0, gt=0)  # /readyz fails when an update waits this long

    @field_validator("bot_token", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN_SHAPE.match(value.get_secret_value()):
            raise ValueError("expected the form 123456789:ABC-def... that @BotFather gives")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("telegram_api_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, or empty")
        return value.rstrip("/")

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.lower()
        if value not in {"text", "json"}:
            raise ValueError("must be text or json")
        return value

    @field_validator("web_listen")
    @classmethod
    def _optional_host_port(cls, value: str) -> str:
        return cls._host_port(value) if value else value

    @field_validator("webhook_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 0.0.0.0:8080")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis:// or rediss://, or be empty")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
            raise ValueError("1-64 characters of A-Z, a-z, 0-9, _ . : -")
        return value

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        if value not in LOCALES:
            raise ValueError(f"must be one of {', '.join(LOCALES)}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError("must be an IANA time zone name such as Asia/Shanghai")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @model_validator(mode="after")
    def _workers_need_a_webhook(self) -> Settings:
        if self.workers > 1 and not self.webhook_url:
            raise ValueError("WORKERS above 1 needs WEBHOOK_URL (several workers share one webhook port)")
        return self

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("WEBHOOK_SECRET is required when WEBHOOK_URL is set")
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule for secret_token)")
        return value

    @property
    def token(self) -> str:
        return self.bot_token.get_secret_value() if self.bot_token else ""

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.webhook_listen.rpartition(":")
        return host, int(port)

    @property
    def web_host_port(self) -> tuple[str, int] | None:
        """Where the web server listens without a webhook (WEB_LISTEN), or None: no web server then."""
        if not self.web_listen:
            return None
        host, _, port = self.web_listen.rpartition(":")
        return host, int(port)

    def sqlite_path(self) -> Path | None:
        """The database file for a SQLite URL (None for PostgreSQL or in-memory)."""
        prefix = "sqlite+aiosqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        path = self.database_url[len(prefix):].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise SettingsError with one line naming the first bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "WEBHOOK_SECRET"
        message = error["msg"].removeprefix("Value error, ")
        raise SettingsError(f"Setting {name} is invalid: {message}") from None
