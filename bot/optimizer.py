"""The optimizer job: tune a market's signal weights on its stored candles and
hand them to the trader only when they are better out of sample.

For a market: load the last OPTIMIZE_LOOKBACK_DAYS of closed candles, split
them in time (the newest OPTIMIZE_HOLDOUT share is the holdout), search the
weights on the training part and judge the best candidate against the weights
in use on the holdout (:func:`bot.search.choose`: the objective and the
adoption rules are documented there). Every run is recorded in
``optimizer_runs``; adopted weights become a new ``strategy_weights`` version,
which the trader's next decision uses and names. No Celery here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bot import clock, strategies
from bot.backtest import BacktestParams
from bot.config import Settings
from bot.logs import event
from bot.search import OptimizeOutcome, choose, split
from bot.storage import Database
from bot.storage import candles as candle_store
from bot.storage import optimizer_runs as run_store
from bot.storage import weights as weight_store
from bot.storage.candles import CandleArrays

log = logging.getLogger("bot.optimizer")


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
    def reason(self) -> str:
        return self.outcome.reason


def current_weights(settings: Settings, db: Database, market: str) -> tuple[dict[str, float],
                                                                          int | None]:
    """The weights the trader uses now for ``market`` (normalised) and their
    version: the newest adopted ones, else WEIGHTS (empty: equal), version None."""
    row = weight_store.current(db, market)
    if row is not None:
        return strategies.normalise_weights(row.weights), row.version
    return strategies.normalise_weights(dict(settings.weights)), None


@dataclass(frozen=True)
class InForce:
    """The parameters the trader uses now for a market, and where each came
    from. ``version`` is the adopted parameter set's (None: the settings);
    ``sources`` maps each parameter name to ``"setting"`` or ``"optimizer vN"``;
    ``verdict`` is the optimizer's latest verdict for the market (``adopt``,
    ``keep``, ``stand_aside``; None before its first run)."""

    weights: dict[str, float]
    threshold: Decimal
    cooldown_candles: int
    stop_loss_pct: Decimal
    trailing_stop_pct: Decimal
    take_profit_pct: Decimal
    version: int | None
    sources: dict[str, str]
    verdict: str | None

    @property
    def standing_aside(self) -> bool:
        return self.verdict == "stand_aside"


PARAMETERS = ("weights", "threshold", "cooldown_candles", "stop_loss_pct", "trailing_stop_pct",
              "take_profit_pct")


def params_in_force(settings: Settings, db: Database, market: str) -> InForce:
    """What the trader trades ``market`` with (see :class:`InForce`)."""
    weights, version = current_weights(settings, db, market)
    run = run_store.latest(db, market)
    sources = {name: "setting" for name in PARAMETERS}
    if version is not None:
        sources["weights"] = f"optimizer v{version}"
    return InForce(weights, settings.threshold, settings.cooldown_candles,
                   settings.stop_loss_pct, settings.trailing_stop_pct, settings.take_profit_pct,
                   version, sources,
                   None if run is None else ("adopt" if run.adopted else "keep"))


def daily_seed(market: str, now: datetime) -> int:
    """Reproducible within a day, different across days and markets."""
    return int(now.strftime("%Y%m%d")) * 1000 + sum(market.encode()) % 1000


def search(settings: Settings, candles: CandleArrays, current: Mapping[str, float], *,
           candidates: int | None = None, seed: int = 0) -> OptimizeOutcome:
    """Split, search and judge (no storage)."""
    train, holdout = split(candles, float(settings.optimize_holdout))
    return choose(train, holdout, BacktestParams.from_settings(settings), current,
                  candidates=candidates or settings.optimize_candidates, seed=seed,
                  min_improvement=float(settings.optimize_min_improvement))


def _save(db: Database, market: str, candles: CandleArrays, outcome: OptimizeOutcome,
          current_version: int | None) -> tuple[int, int | None]:
    ts = candles.ts
    window = (datetime.fromtimestamp(int(ts[0]), UTC) if len(ts) else None,
              datetime.fromtimestamp(int(ts[-1]), UTC) if len(ts) else None)
    with db.cursor() as cur:
        run_id = run_store.insert(
            cur, market=market, window_start=window[0], window_end=window[1], bars=len(ts),
            candidates=outcome.candidates, seed=outcome.seed,
            objective_train_new=outcome.objective_train_new,
            objective_train_current=outcome.objective_train_current,
            objective_holdout_new=outcome.objective_holdout_new,
            objective_holdout_current=outcome.objective_holdout_current,
            train_new=outcome.train_new, train_current=outcome.train_current,
            holdout_new=outcome.holdout_new, holdout_current=outcome.holdout_current,
            weights=outcome.weights, current_weights=outcome.current_weights,
            current_version=current_version, adopted=outcome.adopted, reason=outcome.reason,
            duration_s=outcome.duration_s)
        version = None
        if outcome.adopted:
            version = weight_store.insert(cur, market, outcome.weights, "optimizer", run_id)
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
    current, version = current_weights(settings, db, market)
    outcome = search(settings, candles, current, candidates=candidates,
                     seed=daily_seed(market, moment) if seed is None else seed)
    run_id = new_version = None
    if save:
        run_id, new_version = _save(db, market, candles, outcome, version)
    fields: dict[str, Any] = {
        "market": market, "bars": len(candles), "candidates": outcome.candidates,
        "objective_new": _round(outcome.objective_holdout_new),
        "objective_current": _round(outcome.objective_holdout_current),
        "seconds": round(outcome.duration_s, 2), "reason": outcome.reason}
    if outcome.adopted and save:
        event(log, "weights.adopted", version=new_version, weights=_short(outcome.weights),
              **fields)
        notify("weights.adopted", market=market, version=new_version,
               weights=_short(outcome.weights), reason=outcome.reason)
    else:
        event(log, "weights.kept", version=version or "default", **fields)
    return OptimizeRun(market, outcome, len(candles), run_id, new_version)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _short(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:.3f}" for k, v in weights.items() if v)
