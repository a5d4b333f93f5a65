"""The demo's cast and helpers. Each feature's scene lives in `bot/scenes/<feature>.py` and is listed in
`bot.demo.SCENES`, so a newcomer sees every capability in one transcript."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.sandbox import Sandbox
from bot.sandbox.world import SbChat, SbUser
from bot.settings import Settings


async def settle(sb: Sandbox) -> None:
    """Wait until the bot has answered: updates confirmed and no call for a little over the 1 s per-chat pace."""
    await sb.settle(timeout=15, quiet=1.1)


class Cast:
    """The people and chats of the demo."""

    def __init__(self, sb: Sandbox, settings: Settings | None = None) -> None:
        self.sb = sb
        self.settings = settings  # the bot's settings (database, sandbox URL), for scenes that run a job directly
        self.owner: SbUser = sb.add_user("Lin", username="lin_shop", language_code="zh-hans")
        self.alice: SbUser = sb.add_user("Alice", username="alice", language_code="zh-hans")
        self.bob: SbUser = sb.add_user("Bob", username="bob", language_code="en")
        self.mei: SbUser = sb.add_user("美玲", username="meiling", language_code="zh-hant")
        self.group: SbChat = sb.create_group("Bloom 美妆粉丝群", owner=self.owner, supergroup=True)

    async def new_group(self, title: str) -> SbChat:
        """Another of the brand's groups, with the bot as admin and the three members in it, as `self.group`.

        Telegram allows a bot 20 messages a minute in one group; the demo's later scenes each get a group of their
        own (as a brand runs several), so the transcript is not held up by that limit."""
        sb = self.sb
        self.group = sb.create_group(title, owner=self.owner, supergroup=True)
        await sb.add_bot(self.group, by=self.owner, admin=True)
        for person in (self.alice, self.bob, self.mei):
            await sb.join(self.group, person)
        await settle(sb)
        return self.group


Scene = Callable[[Cast], Awaitable[None]]
T = TypeVar("T")


async def run_job(cast: Cast, job: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run one scheduler job once, directly, as `qunbot scheduler` would: with the bot's own settings (its database
    and the sandbox), `job(context, *args, **kwargs)`."""
    from bot.factory import create_bot, create_runtime
    from models.db import create_engine, create_sessionmaker
    from scheduler.runner import JobContext

    settings = cast.settings
    assert settings is not None, "a scene that runs a job needs the bot's settings (Cast(sb, settings))"
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    bot = create_bot(settings, sessionmaker=sessionmaker)
    try:
        return await job(JobContext(bot, create_runtime(settings, sessionmaker)), *args, **kwargs)
    finally:
        await bot.session.close()
        await engine.dispose()


