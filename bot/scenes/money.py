"""Demo scene: a Taiwan group of the brand's, in Traditional Chinese and New Taiwan dollars. The owner switches
the group to 繁體中文 and TWD (/currency), opens a group buy typed the way Taiwan writes prices (1,580 / 1,280),
and its post shows them with Babel's locale data ($1,280, no decimals: TWD's cash has no minor unit); a member
joins. Everything happens in the scene's own group, so the other scenes keep their language and currency."""

from __future__ import annotations

from bot.scenes import Cast, settle
from bot.scenes.votes import latest


async def scene_money(cast: Cast) -> None:
    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/lang zh_Hant")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/currency")  # the usage, with the codes and the current choice
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/currency TWD")
    await settle(sb)
    await sb.send(cast.group, cast.owner, "/groupbuy new 保濕面膜 10片 | 1,580 | 1,280 | 2 | 20 | 3 | 2d")
    await settle(sb)
    post = latest(cast, "保濕面膜")
    assert post is not None and "1,280" in (post.text or ""), "the group buy post did not show the TWD price"
    await sb.press(cast.mei, post, sb.buttons(post)[0][1] or "")
    await settle(sb)
