"""The parameter search behind the optimizer job (:mod:`bot.optimize.job`): which
parameter set (signal weights, THRESHOLD, COOLDOWN_CANDLES, the exits) would
have traded a market best, and the verdict of a run: adopt it, keep the set
in force, or stand aside.

Pure: candle arrays in, parameter sets and metrics out. Loading candles,
storing the outcome and scheduling belong to the optimizer job; nothing here
touches the database, the clock or the settings.

Objective
---------
``objective = sharpe * min(1, round_trips / FULL_CREDIT_TRIPS)`` with
``sharpe`` the annualised Sharpe ratio of per-bar equity returns over the
backtest (:attr:`bot.optimize.backtest.BacktestResult.sharpe`; bars in cash count as
zero returns) and ``FULL_CREDIT_TRIPS = 20``.

Why: a return alone rewards one lucky trade and ignores the risk taken to get
it; a per-bar Sharpe ratio prices both the size and the steadiness of the gains
over the whole span, and fees and the limit-price premium are already in the
returns. A Sharpe ratio measured on a handful of trades is still mostly luck,
so below 20 round trips it is shrunk proportionally towards 0, the score of
staying in cash. A candidate cannot win by trading once and getting lucky.

Candidates (:func:`search_sets`)
--------------------------------
A candidate is a :class:`ParamSet`. Only the groups named in ``tune`` (the
OPTIMIZE_TUNE setting: ``weights``, ``threshold``, ``cooldown``, ``exits``)
vary; the others keep the current set's values. The varying values come from
fixed grids, so they read well and repeat exactly:

* weights: points of the simplex on a grid of 1/10,000 (integer parts of ``GRID``);
* threshold: ``THRESHOLDS`` = 0.10, 0.15, ..., 1.00 (a score is a weighted
  sum of -1/0/+1 signals: finer steps rarely change a decision);
* cooldown: ``COOLDOWNS`` = 0, 5, 15, 30, 60, 120 candles (none, minutes, hours);
* exits: stop-loss ``STOP_LOSSES`` = 0, 1, 2, 3, 5, 8 %, trailing stop
  ``TRAILING_STOPS`` = 0, 1, 2, 4 %, take-profit ``TAKE_PROFITS`` = 0, 2, 4, 8 %
  (0 = off; minute moves of a KRW market are a few tenths of a percent, so
  tighter levels only churn).

Search: deterministic for a seed. Explore (70 % of the budget): equal
weights, the current weights, the six vertices (one signal alone) and the 15
two-signal midpoints, each with the current set's other values; the current
set with each grid value of each tuned group; then random sets: weights from
Dirichlet samples, half uniform over the simplex (alpha 1), half sparse
(alpha 0.25, near faces: few signals), each tuned value drawn uniformly from
its grid, jointly. Refine (the rest): sets around the 10 best so far, with
Dirichlet samples concentrated around their weights and each tuned value
moved by at most one grid step. All are scored by
:func:`bot.optimize.batch.evaluate_batch` (an approximation); the 5 best are
re-scored with the exact engine, :func:`bot.optimize.backtest.run_backtest`, and the
best exact objective wins.

Verdict (:func:`choose`)
------------------------
The caller passes a training part and a later holdout part (see
:func:`split`) and the set in force. The search runs on the training part
only; the best candidate and the set in force are then backtested exactly on
the holdout. The candidate is **adopted** only if all of these hold:

1. both parts have at least ``MIN_BARS`` (``WINDOW + 300``) candles;
2. it made at least ``MIN_HOLDOUT_TRIPS`` (5) round trips on the holdout;
3. it made money on the holdout (total return > 0, after fees);
4. its holdout gain is significant: the t statistic of its per-bar returns,
   ``mean / std * sqrt(bars)``, is at least ``MIN_T_STAT`` (2), so a holdout
   of pure noise passes about one time in 40;
5. its holdout objective beats the set in force's by ``min_improvement``.

So sets that merely fit the training noise, trade too rarely to judge, or
lose money out of sample never replace working ones. Rule 4 matters because
an annualised Sharpe ratio measured on a few days of minutes is noisy: its
standard error is ``sqrt(bars per year / bars)``, about 7 on a week.

Otherwise the verdict is **stand aside** (no new buys in the market until a
later run adopts a set; exits and sells go on) when the set in force lost
money on the holdout beyond the noise margin:

* its holdout total return, after fees, is below ``-STAND_ASIDE_LOSS``
  (-0.5 % of equity), and
* the t statistic of its per-bar holdout returns is at most
  ``STAND_ASIDE_T`` (-1).

Why this margin: 0.5 % is more than one round trip costs at the default fees
and limit premium (2 x (0.05 % + 0.15 %) = 0.4 %), so a set that merely
traded once or twice and paid its costs is not benched for it; and t <= -1
asks that the loss be steady rather than one unlucky trade (a set with no
edge at all gets t <= -1 about one holdout in six before costs, far more
often once it pays them: churning is exactly what this catches). Standing
aside costs little when wrong (the account waits in cash), while trading on
a set that is losing out of sample costs money every day, so the margin is
deliberately modest compared with the adoption rule's t >= 2.

Standing aside is sticky: a market standing aside stays so until a run
adopts a set, so a run that would otherwise keep (no candidate qualifies,
the set in force did not lose beyond the margin this time, or too few
candles) records stand aside again. Otherwise the verdict is **keep**.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, overload

import numpy as np

from bot.config import Settings
from bot.models import GROUP_OF, SIGNAL_NAMES, TUNABLE, CandleArrays
from bot.optimize.backtest import (
    BacktestParams,
    BacktestResult,
    CandleSeries,
    Prepared,
    SizedCandles,
    bars_per_year,
    prepare,
    run_backtest,
)
from bot.optimize.batch import evaluate_batch
from bot.trading import strategies as st
from bot.trading.params import combine

FULL_CREDIT_TRIPS = 20  # round trips at which a Sharpe ratio counts in full
MIN_BARS = st.WINDOW + 300  # candles each part needs to be judged at all
MIN_HOLDOUT_TRIPS = 5
MIN_T_STAT = 2.0
STAND_ASIDE_LOSS = 0.005  # holdout loss (share of equity) beyond which ...
STAND_ASIDE_T = -1.0  # ... with a t statistic at most this, the set in force lost
GRID = 10_000  # weights are multiples of 1 / GRID
EXPLORE_SHARE = 0.7
REFINE_SEEDS = 10  # best candidates the refinement samples around
FINALISTS = 5  # best batch candidates re-scored with the exact engine
_SPARSE_ALPHA = 0.25
_LOCAL_CONCENTRATIONS = (60.0, 400.0)  # spread of refinement samples (higher: tighter)

ADOPT, KEEP, STAND_ASIDE = "adopt", "keep", "stand_aside"
VERDICTS = (ADOPT, KEEP, STAND_ASIDE)
DEFAULT_TUNE = ("weights", "threshold", "cooldown")  # OPTIMIZE_TUNE's default

THRESHOLDS = tuple(round(0.1 + 0.05 * k, 2) for k in range(19))  # 0.10 .. 1.00
COOLDOWNS = (0, 5, 15, 30, 60, 120)
STOP_LOSSES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
TRAILING_STOPS = (0.0, 1.0, 2.0, 4.0)
TAKE_PROFITS = (0.0, 2.0, 4.0, 8.0)

# The non-weight values of a set: column order of the value matrix, grid and the
# OPTIMIZE_TUNE group that varies it.
VALUE_FIELDS = ("threshold", "cooldown_candles", "stop_loss_pct", "trailing_stop_pct",
                "take_profit_pct")
GRIDS: dict[str, tuple[float, ...]] = {
    "threshold": THRESHOLDS, "cooldown_candles": tuple(float(c) for c in COOLDOWNS),
    "stop_loss_pct": STOP_LOSSES, "trailing_stop_pct": TRAILING_STOPS,
    "take_profit_pct": TAKE_PROFITS}
# Until bot/optimize/batch.py takes per-candidate arrays, _batch_objective evaluates one
# group of equal values at a time (the same numbers, slower).
_BATCH_TAKES_ARRAYS = "thresholds" in inspect.signature(evaluate_batch).parameters


@overload
def objective(sharpe: float, round_trips: float) -> float: ...
@overload
def objective(sharpe: np.ndarray, round_trips: np.ndarray) -> np.ndarray: ...
def objective(sharpe: float | np.ndarray,
              round_trips: float | np.ndarray) -> float | np.ndarray:
    """The optimizer's score (see the module docstring); works on numbers and
    on numpy arrays alike."""
    return sharpe * np.minimum(1.0, np.asarray(round_trips, dtype=np.float64) / FULL_CREDIT_TRIPS)


def result_objective(result: BacktestResult) -> float:
    return float(objective(result.sharpe, result.round_trips))


# --- parameter sets ---------------------------------------------------------------


@dataclass(frozen=True)
class ParamSet:
    """What a candidate (or the set in force) trades with: normalised weights
    and the five tunable settings, as numbers."""

    weights: dict[str, float]
    threshold: float
    cooldown_candles: int
    stop_loss_pct: float
    trailing_stop_pct: float
    take_profit_pct: float

    def __post_init__(self) -> None:
        # Normalised once here (idempotent), so equal sets compare equal.
        object.__setattr__(self, "weights", st.normalise_weights(self.weights))

    @classmethod
    def of(cls, params: BacktestParams, weights: Mapping[str, float] | None = None) -> ParamSet:
        """``weights`` (None: equal) with ``params``' tunable values."""
        return cls(dict(weights or {}), float(params.threshold),
                   int(params.cooldown_candles), float(params.stop_loss_pct),
                   float(params.trailing_stop_pct), float(params.take_profit_pct))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamSet:
        return cls(dict(data["weights"]), float(data["threshold"]),
                   int(data["cooldown_candles"]), float(data["stop_loss_pct"]),
                   float(data["trailing_stop_pct"]), float(data["take_profit_pct"]))

    def apply(self, params: BacktestParams) -> BacktestParams:
        """``params`` with this set's tunable values."""
        return replace(params, threshold=self.threshold, cooldown_candles=self.cooldown_candles,
                       stop_loss_pct=self.stop_loss_pct,
                       trailing_stop_pct=self.trailing_stop_pct,
                       take_profit_pct=self.take_profit_pct)

    def values(self) -> np.ndarray:
        return np.array([float(getattr(self, name)) for name in VALUE_FIELDS])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        """One line for logs and notifications: the weights used, then the values."""
        weights = ",".join(f"{k}={v:.3f}" for k, v in self.weights.items() if v)
        return (f"{weights} threshold={self.threshold:g} cooldown={self.cooldown_candles}"
                f" stop_loss={self.stop_loss_pct:g}% trailing={self.trailing_stop_pct:g}%"
                f" take_profit={self.take_profit_pct:g}%")


