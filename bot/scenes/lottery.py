"""Demo scene: a provably fair lottery. An admin starts one (button entry, 1 winner, drawn at 3 entrants, for
members who checked in today); the post shows the SHA-256 of the secret seed. The admin, who has not checked
in, is told privately why they cannot enter; three members enter; the third entry draws it: the post reveals
the seed and the entrant list is attached, so anyone can recompute the winner."""

from __future__ import annotations

import hashlib
import re

from bot.scenes import Cast, settle

HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


async def scene_lottery(cast: Cast) -> None:
    sb = cast.sb
    for person in (cast.alice, cast.bob, cast.mei):  # (already done if the check-in scene ran today: no effect)
        await sb.send(cast.group, person, "签到")
    await sb.send(cast.group, cast.owner, "/lottery new 免单一份 winners=1 max=3 checkin=yes")
    await settle(sb)
    post = sb.last_message(cast.group)
    assert post is not None and sb.buttons(post), "the lottery post did not arrive"
    commitment = HEX64.search(post.text or "")
    assert commitment is not None, "the lottery post shows no seed commitment"
    enter = sb.buttons(post)[0][1] or ""
    refused = await sb.press(cast.owner, post, enter)  # has not checked in today: told why, privately
    assert refused.show_alert and refused.text, "the ineligible member was not told why"
    for person in (cast.alice, cast.bob, cast.mei):
        await sb.press(person, post, enter)
    await settle(sb)
    drawn = next(message for message in sb.messages(cast.group) if message.message_id == post.message_id)
    revealed = [value for value in HEX64.findall(drawn.text or "") if value != commitment.group(0)]
    assert any(hashlib.sha256(value.encode()).hexdigest() == commitment.group(0) for value in revealed), \
        "the result did not reveal the committed seed"
