"""Newcomer checks in the database (SQLite and PostgreSQL): a join counts once, a rejoin gets a new challenge,
answers pass once, timeouts are claimed once, raid mode starts once and releases the people it held."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models import groups, newcomers
from models.db import utcnow
from models.groups import ChatSeen


async def make_group(session, chat_id: int = -100123, **settings) -> int:  # type: ignore[no-untyped-def]
    group = await groups.upsert_group(session, ChatSeen(chat_id, "Fans", "supergroup"), default_timezone="UTC")
    assert group.id is not None
    if settings:
        await newcomers.update_settings(session, group.id, **settings)
    return group.id


async def test_captcha_state_follows_a_join_and_its_answer(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True)
    assert await newcomers.captcha_state(session, group_id, 7) is None
    outcome = await newcomers.note_join(session, group_id, 7)
    assert outcome.action == "captcha" and outcome.check.status == "pending"
    assert await newcomers.captcha_state(session, group_id, 7) == "pending"
    check = outcome.check
    result = await newcomers.answer_check(session, check.id, 7, check.round, "ok")
    assert result.status == "passed" and result.chat_id == -100123
    assert await newcomers.captcha_state(session, group_id, 7) == "passed"


async def test_no_captcha_means_no_state(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session)
    outcome = await newcomers.note_join(session, group_id, 7)
    assert outcome.action == "welcome"
    assert await newcomers.captcha_state(session, group_id, 7) is None
    admin = await newcomers.note_join(session, await make_group(session, -100999, captcha=True), 8, needs_captcha=False)
    assert admin.action == "welcome"


async def test_the_same_join_counts_once(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True)
    first = await newcomers.note_join(session, group_id, 7)
    again = await newcomers.note_join(session, group_id, 7, join_message_id=55)  # the service message of it
    assert first.action == "captcha" and again.action == "duplicate"
    check = await newcomers.find_check(session, group_id, 7)
    assert check is not None and check.round == 1 and check.join_message_id == 55


async def test_leaving_and_rejoining_gets_a_new_challenge(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True)
    first_round = (await newcomers.note_join(session, group_id, 7)).check.round
    closed = await newcomers.note_leave(session, group_id, 7)
    assert closed is not None and closed.status == "failed"
    again = await newcomers.note_join(session, group_id, 7)
    assert again.action == "captcha" and again.check.round == first_round + 1
    stale = await newcomers.answer_check(session, again.check.id, 7, first_round, "ok")
    assert stale.status == "stale"
    # a passed member who leaves and comes back is challenged again too
    assert (await newcomers.answer_check(session, again.check.id, 7, again.check.round, "ok")).status == "passed"
    assert await newcomers.note_leave(session, group_id, 7) is None
    third = await newcomers.note_join(session, group_id, 7)
    assert third.action == "captcha" and await newcomers.captcha_state(session, group_id, 7) == "pending"


async def test_answers_pass_once_and_refuse_others(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True, kind="sum")
    check = (await newcomers.note_join(session, group_id, 7)).check
    challenge = newcomers.challenge_of(check)
    assert challenge.kind == "sum" and challenge.answer in challenge.options and len(challenge.options) == 4
    a, b = (int(part) for part in challenge.question.split("+"))
    assert int(challenge.answer) == a + b
    assert (await newcomers.answer_check(session, check.id, 8, check.round, challenge.answer)).status == "not_yours"
    wrong = next(option for option in challenge.options if option != challenge.answer)
    first = await newcomers.answer_check(session, check.id, 7, check.round, wrong)
    assert first.status == "wrong" and first.tries_left == 2
    assert (await newcomers.answer_check(session, check.id, 7, check.round, challenge.answer)).status == "passed"
    assert (await newcomers.answer_check(session, check.id, 7, check.round, challenge.answer)).status == "stale"


async def test_three_wrong_answers_fail(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True, kind="emoji")
    check = (await newcomers.note_join(session, group_id, 7)).check
    challenge = newcomers.challenge_of(check)
    assert len(challenge.options) == 6 and challenge.question == challenge.answer
    wrong = next(option for option in challenge.options if option != challenge.answer)
    statuses = [(await newcomers.answer_check(session, check.id, 7, check.round, wrong)).status for _ in range(4)]
    assert statuses == ["wrong", "wrong", "failed", "stale"]
    assert await newcomers.captcha_state(session, group_id, 7) == "failed"


async def test_timeouts_are_claimed_once(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True, timeout=60)
    await newcomers.note_join(session, group_id, 7, join_message_id=11)
    await newcomers.note_join(session, group_id, 8)
    assert await newcomers.expire_checks(session, now=utcnow() + timedelta(seconds=30)) == []
    later = utcnow() + timedelta(seconds=61)
    expired = await newcomers.expire_checks(session, now=later)
    assert sorted(item.user_id for item in expired) == [7, 8]
    assert {item.chat_id for item in expired} == {-100123}
    assert [item.join_message_id for item in expired if item.user_id == 7] == [11]
    assert await newcomers.expire_checks(session, now=later) == []
    assert await newcomers.captcha_state(session, group_id, 7) == "failed"
    # an answer after the deadline is refused
    check = await newcomers.find_check(session, group_id, 8)
    assert (await newcomers.answer_check(session, check.id, 8, check.round, "ok", now=later)).status == "stale"


async def test_a_burst_of_joins_starts_raid_mode_once(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True, raid_threshold=3, raid_minutes=10)
    now = utcnow()
    outcomes = [await newcomers.note_join(session, group_id, user, now=now) for user in range(1, 7)]
    assert [o.action for o in outcomes] == ["captcha"] * 3 + ["hold"] * 3
    assert [o.raid_started for o in outcomes] == [False, False, False, True, False, False]
    assert outcomes[3].raid_until == now + timedelta(minutes=10)
    assert await newcomers.raid_until(session, group_id, now=now) is not None
    assert await newcomers.captcha_state(session, group_id, 5) == "pending"  # held counts as not verified
    assert await newcomers.held_count(session, group_id) == 3
    released = await newcomers.end_raid(session, group_id)
    assert sorted(person.user_id for person in released) == [4, 5, 6]
    assert await newcomers.raid_until(session, group_id) is None
    assert await newcomers.captcha_state(session, group_id, 5) == "passed"
    # joins long after the burst do not start it again
    calm = await newcomers.note_join(session, group_id, 99, now=now + timedelta(minutes=5))
    assert calm.action == "captcha" and not calm.raid_started


async def test_manual_raid_mode_holds_newcomers(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, raid_threshold=0)
    started, until = await newcomers.start_raid(session, group_id)
    assert started and until > utcnow()
    again, _until = await newcomers.start_raid(session, group_id)
    assert not again
    assert (await newcomers.note_join(session, group_id, 7)).action == "hold"


async def test_join_request_challenge_then_join_is_verified(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True, timeout=600)
    opened = await newcomers.open_request_check(session, group_id, 7, 7)
    assert opened is not None
    check, challenge = opened
    assert check.via == "request" and check.deadline is not None
    assert check.deadline <= utcnow() + newcomers.REQUEST_WINDOW  # Telegram's 5-minute window to write to them
    repeat = await newcomers.open_request_check(session, group_id, 7, 7)
    assert repeat is not None and repeat[0].round == check.round
    assert (await newcomers.answer_check(session, check.id, 7, check.round, challenge.answer)).status == "passed"
    joined = await newcomers.note_join(session, group_id, 7, via_request=True)
    assert joined.action == "verified" and await newcomers.captcha_state(session, group_id, 7) == "passed"


async def test_join_request_without_captcha_is_left_to_admins(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session)
    assert await newcomers.open_request_check(session, group_id, 7, 7) is None


async def test_settings_are_validated(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session)
    settings = await newcomers.get_settings(session, group_id)
    assert (settings.captcha, settings.kind, settings.timeout, settings.raid_threshold) == (False, "button", 180, 20)
    with pytest.raises(newcomers.InvalidSetting):
        await newcomers.update_settings(session, group_id, kind="riddle")
    with pytest.raises(newcomers.InvalidSetting):
        await newcomers.update_settings(session, group_id, timeout=5)
    updated = await newcomers.update_settings(session, group_id, welcome="Hi {name}", raid_minutes=30)
    assert updated.welcome == "Hi {name}" and updated.raid_minutes == 30


async def test_export_and_erase(session) -> None:  # type: ignore[no-untyped-def]
    group_id = await make_group(session, captcha=True)
    await newcomers.note_join(session, group_id, 7)
    exported = await newcomers.export_user_data(session, 7)
    assert [row["status"] for row in exported["newcomer_checks"]] == ["pending"]
    assert "answer" not in exported["newcomer_checks"][0]
    await newcomers.erase_user_data(session, 7, pseudonym=-1)
    assert (await newcomers.export_user_data(session, 7))["newcomer_checks"] == []
