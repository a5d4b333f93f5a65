"""A group's points rules: the `PointsRules` stored as JSON in `Group.settings["points"]` (earning amounts, caps,
tiers), how an admin's `/set` text is parsed into them, and `rules_of`, which reads them off a loaded group row.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import transaction, utcnow
from models.groups import Group
from models.script import fold


class PointsError(Exception):
    """Base of the points errors."""



class InvalidRule(PointsError, ValueError):
    """`set_rule` got an unknown rule name or a value it cannot accept; `reason` says which."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason



class GroupNotFound(PointsError, LookupError):
    """No group row with this id."""



# -- rules -----------------------------------------------------------------------------------------------------


class Tier(BaseModel):
    """A tier reached at `threshold` lifetime points. `name` None means the handler's localized default."""

    threshold: int = PydanticField(ge=0)
    key: str = PydanticField(pattern=r"^[a-z0-9_]{1,16}$")
    name: str | None = PydanticField(default=None, max_length=32)


DEFAULT_TIERS = [
    Tier(threshold=0, key="normal"),
    Tier(threshold=500, key="silver"),
    Tier(threshold=2000, key="gold"),
    Tier(threshold=10000, key="diamond"),
]
# Default display names; the handler translates these keys, custom `Tier.name`s win.
DEFAULT_TIER_NAMES = {"normal": "普通", "silver": "银卡", "gold": "金卡", "diamond": "钻石"}


class PointsRules(BaseModel):
    """A group's earning rules, stored as JSON in `Group.settings["points"]`. Every field has a default."""

    checkin_base: int = PydanticField(default=10, ge=0)
    # Bonus paid on the day the streak reaches exactly this many days.
    checkin_streak_bonus: dict[int, int] = PydanticField(default_factory=lambda: {3: 5, 7: 20, 30: 100})
    checkin_first_n: int = PydanticField(default=3, ge=0)
    checkin_first_bonus: int = PydanticField(default=5, ge=0)
    makeup_enabled: bool = False
    makeup_cost: int = PydanticField(default=30, ge=0)
    chat_points: int = PydanticField(default=1, ge=0)
    chat_cooldown_s: int = PydanticField(default=60, ge=0)
    chat_min_length: int = PydanticField(default=5, ge=0)
    chat_daily_cap: int = PydanticField(default=20, ge=0)
    showcase_points: int = PydanticField(default=20, ge=0)
    showcase_hashtag: str = PydanticField(default="#晒单", min_length=1, max_length=32)
    showcase_auto_approve: bool = False
    showcase_daily_cap: int = PydanticField(default=40, ge=0)
    topic_points: int = PydanticField(default=5, ge=0)
    topic_daily_cap: int = PydanticField(default=10, ge=0)
    tiers: list[Tier] = PydanticField(default_factory=lambda: [tier.model_copy() for tier in DEFAULT_TIERS])

    @field_validator("checkin_streak_bonus")
    @classmethod
    def _bonus_table(cls, value: dict[int, int]) -> dict[int, int]:
        for day, bonus in value.items():
            if day < 1 or bonus < 0:
                raise ValueError("streak days must be >= 1 and bonuses >= 0")
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _tier_order(self) -> PointsRules:
        tiers = self.tiers
        if not tiers or tiers[0].threshold != 0:
            raise ValueError("the first tier must start at 0")
        if any(a.threshold >= b.threshold for a, b in zip(tiers, tiers[1:], strict=False)):
            raise ValueError("tier thresholds must increase")
        if len({tier.key for tier in tiers}) != len(tiers):
            raise ValueError("tier keys must be unique")
        return self

    def tier_for(self, lifetime_earned: int) -> str:
        """The key of the highest tier whose threshold `lifetime_earned` reaches."""
        current = self.tiers[0].key
        for tier in self.tiers:
            if lifetime_earned >= tier.threshold:
                current = tier.key
        return current

    def tier_rank(self, key: str) -> int | None:
        """The position of tier `key` (0 = lowest), or None if the group has no such tier."""
        for position, tier in enumerate(self.tiers):
            if tier.key == key:
                return position
        return None

    def tier_name(self, key: str) -> str:
        """The tier's custom name, else the default Chinese name, else the key."""
        for tier in self.tiers:
            if tier.key == key and tier.name:
                return tier.name
        return DEFAULT_TIER_NAMES.get(key, key)


RULE_NAMES = tuple(PointsRules.model_fields)
_TRUE = {"1", "true", "yes", "on", "y", "开", "是"}
_FALSE = {"0", "false", "no", "off", "n", "关", "否"}


