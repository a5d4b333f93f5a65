"""1,000 groups with a 10:00 flash sale: the scheduler posts every sale against the sandbox (a loopback Bot API
that enforces Telegram's limits and answers 429 when they are broken).

The real path: schedule rows -> `run_schedules` (claims, then the "flash_sale" poster) -> the bot's flow
controller -> HTTP -> the sandbox. Driven for the 10:00 slot directly instead of waiting for the wall clock.
Checks every group got exactly one sale post with its grab button and no call failed (429s are waited out);
prints the achieved send rate over the allowed one (Telegram: 30 messages a second overall).

    python -m bench.flash_posts                   # 1,000 groups, Telegram's real limits (about 35 s)
    python -m bench.flash_posts --scale 0.2       # the same limits with windows five times shorter
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from bot.factory import create_bot, create_runtime
from bot.i18n import create_i18n
from bot.limits import TelegramLimits
from bot.sandbox import Sandbox
from bot.settings import load_settings
from models import flashsale, groups
from models.db import create_all, create_engine, create_sessionmaker, utcnow
from scheduler.runner import JobContext, run_schedules

ZONE = "Asia/Shanghai"


async def main(group_count: int, scale: float) -> None:
    logging.basicConfig(level=logging.ERROR)
    limits = TelegramLimits().scaled(scale)
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'posts.db'}")
        await create_all(engine)
        sessionmaker = create_sessionmaker(engine)
        async with Sandbox(limits=limits) as sb:
            owner = sb.add_user("Lin", username="lin")
            chats = [sb.create_group(f"Fans {i}", owner=owner) for i in range(group_count)]
            for chat in chats:
                await sb.add_bot(chat, by=owner, admin=True)
            # 10:00 tomorrow (local), so the round is still ahead whenever the benchmark runs.
            tomorrow = (utcnow().astimezone(ZoneInfo(ZONE)) + timedelta(days=1)).date()
            ten = datetime.combine(tomorrow, datetime.min.time().replace(hour=10), tzinfo=ZoneInfo(ZONE))
            async with sessionmaker() as session:
                for chat in chats:
                    group = await groups.upsert_group(session, groups.ChatSeen(chat.id, chat.title, "supergroup"),
                                                      default_timezone=ZONE)
                    assert group.id is not None
                    product = await flashsale.add_product(session, group.id, "面膜", 9900, 100, flash_price=3990)
                    await flashsale.create_sale(session, group.id, product.id or 0, "10:00", 30)
                await session.commit()

            settings = load_settings(_env_file=None).model_copy(
                update={"bot_token": SecretStr(sb.token), "telegram_api_url": sb.base_url}
            )
            bot = create_bot(settings, sessionmaker=sessionmaker, limits=limits)
            ctx = JobContext(bot, create_runtime(settings, sessionmaker, create_i18n("zh_Hans")))
            mark = sb.mark()
            started = time.perf_counter()
            try:
                posted = await run_schedules(ctx, ten.astimezone(ZoneInfo("UTC")), kinds={flashsale.SALE_KIND})
            finally:
                await bot.session.close()
            seconds = time.perf_counter() - started
            calls = sb.calls[mark:]
            sends = [c for c in calls if c.method == "sendMessage" and c.ok]
            refused = [c for c in calls if c.error_code == 429]
            failed = [c for c in calls if not c.ok and c.error_code != 429]
            per_group = [sum(1 for m in sb.messages(chat) if m.reply_markup) for chat in chats]
            again = await run_schedules(ctx, ten.astimezone(ZoneInfo("UTC")), kinds={flashsale.SALE_KIND})
        await engine.dispose()

    allowed = limits.global_per_second / limits.second
    achieved = len(sends) / seconds
    print(f"flash posts: {group_count} groups, one 10:00 flash sale each, against the sandbox "
          f"(Telegram's limits, windows x{scale})")
    print(f"  posted: {posted}; groups with exactly one sale post: {per_group.count(1)}; failed calls: {len(failed)}; "
          f"429s answered by the sandbox and waited out: {len(refused)}; posted again on a second run: {again}")
    print(f"  achieved {achieved:.1f} sends/s over {seconds:.1f} s; allowed {allowed:.1f}/s; "
          f"ratio {achieved / allowed:.3f} (aim >= 0.9)")
    assert posted == group_count == per_group.count(1) and not failed and again == 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--scale", type=float, default=1.0, help="length of Telegram's windows (1 = real time)")
    args = parser.parse_args()
    asyncio.run(main(args.groups, args.scale))
