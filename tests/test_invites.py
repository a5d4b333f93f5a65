"""Invite rewards (models): attribution by the link used, vesting after the hold, voiding, clawback (also of spent
points), rejoins and self-invites paying nothing, milestones, captcha, rules, leaderboards and privacy. Every test
runs on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import invites, points
from models.groups import ChatSeen, upsert_group
from models.invites import Invitation, InviteLink, KnownMember
from models.points import PointsEntry

CHAT_IDS = itertools.count(-1004000000000, -1)
NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
ALICE, BOB, CAROL, DAN = 501, 502, 503, 504
HOLD = timedelta(hours=24)


async def make_group(session: AsyncSession, **rules: str) -> int:
    chat = ChatSeen(next(CHAT_IDS), "Fans", "supergroup")
    group = await upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    for name, value in rules.items():
        await invites.set_rule(session, group.id, name, value)
    return group.id


async def give_link(session: AsyncSession, group_id: int, user_id: int) -> str:
    return await invites.save_link(session, group_id, user_id, f"https://t.me/+link{group_id}x{user_id}", now=NOW)


async def balance(session: AsyncSession, group_id: int, user_id: int) -> int:
    return (await points.get_balance(session, group_id, user_id)).balance


async def invitation(session: AsyncSession, group_id: int, invitee_id: int) -> Invitation:
    row = await session.scalar(
        select(Invitation)
        .where(Invitation.group_id == group_id, Invitation.invitee_id == invitee_id)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )
    assert row is not None
    await session.commit()
    return row


async def test_a_link_is_stored_once_per_member_and_reused(session: AsyncSession) -> None:
    group_id = await make_group(session)
    assert await invites.link_of(session, group_id, ALICE) is None
    first = await give_link(session, group_id, ALICE)
    # A second /invite racing the first: the stored link wins.
    assert await invites.save_link(session, group_id, ALICE, "https://t.me/+other") == first
    assert await invites.link_of(session, group_id, ALICE) == first
    assert await invites.inviter_of_link(session, group_id, first) == ALICE
    with pytest.raises(ValueError):
        await invites.save_link(session, group_id, BOB, first)  # a link string never changes owner
    assert len(invites.link_name(-(2**63))) <= 32  # Bot API: invite link names are 0-32 characters


async def test_vesting_after_the_hold_and_messages_pays_once(session: AsyncSession) -> None:
    group_id = await make_group(session)
    link = await give_link(session, group_id, ALICE)
    joined = await invites.record_join(session, group_id, CAROL, link, now=NOW)
    assert joined.status == "pending" and joined.invitation is not None and joined.invitation.inviter_id == ALICE

    assert await invites.vest_due(session, now=NOW + HOLD) == []  # no message yet
    assert await invites.count_message(session, group_id, CAROL)
    assert await invites.vest_due(session, now=NOW + HOLD - timedelta(minutes=1)) == []  # the hold is not over
    vested = await invites.vest_due(session, now=NOW + HOLD)
    assert [(v.inviter_id, v.invitee_id, v.reward) for v in vested] == [(ALICE, CAROL, 50)]
    assert await invites.vest_due(session, now=NOW + HOLD * 2) == []
    assert await balance(session, group_id, ALICE) == 50
    row = await invitation(session, group_id, CAROL)
    assert row.status == "vested" and row.reward == 50 and row.vested_at == NOW + HOLD
    assert not await invites.count_message(session, group_id, CAROL)  # no longer pending: nothing counted


async def test_join_leave_rejoin_pays_nothing(session: AsyncSession) -> None:
    group_id = await make_group(session)
    link = await give_link(session, group_id, ALICE)
    await invites.record_join(session, group_id, CAROL, link, now=NOW)
    await invites.count_message(session, group_id, CAROL)
    left = await invites.record_leave(session, group_id, CAROL, now=NOW + timedelta(hours=1))
    assert left.status == "voided"
    again = await invites.record_join(session, group_id, CAROL, link, now=NOW + timedelta(hours=2))
    assert again.status == "duplicate"
    await invites.count_message(session, group_id, CAROL)
    assert await invites.vest_due(session, now=NOW + HOLD * 3) == []
    assert await balance(session, group_id, ALICE) == 0
    row = await invitation(session, group_id, CAROL)
    assert (row.status, row.reason) == ("void", "left")


async def test_a_former_member_joining_by_link_is_a_rejoin(session: AsyncSession) -> None:
    group_id = await make_group(session)
    link = await give_link(session, group_id, ALICE)
    # Dan joined without a link and left; Bob earned points here before (he took part): both were members.
    await invites.record_join(session, group_id, DAN, None, now=NOW)
    await invites.record_leave(session, group_id, DAN, now=NOW)
    await points.award(session, group_id, BOB, 5, "chat", "chat:bob", now=NOW)
    for person in (DAN, BOB):
        outcome = await invites.record_join(session, group_id, person, link, now=NOW + timedelta(hours=1))
        assert outcome.status == "void" and outcome.invitation is not None
        assert outcome.invitation.reason == "rejoin"
    assert (await invites.record_join(session, group_id, ALICE, link, now=NOW)).invitation.reason == "self"  # type: ignore[union-attr]
    assert (await invites.record_join(session, group_id, 999, link, invitee_is_bot=True, now=NOW)).invitation.reason == "bot"  # type: ignore[union-attr]  # noqa: E501
    assert await invites.vest_due(session, now=NOW + HOLD * 2) == []


async def test_two_inviters_the_link_actually_used_wins_and_a_redelivery_counts_once(session: AsyncSession) -> None:
    group_id = await make_group(session)
    await give_link(session, group_id, ALICE)
    bobs = await give_link(session, group_id, BOB)
    first = await invites.record_join(session, group_id, CAROL, bobs, now=NOW)
    second = await invites.record_join(session, group_id, CAROL, bobs, now=NOW)
    assert (first.status, second.status) == ("pending", "duplicate")
    assert first.invitation is not None and first.invitation.inviter_id == BOB
    count = await session.scalar(select(func.count()).select_from(Invitation))
    await session.commit()
    assert count == 1
    unknown = await invites.record_join(session, group_id, DAN, "https://t.me/+someone-elses", now=NOW)
    assert unknown.status == "unattributed"


async def test_leaving_after_vesting_claws_back_within_the_window_only(session: AsyncSession) -> None:
    group_id = await make_group(session, clawback_days="7", min_messages="0")
    link = await give_link(session, group_id, ALICE)
    await invites.record_join(session, group_id, CAROL, link, now=NOW)
    await invites.record_join(session, group_id, DAN, link, now=NOW)
    assert len(await invites.vest_due(session, now=NOW + HOLD)) == 2
    assert await balance(session, group_id, ALICE) == 100

    left = await invites.record_leave(session, group_id, CAROL, now=NOW + HOLD + timedelta(days=1))
    assert (left.status, left.taken, left.debt) == ("reversed", 50, 0)
    assert (await invites.record_leave(session, group_id, CAROL, now=NOW + HOLD + timedelta(days=1))).status == "none"
    later = await invites.record_leave(session, group_id, DAN, now=NOW + HOLD + timedelta(days=8))
    assert later.status == "kept"
    assert await balance(session, group_id, ALICE) == 50
    keys = set((await session.scalars(select(PointsEntry.key).where(PointsEntry.user_id == ALICE))).all())  # type: ignore[call-overload]
    await session.commit()
    assert keys == {f"invite:{left.invitation.id}", f"reverse:invite:{left.invitation.id}",  # type: ignore[union-attr]
                    f"invite:{later.invitation.id}"}  # type: ignore[union-attr]


async def test_clawback_of_spent_points_takes_what_is_left_and_records_the_debt(session: AsyncSession) -> None:
    group_id = await make_group(session, min_messages="0", reward="50")
    link = await give_link(session, group_id, ALICE)
    await invites.record_join(session, group_id, CAROL, link, now=NOW)
    await invites.vest_due(session, now=NOW + HOLD)
    await points.spend(session, group_id, ALICE, 30, "redeem", "redeem:mug", now=NOW + HOLD)
    left = await invites.record_leave(session, group_id, CAROL, now=NOW + HOLD + timedelta(hours=1))
    assert (left.status, left.taken, left.debt) == ("reversed", 20, 30)
    assert await balance(session, group_id, ALICE) == 0
    row = await invitation(session, group_id, CAROL)
    assert (row.status, row.clawed_back, row.debt) == ("reversed", 20, 30)
    stats = await invites.inviter_stats(session, group_id, ALICE)
    assert (stats.reversed, stats.points, stats.debt, stats.void_rate) == (1, 30, 30, 1.0)


async def test_milestone_bonus_is_paid_once(session: AsyncSession) -> None:
    group_id = await make_group(session, min_messages="0", reward="10", milestones="2:100")
    link = await give_link(session, group_id, ALICE)
    for person in (CAROL, DAN):
        await invites.record_join(session, group_id, person, link, now=NOW)
    vested = await invites.vest_due(session, now=NOW + HOLD)
    assert [v.bonuses for v in vested] == [(), ((2, 100),)]
    assert await balance(session, group_id, ALICE) == 120
    # One leaves (clawed back) and another newcomer brings the count back to 2: no second bonus.
    await invites.record_leave(session, group_id, DAN, now=NOW + HOLD)
    await invites.record_join(session, group_id, 777, link, now=NOW + HOLD)
    again = await invites.vest_due(session, now=NOW + HOLD * 2)
    assert [v.bonuses for v in again] == [()]
    assert await balance(session, group_id, ALICE) == 120


async def test_captcha_pending_waits_failed_voids_passed_vests(session: AsyncSession) -> None:
    group_id = await make_group(session, min_messages="0")
    link = await give_link(session, group_id, ALICE)
    states = {CAROL: "pending", DAN: "failed", 777: "passed"}
    for person in states:
        await invites.record_join(session, group_id, person, link, now=NOW)

    async def captcha(_session: AsyncSession, _group_id: int, user_id: int) -> str | None:
        return states[user_id]

    vested = await invites.vest_due(session, now=NOW + HOLD, captcha=captcha)
    assert [v.invitee_id for v in vested] == [777]
    assert (await invitation(session, group_id, CAROL)).status == "pending"
    dan = await invitation(session, group_id, DAN)
    assert (dan.status, dan.reason) == ("void", "captcha")
    assert invites.captcha_checker() is None or callable(invites.captcha_checker())


async def test_a_newcomer_who_never_qualifies_expires(session: AsyncSession) -> None:
    group_id = await make_group(session)
    link = await give_link(session, group_id, ALICE)
    await invites.record_join(session, group_id, CAROL, link, now=NOW)
    assert await invites.vest_due(session, now=NOW + timedelta(days=invites.PENDING_DAYS + 1)) == []
    row = await invitation(session, group_id, CAROL)
    assert (row.status, row.reason) == ("void", "expired")


async def test_rules_have_defaults_and_reject_bad_values(session: AsyncSession) -> None:
    group_id = await make_group(session)
    rules = await invites.get_rules(session, group_id)
    assert (rules.reward, rules.hold_hours, rules.min_messages, rules.clawback_days) == (50, 24, 1, 7)
    assert rules.milestones == {5: 50, 10: 150, 50: 1000}
    assert (await invites.set_rule(session, group_id, "hold_hours", "48")).hold_hours == 48
    assert (await invites.set_rule(session, group_id, "milestones", "10:5，3:1")).milestones == {3: 1, 10: 5}
    assert (await invites.set_rule(session, group_id, "milestones", "none")).milestones == {}
    for name, value in (("reward", "-1"), ("reward", "lots"), ("milestones", "0:5"), ("nope", "1"),
                        ("hold_hours", "99999")):
        with pytest.raises(invites.InvalidRule):
            await invites.set_rule(session, group_id, name, value)
    assert (await invites.get_rules(session, group_id)).hold_hours == 48


async def test_leaderboard_and_void_rates(session: AsyncSession) -> None:
    group_id = await make_group(session, min_messages="0")
    alices, bobs = await give_link(session, group_id, ALICE), await give_link(session, group_id, BOB)
    for person in (601, 602):
        await invites.record_join(session, group_id, person, alices, now=NOW)
    await invites.record_join(session, group_id, 603, bobs, now=NOW)
    await invites.record_join(session, group_id, 604, bobs, now=NOW)
    await invites.record_leave(session, group_id, 604, now=NOW + timedelta(hours=1))
    await invites.record_join(session, group_id, 605, bobs, now=NOW + HOLD)
    await invites.vest_due(session, now=NOW + HOLD)
    board = await invites.leaderboard(session, group_id)
    assert [(row.inviter_id, row.vested, row.place) for row in board] == [(ALICE, 2, 1), (BOB, 1, 2)]
    top = {row.inviter_id: row for row in await invites.top_inviters(session, group_id)}
    assert (top[BOB].vested, top[BOB].pending, top[BOB].void, top[BOB].void_rate) == (1, 1, 1, 0.5)
    assert top[ALICE].void_rate == 0.0
    mine = await invites.my_invitations(session, group_id, BOB)
    assert [row.invitee_id for row in mine] == [605, 604, 603]


async def test_export_and_erase(session: AsyncSession) -> None:
    group_id = await make_group(session, min_messages="0")
    link = await give_link(session, group_id, ALICE)
    await invites.record_join(session, group_id, CAROL, link, now=NOW)
    exported = await invites.export_user_data(session, ALICE)
    assert exported["invite_links"][0]["invite_link"] == link
    assert exported["invitations"][0]["invitee_id"] == CAROL
    assert (await invites.export_user_data(session, CAROL))["invitations"][0]["inviter_id"] == ALICE

    await invites.erase_user_data(session, ALICE, pseudonym=-7)
    await invites.erase_user_data(session, CAROL, pseudonym=-8)
    async with session.begin():
        assert (await session.scalars(select(InviteLink))).all() == []
        assert (await session.scalars(select(KnownMember).where(KnownMember.user_id == CAROL))).all() == []  # type: ignore[arg-type]
        row = (await session.scalars(select(Invitation))).one()
        assert (row.inviter_id, row.invitee_id, row.invite_link) == (-7, -8, "")
    assert await invites.leaderboard(session, group_id) == []
