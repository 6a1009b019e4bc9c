"""The optimizer job: tune a market's parameter set on its stored candles and
hand it to the trader only when it is better out of sample; stand aside when
the set in force is losing.

For a market: load the last OPTIMIZE_LOOKBACK_DAYS of closed candles, split
them in time (the newest OPTIMIZE_HOLDOUT share is the holdout), search the
groups named in OPTIMIZE_TUNE on the training part and judge the best
candidate against the set in force on the holdout (:func:`bot.optimize.search.choose`:
the objective, the grids and the verdict rules are documented there). Every
run is recorded in ``optimizer_runs`` with its verdict; an adopted set
becomes a new ``strategy_weights`` version, which the trader's next decision
uses and names. No Celery here.

What the trader trades with is :func:`bot.trading.in_force.params_in_force`: the
adopted set's values for the groups in OPTIMIZE_TUNE, the settings for the
rest, and no new buys while the latest verdict is ``stand_aside``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import clock
from bot.config import Settings
from bot.logs import event
from bot.models import CandleArrays
from bot.optimize.search import (
    ADOPT,
    MIN_BARS,
    STAND_ASIDE,
    OptimizeOutcome,
    ParamSet,
    tune,
)
from bot.storage import Database
from bot.storage import candles as candle_store
from bot.storage import markets as market_store
from bot.storage import optimizer_runs as run_store
from bot.storage import weights as weight_store
from bot.trading import strategies
from bot.trading.in_force import params_in_force
from bot.trading.params import InForce

log = logging.getLogger(__name__)

# A market whose newest judged run is older than this gets a run soon after the
# workers start (see due_markets), not only at OPTIMIZE_SCHEDULE.
RUN_AT_LEAST_EVERY = timedelta(days=1)


@dataclass(frozen=True)
class OptimizeRun:
    """An outcome and where it was stored (``run_id`` None when not saved)."""

    market: str | None
    outcome: OptimizeOutcome
    bars: int
    run_id: int | None = None
    weights_version: int | None = None

    @property
    def adopted(self) -> bool:
        return self.outcome.adopted

    @property
    def verdict(self) -> str:
        return self.outcome.verdict

    @property
    def reason(self) -> str:
        return self.outcome.reason


def daily_seed(market: str, now: datetime) -> int:
    """Reproducible within a day, different across days and markets."""
    return int(now.strftime("%Y%m%d")) * 1000 + sum(market.encode()) % 1000


def stored_params(outcome: OptimizeOutcome) -> dict[str, Any]:
    """What ``strategy_weights.params`` holds for an adopted set: the groups
    it tuned and every value it was validated with."""
    values = {k: v for k, v in outcome.params.items() if k != "weights"}
    return {"tuned": list(outcome.tune), **values}


def _save(db: Database, market: str, candles: CandleArrays, outcome: OptimizeOutcome,
          current_version: int | None, moment: datetime) -> tuple[int, int | None]:
    ts = candles.ts
    window = (datetime.fromtimestamp(int(ts[0]), UTC) if len(ts) else None,
              datetime.fromtimestamp(int(ts[-1]), UTC) if len(ts) else None)
    with db.cursor() as cur:
        run_id = run_store.insert(
            cur, started_at=moment, market=market, window_start=window[0],
            window_end=window[1], bars=len(ts), candidates=outcome.candidates,
            seed=outcome.seed, objective_train_new=outcome.objective_train_new,
            objective_train_current=outcome.objective_train_current,
            objective_holdout_new=outcome.objective_holdout_new,
            objective_holdout_current=outcome.objective_holdout_current,
            t_holdout_new=outcome.t_holdout_new, t_holdout_current=outcome.t_holdout_current,
            train_new=outcome.train_new, train_current=outcome.train_current,
            holdout_new=outcome.holdout_new, holdout_current=outcome.holdout_current,
            weights=outcome.weights, current_weights=outcome.current_weights,
            params=outcome.params, current_params=outcome.current_params,
            current_version=current_version, verdict=outcome.verdict, tune=outcome.tune,
            reason=outcome.reason, duration_s=outcome.duration_s)
        version = None
        if outcome.adopted:
            version = weight_store.insert(cur, market, outcome.weights, "optimizer", run_id,
                                          params=stored_params(outcome), created_at=moment)
            run_store.set_version(cur, run_id, version)
    return run_id, version


def optimize_market(settings: Settings, db: Database, market: str, *, days: float | None = None,
                    candidates: int | None = None, seed: int | None = None, save: bool = True,
                    now: Callable[[], datetime] = clock.now,
                    notify: Callable[..., None] = lambda *a, **k: None) -> OptimizeRun:
    """One optimize run for one market (see the module docstring)."""
    moment = now()
    since = moment - timedelta(days=days or settings.optimize_lookback_days)
    candles = candle_store.load_arrays(db, market, settings.timeframe, since=since,
                                       until=clock.floor_to_unit(moment, settings.unit))
    in_force = params_in_force(settings, db, market)
    outcome = tune(settings, candles, ParamSet.from_dict(in_force.values()),
                     standing_aside=in_force.standing_aside, candidates=candidates,
                     seed=daily_seed(market, moment) if seed is None else seed)
    run_id = new_version = None
    if save:
        run_id, new_version = _save(db, market, candles, outcome, in_force.version, moment)
    _tell(market, len(candles), outcome, in_force, new_version, saved=save, notify=notify)
    return OptimizeRun(market, outcome, len(candles), run_id, new_version)


def _tell(market: str, bars: int, outcome: OptimizeOutcome, before: InForce,
          version: int | None, *, saved: bool, notify: Callable[..., None]) -> None:
    """Log the verdict (and notify what changes the trading)."""
    fields: dict[str, Any] = {
        "market": market, "bars": bars, "candidates": outcome.candidates,
        "objective_new": _round(outcome.objective_holdout_new),
        "objective_current": _round(outcome.objective_holdout_current),
        "seconds": round(outcome.duration_s, 2), "reason": outcome.reason}
    best = outcome.best
    if outcome.verdict == ADOPT and saved:
        resumed = before.standing_aside
        event(log, "weights.adopted", version=version, params=best.short(), resumed=resumed,
              **fields)
        notify("weights.adopted", market=market, version=version, weights=_short(best.weights),
               params=_values(best, outcome.tune), resumed=resumed, reason=outcome.reason)
    elif outcome.verdict == STAND_ASIDE:
        holdout = outcome.holdout_current or {}
        first = not before.standing_aside
        event(log, "weights.stood_aside", level=logging.WARNING,
              version=before.version or "default", since="now" if first else "before",
              holdout_return=_round(holdout.get("total_return")),
              t=_round(outcome.t_holdout_current), **fields)
        if first and saved:
            notify("weights.stood_aside", market=market, version=before.version,
                   holdout_return=holdout.get("total_return"), reason=outcome.reason)
    else:
        event(log, "weights.kept", version=before.version or "default", **fields)


def _values(best: ParamSet, tune: Sequence[str]) -> str:
    """The tuned values other than the weights, for the notification."""
    parts = []
    if "threshold" in tune:
        parts.append(f"threshold {best.threshold:g}")
    if "cooldown" in tune:
        parts.append(f"cooldown {best.cooldown_candles} candles")
    if "exits" in tune:
        parts.append(f"stop-loss {best.stop_loss_pct:g} %, trailing stop "
                     f"{best.trailing_stop_pct:g} %, take-profit {best.take_profit_pct:g} %")
    return ", ".join(parts)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _short(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:.3f}" for k, v in weights.items() if v)


# --- the start-up run ----------------------------------------------------------------


def enough_candles(bars: int, holdout_share: float) -> bool:
    """Whether ``bars`` candles split (:func:`bot.optimize.search.split`) into two parts
    the verdict can judge (each at least MIN_BARS)."""
    cut = bars - int(round(bars * holdout_share))
    return cut >= MIN_BARS and bars - max(0, cut - strategies.FIRST_DECISION) >= MIN_BARS


@dataclass(frozen=True)
class Due:
    """What the start-up check found: markets to optimize now, and markets
    due but without candles enough yet (checked again later)."""

    run: tuple[str, ...]
    waiting: tuple[str, ...]


def due_markets(settings: Settings, db: Database, now: datetime) -> Due:
    """The markets whose newest judged run (one with candles enough) is
    missing or older than RUN_AT_LEAST_EVERY, split by whether their stored
    lookback can be judged now."""
    run: list[str] = []
    waiting: list[str] = []
    for market in market_store.traded(settings, db):
        last = run_store.latest_judged(db, market)
        if last is not None and last.started_at > now - RUN_AT_LEAST_EVERY:
            continue
        candles = candle_store.load_arrays(
            db, market, settings.timeframe,
            since=now - timedelta(days=settings.optimize_lookback_days),
            until=clock.floor_to_unit(now, settings.unit))
        ready = enough_candles(len(candles), float(settings.optimize_holdout))
        (run if ready else waiting).append(market)
    return Due(tuple(run), tuple(waiting))


def start_due_runs(settings: Settings, db: Database, now: datetime, *,
                   run: Callable[[str], None]) -> Due:
    """The check behind ``optimize_due``: ``run(market)`` for each market due
    and ready (:func:`due_markets`). It runs after a collect pass that
    backfilled and every 15 minutes from Beat (``bot.worker.timing.OPTIMIZE_DUE_SIMULATED``,
    ``bot.worker.timing.BACKFILL_CANDLES``), so a fresh install gets its
    first validated set as soon as its history is in, and a run too early
    for the candles does not end the retries; it costs one query per market
    once every market had a judged run within a day."""
    due = due_markets(settings, db, now)
    for market in due.run:
        run(market)
    if due.run or due.waiting:
        event(log, "optimize.due", run=",".join(due.run) or "none",
              waiting=",".join(due.waiting) or "none")
    return due