def _parse_rule(name: str, raw: str) -> Any:
    raw = raw.strip()
    annotation = PointsRules.model_fields[name].annotation
    if annotation is bool:
        if fold(raw) in _TRUE:  # 開/关, ＯＮ
            return True
        if fold(raw) in _FALSE:
            return False
        raise InvalidRule(name, "expected on/off")
    if annotation is int:
        if not re.fullmatch(r"\d{1,9}", raw):
            raise InvalidRule(name, "expected a whole number >= 0")
        return int(raw)
    if annotation is str:
        return raw
    if name == "checkin_streak_bonus":
        table: dict[int, int] = {}
        if raw.lower() in ("", "none", "-", "off", "0"):
            return table
        for part in raw.replace("，", ",").split(","):
            match = re.fullmatch(r"\s*(\d{1,5})\s*[:：=]\s*(\d{1,9})\s*", part)
            if not match:
                raise InvalidRule(name, f"expected day:bonus pairs like 3:5,7:20, got {part.strip()!r}")
            day, bonus = int(match[1]), int(match[2])
            if day < 1 or day in table:
                raise InvalidRule(name, f"bad or repeated streak day {day}")
            table[day] = bonus
        return table
    if name == "tiers":
        tiers = []
        for part in raw.replace("，", ",").split(","):
            match = re.fullmatch(r"\s*([a-z0-9_]{1,16})\s*[:：=]\s*(\d{1,9})\s*(?:[:：]\s*(\S.{0,31}?))?\s*", part)
            if not match:
                raise InvalidRule(name, f"expected key:threshold[:name] like silver:500:银卡, got {part.strip()!r}")
            tiers.append({"key": match[1], "threshold": int(match[2]), "name": match[3] or None})
        return tiers
    raise InvalidRule(name, "cannot be set")  # pragma: no cover


async def load_group(session: AsyncSession, group_id: int, *, for_update: bool = False) -> Group:
    """The group row by its id (call inside a transaction). Raises GroupNotFound."""
    statement = select(Group).where(Group.id == group_id)  # type: ignore[arg-type]
    if for_update:
        statement = statement.with_for_update()
    group = await session.scalar(statement)
    if group is None:
        raise GroupNotFound(group_id)
    return group


def rules_of(group: Group) -> PointsRules:
    """The rules stored on a loaded group row (defaults for anything unset or unreadable). Shared and read-only:
    the same stored rules give the same object, parsed once (every chat message and check-in reads them).

    Settings are replaced, never changed in place (every writer builds a new dict), so a stored dict already
    seen is recognised by identity before its content is compared."""
    stored = (group.settings or _NOTHING).get("points") or _NOTHING
    seen = _SEEN_RULES.get(id(stored))
    if seen is not None and seen[0] is stored:
        return seen[1]
    key = json.dumps(stored, sort_keys=True, default=str)
    rules = _PARSED_RULES.get(key)
    if rules is None:
        try:
            rules = PointsRules.model_validate(stored)
        except ValidationError:
            rules = PointsRules()
        if len(_PARSED_RULES) >= 1024:
            _PARSED_RULES.clear()
        _PARSED_RULES[key] = rules
    if len(_SEEN_RULES) >= 1024:
        _SEEN_RULES.clear()
    _SEEN_RULES[id(stored)] = (stored, rules)  # holding the dict keeps its id from being reused
    return rules


_NOTHING: dict[str, Any] = {}
_SEEN_RULES: dict[int, tuple[dict[str, Any], PointsRules]] = {}
_PARSED_RULES: dict[str, PointsRules] = {}


async def get_rules(session: AsyncSession, group_id: int) -> PointsRules:
    """The group's points rules (defaults where the group set nothing). Raises GroupNotFound."""
    async with transaction(session):
        return rules_of(await load_group(session, group_id))


async def set_rule(session: AsyncSession, group_id: int, name: str, raw_value: str) -> PointsRules:
    """Set one rule from an admin's text and return the new rules.

    Accepted syntax: whole numbers >= 0; on/off for flags; "3:5,7:20,30:100" (or "none") for
    checkin_streak_bonus; "normal:0,silver:500:银卡,gold:2000" (key:threshold[:custom name]) for tiers.
    Raises InvalidRule(name, reason) for an unknown name or a value that fails validation; nothing is written then.
    """
    if name not in RULE_NAMES:
        raise InvalidRule(name, "unknown rule")
    value = _parse_rule(name, raw_value)
    async with transaction(session):
        group = await load_group(session, group_id, for_update=True)
        current = rules_of(group).model_dump(mode="json")
        current[name] = value
        try:
            rules = PointsRules.model_validate(current)
        except ValidationError as error:
            raise InvalidRule(name, error.errors()[0]["msg"]) from error
        settings = dict(group.settings or {})
        settings["points"] = rules.model_dump(mode="json")
        group.settings = settings
        group.updated_at = utcnow()
        return rules
