"""Demo scene: newcomers. The owner turns the captcha on and sets a welcome; a newcomer joins, is held (restricted)
with a button only they may press, presses it, and is welcomed. Then anti-raid: the owner switches raid mode on,
a newcomer is held without a challenge, the scheduler's job runs as if raid mode had run out, posts the held
newcomers' challenge, and pressing it lets them in; the owner ends raid mode. The captcha is switched off again
at the end, so later scenes' joins are not held."""

from __future__ import annotations

from datetime import timedelta

from bot.scenes import Cast, run_job, settle
from models.db import utcnow


async def scene_newcomers(cast: Cast) -> None:
    from scheduler.newcomers import settle_raids

    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/captcha on")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/setwelcome 欢迎 {mention} 加入 {group}!发送 签到 领取新人积分 🎁")
    await settle(sb)
    newcomer = sb.add_user("小李", username="xiaoli", language_code="zh-hans")
    await sb.join(cast.group, newcomer)
    await settle(sb)
    assert sb.member_status(cast.group, newcomer).status == "restricted", "the newcomer was not held"
    challenge = sb.last_message(cast.group)
    assert challenge is not None and sb.buttons(challenge), "the captcha did not arrive"
    await sb.press(newcomer, challenge, sb.buttons(challenge)[0][1] or "")
    await settle(sb)
    assert sb.member_status(cast.group, newcomer).status == "member", "the newcomer was not released"
    welcome = sb.last_message(cast.group)
    assert welcome is not None and "小李" in (welcome.text or ""), "the welcome did not arrive"

    await sb.send(cast.group, cast.owner, "/antiraid on")
    await settle(sb)
    late = sb.add_user("阿强", username="aqiang", language_code="zh-hans")
    await sb.join(cast.group, late)
    await settle(sb)
    assert sb.member_status(cast.group, late).status == "restricted", "raid mode did not hold the newcomer"
    await run_job(cast, settle_raids, now=utcnow() + timedelta(days=1))  # as if raid mode had run out
    await settle(sb)
    over = sb.last_message(cast.group)
    assert over is not None and sb.buttons(over), "the end of the raid did not give the held newcomer a challenge"
    await sb.press(late, over, sb.buttons(over)[0][1] or "")
    await settle(sb)
    assert sb.member_status(cast.group, late).status == "member", "the held newcomer was not let in"
    await sb.send(cast.group, cast.owner, "/antiraid off")
    await sb.send(cast.group, cast.owner, "/captcha off")
    await sb.send(cast.group, cast.owner, "/setwelcome off")
    await settle(sb)
