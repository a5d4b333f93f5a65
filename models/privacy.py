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


@long_running
async def export_everything(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Everything qunbot stores about this person, by module."""
    data: dict[str, Any] = {"user_id": user_id, "exported_at": utcnow().isoformat()}
    async with transaction(session):
        for module in MODULES:
            data[module.__name__.rsplit(".", 1)[-1]] = await module.export_user_data(session, user_id)
    return data


async def erase_everything(session: AsyncSession, user_id: int) -> None:
    """Erase the person everywhere in one transaction: dependents first, pseudonymizing shared rows."""
    pseudonym = new_pseudonym()
    async with transaction(session):
        for module in reversed(MODULES):
            await module.erase_user_data(session, user_id, pseudonym=pseudonym)
