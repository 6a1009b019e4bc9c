"""A worker's (and Beat's) life cycle, as Celery signal handlers: the log
setup; before consuming, migrations under the advisory lock (waiting with
backoff while the database is down), in live mode the preflight (a bad key
ends the worker with exit code 2) and one start line; the first passes
when ready; a line (and a notification) per failed, retried or revoked task.
Connected when the app is configured (bot.worker.app); Beat's own start is in
bot.worker.scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from billiard.einfo import ExceptionInfo
from celery import Task, signals
from celery.app.task import Context
from celery.apps.worker import Worker
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker import WorkController
from celery.worker.consumer import Consumer
from celery.worker.request import Request

from bot import clock
from bot.config import Settings
from bot.errors import BotError, DatabaseUnavailable
from bot.exchange.preflight import Preflight, preflight
from bot.logs import event, set_role, setup_logging
from bot.models import NOTIFY_EVENT_NAMES
from bot.worker import timing
from bot.worker.app import ROLES, settings
from bot.worker.runtime import Runtime, runtime
from bot.worker.tasks import markets, optimize_due, reconcile

log = logging.getLogger(__name__)

T = TypeVar("T")


def _role_from_argv(argv: list[str]) -> str:
    """beat, or the roles of the ``-Q`` queues, for the very first log lines."""
    if "beat" in argv:
        return "beat"
    for flag in ("-Q", "--queues"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            queues = argv[argv.index(flag) + 1].split(",")
            return "+".join(ROLES.get(q, q) for q in queues)
    return "worker"


@signals.setup_logging.connect
def _logging(**_: object) -> None:
    current = settings()
    setup_logging(current.log_level, current.log_format, role=_role_from_argv(sys.argv),
                  secrets=current.secret_values())


def wait_for_database(migrate_once: Callable[[], T], *, attempts: int | None = None,
                      first: float = 1.0, cap: float = 30.0,
                      sleep: Callable[[float], object] = time.sleep) -> T:
    """Call ``migrate_once`` until the database answers, backing off."""
    delay, tried = first, 0
    while True:
        try:
            return migrate_once()
        except DatabaseUnavailable as exc:
            tried += 1
            if attempts is not None and tried >= attempts:
                raise
            event(log, "db.waiting", level=logging.WARNING, detail=str(exc), retry_in_s=delay)
            sleep(delay)
            delay = min(cap, delay * 2)


@signals.celeryd_after_setup.connect
def _worker_setup(sender: str, instance: Worker, **_: object) -> None:
    from bot.storage.migrate import migrate
    queues = sorted(instance.app.amqp.queues.consume_from or {})
    role = "+".join(ROLES.get(q, q) for q in queues) or "worker"
    set_role(role)
    Runtime.node = sender  # the worker's node name, e.g. collector@host
    current = settings()
    rt = runtime(current)
    result = wait_for_database(lambda: migrate(rt.db))
    with contextlib.suppress(redis.RedisError):
        if released := rt.release_own_locks():
            event(log, "worker.locks_released", count=released,
                  detail="held by this worker before it was killed")
    if current.live:
        run_preflight(current, rt, role)
    event(log, "worker.started", role=role, queues=",".join(queues),
          schema=result.current, **current.public_summary())
    _warn_about(current)
    instance.app.conf.bot_role = role


# The event a key about to expire is notified as (bot.models.NOTIFY_EVENT_NAMES).
KEY_EXPIRING = "key.expiring"


def run_preflight(current: Settings, rt: Runtime, role: str) -> Preflight:
    """Ask Upbit whether the keys, their permissions and MARKETS will do
    (bot.exchange.preflight); one line per finding. A fatal one ends the
    worker before it consumes: the line on stderr and exit code 2, as a bad
    setting does (bot.worker.app.settings)."""
    checked = preflight(rt.upbit, current, clock.now())
    for finding in checked.findings:
        error = {"error": finding.name} if finding.name else {}
        event(log, "preflight.failed" if finding.fatal else "preflight.warning",
              level=logging.ERROR if finding.fatal else logging.WARNING,
              check=finding.check, **error, detail=finding.line)
    if not checked.findings:
        event(log, "preflight.passed", checks=",".join(checked.checked))
    _notify_expiry(current, checked, role)
    if (fatal := checked.fatal) is not None:
        sys.stderr.write(f"bot: {fatal.line}\n")
        sys.stderr.flush()
        raise SystemExit(2)
    return checked


def _notify_expiry(current: Settings, checked: Preflight, role: str) -> None:
    # Every live worker runs the preflight; one of them tells the operator.
    # Until KEY_EXPIRING is a notification event the notifier has no word for it.
    expiring = checked.expiring
    if expiring is None or "trader" not in role or KEY_EXPIRING not in NOTIFY_EVENT_NAMES:
        return
    from bot.report.notify import notifier
    notifier(current)(KEY_EXPIRING, days=expiring.days_left, detail=expiring.line,
                      expires=f"{expiring.expires_at:%Y-%m-%d}" if expiring.expires_at else None)


def _warn_about(current: Settings) -> None:
    """One line each for what deserves attention at a start."""
    if current.live:
        event(log, "worker.live", level=logging.WARNING,
              detail="LIVE TRADING: orders go to Upbit with real money")
    if os.geteuid() == 0:
        # Allowed (messages are JSON, never pickle), not advised: the images
        # run as an unprivileged user.
        event(log, "worker.root", level=logging.WARNING,
              detail="running as root: better run the bot as an unprivileged user")


@signals.worker_ready.connect
def _worker_ready(sender: Consumer, **_: object) -> None:
    role = getattr(sender.app.conf, "bot_role", "worker")
    _quiet_warm_shutdown(getattr(sender, "controller", None))
    current = settings()
    runtime(current).start_heartbeat(role)
    if "collector" in role:
        # Upbit's word on the markets (warnings, ticks, fees) before the first trade.
        markets.apply_async(expires=timing.markets_every())
    if "trader" in role:
        # Adopt the exchange's view of every order before trading again.
        reconcile.apply_async(expires=timing.period(current) * 2)
    if "optimizer" in role:
        # History backfilled before the start (`bot backfill`, then `bot run`) is
        # judged now, not at the next 15-minute check.
        optimize_due.apply_async(expires=timing.optimize_due_every())


def _quiet_warm_shutdown(worker: WorkController | None) -> None:
    """Celery's SIGTERM handler writes a raw "worker: Warm shutdown" line;
    the same handler without it (worker.stopped says it, in the log format)."""
    if worker is None:
        return
    from celery.apps import worker as celery_worker
    celery_worker.install_worker_term_handler(worker, verbose=False)


@signals.worker_shutdown.connect
def _worker_stopped(sender: WorkController | None = None, **_: object) -> None:
    # Sent once the pool is stopped, from the worker's main loop (not from
    # the signal handler, where writing a line could deadlock).
    event(log, "worker.stopped", code=getattr(sender, "exitcode", None))


@signals.task_failure.connect
def _task_failed(sender: Task | None = None, exception: BaseException | None = None,
                 args: tuple | list | None = None, einfo: ExceptionInfo | None = None,
                 **_: object) -> None:
    from bot.report.failures import note_failure
    from bot.report.notify import notifier
    expected = isinstance(exception, (BotError, SoftTimeLimitExceeded))
    task = getattr(sender, "name", "?")
    # A bug gets its traceback, once; an expected failure one line.
    event(log, "task.failed", level=logging.ERROR, task=task, args=list(args or ()),
          error=type(exception).__name__, detail=str(exception),
          exc_info=None if expected or einfo is None else einfo.exc_info)
    market = args[0] if args else None
    current = settings()
    with contextlib.suppress(redis.RedisError):
        note_failure(current, runtime().redis, notifier(current), task, market,
                     type(exception).__name__, str(exception))


@signals.task_success.connect
def _task_succeeded(sender: Task | None = None, **_: object) -> None:
    from bot.report.failures import note_success
    args = getattr(getattr(sender, "request", None), "args", None) or ()
    with contextlib.suppress(redis.RedisError):
        note_success(runtime().redis, getattr(sender, "name", "?"), args[0] if args else None)


@signals.task_revoked.connect
def _task_revoked(sender: Task | None = None, request: Request | None = None,
                  expired: bool = False, **_: object) -> None:
    event(log, "task.expired" if expired else "task.revoked", level=logging.WARNING,
          task=getattr(sender, "name", "?"), args=list(getattr(request, "args", None) or ()),
          detail="not run: its time had passed" if expired else "revoked")


@signals.task_retry.connect
def _task_retry(sender: Task | None = None, request: Context | None = None,
                reason: BaseException | str | None = None, **_: object) -> None:
    event(log, "task.retry", level=logging.WARNING, task=getattr(sender, "name", "?"),
          args=list(getattr(request, "args", None) or ()), reason=str(reason))
