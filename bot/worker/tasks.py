"""Celery wiring: the app, the four tasks and their queues. No business logic:
each task takes a per-market lock and calls one job function.

Started as ``celery -A bot.worker.tasks worker -Q collector_queue`` (or
``trader_queue``, ``optimizer_queue``). At import the settings are validated
(exit 2 on a bad one, before connecting anywhere); before consuming, a worker
applies migrations under the advisory lock (waiting with backoff while the
database is down) and logs one start line.

Delivery policy, per task:

- ``collect`` and ``trade`` and ``reconcile`` are idempotent (upserts; one
  decision per candle; identifiers; fills unique by trade uuid), so they use
  ``acks_late`` with ``reject_on_worker_lost``: a message whose worker died is
  delivered again rather than lost.
- ``optimize`` is not acked late: an optimize that kills its worker (memory)
  must not come back forever; the next schedule runs it again.
- Every periodic message expires (a trade after its minute, an optimize after
  a few hours), so nothing runs late after an outage.
- Temporary errors (network, 429, 5xx, database or Redis unavailable) are
  retried by Celery with exponential backoff; anything else fails at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from datetime import datetime, timedelta
from typing import Any

import redis
from celery import Celery, signals
from celery.exceptions import SecurityWarning, SoftTimeLimitExceeded

from bot import clock
from bot.config import Settings, get_settings
from bot.errors import BotError, ConfigError, DatabaseUnavailable, LockBusy, TemporaryError
from bot.logs import event, set_role, setup_logging

log = logging.getLogger(__name__)

# Celery warns in nine raw lines, before logging is set up, when a worker runs
# as root; _worker_setup says it in one line (worker.root) instead.
warnings.filterwarnings("ignore", message="You're running the worker with superuser",
                        category=SecurityWarning)

try:
    SETTINGS: Settings = get_settings()
except ConfigError as _exc:
    sys.stderr.write(f"bot: {_exc}\n")
    raise SystemExit(2) from None

QUEUES = {"collect": "collector_queue", "trade": "trader_queue",
          "reconcile": "trader_queue", "optimize": "optimizer_queue",
          "optimize_due": "optimizer_queue", "daily_summary": "trader_queue"}
ROLES = {"collector_queue": "collector", "trader_queue": "trader",
         "optimizer_queue": "optimizer"}

clock.configure(float(SETTINGS.bot_clock_speedup), float(SETTINGS.bot_clock_epoch))
# Real seconds (a sped-up test clock shortens candle periods, not time limits).
PERIOD = clock.real_seconds(SETTINGS.unit * 60.0)
_COLLECT_PAGES = SETTINGS.backfill_max_candles / 200
LIMITS = {  # (soft, hard) seconds
    "collect": (max(45.0, _COLLECT_PAGES / 5 + 30), max(55.0, _COLLECT_PAGES / 5 + 40)),
    "trade": (30.0, 40.0),
    "reconcile": (45.0, 55.0),
    "optimize": (1200.0, 1500.0),
    "optimize_due": (60.0, 90.0),
    "daily_summary": (60.0, 90.0),
}
OPTIMIZE_EXPIRES = 3 * 3600.0
# optimize_due (bot.optimize.job.start_due_runs): Beat sends it this often (real
# seconds), and a collect pass storing at least BACKFILL_CANDLES new candles
# (the first backfill, a gap filled after an outage) sends it at once.
OPTIMIZE_DUE_EVERY = clock.real_seconds(15 * 60.0)
BACKFILL_CANDLES = 200

app = Celery("bot", broker=SETTINGS.celery_broker_url, backend=SETTINGS.celery_backend_url)
app.conf.update(
    task_routes={name: {"queue": queue} for name, queue in QUEUES.items()},
    task_default_queue="collector_queue",
    task_serializer="json", accept_content=["json"], result_serializer="json",
    task_ignore_result=True,
    timezone=SETTINGS.timezone, enable_utc=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    broker_connection_retry=True,
    broker_connection_max_retries=None,  # keep reconnecting to Redis, never crash-loop
    broker_transport_options={"visibility_timeout": 600},
    worker_cancel_long_running_tasks_on_connection_loss=True,
    result_expires=3600,
)

_RETRY = {"autoretry_for": (TemporaryError,), "retry_backoff": 2, "retry_backoff_max": 30,
          "retry_jitter": True}


# Fill and reconcile share a market's "orders" lock and both come at :00, so
# they wait their turn briefly (a pass takes well under a second) instead of
# skipping: a skipped collector-triggered trade could leave a candle undecided.
LOCK_WAIT = {"trade": 10.0, "reconcile": 10.0}


def _run_locked(lock: str, market: str, task: str, func, *args: Any) -> Any:
    """Run ``func`` holding the market's ``lock``; skip (None) when another
    run still holds it after LOCK_WAIT (a killed holder's lock expires
    within LOCK_TTL)."""
    from bot.worker.runtime import runtime
    try:
        with runtime().market_lock(lock, market, wait=LOCK_WAIT.get(task, 0.0)):
            return func(*args)
    except LockBusy as exc:
        event(log, "task.skipped", task=task, market=market, reason=str(exc))
        return None


def _trade_expires(candle_ts: datetime) -> float:
    """Real seconds until a trade for this candle is pointless (two periods
    after its close the trader calls the data stale anyway)."""
    deadline = candle_ts + timedelta(minutes=SETTINGS.unit * 3)
    return max(1.0, clock.real_seconds((deadline - clock.now()).total_seconds()))


@app.task(name="collect", bind=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=LIMITS["collect"][0], time_limit=LIMITS["collect"][1],
          max_retries=5, **_RETRY)
def collect(self, market: str) -> dict | None:
    from bot.data.collector import collect_market, follow_up_seconds
    from bot.worker.runtime import runtime
    rt = runtime()

    def job():
        return collect_market(rt.db, rt.upbit, market, unit=SETTINGS.unit,
                              max_candles=SETTINGS.backfill_max_candles)

    result = _run_locked("collect", market, "collect", job)
    if result is None:
        return None
    if result.inserted >= BACKFILL_CANDLES:
        # History just arrived (a fresh install, a gap after an outage): a market
        # without a validated set gets its optimizer run now, not at 00:05.
        optimize_due.apply_async(expires=OPTIMIZE_EXPIRES)
    if result.newest_final_ts is not None:
        trade.apply_async((market,), {"candle_ts": result.newest_final_ts.isoformat()},
                          expires=_trade_expires(result.newest_final_ts))
    wait = follow_up_seconds(result, clock.now(), SETTINGS.unit)
    if wait is not None:
        # The newest candle closed but is not confirmed yet: look again shortly.
        collect.apply_async((market,), countdown=clock.real_seconds(wait),
                            expires=clock.real_seconds(wait) + PERIOD)
    return {"market": market, "inserted": result.inserted, "updated": result.updated}


@app.task(name="trade", bind=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=LIMITS["trade"][0], time_limit=LIMITS["trade"][1],
          max_retries=3, **_RETRY)
def trade(self, market: str, candle_ts: str | None = None) -> dict | None:
    from bot.worker.runtime import runtime
    rt = runtime()
    # trade and reconcile share the lock: both change the market's orders
    outcome = _run_locked("orders", market, "trade", _trade, rt.trade_context(), market)
    if outcome is None:
        return None
    return {"market": market, "status": outcome.status, "action": outcome.action,
            "identifier": outcome.identifier}


def _trade(ctx: Any, market: str) -> Any:
    from bot.trading.trader import trade_market
    return trade_market(ctx, market, pending_level=logging.DEBUG)


@app.task(name="reconcile", bind=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=LIMITS["reconcile"][0], time_limit=LIMITS["reconcile"][1],
          max_retries=3, **_RETRY)
def reconcile(self, market: str | None = None) -> dict:
    from bot.trading.lifecycle import reconcile as reconcile_pass
    from bot.worker.runtime import runtime

    def locked(name: str, job: Any) -> Any:
        return _run_locked("orders", name, "reconcile", job)

    results = reconcile_pass(runtime().trade_context(), [market] if market else None,
                             each=locked)
    return {r.market: {"fills": r.fills, "cancelled": r.cancelled, "errors": r.errors}
            for r in results}


@app.task(name="optimize", bind=True, acks_late=False,
          soft_time_limit=LIMITS["optimize"][0], time_limit=LIMITS["optimize"][1],
          max_retries=2, **_RETRY)
def optimize(self, market: str) -> dict | None:
    from bot.optimize.job import optimize_market
    from bot.worker.runtime import runtime
    rt = runtime()
    from bot.report.notify import notifier

    def job():
        return optimize_market(rt.settings, rt.db, market, notify=notifier(rt.settings))

    run = _run_locked("optimize", market, "optimize", job)
    if run is None:
        return None
    return {"market": market, "verdict": run.verdict, "adopted": run.adopted,
            "reason": run.reason, "version": run.weights_version}


@app.task(name="optimize_due", acks_late=False, soft_time_limit=LIMITS["optimize_due"][0],
          time_limit=LIMITS["optimize_due"][1])
def optimize_due() -> dict:
    """Optimize each market without a judged run for a day, right after a
    backfill and every 15 minutes from Beat, not at OPTIMIZE_SCHEDULE only
    (bot.optimize.job.start_due_runs). No countdown: a worker holding an ETA
    message dies when Redis restarts (kombu's restore_unacked)."""
    from bot.optimize.job import start_due_runs
    from bot.worker.runtime import runtime
    rt = runtime()
    due = start_due_runs(rt.settings, rt.db, clock.now(),
                         run=lambda m: optimize.apply_async((m,), expires=OPTIMIZE_EXPIRES))
    return {"run": list(due.run), "waiting": list(due.waiting)}


@app.task(name="daily_summary", acks_late=False, soft_time_limit=LIMITS["daily_summary"][0],
          time_limit=LIMITS["daily_summary"][1])
def daily_summary() -> dict:
    from bot.report.notify import notifier, send_daily_summary
    from bot.worker.runtime import runtime
    rt = runtime()
    summary = send_daily_summary(rt.settings, rt.db, rt.exchange, notify=notifier(rt.settings))
    return {"text": summary.get("text", "")}


# --- worker life cycle --------------------------------------------------------


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
def _logging(**_: Any) -> None:
    setup_logging(SETTINGS.log_level, SETTINGS.log_format, role=_role_from_argv(sys.argv),
                  secrets=SETTINGS.secret_values())


def wait_for_database(migrate_once, *, attempts: int | None = None, first: float = 1.0,
                      cap: float = 30.0, sleep=time.sleep) -> Any:
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
def _worker_setup(sender: str, instance: Any, **_: Any) -> None:
    from bot.storage.migrate import migrate
    from bot.worker.runtime import Runtime, runtime
    queues = sorted(instance.app.amqp.queues.consume_from or {})
    role = "+".join(ROLES.get(q, q) for q in queues) or "worker"
    set_role(role)
    Runtime.node = sender  # the worker's node name, e.g. collector@host
    rt = runtime(SETTINGS)
    result = wait_for_database(lambda: migrate(rt.db))
    with contextlib.suppress(redis.RedisError):
        if released := rt.release_own_locks():
            event(log, "worker.locks_released", count=released,
                  detail="held by this worker before it was killed")
    fields = SETTINGS.public_summary()
    event(log, "worker.started", role=role, queues=",".join(queues),
          schema=result.current, **fields)
    if SETTINGS.live:
        event(log, "worker.live", level=logging.WARNING,
              detail="LIVE TRADING: orders go to Upbit with real money")
    if os.geteuid() == 0:
        # Allowed (messages are JSON, never pickle), not advised: the images
        # run as an unprivileged user.
        event(log, "worker.root", level=logging.WARNING,
              detail="running as root: better run the bot as an unprivileged user")
    instance.app.conf.bot_role = role


@signals.worker_ready.connect
def _worker_ready(sender: Any, **_: Any) -> None:
    from bot.worker.runtime import runtime
    role = getattr(sender.app.conf, "bot_role", "worker")
    _quiet_warm_shutdown(getattr(sender, "controller", None))
    rt = runtime(SETTINGS)
    rt.start_heartbeat(role)
    if "trader" in role:
        # Adopt the exchange's view of every order before trading again.
        reconcile.apply_async(expires=PERIOD * 2)
    if "optimizer" in role:
        # History backfilled before the start (`bot backfill`, then `bot run`) is
        # judged now, not at the next 15-minute check.
        optimize_due.apply_async(expires=OPTIMIZE_DUE_EVERY)


def _quiet_warm_shutdown(worker: Any) -> None:
    """Celery's SIGTERM handler writes a raw "worker: Warm shutdown" line;
    the same handler without it (worker.stopped says it, in the log format)."""
    if worker is None:
        return
    from celery.apps import worker as celery_worker
    celery_worker.install_worker_term_handler(worker, verbose=False)


@signals.worker_shutdown.connect
def _worker_stopped(sender: Any = None, **_: Any) -> None:
    # Sent once the pool is stopped, from the worker's main loop (not from
    # the signal handler, where writing a line could deadlock).
    event(log, "worker.stopped", code=getattr(sender, "exitcode", None))


@signals.task_failure.connect
def _task_failed(sender: Any = None, exception: BaseException | None = None,
                 args: Any = None, einfo: Any = None, **_: Any) -> None:
    from bot.report.notify import note_failure, notifier
    from bot.worker.runtime import runtime
    expected = isinstance(exception, (BotError, SoftTimeLimitExceeded))
    task = getattr(sender, "name", "?")
    # A bug gets its traceback, once; an expected failure one line.
    event(log, "task.failed", level=logging.ERROR, task=task, args=list(args or ()),
          error=type(exception).__name__, detail=str(exception),
          exc_info=None if expected or einfo is None else einfo.exc_info)
    market = args[0] if args else None
    with contextlib.suppress(redis.RedisError):
        note_failure(SETTINGS, runtime().redis, notifier(SETTINGS), task, market,
                     type(exception).__name__, str(exception))


@signals.task_success.connect
def _task_succeeded(sender: Any = None, **_: Any) -> None:
    from bot.report.notify import note_success
    from bot.worker.runtime import runtime
    args = getattr(getattr(sender, "request", None), "args", None) or ()
    with contextlib.suppress(redis.RedisError):
        note_success(runtime().redis, getattr(sender, "name", "?"), args[0] if args else None)


@signals.task_revoked.connect
def _task_revoked(sender: Any = None, request: Any = None, expired: bool = False,
                  **_: Any) -> None:
    event(log, "task.expired" if expired else "task.revoked", level=logging.WARNING,
          task=getattr(sender, "name", "?"), args=list(getattr(request, "args", None) or ()),
          detail="not run: its time had passed" if expired else "revoked")


@signals.task_retry.connect
def _task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    event(log, "task.retry", level=logging.WARNING, task=getattr(sender, "name", "?"),
          args=list(getattr(request, "args", None) or ()), reason=str(reason))