def check_tune(tune: Sequence[str]) -> tuple[str, ...]:
    """``tune`` in TUNABLE order; ValueError for an unknown or empty one."""
    unknown = sorted(set(tune) - set(TUNABLE))
    if unknown or not tune:
        raise ValueError(f"tune must name some of {', '.join(TUNABLE)}, got {list(tune)}")
    return tuple(name for name in TUNABLE if name in tune)


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


def _weight_anchors(current: Mapping[str, float]) -> np.ndarray:
    k = st.N_SIGNALS
    rows = [np.ones(k), st.weights_vector(current)]
    rows.extend(np.eye(k))
    for a in range(k):
        for b in range(a + 1, k):
            pair = np.zeros(k)
            pair[[a, b]] = 1.0
            rows.append(pair)
    return np.array(rows)


def _explore_weights(rng: np.random.Generator, count: int) -> np.ndarray:
    uniform = rng.dirichlet(np.ones(st.N_SIGNALS), count - count // 2)
    sparse = rng.dirichlet(np.full(st.N_SIGNALS, _SPARSE_ALPHA), count // 2)
    return np.concatenate([uniform, sparse])


def as_weights(row: np.ndarray) -> dict[str, float]:
    """A weight row (grid parts / GRID, or the current weights) -> name -> weight."""
    return {name: float(w) for name, w in zip(SIGNAL_NAMES, row, strict=True)}


class _Space:
    """The candidates of one search: which columns vary, the current set's
    values, and samplers that draw weight rows and value rows together."""

    def __init__(self, current: ParamSet, tune: Sequence[str]):
        self.tune = check_tune(tune)
        self.tune_weights = "weights" in self.tune
        self.varying = [k for k, name in enumerate(VALUE_FIELDS) if GROUP_OF[name] in self.tune]
        self.current_values = current.values()
        # A fixed weight row is the current weights exactly (they need not lie on the grid).
        self.fixed_weights = np.array([current.weights[name] for name in SIGNAL_NAMES])

    def weights(self, points: np.ndarray) -> np.ndarray:
        if not self.tune_weights:
            return np.tile(self.fixed_weights, (len(points), 1))
        return _to_grid(points) / GRID

    def anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """The simplex anchors with the current values, then the current
        weights with each grid value of each varying column."""
        weight_rows = self.weights(_weight_anchors(as_weights(self.fixed_weights)))
        value_rows = [np.tile(self.current_values, (len(weight_rows), 1))]
        base = weight_rows[1:2]  # the current weights (on the grid when they vary)
        weight_list = [weight_rows]
        for k in self.varying:
            grid = np.array(GRIDS[VALUE_FIELDS[k]])
            values = np.tile(self.current_values, (len(grid), 1))
            values[:, k] = grid
            value_rows.append(values)
            weight_list.append(np.tile(base, (len(grid), 1)))
        return np.concatenate(weight_list), np.concatenate(value_rows)

    def explore(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        weights = self.weights(_explore_weights(rng, count) if self.tune_weights
                               else np.zeros((count, st.N_SIGNALS)))
        values = np.tile(self.current_values, (count, 1))
        for k in self.varying:
            values[:, k] = rng.choice(np.array(GRIDS[VALUE_FIELDS[k]]), count)
        return weights, values

    def refine(self, rng: np.random.Generator, centres_w: np.ndarray, centres_v: np.ndarray,
               count: int) -> tuple[np.ndarray, np.ndarray]:
        """Sets around the centres: concentrated Dirichlet weights, each
        varying value at most one grid step away."""
        which = np.arange(count) % len(centres_w)
        if self.tune_weights:
            points = []
            for i in range(count):
                spread = _LOCAL_CONCENTRATIONS[(i // len(centres_w))
                                               % len(_LOCAL_CONCENTRATIONS)]
                points.append(rng.dirichlet(centres_w[which[i]] * spread + 0.05))
            weights = self.weights(np.array(points).reshape(-1, st.N_SIGNALS))
        else:
            weights = self.weights(np.zeros((count, st.N_SIGNALS)))
        values = centres_v[which].copy()
        for k in self.varying:
            grid = np.array(GRIDS[VALUE_FIELDS[k]])
            nearest = np.abs(grid[None, :] - values[:, k:k + 1]).argmin(axis=1)
            step = rng.integers(-1, 2, count)
            values[:, k] = grid[np.clip(nearest + step, 0, len(grid) - 1)]
        return weights, values


def _add_unique(weights: np.ndarray, values: np.ndarray, seen: set[bytes],
                budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows not seen yet, in order, at most ``budget``."""
    keep: list[int] = []
    for i in range(len(weights)):
        key = weights[i].tobytes() + values[i].tobytes()
        if key not in seen and len(keep) < budget:
            seen.add(key)
            keep.append(i)
    return weights[keep].reshape(-1, st.N_SIGNALS), values[keep].reshape(-1, len(VALUE_FIELDS))


def _fill(first: tuple[np.ndarray, np.ndarray] | None,
          sampler: Callable[[int], tuple[np.ndarray, np.ndarray]], seen: set[bytes],
          budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique sets: ``first`` then ``sampler(n)`` until ``budget``."""
    parts = [_add_unique(*first, seen, budget)] if first is not None else []
    have = sum(len(w) for w, _ in parts)
    for _ in range(8):  # duplicates are rare; give up rather than loop forever
        if have >= budget:
            break
        fresh = _add_unique(*sampler(budget - have), seen, budget - have)
        parts.append(fresh)
        have += len(fresh[0])
    if not parts:
        return np.zeros((0, st.N_SIGNALS)), np.zeros((0, len(VALUE_FIELDS)))
    return (np.concatenate([w for w, _ in parts]), np.concatenate([v for _, v in parts]))


def _set_of(weights: np.ndarray, values: np.ndarray) -> ParamSet:
    return ParamSet(as_weights(weights), float(values[0]), int(values[1]), float(values[2]),
                    float(values[3]), float(values[4]))


# --- search -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finalist:
    params: dict[str, Any]  # ParamSet.to_dict()
    batch_objective: float
    objective: float  # exact, on the training candles


@dataclass(frozen=True)
class SearchResult:
    """The best set found on the training candles, with its exact backtest
    and the finalists that were re-scored."""

    best: ParamSet
    objective: float
    result: BacktestResult
    finalists: list[Finalist]
    candidates: int
    duration_s: float

    @property
    def weights(self) -> dict[str, float]:
        return self.best.weights


def _batch_objective(prep: Prepared, weights: np.ndarray, values: np.ndarray,
                     params: BacktestParams, varying: Sequence[int]) -> np.ndarray:
    """The batch evaluator's objective of every row; ``params`` holds the
    values of the columns that do not vary."""
    if not len(weights):
        return np.zeros(0)
    if _BATCH_TAKES_ARRAYS or not varying:
        arrays = {VALUE_FIELDS[k]: (values[:, k].astype(np.int64) if k == 1 else values[:, k])
                  for k in varying}
        metrics = evaluate_batch(prep, weights, params, thresholds=arrays.get("threshold"),
                                 cooldowns=arrays.get("cooldown_candles"),
                                 stop_losses=arrays.get("stop_loss_pct"),
                                 trailing_stops=arrays.get("trailing_stop_pct"),
                                 take_profits=arrays.get("take_profit_pct"))
        return objective(metrics.sharpe, metrics.round_trips)
    out = np.zeros(len(weights))
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(values):
        groups.setdefault(row.tobytes(), []).append(i)
    for rows in groups.values():
        group = _set_of(weights[rows[0]], values[rows[0]]).apply(params)
        metrics = evaluate_batch(prep, weights[rows], group)
        out[rows] = objective(metrics.sharpe, metrics.round_trips)
    return out


def search_sets(train: SizedCandles, params: BacktestParams, *,
                tune: Sequence[str] = DEFAULT_TUNE, candidates: int = 5000, seed: int = 0,
                current: ParamSet | None = None) -> SearchResult:
    """Seeded random search over parameter sets on ``train`` (see the module
    docstring); the same inputs and seed give the same set. ``current`` is the
    set in force (default: equal weights and ``params``' values): the groups
    not in ``tune`` keep its values."""
    started = time.perf_counter()
    if len(train) < st.WINDOW + 1:
        raise ValueError(f"need more than {st.WINDOW} candles to search, got {len(train)}")
    current = current or ParamSet.of(params)
    base = current.apply(params)
    prep = prepare(train, base)
    space = _Space(current, tune)
    rng = np.random.default_rng(seed)
    budget = max(int(candidates), 1)
    seen: set[bytes] = set()
    explore_budget = max(1, round(budget * EXPLORE_SHARE))
    pool_w, pool_v = _fill(space.anchors(), lambda n: space.explore(rng, n), seen,
                           explore_budget)
    scores = _batch_objective(prep, pool_w, pool_v, base, space.varying)
    refine_budget = budget - len(pool_w)
    if refine_budget > 0:
        top = np.argsort(-scores, kind="stable")[:REFINE_SEEDS]
        centres_w, centres_v = pool_w[top], pool_v[top]
        more_w, more_v = _fill(None, lambda n: space.refine(rng, centres_w, centres_v, n),
                               seen, refine_budget)
        if len(more_w):
            scores = np.concatenate(
                [scores, _batch_objective(prep, more_w, more_v, base, space.varying)])
            pool_w, pool_v = np.concatenate([pool_w, more_w]), np.concatenate([pool_v, more_v])
    ranked = np.argsort(-scores, kind="stable")[:FINALISTS]
    finalists = []
    best: tuple[float, ParamSet, BacktestResult] | None = None
    for index in ranked:
        candidate = _set_of(pool_w[index], pool_v[index])
        result = run_backtest(prep, candidate.weights, candidate.apply(params))
        value = result_objective(result)
        finalists.append(Finalist(candidate.to_dict(), float(scores[index]), value))
        if best is None or value > best[0]:
            best = (value, candidate, result)
    assert best is not None  # noqa: S101 - the pool is never empty
    value, chosen, result = best
    return SearchResult(chosen, value, result, finalists, len(pool_w),
                        time.perf_counter() - started)


# --- the verdict ----------------------------------------------------------------------


def slice_candles(candles: CandleSeries, start: int, stop: int) -> CandleArrays:
    """Candles ``start..stop-1`` as arrays of their own (a copy)."""
    ts = np.asarray(candles.ts, dtype=np.int64)
    volume = getattr(candles, "volume", None)
    open_, high, low, close = (np.asarray(getattr(candles, name), dtype=np.float64)
                               [start:stop].copy() for name in ("open", "high", "low", "close"))
    vol = (np.zeros(len(ts)) if volume is None else np.asarray(volume, dtype=np.float64))
    return CandleArrays(ts[start:stop].copy(), open_, high, low, close, vol[start:stop].copy())


def split(candles: CandleSeries, holdout_share: float) -> tuple[CandleArrays, CandleArrays]:
    """Split in time order: the newest ``holdout_share`` of the candles is the
    holdout. The holdout also gets the ``WINDOW - 1`` candles before it as
    warm-up, so that its first decision falls on its first own candle; those
    candles are only read, never traded, in the holdout."""
    if not 0.0 < float(holdout_share) < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {holdout_share!r}")
    n = len(candles.ts)
    cut = n - int(round(n * float(holdout_share)))
    warm = max(0, cut - st.FIRST_DECISION)
    return slice_candles(candles, 0, cut), slice_candles(candles, warm, n)


@dataclass(frozen=True)
class OptimizeOutcome:
    """What one optimize run found and decided.

    ``verdict`` is ``adopt``, ``keep`` or ``stand_aside`` (module docstring).
    ``params`` is the best candidate of the search (the set in force when no
    search ran); the trader should use it only if adopted. ``weights`` and
    ``current_weights`` repeat the two sets' weights. Metrics are
    :meth:`BacktestResult.to_dict` of the exact engine (``None`` where not
    computed); objectives and t statistics as in the module docstring.
    """

    verdict: str
    reason: str
    params: dict[str, Any]
    current_params: dict[str, Any]
    tune: tuple[str, ...] = DEFAULT_TUNE
    objective_train_new: float | None = None
    objective_train_current: float | None = None
    objective_holdout_new: float | None = None
    objective_holdout_current: float | None = None
    t_holdout_new: float | None = None
    t_holdout_current: float | None = None
    train_new: dict[str, Any] | None = None
    train_current: dict[str, Any] | None = None
    holdout_new: dict[str, Any] | None = None
    holdout_current: dict[str, Any] | None = None
    candidates: int = 0
    duration_s: float = 0.0
    seed: int = 0
    finalists: list[dict[str, Any]] = field(default_factory=list)

    @property
    def adopted(self) -> bool:
        return self.verdict == ADOPT

    @property
    def judged(self) -> bool:
        """Whether the holdout was judged at all (False: too few candles)."""
        return self.holdout_current is not None

    @property
    def weights(self) -> dict[str, float]:
        return self.params["weights"]

    @property
    def current_weights(self) -> dict[str, float]:
        return self.current_params["weights"]

    @property
    def best(self) -> ParamSet:
        return ParamSet.from_dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tune": list(self.tune), "adopted": self.adopted,
                "weights": self.weights, "current_weights": self.current_weights}


def _too_short(train: CandleSeries, holdout: CandleSeries) -> str | None:
    for name, part in (("train", train), ("holdout", holdout)):
        if len(part.ts) < MIN_BARS:
            return f"not enough candles: {name} has {len(part.ts)}, needs at least {MIN_BARS}"
    return None


def t_stat(result: BacktestResult, per_year: float) -> float:
    """``mean / std * sqrt(N)`` of the per-bar returns behind ``result.sharpe``."""
    returns = max(result.bars - st.WINDOW, 1)
    return result.sharpe * math.sqrt(returns / per_year)


def _adoption(new: BacktestResult, new_t: float, new_obj: float, cur_obj: float,
              min_improvement: float) -> tuple[bool, str]:
    if new.round_trips < MIN_HOLDOUT_TRIPS:
        return False, (f"the best candidate made {new.round_trips} round trips on the holdout,"
                       f" fewer than {MIN_HOLDOUT_TRIPS}")
    if not new.total_return > 0:
        return False, f"the best candidate lost money on the holdout ({new.total_return:+.4%})"
    if not new_t >= MIN_T_STAT:
        return False, (f"the best candidate's holdout gain is not significant "
                       f"(t = {new_t:.2f} < {MIN_T_STAT:g})")
    if not new_obj >= cur_obj + min_improvement:
        return False, (f"holdout objective {new_obj:.3f} does not beat the current "
                       f"{cur_obj:.3f} by {min_improvement:g}")
    return True, (f"holdout objective {new_obj:.3f} beats the current {cur_obj:.3f} "
                  f"by at least {min_improvement:g}, return {new.total_return:+.4%}")


def lost_beyond_noise(result: BacktestResult, t: float) -> bool:
    """The stand-aside margin (module docstring): a loss below
    -STAND_ASIDE_LOSS with a t statistic at most STAND_ASIDE_T."""
    return result.total_return < -STAND_ASIDE_LOSS and t <= STAND_ASIDE_T


def verdict(adopt: tuple[bool, str], current: BacktestResult | None, current_t: float | None,
            standing_aside: bool) -> tuple[str, str]:
    """The run's verdict and reason from the adoption check, the set in
    force's holdout backtest (None: not judged) and whether the market
    stands aside already."""
    ok, why = adopt
    if ok:
        return ADOPT, why
    if current is not None and current_t is not None and lost_beyond_noise(current, current_t):
        return STAND_ASIDE, (f"the parameters in force lost {current.total_return:+.2%} on the "
                             f"holdout (t = {current_t:.2f}) and no candidate qualifies: {why}")
    if standing_aside:
        return STAND_ASIDE, f"still standing aside, no candidate qualifies: {why}"
    return KEEP, why


def _current_set(current: ParamSet | Mapping[str, float] | None,
                 params: BacktestParams) -> ParamSet:
    if isinstance(current, ParamSet):
        return current
    return ParamSet.of(params, current or None)


def choose(train: SizedCandles, holdout: CandleSeries, params: BacktestParams,
           current: ParamSet | Mapping[str, float] | None = None, *,
           tune: Sequence[str] = DEFAULT_TUNE, candidates: int = 5000, seed: int = 0,
           min_improvement: float = 0.1, standing_aside: bool = False,
           report_train: bool = True) -> OptimizeOutcome:
    """Search on ``train``, judge on ``holdout`` against the set in force
    (``current``: a :class:`ParamSet`, or weights with ``params``' values) and
    give the verdict (rules in the module docstring). ``params`` holds what is
    not tuned (fees, guards, cash) and, with weights, the default set.
    ``report_train=False`` skips the set in force's training backtest, which
    only the report shows (the walk-forward does not need it)."""
    started = time.perf_counter()
    tune = check_tune(tune)
    cur = _current_set(current, params)
    short = _too_short(train, holdout)
    if short:
        verdict_, reason = verdict((False, short), None, None, standing_aside)
        return OptimizeOutcome(verdict_, reason, cur.to_dict(), cur.to_dict(), tune=tune,
                               seed=seed, duration_s=time.perf_counter() - started)
    found = search_sets(train, params, tune=tune, candidates=candidates, seed=seed, current=cur)
    cur_params, new_params = cur.apply(params), found.best.apply(params)
    train_current = run_backtest(train, cur.weights, cur_params) if report_train else None
    holdout_prep = prepare(holdout, cur_params)
    holdout_new = run_backtest(holdout_prep, found.best.weights, new_params)
    holdout_current = run_backtest(holdout_prep, cur.weights, cur_params)
    new_obj, cur_obj = result_objective(holdout_new), result_objective(holdout_current)
    per_year = bars_per_year(np.asarray(holdout.ts))
    new_t, cur_t = t_stat(holdout_new, per_year), t_stat(holdout_current, per_year)
    verdict_, reason = verdict(
        _adoption(holdout_new, new_t, new_obj, cur_obj, float(min_improvement)),
        holdout_current, cur_t, standing_aside)
    return OptimizeOutcome(
        verdict=verdict_, reason=reason, params=found.best.to_dict(),
        current_params=cur.to_dict(), tune=tune,
        objective_train_new=found.objective,
        objective_train_current=None if train_current is None else result_objective(
            train_current),
        objective_holdout_new=new_obj, objective_holdout_current=cur_obj,
        t_holdout_new=new_t, t_holdout_current=cur_t,
        train_new=found.result.to_dict(),
        train_current=None if train_current is None else train_current.to_dict(),
        holdout_new=holdout_new.to_dict(), holdout_current=holdout_current.to_dict(),
        candidates=found.candidates, duration_s=time.perf_counter() - started, seed=seed,
        finalists=[asdict(f) for f in found.finalists],
    )


# --- from the settings -------------------------------------------------------------


def settings_set(settings: Settings) -> ParamSet:
    """The set the settings define: WEIGHTS (empty: equal), THRESHOLD, ..."""
    return ParamSet.of(BacktestParams.from_settings(settings), dict(settings.weights))


def combine_sets(base: ParamSet, adopted: ParamSet | None, tuned: Iterable[str],
                 tune: Iterable[str], label: str) -> tuple[ParamSet, dict[str, str]]:
    """:func:`bot.trading.params.combine` over parameter sets: the set in force and
    each value's source."""
    values, sources = combine(base.to_dict(), None if adopted is None else adopted.to_dict(),
                              tuned, tune, label)
    return ParamSet(**values), sources


def tune(settings: Settings, candles: CandleArrays, current: ParamSet | None = None, *,
         standing_aside: bool = False, candidates: int | None = None,
         seed: int = 0, report_train: bool = True) -> OptimizeOutcome:
    """Split, search and judge against ``current`` (default: the settings'
    set), exactly as the nightly job does; no storage. ``report_train``: see
    :func:`choose`."""
    train, holdout = split(candles, float(settings.optimize_holdout))
    return choose(train, holdout, BacktestParams.from_settings(settings),
                  current or settings_set(settings), tune=settings.optimize_tune,
                  candidates=candidates or settings.optimize_candidates, seed=seed,
                  min_improvement=float(settings.optimize_min_improvement),
                  standing_aside=standing_aside, report_train=report_train)
