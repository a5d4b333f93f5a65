"""Demo scene: moderation. A spammer posts a WeChat diversion (引流): it is deleted and they are warned; they
check /warns; they post again and an admin mutes them by replying /mute; an ad no rule catches is removed by a
moderator's /spam reply and kept as a confirmed sample (/spamsamples); the admin reads /modlog."""

from __future__ import annotations

from bot.scenes import Cast, settle


async def scene_moderation(cast: Cast) -> None:
    sb = cast.sb
    spammer = sb.add_user("Spam King", username="spamking", language_code="zh-hans")
    sb.add_member(cast.group, spammer)  # a member from before the bot came (no captcha)
    spam = await sb.send(cast.group, spammer, "全场一折！加微信 abc12345 私聊拿货")
    await settle(sb)
    assert sb.chat(cast.group).messages[spam.message_id].deleted, "the diversion was not deleted"
    await sb.send(cast.group, spammer, "/warns")
    await settle(sb)
    again = await sb.send(cast.group, spammer, "还有更便宜的，私聊我")
    await sb.send(cast.group, cast.owner, "/mute 1h 广告刷屏", reply_to=again)
    await settle(sb)
    assert sb.member_status(cast.group, spammer).status == "restricted", "the admin's /mute did not mute"
    seller = sb.add_user("Lucky Deals", language_code="zh-hans")
    sb.add_member(cast.group, seller)
    ad = await sb.send(cast.group, seller, "爆款面膜清仓，一件代发，想要的朋友看我头像")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/spam", reply_to=ad)
    await settle(sb)
    assert sb.chat(cast.group).messages[ad.message_id].deleted, "/spam did not remove the ad"
    await sb.send(cast.group, cast.owner, "/spamsamples")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/modlog")
    await settle(sb)
