"""Demo scene: newcomers. The owner turns the captcha on and sets a welcome; a newcomer joins, is held (restricted)
with a button only they may press, presses it, and is welcomed. The captcha is switched off again at the end,
so later scenes' joins are not held."""

from __future__ import annotations

from bot.scenes import Cast, settle


async def scene_newcomers(cast: Cast) -> None:
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
    await sb.send(cast.group, cast.owner, "/captcha off")
    await sb.send(cast.group, cast.owner, "/setwelcome off")
    await settle(sb)
