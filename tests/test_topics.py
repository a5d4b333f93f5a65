"""The topic pool: cleaning and limits, the starter packs, rotation without repeats until the pool is used up,
and topic posts found again for replies."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from models import groups, topics
from models.db import utcnow
from models.groups import ChatSeen


async def new_group(session, chat_id: int = -100) -> int:  # type: ignore[no-untyped-def]
    chat = ChatSeen(chat_id, "Fans", "supergroup")
    group = await groups.upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


def test_cleaning_and_file_parsing() -> None:
    assert topics.clean_topic("  1. 你最喜欢的   夏季单品？ ") == "你最喜欢的 夏季单品？"
    assert topics.clean_topic("- Best buy?") == "Best buy?" and topics.clean_topic("2、好物推荐") == "好物推荐"
    with pytest.raises(topics.TopicError):
        topics.clean_topic("   ")
    with pytest.raises(topics.TopicError):
        topics.clean_topic("x" * (topics.TOPIC_MAX_LENGTH + 1))
    assert topics.decode_topic_file("\ufeff第一\n".encode()) == "第一\n"
    assert topics.decode_topic_file("繁體話題".encode("gb18030")) == "繁體話題"
    with pytest.raises(topics.TopicError):
        topics.decode_topic_file(b"x" * (topics.IMPORT_MAX_BYTES + 1))
    assert topics.topic_lines("a\n\n# comment\n  b  \n") == ["a", "  b  "]


def test_starter_packs_cover_every_locale() -> None:
    for locale in ("zh_Hans", "zh_Hant", "en"):
        pack = topics.starter_topics(locale)
        assert len(pack) >= 15 and len(set(pack)) == len(pack)
        assert all(topics.clean_topic(text) == text for text in pack)
    assert topics.starter_topics(None) == topics.starter_topics("zh_Hans")


async def test_add_skips_duplicates_invalid_lines_and_respects_the_pool_limit(session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    gid = await new_group(session)
    result = await topics.add_topics(session, gid, ["A?", "B?", "A?", "", "x" * 300])
    assert (result.added, result.duplicates, result.invalid, result.over_limit) == (2, 1, 2, 0)
    again = await topics.add_topics(session, gid, ["B?", "C?"])
    assert (again.added, again.duplicates) == (1, 1)
    monkeypatch.setattr(topics, "POOL_MAX", 4)
    full = await topics.add_topics(session, gid, ["D?", "E?", "F?"])
    assert (full.added, full.over_limit) == (1, 2)
    assert [t.text for t in await topics.list_topics(session, gid)] == ["A?", "B?", "C?", "D?"]
    first = (await topics.list_topics(session, gid))[0]
    assert await topics.remove_topic(session, gid, first.id) is True
    assert await topics.remove_topic(session, gid, first.id) is False


async def test_rotation_uses_every_topic_once_per_round(session) -> None:  # type: ignore[no-untyped-def]
    gid = await new_group(session)
    await topics.add_topics(session, gid, [f"Q{n}?" for n in range(5)])
    day = date(2026, 11, 23)
    rounds: list[list[str]] = []
    for round_number in range(3):
        picked = []
        for n in range(5):
            topic = await topics.next_topic(session, gid, "en")
            picked.append(topic.text)
            await topics.record_post(session, gid, topic.id, 1000 + round_number * 10 + n, day)
        rounds.append(picked)
    for picked in rounds:
        assert sorted(picked) == [f"Q{n}?" for n in range(5)]  # no repeats until the pool is used up
    for earlier, later in zip(rounds, rounds[1:], strict=False):
        assert later[0] != earlier[-1]  # a new round never starts with the topic just posted
    assert await topics.round_progress(session, gid) == (5, 5)


async def test_an_empty_pool_gets_the_starter_pack_of_the_groups_language(session) -> None:  # type: ignore[no-untyped-def]
    gid = await new_group(session)
    topic = await topics.next_topic(session, gid, "zh_Hant")
    assert topic.text in topics.starter_topics("zh_Hant")
    assert len(await topics.list_topics(session, gid)) == len(topics.starter_topics("zh_Hant"))
    assert await topics.round_progress(session, gid) == (1, len(topics.starter_topics("zh_Hant")))
    await topics.release_topic(session, topic.id)
    assert (await topics.round_progress(session, gid))[0] == 0


async def test_topic_posts_are_found_for_replies_then_forgotten(session) -> None:  # type: ignore[no-untyped-def]
    gid = await new_group(session)
    other = await new_group(session, -200)
    topic = await topics.next_topic(session, gid, "en")
    post_id = await topics.record_post(session, gid, topic.id, 555, date(2026, 11, 23))
    assert await topics.record_post(session, gid, topic.id, 555, date(2026, 11, 23)) == post_id
    since = utcnow() - timedelta(days=1)
    found = await topics.find_post(session, gid, 555, since=since)
    assert found is not None and found.id == post_id and found.topic_id == topic.id
    assert await topics.find_post(session, other, 555, since=since) is None
    assert await topics.find_post(session, gid, 556, since=since) is None
    assert await topics.find_post(session, gid, 555, since=utcnow() + timedelta(seconds=5)) is None
    await topics.remove_topic(session, gid, topic.id)  # the post outlives its topic
    assert (await topics.find_post(session, gid, 555, since=since)).topic_id is None
    assert await topics.prune_posts(session, utcnow() + timedelta(seconds=5)) == 1
