"""Every models module, in the order their tables depend on each other. Alembic and privacy read this list."""

from models import (
    analytics,
    boards,
    checkin,
    flashsale,
    groupbuy,
    groups,
    inbox,
    invites,
    lottery,
    moderation,
    newcomers,
    points,
    roles,
    schedules,
    shop,
    spam_samples,
    stats,
    topics,
    votes,
)

# Modules that store data about a person provide export_user_data and erase_user_data.
MODULES = [groups, points, checkin, shop, invites, lottery, moderation, roles, votes, groupbuy, newcomers, flashsale,
           analytics, stats]

__all__ = ["MODULES", "analytics",
           "invites", "boards", "checkin", "groups", "points", "shop", "lottery", "moderation", "roles",
           "schedules", "topics", "votes", "groupbuy", "newcomers",
           "flashsale", "stats", "spam_samples", "inbox"]
