"""A person's right to see and erase their data (PIPL, GDPR): one export and one erase across every module."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.all import MODULES
from models.db import long_running, transaction, utcnow


def new_pseudonym() -> int:
    """A random negative id that stands in for an erased person in rows others depend on (ledgers, orders).

    Negative and below every Telegram chat id (-100 * 10**12 and up), so it can never be a real user or chat.
    """
    return -(2**62) - secrets.randbelow(2**61)


# Fields that hold a person's Telegram id (or an erased person's pseudonym) in the rows an export is made of.
PERSON_FIELDS = frozenset({
    "user_id", "actor_id", "moderator_id", "target_id", "inviter_id", "invitee_id",
    "added_by", "cancelled_by", "closed_by", "created_by", "issued_by", "revoked_by", "used_by",
})
SOMEONE_ELSE = "someone else"


@long_running
async def export_everything(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Everything qunbot stores about this person, by module. Another person's id never leaves: where a row
    names someone else (the admin who gave points, the staff who verified a coupon, the member one invited), it
    says "someone else"."""
    data: dict[str, Any] = {"user_id": user_id, "exported_at": utcnow().isoformat()}
    async with transaction(session):
        for module in MODULES:
            data[module.__name__.rsplit(".", 1)[-1]] = await module.export_user_data(session, user_id)
    return _only_theirs(data, user_id)


def _only_theirs(value: Any, user_id: int) -> Any:
    if isinstance(value, dict):
        return {
            key: SOMEONE_ELSE if key in PERSON_FIELDS and isinstance(item, int) and item != user_id
            else _only_theirs(item, user_id)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_only_theirs(item, user_id) for item in value]
    return value


async def erase_everything(session: AsyncSession, user_id: int) -> None:
    """Erase the person everywhere in one transaction: dependents first, pseudonymizing shared rows."""
    pseudonym = new_pseudonym()
    async with transaction(session):
        for module in reversed(MODULES):
            await module.erase_user_data(session, user_id, pseudonym=pseudonym)
