"""Demo scene: invite rewards. Alice gets her personal invite link (privately), a friend joins through it and says
hello, the vesting job runs as if the 24-hour hold were over, and Alice is paid; /invites shows it.

(The scene expects captcha off in the demo group, the default; with captcha on, the friend would first have to
pass it.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.scenes import Cast, run_job, settle
from models.db import utcnow
from models.invites import Vested, link_name


async def run_vesting(cast: Cast, now: datetime) -> list[Vested]:
    """Run the vesting job once, directly, with the bot's own settings (database and sandbox)."""
    from scheduler.invites import vest_invitations

    return await run_job(cast, vest_invitations, now=now)


async def scene_invites(cast: Cast) -> None:
    sb = cast.sb
    await sb.send(sb.private_chat(cast.alice), cast.alice, "/start")  # so her link arrives privately
    await settle(sb)
    await sb.send(cast.group, cast.alice, "/invite")
    await settle(sb)
    link = next((one for one in cast.group.invite_links.values() if one.name == link_name(cast.alice.id)), None)
    assert link is not None, "Alice's invite link was not created"
    friend = sb.add_user("小王", username="xiaowang", language_code="zh-hans")
    await sb.join(cast.group, friend, invite_link=link)
    await settle(sb)
    await sb.send(cast.group, friend, "大家好,我是 Alice 推荐来的小王!")
    await settle(sb)
    vested = await run_vesting(cast, utcnow() + timedelta(hours=25))
    assert [(v.inviter_id, v.invitee_id) for v in vested] == [(cast.alice.id, friend.id)], "the invite did not vest"
    await settle(sb)
    await sb.send(cast.group, cast.alice, "/invites")
    await settle(sb)
