"""Points, in four rooms:

- `ledger`: the append-only ledger and balances (award, spend, reverse, give, take; balance == sum(ledger) >= 0);
- `rules`: a group's points rules (PointsRules, /set parsing, rules_of);
- `earning`: chat, showcase and topic points within daily caps (ChatDesk batches chat messages);
- `ranking`: leaderboards, pinned boards and badges;
- `privacy`: export and erasure of what points keep about a person.

Every public name is re-exported here, so `from models import points; points.award(...)` and
`from models.points import X` keep working.
"""

from models.points.earning import (
    ChatAwardState,
    ChatDesk,
    ChatMessage,
    EarnResult,
    EarnStatus,
    PointsDailyCounter,
    ShowcaseDecision,
    ShowcaseVerdict,
    award_chat,
    award_chat_many,
    award_showcase,
    award_topic,
    decide_showcase,
    prune_daily_counters,
)
from models.points.ledger import (
    KEY_MAX,
    KINDS,
    REFERENCE_MAX,
    Award,
    BalanceView,
    InsufficientPoints,
    LedgerResult,
    PointsBalance,
    PointsEntry,
    award,
    award_many,
    balances_in_groups,
    get_balance,
    give,
    history,
    lock_member,
    reverse,
    spend,
    take,
)
from models.points.privacy import erase_user_data, export_user_data, row_dict
from models.points.ranking import (
    STREAK_BADGES,
    Badge,
    Period,
    PinnedBoard,
    RankRow,
    grant_badge,
    leaderboard,
    list_badges,
    period_start,
    pinned_boards,
    place_of,
    set_pinned_board,
)
from models.points.rules import (
    DEFAULT_TIER_NAMES,
    DEFAULT_TIERS,
    RULE_NAMES,
    GroupNotFound,
    InvalidRule,
    PointsError,
    PointsRules,
    Tier,
    get_rules,
    load_group,
    rules_of,
    set_rule,
)

__all__ = [
    "KEY_MAX", "KINDS", "REFERENCE_MAX", "Award", "BalanceView", "InsufficientPoints", "LedgerResult", "PointsBalance",
    "PointsEntry", "award", "award_many", "balances_in_groups", "get_balance", "give", "history", "lock_member",
    "reverse", "spend", "take",
    "DEFAULT_TIER_NAMES", "DEFAULT_TIERS", "RULE_NAMES", "GroupNotFound", "InvalidRule", "PointsError", "PointsRules",
    "Tier", "get_rules", "load_group", "rules_of", "set_rule",
    "ChatAwardState", "ChatDesk", "ChatMessage", "EarnResult", "EarnStatus", "PointsDailyCounter", "ShowcaseDecision",
    "ShowcaseVerdict", "award_chat", "award_chat_many", "award_showcase", "award_topic", "decide_showcase",
    "prune_daily_counters",
    "STREAK_BADGES", "Badge", "Period", "PinnedBoard", "RankRow", "grant_badge", "leaderboard", "list_badges",
    "period_start", "pinned_boards", "place_of", "set_pinned_board",
    "erase_user_data", "export_user_data", "row_dict",
]
