"""Moderation models on SQLite and PostgreSQL (rules and knobs, warnings with expiry and the ladder, the audit log
and its evidence retention, privacy), and fuzzing of the command argument parsers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.factory import create_runtime
from bot.i18n import create_i18n
from bot.settings import load_settings
from handlers.moderation import UsageError, parse_action_args
from handlers.roles import split_target
from models import groups, moderation, roles
from models.db import utcnow
from models.moderation import InvalidKnob, format_duration, parse_duration, parse_ladder, step_for
from scheduler.moderation import erase_old_evidence
from scheduler.runner import JobContext


async def make_group(session) -> int:  # type: ignore[no-untyped-def]
    group = await groups.upsert_group(session, groups.ChatSeen(-100123, "Fans", "supergroup"),
                                      default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


# -- durations and parsers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("90s", 90), ("2w", 1_209_600), ("30分钟", 1800),
    ("1天", 86400), ("2小時", 7200), ("15", 900), ("1H", 3600),
])
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "0", "10x", "1s", "367d", "h", "m10", "1h-30m", "9" * 40, "１０ｍ", "10m!"])
def test_bad_durations_are_refused(text: str) -> None:
    assert parse_duration(text) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_duration_parser_never_raises_and_stays_in_telegram_range(text: str) -> None:
    seconds = parse_duration(text)
    assert seconds is None or moderation.MIN_DURATION <= seconds <= moderation.MAX_DURATION


I18N = create_i18n("en")
ODD = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(categories=["Cf", "Mn", "Zs", "So", "Nd", "Lo"]), max_size=80),
    st.builds(lambda a, b, c: f"{a} {b} {c}", st.sampled_from(["@bob", "@", "@1abc", "123456789", "tg://user?id=5",
                                                                 "-5", "１２３４５"]),
              st.sampled_from(["10m", "1h30m", "99999999d", "10x", "٣m", "", "2小时"]), st.text(max_size=20)),
    st.text(min_size=2000, max_size=6000),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ODD, st.booleans())
def test_command_argument_parsers_never_raise(args: str, with_duration: bool) -> None:
    with I18N.context(), I18N.use_locale("zh_Hans"):
        words = split_target(args)
        assert words.user_id is None or words.user_id > 0
        assert words.username is None or 4 <= len(words.username) <= 32
        try:
            parsed = parse_action_args(args, with_duration=with_duration)
        except UsageError as error:
            assert str(error)  # a localized usage line, never a traceback
            return
        assert len(parsed.reason) <= moderation.REASON_MAX
        assert parsed.seconds is None or moderation.MIN_DURATION <= parsed.seconds <= moderation.MAX_DURATION


def test_target_words() -> None:
    assert split_target("@bobby spam links") == split_target("@bobby spam links")
    assert split_target("@bobby spam").username == "bobby"
    assert split_target("123456789 2h").user_id == 123456789
    assert split_target("10m flooding").user_id is None and split_target("10m flooding").rest == "10m flooding"


def test_ladder_steps() -> None:
    ladder = parse_ladder("3:mute1h, 5:ban")
    assert [(s.at, s.action, s.seconds) for s in ladder] == [(3, "mute", 3600), (5, "ban", None)]
    assert [step_for(ladder, n) for n in (1, 2)] == [None, None]
    assert step_for(ladder, 4).action == "mute" and step_for(ladder, 9).action == "ban"  # type: ignore[union-attr]
    for bad in ("3:explode", "0:ban", "3:mute10x", "3:ban,3:kick"):
        with pytest.raises(InvalidKnob):
            parse_ladder(bad)


# -- rules -----------------------------------------------------------------------------------------------------


async def test_knobs_presets_and_lists(session) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(session)
    rules = await moderation.get_rules(session, gid)
    assert (rules.flood_messages, rules.flood_seconds, rules.links, rules.warn_expiry_days, rules.evidence_days) == (
        6, 10, True, 30, 7)
    rules = await moderation.set_knob(session, gid, "flood", "8")
    assert rules.flood_messages == 8
    rules = await moderation.set_knob(session, gid, "banned", "add re:刷单|兼职")
    rules = await moderation.set_knob(session, gid, "banned", "add *代购*")
    assert rules.banned_words == ["re:刷单|兼职", "*代购*"]
    rules = await moderation.set_knob(session, gid, "domains", "add https://www.Taobao.com/shop")
    assert rules.allowed_domains == ["taobao.com"]
    rules = await moderation.set_knob(session, gid, "ladder.flood", "2:mute10m,4:kick")
    assert rules.ladder_for("flood")[1].action == "kick" and rules.ladder_for("links")[0].at == 3
    rules = await moderation.set_knob(session, gid, "action.links", "delete")
    assert rules.action_for("links") == "delete"
    for name, value in (("flood", "-1"), ("links", "maybe"), ("banned", "add re:(a+)+$"), ("colour", "red"),
                        ("domains", "add not a domain"), ("flood_seconds", "0")):
        with pytest.raises(InvalidKnob):
            await moderation.set_knob(session, gid, name, value)
    rules = await moderation.apply_preset(session, gid, "strict")
    assert (rules.flood_messages, rules.newcomer_hours, rules.lock_forwards) == (5, 72, True)
    assert rules.banned_words == ["re:刷单|兼职", "*代购*"] and rules.rule_ladders == {}
    relaxed = await moderation.apply_preset(session, gid, "relaxed")
    assert relaxed.links is False
    assert (await moderation.apply_preset(session, gid, "standard")).links is True


# -- warnings and the audit log --------------------------------------------------------------------------------


async def test_one_warning_per_key_expiry_and_revocation(session) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(session)
    now = utcnow()
    first = await moderation.add_warning(session, gid, 7, key="msg:1", rule="links", now=now - timedelta(days=31))
    assert (first.added, first.count) == (True, 1)
    assert await moderation.count_warnings(session, gid, 7, now) == 0  # expired after 30 days
    results = [await moderation.add_warning(session, gid, 7, key=f"msg:{n}", rule="links", now=now)
               for n in range(2, 7)]
    assert [r.count for r in results] == [1, 2, 3, 4, 5]
    assert [r.step.action if r.step else None for r in results] == [None, None, "mute", "mute", "ban"]
    again = await moderation.add_warning(session, gid, 7, key="msg:6", rule="links", now=now)
    assert (again.added, again.count, again.step) == (False, 5, None)
    assert await moderation.revoke_warning(session, gid, 7, by=1) == 4
    assert await moderation.revoke_warning(session, gid, 8, by=1) is None


async def test_audit_evidence_is_erased_after_retention(session, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(session)
    first = await moderation.record_action(session, group_id=gid, actor_id=None, target_id=7, action="delete",
                                           rule="links", evidence="x" * 5000)
    await moderation.set_knob(session, gid, "evidence", "0")
    second = await moderation.record_action(session, group_id=gid, actor_id=1, target_id=7, action="warn",
                                            evidence="kept for no days")
    rows = {row.id: row for row in await moderation.recent_actions(session, gid)}
    assert len(rows[first].evidence or "") == moderation.EVIDENCE_MAX and rows[second].evidence is None
    assert await moderation.erase_expired_evidence(session, utcnow() + timedelta(days=6)) == 0
    assert await moderation.erase_expired_evidence(session, utcnow() + timedelta(days=8)) == 1
    runtime = create_runtime(load_settings(_env_file=None), sessionmaker, create_i18n("en"))
    assert await erase_old_evidence(JobContext(None, runtime)) == 0  # type: ignore[arg-type]


async def test_privacy_export_and_erase(session) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(session)
    await moderation.add_warning(session, gid, 7, key="k1", issued_by=9, reason="spam")
    await moderation.record_action(session, group_id=gid, actor_id=9, target_id=7, action="warn", evidence="spam")
    await roles.add_moderator(session, gid, 7, added_by=9)
    exported = await moderation.export_user_data(session, 7)
    assert exported["warnings"][0]["reason"] == "spam" and exported["actions"][0]["evidence"] == "spam"
    assert (await roles.export_user_data(session, 7))["moderator_of"][0]["chat_id"] == -100123
    await moderation.erase_user_data(session, 7, pseudonym=-5)
    await roles.erase_user_data(session, 7, pseudonym=-5)
    await roles.erase_user_data(session, 9, pseudonym=-6)
    assert await moderation.export_user_data(session, 7) == {"warnings": [], "actions": []}
    row = (await moderation.recent_actions(session, gid))[0]
    assert (row.target_id, row.evidence) == (-5, None)
    assert not await roles.is_bot_moderator(session, gid, 7)


async def test_moderators_are_unique_per_group(session) -> None:  # type: ignore[no-untyped-def]
    gid = await make_group(session)
    assert await roles.add_moderator(session, gid, 7, added_by=1)
    assert not await roles.add_moderator(session, gid, 7, added_by=1)
    assert await roles.is_bot_moderator(session, gid, 7) and not await roles.is_bot_moderator(session, gid, 8)
    assert [m.user_id for m in await roles.list_moderators(session, gid)] == [7]
    assert await roles.remove_moderator(session, gid, 7) and not await roles.remove_moderator(session, gid, 7)
