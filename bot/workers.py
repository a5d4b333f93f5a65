"""`qunbot run --workers N` (or WORKERS=N): N webhook workers on one port, and the scheduler as its own role.

What the supervisor (this process) does, in order:
1. migrates the database (under the migration advisory lock, models/migrate.py, so a `qunbot scheduler` or a
   second supervisor started at the same moment on an empty database waits instead of racing);
2. starts N web workers (`bot.runner.run` with owner=False, reuse_port=True, no scheduler): each listens on
   WEBHOOK_LISTEN with SO_REUSEPORT and the kernel spreads Telegram's connections over them;
3. once they listen, it is the one process that calls setWebhook and setMyCommands;
4. starts the scheduler as a process of its own unless told not to (`--no-scheduler`, when `qunbot scheduler`
   runs elsewhere; two schedulers are still safe, the post claims are unique keys);
5. restarts a process that died (waiting longer after each quick death), and on SIGTERM / SIGINT passes the
   signal on and waits for them to stop (then kills what is left after STOP_GRACE seconds).

Web workers share what must agree through Redis (REDIS_URL; bot/shared_limits.py) and everything else through
the database. Each opens at most DB_POOL_SIZE + DB_MAX_OVERFLOW PostgreSQL connections.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.process
import signal
import socket
import time
from contextlib import suppress
from dataclasses import dataclass, field

from bot.settings import Settings

log = logging.getLogger("qunbot.workers")

STOP_GRACE = 25.0  # seconds a process gets to finish after SIGTERM
READY_TIMEOUT = 60.0  # seconds to wait for the workers to listen
MAX_RESTART_DELAY = 30.0


def web_worker(settings: Settings, index: int) -> None:
    """One web worker process: the webhook server (sharing the port), no scheduler, no Telegram set-up."""
    from bot.cli import setup_logging
    from bot.runner import run
    from bot.web import worker_listen

    setup_logging(settings)
    log.info("web worker %s starting", index)
    # each worker's own /metrics port (WEB_LISTEN + index): a scrape of the shared port would reach any worker
    settings = settings.model_copy(update={"web_listen": worker_listen(settings.web_listen, index)})
    with suppress(KeyboardInterrupt):
        asyncio.run(run(settings, with_scheduler=False, owner=False, reuse_port=True))


def scheduler_worker(settings: Settings) -> None:
    """The scheduler role, as a process of its own."""
    from bot.cli import setup_logging
    from bot.runner import run_scheduler

    setup_logging(settings)
    with suppress(KeyboardInterrupt):
        asyncio.run(run_scheduler(settings))


@dataclass
class Child:
    name: str
    target: object
    args: tuple[object, ...]
    process: multiprocessing.process.BaseProcess | None = None
    started_at: float = 0.0
    delay: float = 1.0
    restarts: int = 0
    due: float = field(default=0.0)


async def own_telegram_setup(settings: Settings) -> None:
    """setWebhook and setMyCommands, once, from the supervisor (web workers skip both)."""
    from bot.factory import create_bot, create_dispatcher, create_engine_for, create_runtime
    from bot.runner import set_commands, set_webhook
    from models.db import create_sessionmaker

    engine = create_engine_for(settings)
    bot = create_bot(settings)
    try:
        runtime = create_runtime(settings, create_sessionmaker(engine))
        dp = create_dispatcher(runtime)
        await set_webhook(settings, bot, dp)
        await set_commands(bot, runtime.i18n)
        log.info("webhook set to %s; command menus set", settings.webhook_url)
        if runtime.shared is not None:
            await runtime.shared.close()
    finally:
        await bot.session.close()
        await engine.dispose()


def wait_listening(host: str, port: int, timeout: float = READY_TIMEOUT) -> bool:
    """True once something accepts connections on host:port."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), socket.create_connection((target, port), timeout=0.5):
            return True
        time.sleep(0.2)
    return False


def supervise(settings: Settings, workers: int, *, with_scheduler: bool = True) -> int:
    """Run N web workers (and the scheduler) until SIGTERM / SIGINT; see the module docstring. Returns 0 after a
    clean stop, 1 if the workers never came up."""
    import bot.runner  # noqa: F401 - imported once here, inherited by every forked worker
    from bot.runner import migrate

    asyncio.run(migrate(settings))
    # fork: the workers start with everything the supervisor already imported (spawn took ~10 s a worker on a
    # loaded 2-core machine, importing it all again); the supervisor holds no loop, thread or connection here.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    children = [Child(f"web-{i}", web_worker, (settings, i)) for i in range(workers)]
    if with_scheduler:
        children.append(Child("scheduler", scheduler_worker, (settings,)))
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(child: Child) -> None:
        child.process = context.Process(target=child.target, args=child.args, name=f"qunbot-{child.name}",
                                        daemon=False)  # type: ignore[attr-defined]
        child.process.start()
        child.started_at = time.monotonic()
        log.info("started %s (pid %s)", child.name, child.process.pid)

    try:
        for child in children:
            start(child)
        host, port = settings.listen_host_port
        if not wait_listening(host, port):
            log.error("the web workers did not listen on %s:%s within %.0f s", host, port, READY_TIMEOUT)
            return 1
        setup_done = False
        while not stopping:
            if not setup_done:
                try:
                    asyncio.run(own_telegram_setup(settings))
                    setup_done = True
                except Exception as error:  # noqa: BLE001 - Telegram unreachable: say so in one line, try again
                    log.warning("setting the webhook failed (%s: %s); trying again in 5 s", type(error).__name__,
                                error)
                    _sleep_unless(stopping, 5.0)
                    continue
            now = time.monotonic()
            for child in children:
                process = child.process
                if process is not None and process.is_alive():
                    continue
                if process is not None:
                    quick = now - child.started_at < 10
                    child.delay = min(MAX_RESTART_DELAY, child.delay * 2) if quick else 1.0
                    child.due = now + child.delay
                    child.restarts += 1
                    log.warning("%s exited (code %s); restarting in %.0f s", child.name, process.exitcode,
                                child.delay)
                    child.process = None
                elif now >= child.due:
                    start(child)
            _sleep_unless(stopping, 0.5)
        return 0
    finally:
        _stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sleep_unless(stopping: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopping and time.monotonic() < deadline:
        time.sleep(0.1)


def _stop_all(children: list[Child]) -> None:
    alive = [c.process for c in children if c.process is not None and c.process.is_alive()]
    for process in alive:
        with suppress(ProcessLookupError, OSError):
            process.terminate()  # SIGTERM: each drains and stops on its own
    deadline = time.monotonic() + STOP_GRACE
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in alive:
        if process.is_alive():
            log.warning("%s did not stop within %.0f s: killed", process.name, STOP_GRACE)
            process.kill()
            process.join(5)
    log.info("all workers stopped")
