"""Demo scene: a flash sale (限时秒杀). The owner adds a product and schedules a daily sale starting this minute;
the scheduler's minute job runs once, directly, and posts the sale with its grab button; Alice and 美玲 grab
(美玲 taps twice and keeps one order); each sees their order code privately; the post's stock is edited."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from bot.scenes import Cast, run_job, settle
from models.db import utcnow
from models.schedules import local_moment

ZONE = "Asia/Shanghai"  # the group's zone (set in the group-settings scene)


async def run_flash_sale_poster(cast: Cast, at: str, day: object) -> int:
    """Run the scheduler once, with the bot's own settings, as if it were `at` (+5 s) on `day` in the group."""
    from scheduler.runner import run_schedules

    moment = local_moment(day, at, ZoneInfo(ZONE)) + timedelta(seconds=5)  # type: ignore[arg-type]
    return await run_job(cast, run_schedules, moment, kinds={"flash_sale"})


async def scene_flashsale(cast: Cast) -> None:
    sb = cast.sb
    await sb.send(cast.group, cast.owner, "/product add 玫瑰保湿面膜 10片装 | 99 | 39.9 | 2 | 1")
    await settle(sb)
    added = sb.last_message(cast.group)
    assert added is not None and "#" in (added.text or ""), "the product was not added"
    product_id = (added.text or "").split("#", 1)[1].split()[0]
    now = utcnow().astimezone(ZoneInfo(ZONE))
    await sb.send(cast.group, cast.owner, f"/flashsale new {product_id} {now:%H:%M} 30m daily notice=10")
    await settle(sb)
    assert await run_flash_sale_poster(cast, f"{now:%H:%M}", now.date()) == 1, "the flash sale was not posted"
    await settle(sb)
    post = sb.last_message(cast.group)
    assert post is not None and sb.buttons(post), "the flash-sale post did not arrive"
    grab, before = sb.buttons(post)[0][1] or "", post.text
    first = await sb.press(cast.alice, post, grab)
    assert first.show_alert and "FS-" in (first.text or ""), "Alice got no order code"
    second = await sb.press(cast.mei, post, grab)
    again = await sb.press(cast.mei, post, grab)  # a double tap: the same order
    assert "FS-" in (second.text or "") and (second.text or "").split("FS-")[1][:9] in (again.text or "")
    await settle(sb)
    await sb.settle(timeout=15, quiet=7)  # the coalesced edit of the post's stock
    assert post.text != before and not sb.buttons(post), "the post was not edited to show it sold out"
    await sb.send(cast.group, cast.bob, "秒杀")
    await settle(sb)
