"""The weight search behind the optimizer job (:mod:`bot.optimizer`): which
signal weights would have traded a market best, and whether they are good
enough to replace the weights in use.

Pure: candle arrays in, weights and metrics out. Loading candles, storing the
outcome and scheduling belong to the optimizer job; nothing here touches the
database, the clock or the settings.

Objective
---------
``objective = sharpe * min(1, round_trips / FULL_CREDIT_TRIPS)`` with
``sharpe`` the annualised Sharpe ratio of per-bar equity returns over the
backtest (:attr:`bot.backtest.BacktestResult.sharpe`; bars in cash count as
zero returns) and ``FULL_CREDIT_TRIPS = 20``.

Why: a return alone rewards one lucky trade and ignores the risk taken to get
it; a per-bar Sharpe ratio prices both the size and the steadiness of the gains
over the whole span, and fees and the limit-price premium are already in the
returns. A Sharpe ratio measured on a handful of trades is still mostly luck,
so below 20 round trips it is shrunk proportionally towards 0, the score of
staying in cash. A candidate cannot win by trading once and getting lucky.

Search (:func:`search_weights`)
-------------------------------
Deterministic for a seed. Weights are points of the simplex on a grid of
1/10,000 (integer parts of ``GRID``), so they read well and repeat exactly.
Explore (70 % of the budget): equal weights, the current weights, the six
vertices (one signal alone), the 15 two-signal midpoints, then Dirichlet
samples, half uniform over the simplex (alpha 1), half sparse (alpha 0.25,
near faces: few signals). Refine (the rest): Dirichlet samples concentrated
around the 10 best so far. All are scored by
:func:`bot.batch.evaluate_batch` (an approximation); the 5 best are
re-scored with the exact engine, :func:`bot.backtest.run_backtest`, and the
best exact objective wins.

Adoption (:func:`choose`)
-------------------------
The caller passes a training part and a later holdout part (see
:func:`split`). The search runs on the training part only; the best candidate
and the current weights are then backtested exactly on the holdout. The
candidate is adopted only if all of these hold:

1. both parts have at least ``MIN_BARS`` (``WINDOW + 300``) candles;
2. it made at least ``MIN_HOLDOUT_TRIPS`` (5) round trips on the holdout;
3. it made money on the holdout (total return > 0, after fees);
4. its holdout gain is significant: the t statistic of its per-bar returns,
   ``mean / std * sqrt(bars)``, is at least ``MIN_T_STAT`` (2), so a holdout
   of pure noise passes about one time in 40;
5. its holdout objective beats the current weights' by ``min_improvement``.

So weights that merely fit the training noise, trade too rarely to judge, or
lose money out of sample never replace working ones. Rule 4 matters because
an annualised Sharpe ratio measured on a few days of minutes is noisy: its
standard error is ``sqrt(bars per year / bars)``, about 7 on a week.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bot import strategies as st
from bot.backtest import (
    BacktestParams,
    BacktestResult,
    CandleSeries,
    Prepared,
    bars_per_year,
    prepare,
    run_backtest,
)
from bot.batch import evaluate_batch
from bot.config import SIGNAL_NAMES
from bot.storage.candles import CandleArrays

FULL_CREDIT_TRIPS = 20  # round trips at which a Sharpe ratio counts in full
MIN_BARS = st.WINDOW + 300  # candles each part needs to be judged at all
MIN_HOLDOUT_TRIPS = 5
MIN_T_STAT = 2.0
GRID = 10_000  # weights are multiples of 1 / GRID
EXPLORE_SHARE = 0.7
REFINE_SEEDS = 10  # best candidates the refinement samples around
FINALISTS = 5  # best batch candidates re-scored with the exact engine
_SPARSE_ALPHA = 0.25
_LOCAL_CONCENTRATIONS = (60.0, 400.0)  # spread of refinement samples (higher: tighter)


def objective(sharpe: Any, round_trips: Any) -> Any:
    """The optimizer's score (see the module docstring); works on numbers and
    on numpy arrays alike."""
    return sharpe * np.minimum(1.0, np.asarray(round_trips, dtype=np.float64) / FULL_CREDIT_TRIPS)


def result_objective(result: BacktestResult) -> float:
    return float(objective(result.sharpe, result.round_trips))


# --- candidates -------------------------------------------------------------------


def _to_grid(points: np.ndarray) -> np.ndarray:
    """Simplex points -> integer parts summing to GRID (largest remainder)."""
    scaled = points / points.sum(axis=1, keepdims=True) * GRID
    parts = np.floor(scaled).astype(np.int64)
    short = GRID - parts.sum(axis=1)
    order = np.argsort(-(scaled - parts), axis=1, kind="stable")
    ranks = np.argsort(order, axis=1, kind="stable")
    parts += ranks < short[:, None]
    return parts


def _anchors(current: Mapping[str, float] | None) -> np.ndarray:
    k = st.N_SIGNALS
    rows = [np.ones(k)]
    if current:
        rows.append(st.weights_vector(current))
    rows.extend(np.eye(k))
    for a in range(k):
        for b in range(a + 1, k):
            pair = np.zeros(k)
            pair[[a, b]] = 1.0
            rows.append(pair)
    return np.array(rows)


def _explore(rng: np.random.Generator, count: int) -> np.ndarray:
    uniform = rng.dirichlet(np.ones(st.N_SIGNALS), count - count // 2)
    sparse = rng.dirichlet(np.full(st.N_SIGNALS, _SPARSE_ALPHA), count // 2)
    return np.concatenate([uniform, sparse])


def _refine(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    out = []
    for i in range(count):
        centre = centres[i % len(centres)]
        spread = _LOCAL_CONCENTRATIONS[(i // len(centres)) % len(_LOCAL_CONCENTRATIONS)]
        out.append(rng.dirichlet(centre * spread + 0.05))
    return np.array(out).reshape(-1, st.N_SIGNALS)


def _add_unique(parts: np.ndarray, seen: set[bytes], budget: int) -> np.ndarray:
    """The rows of ``parts`` not seen yet, in order, at most ``budget``."""
    keep = []
    for row in parts:
        key = row.tobytes()
        if key not in seen and len(keep) < budget:
            seen.add(key)
            keep.append(row)
    return np.array(keep, dtype=np.int64).reshape(-1, st.N_SIGNALS)


def _fill(rng: np.random.Generator, first: np.ndarray, sampler: Any, seen: set[bytes],
          budget: int) -> np.ndarray:
    """Unique grid points: ``first`` then ``sampler(rng, n)`` until ``budget``."""
    rows = [_add_unique(first, seen, budget)] if len(first) else []
    have = sum(len(r) for r in rows)
    for _ in range(8):  # duplicates are rare; give up rather than loop forever
        if have >= budget:
            break
        fresh = _add_unique(_to_grid(sampler(rng, budget - have)), seen, budget - have)
        rows.append(fresh)
        have += len(fresh)
    return np.concatenate(rows) if rows else np.zeros((0, st.N_SIGNALS), dtype=np.int64)


def as_weights(parts: np.ndarray) -> dict[str, float]:
    """Integer grid parts -> name -> weight (multiples of 1 / GRID)."""
    return {name: int(p) / GRID for name, p in zip(SIGNAL_NAMES, parts, strict=True)}


# --- search -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finalist:
    weights: dict[str, float]
    batch_objective: float
    objective: float  # exact, on the training candles


@dataclass(frozen=True)
class SearchResult:
    """The best weights found on the training candles, with their exact
    backtest and the finalists that were re-scored."""

    weights: dict[str, float]
    objective: float
    result: BacktestResult
    finalists: list[Finalist]
    candidates: int
    duration_s: float


def _batch_objective(prep: Prepared, parts: np.ndarray, params: BacktestParams) -> np.ndarray:
    metrics = evaluate_batch(prep, parts / GRID, params)
    return objective(metrics.sharpe, metrics.round_trips)


def search_weights(train: CandleSeries, params: BacktestParams, *, candidates: int = 5000,
                   seed: int = 0, current: Mapping[str, float] | None = None) -> SearchResult:
    """Seeded random search over the weight simplex on ``train`` (see the
    module docstring); the same inputs and seed give the same weights."""
    started = time.perf_counter()
    if len(train) < st.WINDOW + 1:
        raise ValueError(f"need more than {st.WINDOW} candles to search, got {len(train)}")
    prep = prepare(train, params)
    rng = np.random.default_rng(seed)
    budget = max(int(candidates), 1)
    seen: set[bytes] = set()
    explore_budget = max(1, round(budget * EXPLORE_SHARE))
    explored = _fill(rng, _to_grid(_anchors(current)), _explore, seen, explore_budget)
    scores = _batch_objective(prep, explored, params)
    pool, pool_scores = explored, scores
    refine_budget = budget - len(explored)
    if refine_budget > 0:
        centres = explored[np.argsort(-scores, kind="stable")[:REFINE_SEEDS]] / GRID

        def local(r: np.random.Generator, count: int) -> np.ndarray:
            return _refine(r, centres, count)

        refined = _fill(rng, np.zeros((0, st.N_SIGNALS)), local, seen, refine_budget)
        if len(refined):
            pool = np.concatenate([explored, refined])
            pool_scores = np.concatenate([scores, _batch_objective(prep, refined, params)])
    ranked = np.argsort(-pool_scores, kind="stable")[:FINALISTS]
    finalists = []
    best: tuple[float, int, BacktestResult] | None = None
    for rank, index in enumerate(ranked):
        weights = as_weights(pool[index])
        result = run_backtest(prep, weights, params)
        value = result_objective(result)
        finalists.append(Finalist(weights, float(pool_scores[index]), value))
        if best is None or value > best[0]:
            best = (value, rank, result)
    assert best is not None  # noqa: S101 - the pool is never empty
    value, rank, result = best
    return SearchResult(finalists[rank].weights, value, result, finalists, len(pool),
                        time.perf_counter() - started)


# --- adoption ------------------------------------------------------------------------


def _slice(candles: CandleSeries, start: int, stop: int) -> CandleArrays:
    ts = np.asarray(candles.ts, dtype=np.int64)
    volume = getattr(candles, "volume", None)
    cols = [np.asarray(getattr(candles, name), dtype=np.float64)[start:stop].copy()
            for name in ("open", "high", "low", "close")]
    vol = (np.zeros(len(ts)) if volume is None else np.asarray(volume, dtype=np.float64))
    return CandleArrays(ts[start:stop].copy(), *cols, vol[start:stop].copy())


def split(candles: CandleSeries, holdout_share: float) -> tuple[CandleArrays, CandleArrays]:
    """Split in time order: the newest ``holdout_share`` of the candles is the
    holdout. The holdout also gets the ``WINDOW - 1`` candles before it as
    warm-up, so that its first decision falls on its first own candle; those
    candles are only read, never traded, in the holdout."""
    if not 0.0 < float(holdout_share) < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {holdout_share!r}")
    n = len(candles.ts)
    cut = n - int(round(n * float(holdout_share)))
    return _slice(candles, 0, cut), _slice(candles, max(0, cut - st.FIRST_DECISION), n)


@dataclass(frozen=True)
class OptimizeOutcome:
    """What one optimize run found and decided.

    ``weights`` is the best candidate of the search (the current weights when
    no search ran); the trader should use it only if ``adopted``. Metrics are
    :meth:`BacktestResult.to_dict` of the exact engine (``None`` where not
    computed); objectives as in the module docstring.
    """

    weights: dict[str, float]
    adopted: bool
    reason: str
    current_weights: dict[str, float]
    objective_train_new: float | None = None
    objective_train_current: float | None = None
    objective_holdout_new: float | None = None
    objective_holdout_current: float | None = None
    train_new: dict[str, Any] | None = None
    train_current: dict[str, Any] | None = None
    holdout_new: dict[str, Any] | None = None
    holdout_current: dict[str, Any] | None = None
    candidates: int = 0
    duration_s: float = 0.0
    seed: int = 0
    finalists: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _too_short(train: CandleSeries, holdout: CandleSeries) -> str | None:
    for name, part in (("train", train), ("holdout", holdout)):
        if len(part.ts) < MIN_BARS:
            return f"not enough candles: {name} has {len(part.ts)}, needs at least {MIN_BARS}"
    return None


def t_stat(result: BacktestResult, per_year: float) -> float:
    """``mean / std * sqrt(N)`` of the per-bar returns behind ``result.sharpe``."""
    returns = max(result.bars - st.WINDOW, 1)
    return result.sharpe * math.sqrt(returns / per_year)


def _verdict(new: BacktestResult, new_t: float, new_obj: float, cur_obj: float,
             min_improvement: float) -> tuple[bool, str]:
    if new.round_trips < MIN_HOLDOUT_TRIPS:
        return False, (f"new weights made {new.round_trips} round trips on the holdout, "
                       f"fewer than {MIN_HOLDOUT_TRIPS}")
    if not new.total_return > 0:
        return False, f"new weights lost money on the holdout ({new.total_return:+.4%})"
    if not new_t >= MIN_T_STAT:
        return False, (f"new weights' holdout gain is not significant "
                       f"(t = {new_t:.2f} < {MIN_T_STAT:g})")
    if not new_obj >= cur_obj + min_improvement:
        return False, (f"holdout objective {new_obj:.3f} does not beat the current "
                       f"{cur_obj:.3f} by {min_improvement:g}")
    return True, (f"holdout objective {new_obj:.3f} beats the current {cur_obj:.3f} "
                  f"by at least {min_improvement:g}, return {new.total_return:+.4%}")


def choose(train: CandleSeries, holdout: CandleSeries, params: BacktestParams,
           current_weights: Mapping[str, float] | None, *, candidates: int = 5000,
           seed: int = 0, min_improvement: float = 0.1) -> OptimizeOutcome:
    """Search on ``train``, judge on ``holdout`` against the current weights,
    and decide whether to adopt (rules in the module docstring)."""
    started = time.perf_counter()
    current = st.normalise_weights(current_weights)
    short = _too_short(train, holdout)
    if short:
        return OptimizeOutcome(weights=current, adopted=False, reason=short,
                               current_weights=current, seed=seed,
                               duration_s=time.perf_counter() - started)
    found = search_weights(train, params, candidates=candidates, seed=seed,
                           current=current_weights or None)
    train_current = run_backtest(train, current_weights, params)
    holdout_new = run_backtest(holdout, found.weights, params)
    holdout_current = run_backtest(holdout, current_weights, params)
    new_obj, cur_obj = result_objective(holdout_new), result_objective(holdout_current)
    new_t = t_stat(holdout_new, bars_per_year(np.asarray(holdout.ts)))
    adopted, reason = _verdict(holdout_new, new_t, new_obj, cur_obj, float(min_improvement))
    return OptimizeOutcome(
        weights=found.weights, adopted=adopted, reason=reason, current_weights=current,
        objective_train_new=found.objective,
        objective_train_current=result_objective(train_current),
        objective_holdout_new=new_obj, objective_holdout_current=cur_obj,
        train_new=found.result.to_dict(), train_current=train_current.to_dict(),
        holdout_new=holdout_new.to_dict(), holdout_current=holdout_current.to_dict(),
        candidates=found.candidates, duration_s=time.perf_counter() - started, seed=seed,
        finalists=[asdict(f) for f in found.finalists],
    )
