"""Activity facts (no message text) and the KPIs computed from them and the features' own tables."""

from models.analytics.facts import (
    COUNTERS,
    EVENT_KINDS,
    JOIN_SOURCES,
    MESSAGE_KINDS,
    ActivityDesk,
    GroupDay,
    HourFact,
    MemberDay,
    MembershipEvent,
    erase_user_data,
    export_user_data,
    prune_facts,
    record_membership,
    write_facts,
)
from models.analytics.history import generate_history
from models.analytics.kpis import (
    KPI_DEFINITIONS,
    ActivityKpis,
    Cohort,
    CommerceKpis,
    EconomyKpis,
    EngagementKpis,
    Figure,
    InviteKpis,
    Kpis,
    MembersKpis,
    ModerationKpis,
    Poster,
    RetentionKpis,
    compute_kpis,
    group_kpis,
)
from models.analytics.period import Period

__all__ = [
    "COUNTERS", "EVENT_KINDS", "JOIN_SOURCES", "KPI_DEFINITIONS", "MESSAGE_KINDS", "ActivityDesk", "ActivityKpis",
    "Cohort", "CommerceKpis", "EconomyKpis", "EngagementKpis", "Figure", "GroupDay", "HourFact", "InviteKpis", "Kpis",
    "MemberDay", "MembersKpis", "MembershipEvent", "ModerationKpis", "Period", "Poster", "RetentionKpis",
    "compute_kpis", "erase_user_data", "export_user_data", "generate_history", "group_kpis", "prune_facts",
    "record_membership", "write_facts",
]
