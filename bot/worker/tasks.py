"""The six tasks. No business logic: each takes its per-market lock and
calls one job function. Registered on bot.worker.app's app, which a worker
imports this module for (``include``).

Delivery policy, per task:

- ``collect`` and ``trade`` and ``reconcile`` are idempotent (upserts; one
  decision per candle; identifiers; fills unique by trade uuid), so they use
  ``acks_late`` with ``reject_on_worker_lost``: a message whose worker died is
  delivered again rather than lost.
- ``optimize`` is not acked late: an optimize that kills its worker (memory)
  must not come back forever; the next schedule runs it again.
- Every periodic message expires (a trade after its minute, an optimize after
  a few hours), so nothing runs late after an outage.
- Time limits come from the settings, through ``task_annotations`` in the
  app's configuration (bot.worker.timing.limits).
- Temporary errors (network, 429, 5xx, database or Redis unavailable) are
  retried by Celery with exponential backoff; anything else fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from bot import clock
from bot.errors import LockBusy, TemporaryError
from bot.logs import event
from bot.worker import timing
from bot.worker.app import app
from bot.worker.runtime import runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY = {"autoretry_for": (TemporaryError,), "retry_backoff": 2, "retry_backoff_max": 30,
          "retry_jitter": True}

# Fill and reconcile share a market's "orders" lock and both come at :00, so
# they wait their turn briefly (a pass takes well under a second) instead of
# skipping: a skipped collector-triggered trade could leave a candle undecided.
LOCK_WAIT = {"trade": 10.0, "reconcile": 10.0}


def _run_locked(lock: str, market: str, task: str, job: Callable[[], T]) -> T | None:
    """Run ``job`` holding the market's ``lock``; skip (None) when another
    run still holds it after LOCK_WAIT (a killed holder's lock expires
    within LOCK_TTL)."""
    try:
        with runtime().market_lock(lock, market, wait=LOCK_WAIT.get(task, 0.0)):
            return job()
    except LockBusy as exc:
        event(log, "task.skipped", task=task, market=market, reason=str(exc))
        return None


@app.task(name="collect", acks_late=True, reject_on_worker_lost=True, max_retries=5, **_RETRY)
def collect(market: str) -> dict | None:
    from bot.data.collector import collect_market, follow_up_seconds
    rt = runtime()
    settings = rt.settings
    result = _run_locked("collect", market, "collect", lambda: collect_market(
        rt.db, rt.upbit, market, unit=settings.unit, max_candles=settings.backfill_max_candles))
    if result is None:
        return None
    if result.inserted >= timing.BACKFILL_CANDLES:
        # History just arrived (a fresh install, a gap after an outage): a market
        # without a validated set gets its optimizer run now, not at 00:05.
        optimize_due.apply_async(expires=timing.OPTIMIZE_EXPIRES)
    if result.newest_final_ts is not None:
        trade.apply_async((market,), expires=timing.trade_expires(settings,
                                                                  result.newest_final_ts))
    wait = follow_up_seconds(result, clock.now(), settings.unit)
    if wait is not None:
        # The newest candle closed but is not confirmed yet: look again shortly.
        collect.apply_async((market,), countdown=clock.real_seconds(wait),
                            expires=clock.real_seconds(wait) + timing.period(settings))
    return {"market": market, "inserted": result.inserted, "updated": result.updated}


@app.task(name="markets", acks_late=False, max_retries=3, **_RETRY)
def markets() -> dict:
    """What Upbit says about the markets (bot.data.markets.refresh): hourly
    from Beat and at the collector's start. A market that joined the top:N
    set is collected (backfilled) at once, before it is traded."""
    from bot.data.markets import refresh
    from bot.report.notify import notifier
    rt = runtime()
    done = refresh(rt.db, rt.upbit, rt.settings, clock.now(), notify=notifier(rt.settings))
    for market in done.joined:
        collect.apply_async((market,), expires=timing.markets_every())
    event(log, "markets.refreshed", level=logging.INFO if done.changes else logging.DEBUG,
          listed=done.listed, changes=len(done.changes), ticks=done.ticks, fees=done.chances)
    return {"listed": done.listed, "changes": [c.market for c in done.changes],
            "ticks": done.ticks, "fees": done.chances, "joined": list(done.joined)}


@app.task(name="each_market", acks_late=False)
def each_market(task: str, expires: float) -> dict:
    """MARKETS=top:N: Beat's entry for ``task`` (collect, trade, optimize),
    sent once per market of the moment: collect and trade what the daemon
    looks after (the selection and what it still holds), optimize the
    selection."""
    from bot.storage import markets as market_store
    rt = runtime()
    names = (market_store.traded(rt.settings, rt.db) if task == "optimize"
             else market_store.managed(rt.settings, rt.db))
    target = {"collect": collect, "trade": trade, "optimize": optimize}[task]
    for market in names:
        target.apply_async((market,), expires=expires)
    return {"task": task, "markets": list(names)}


@app.task(name="trade", acks_late=True, reject_on_worker_lost=True, max_retries=3, **_RETRY)
def trade(market: str) -> dict | None:
    from bot.trading.trader import trade_market
    ctx = runtime().trade_context()
    # trade and reconcile share the lock: both change the market's orders
    outcome = _run_locked("orders", market, "trade",
                          lambda: trade_market(ctx, market, pending_level=logging.DEBUG))
    if outcome is None:
        return None
    return {"market": market, "status": outcome.status, "action": outcome.action,
            "identifier": outcome.identifier}


@app.task(name="reconcile", acks_late=True, reject_on_worker_lost=True, max_retries=3,
          **_RETRY)
def reconcile(market: str | None = None) -> dict:
    from bot.trading.lifecycle import reconcile as reconcile_pass

    def locked(name: str, job: Callable[[], T]) -> T | None:
        return _run_locked("orders", name, "reconcile", job)

    results = reconcile_pass(runtime().trade_context(), [market] if market else None,
                             each=locked)
    return {r.market: {"fills": r.fills, "cancelled": r.cancelled, "errors": r.errors}
            for r in results}


@app.task(name="optimize", acks_late=False, max_retries=2, **_RETRY)
def optimize(market: str) -> dict | None:
    from bot.optimize.job import optimize_market
    from bot.report.notify import notifier
    rt = runtime()
    run = _run_locked("optimize", market, "optimize", lambda: optimize_market(
        rt.settings, rt.db, market, notify=notifier(rt.settings)))
    if run is None:
        return None
    return {"market": market, "verdict": run.verdict, "adopted": run.adopted,
            "reason": run.reason, "version": run.weights_version}


@app.task(name="optimize_due", acks_late=False)
def optimize_due() -> dict:
    """Optimize each market without a judged run for a day, right after a
    backfill and every 15 minutes from Beat, not at OPTIMIZE_SCHEDULE only
    (bot.optimize.job.start_due_runs). No countdown: a worker holding an ETA
    message dies when Redis restarts (kombu's restore_unacked)."""
    from bot.optimize.job import start_due_runs
    rt = runtime()
    due = start_due_runs(rt.settings, rt.db, clock.now(), run=lambda m: optimize.apply_async(
        (m,), expires=timing.OPTIMIZE_EXPIRES))
    return {"run": list(due.run), "waiting": list(due.waiting)}


@app.task(name="daily_summary", acks_late=False)
def daily_summary() -> dict:
    from bot.report.daily import send_daily_summary
    from bot.report.notify import notifier
    rt = runtime()
    summary = send_daily_summary(rt.settings, rt.db, rt.exchange, notify=notifier(rt.settings))
    return {"text": summary.get("text", "")}
