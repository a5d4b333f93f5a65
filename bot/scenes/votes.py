"""Demo scene: voting on the next group-buy pick, then the group buy. An admin opens a vote, two members vote
(the tally is edited in place), the admin closes it and the winner is announced, the admin opens a group buy for
the winner with one tap, three members join (order codes privately), and the success (成团) is announced once."""

from __future__ import annotations

import re

from bot.sandbox.world import SbMessage
from bot.scenes import Cast, settle


def latest(cast: Cast, needle: str) -> SbMessage | None:
    """The bot's newest message in the group with buttons whose text contains `needle` (other features post too)."""
    for message in reversed(cast.sb.messages(cast.group)):
        if needle in (message.text or "") and cast.sb.buttons(message):
            return message
    return None


async def scene_votes(cast: Cast) -> None:
    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/vote new 下期团购选品 | 2d | 补水面膜 39.9 | 精华 129 | 口红 89")
    await settle(sb)
    post = latest(cast, "下期团购选品")
    assert post is not None and len(sb.buttons(post)) == 3, "the vote post did not arrive"
    number = re.search(r"#(\d+)", post.text or "")
    assert number is not None, "the vote post shows no number"
    first = sb.buttons(post)[0][1] or ""
    await sb.press(cast.alice, post, first)
    await sb.press(cast.bob, post, first)
    await sb.press(cast.bob, post, first)  # a double tap: still one ballot
    await settle(sb)

    await sb.send(cast.group, cast.owner, f"/vote close {number.group(1)}")
    await settle(sb)
    announcement = latest(cast, "🏆")
    assert announcement is not None and "补水面膜" in (announcement.text or ""), "the winner was not announced"
    open_buy = sb.buttons(announcement)[0][1] or ""
    await sb.press(cast.owner, announcement, open_buy)
    await settle(sb)

    groupbuy = latest(cast, "🛒")
    assert groupbuy is not None and len(sb.buttons(groupbuy)) >= 2, "the group buy post did not arrive"
    join_one = sb.buttons(groupbuy)[0][1] or ""
    for person in (cast.alice, cast.bob, cast.mei):
        answer = await sb.press(person, groupbuy, join_one)
        assert "GB-" in (answer.text or ""), "no order code in the join alert"
    await settle(sb)
    said = [message.text or "" for message in sb.messages(cast.group)]
    assert sum("成团" in text and "🎉" in text for text in said) == 1, "the success was not announced once"
