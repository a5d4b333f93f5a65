"""The Runtime: everything one qunbot process keeps, typed, built in one place (bot/factory.py: create_runtime).

Handlers receive it as the `runtime` keyword (the Dispatcher's workflow data); scheduler jobs find it on their
JobContext; tests build one (tests/factories.py World) and replace a part by assigning it. Nothing else keeps
per-process state: no module-level caches, no values written onto the Bot, no string-keyed workflow data.

This is also the one place where a later multi-worker mode swaps its in-memory parts for shared ones: the admin
cache, the moderation paces and the invite watch are per process today (each is correct with several processes,
since the database stays the judge; a shared Redis-backed part would only save work), and a worker that must
agree with the others (flood and raid counters, cache invalidation) gets its shared part here, not in a handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import CatalogI18n
from bot.metrics import Metrics
from bot.settings import Settings
from models.analytics import ActivityDesk
from models.checkin import CheckinDesk
from models.groups import ArrivalDesk
from models.points import ChatDesk

if TYPE_CHECKING:  # the parts' classes live with the features that use them; the factory builds them
    from bot.shared_limits import SharedRedis
    from handlers.flashsale import SoldOutRounds
    from handlers.invites import InviteWatch
    from handlers.live_posts import LivePosts
    from handlers.moderation import ModerationState
    from handlers.newcomers import Lobby
    from handlers.points import ChatQuiet, TierAnnouncer
    from handlers.roles import AdminCache


@dataclass(eq=False)
class Runtime:
    """One process's settings, database, translations and in-memory parts (see the module docstring)."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    i18n: CatalogI18n

    # -- desks: what arrives together is written together (one transaction a burst) ---------------------------
    arrivals: ArrivalDesk  # every update's arrival: group, person, membership (bot/middlewares.py)
    checkins: CheckinDesk  # check-ins
    chat_points: ChatDesk  # chat points (the group-message pipeline's chat-points observer)
    activity: ActivityDesk  # activity facts: counted in memory, written once a minute (the pipeline's last step)

    # -- what the process remembers (each bounded; each safe to lose on restart) -------------------------------
    admins: AdminCache  # each chat's admins, refreshed every few minutes (handlers/roles.py)
    moderation: ModerationState  # compiled rules per group, members' recent pace, notices sent
    invites: InviteWatch  # pending invitees per group; whether joins arrive as chat_member updates
    tiers: TierAnnouncer  # tier-up announcements, one per group per window
    chat_quiet: ChatQuiet  # members who cannot earn chat points for a while (their messages skip the database)
    sold_out: SoldOutRounds  # flash-sale rounds known to be sold out, answered from memory
    lobby: Lobby  # newcomers' combined welcome/captcha post per group, and the individual-message budget

    # -- live posts (boards, tallies, sales, the shop, pinned leaderboards): edited in place, coalesced -------
    live_posts: LivePosts  # handlers/live_posts.py; handlers also find it as `live_posts`

    # Prometheus collectors on this process's own registry (bot/metrics.py), served at /metrics (bot/web.py).
    metrics: Metrics = field(default_factory=Metrics)

    # With REDIS_URL: the client every shared part uses (flood counters here; the bot's outbound limiter has its
    # own, bot/factory.py create_bot), and the switch to per-process behaviour while Redis fails.
    shared: SharedRedis | None = None

    # Untouched database sessions kept for the next updates (bot/middlewares.py: most updates never use theirs).
    spare_sessions: list[AsyncSession] = field(default_factory=list)
