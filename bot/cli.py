"""The `qunbot` command (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bot import spam_eval, verify_lottery
from bot.logs import log_handler
from bot.settings import Settings, SettingsError, load_settings

NO_TOKEN = """\
qunbot run needs BOT_TOKEN, the token of your bot.
  1. In Telegram, open @BotFather, send /newbot and follow the steps; it answers with a token like
     123456789:AAH...
  2. Put it in the environment or in a .env file:  BOT_TOKEN=123456789:AAH...
  3. Run qunbot run again.
To see qunbot work without a token, run:  qunbot demo"""


def setup_logging(settings: Settings) -> None:
    handler = log_handler(settings, settings.log_format)  # text or JSON lines; ids and no secrets (bot/logs.py)
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("aiogram.event").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qunbot",
        description="A Telegram bot for social e-commerce groups. Settings come from the environment or .env.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="migrate the database, then run the bot and the scheduler",
                              description="Migrate to the newest schema, then serve updates (long polling, or a "
                              "webhook when WEBHOOK_URL is set) and run the scheduler, until Ctrl-C or SIGTERM.")
    add_worker_options(run)
    commands.add_parser("migrate", help="bring the database to the newest schema",
                        description="Apply every database migration not yet applied (DATABASE_URL).")
    commands.add_parser("scheduler", help="run the scheduler alone",
                        description="Run only the scheduler (daily posts, closings, draws) for deployments that "
                        "run it as a separate process.")
    demo = commands.add_parser("demo", help="play a scripted group against the built-in sandbox",
                               description="Start the built-in Telegram sandbox and the real bot, play a scripted "
                               "group and print the transcript. No token, no network, nothing to configure.")
    demo.add_argument("--database-url", default="", help="database for the demo (default: a temporary SQLite file)")
    demo.add_argument("--quiet", action="store_true", help="print only the summary line")
    verify_lottery.add_parser(commands)
    spam_eval.add_parser(commands)
    add_ops_parsers(commands)
    return parser


def add_ops_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`qunbot backup` and `qunbot move-to-postgres` (bot/backup.py)."""
    from bot import backup

    backup.add_parsers(commands)
def add_worker_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--workers", type=int, default=0, metavar="N",
                     help="N webhook worker processes on one port (default: WORKERS, 1); needs WEBHOOK_URL, and "
                     "PostgreSQL + REDIS_URL to share limits and counters")
    run.add_argument("--no-scheduler", action="store_true",
                     help="with --workers: do not start the scheduler (run `qunbot scheduler` elsewhere)")


def workers_wanted(args: argparse.Namespace, settings: Settings) -> int:
    return int(getattr(args, "workers", 0) or settings.workers)


def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    """`qunbot run --workers N`: the supervisor of bot/workers.py."""
    from bot.workers import supervise

    workers = workers_wanted(args, settings)
    if not settings.webhook_url:
        print("qunbot: --workers needs WEBHOOK_URL (the workers share one webhook port)", file=sys.stderr)
        return 2
    if settings.sqlite_path() is not None or not settings.redis_url:
        logging.getLogger("qunbot").warning(
            "several workers run best on PostgreSQL with REDIS_URL (shared limits and counters)")
    settings = settings.model_copy(update={"workers": workers})
    return supervise(settings, workers, with_scheduler=not args.no_scheduler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify-lottery":  # needs no settings, token or database
        return verify_lottery.run(args)
    if args.command == "spam-eval":  # likewise
        return spam_eval.run(args)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"qunbot: {error}", file=sys.stderr)
        return 2
    setup_logging(settings)
    command = args.command or ("run" if settings.bot_token else "demo")
    if command in ("backup", "move-to-postgres"):  # need DATABASE_URL, not the token
        from bot import backup

        return backup.run_command(args, settings)
    try:
        if command == "demo":
            from bot.demo import run_demo

            return asyncio.run(run_demo(settings, database_url=getattr(args, "database_url", ""),
                                        quiet=getattr(args, "quiet", False)))
        if command == "migrate":
            from bot.runner import migrate

            asyncio.run(migrate(settings))
            print("database is at the newest schema")
            return 0
        if not settings.bot_token:
            print(NO_TOKEN, file=sys.stderr)
            return 2
        if command == "run" and workers_wanted(args, settings) > 1:
            return run_workers(args, settings)
        if command == "run":
            from bot.runner import run

            asyncio.run(run(settings))
        elif command == "scheduler":
            from bot.runner import run_scheduler

            asyncio.run(run_scheduler(settings))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
