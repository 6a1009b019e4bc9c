"""Batch evaluation for the optimizer: many parameter sets over the same
candles in one call, sharing the parameter-independent work (signals, limit
prices, fill prices; see :func:`bot.optimize.backtest.prepare`).

Each candidate is a weight vector (its 729-entry score table, the very
floats :func:`bot.optimize.backtest.run_backtest` compares) plus, optionally, its own
threshold, cooldown and exit levels. The trading rules are those of
docs/semantics.md for one market with the whole cash as budget, restated in
float64 in one compiled loop over the bars per candidate (numba: the state
machine, with its exits, cooldown, stop guard and daily loss limit, is a
recurrence that does not vectorise). While flat a bar costs a table lookup
and a compare. Candidates are split into chunks run on a thread pool (the
compiled loop releases the GIL); memory is bounded by the chunk size
whatever the number of candidates.

Floats against the exact engine's decimals: levels are compared with a
relative tie tolerance of ``_TIE`` in favour of the rule (an exact tie
counts as a hit, as ``<=`` does in Decimal), volumes are floored to 8
decimals in float. Decisions and fills agree except for ties closer than
that; equity agrees to about 1e-9. :func:`trace_batch` runs the same loop
for one candidate and returns its bars and fills, so tests compare the two
engines bar for bar.

Compiled code is cached on disk (numba ``cache=True``): next to this file
when its folder is writable, else in ``NUMBA_CACHE_DIR`` or the user's cache
folder. Pure, like the backtest: no database, no settings lookups.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numba
import numpy as np

from bot.optimize.backtest import (
    BUY,
    FLAT_STD,
    SELL,
    T_ASIDE,
    T_COOL,
    T_GUARD,
    T_LOSS,
    T_PROFIT,
    T_SIGNAL,
    T_STOP,
    T_TRAIL,
    TRIGGERS,
    BacktestParams,
    CandleSeries,
    Prepared,
    prepared,
)
from bot.trading import strategies as st

if TYPE_CHECKING:  # types only
    from numpy.typing import ArrayLike

__all__ = ["TRIGGERS", "BatchMetrics", "BatchTrace", "evaluate_batch", "trace_batch",
           "warm_up"]

# The trigger codes (bot.optimize.backtest.TRIGGERS) as literals: numba's disk cache is
# keyed on this file alone, so a code imported from another file could go
# stale inside a cached kernel. Checked against bot.optimize.backtest here instead.
_SIGNAL, _STOP, _TRAIL, _PROFIT, _ASIDE, _LOSS, _GUARD, _COOL = range(8)
if (_SIGNAL, _STOP, _TRAIL, _PROFIT, _ASIDE, _LOSS, _GUARD, _COOL) != (
        T_SIGNAL, T_STOP, T_TRAIL, T_PROFIT, T_ASIDE, T_LOSS, T_GUARD, T_COOL):
    raise ImportError("the trigger codes of bot.optimize.batch differ from backtest.TRIGGERS")
_TIE = 1e-12  # relative: a float this close to a rule's level counts as on it
_NEVER = -(2**62)  # a time before every candle
_VOLUME_UNITS = 1e8  # volumes have 8 decimals

# Per-candidate results of the kernel, columns of its output matrix.
(_M_EQUITY, _M_SUM, _M_SUM2, _M_HELD, _M_FILLS, _M_SELLS, _M_FEES, _M_DRAWDOWN, _M_WINS,
 _M_STOPS, _M_TRAILS, _M_PROFITS) = range(12)
_N_METRICS = 12
# Market constants handed to the kernel: floats, then ints.
(_C_FEE, _C_SIZING, _C_MIN, _C_CASH, _C_MAX_POSITION, _C_LOSS) = range(6)
(_C_FIRST, _C_GUARD_EXITS, _C_GUARD_WINDOW, _C_GUARD_PAUSE, _C_ASIDE) = range(5)


_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(fn: _F) -> _F:
    """Compile ``fn`` in nopython mode, without the GIL, cached on disk. With
    no writable cache folder at all (read-only package, no NUMBA_CACHE_DIR,
    no writable home) numba refuses ``cache=True``: compile per process then."""
    # numba's dispatcher is callable with fn's arguments, but numba does not
    # type it as such.
    try:
        return cast(_F, numba.njit(cache=True, nogil=True)(fn))
    except RuntimeError:
        return cast(_F, numba.njit(nogil=True)(fn))


# --- the compiled loop --------------------------------------------------------------


@_jit
def _signal_table(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per code: +1 a buy signal (score >= threshold), -1 a sell, 0 neither."""
    out = np.zeros(len(scores), dtype=np.int8)
    for j in range(len(scores)):
        if scores[j] >= threshold:
            out[j] = 1
        elif scores[j] <= -threshold:
            out[j] = -1
    return out


@_jit
def _guard_until(stops: np.ndarray, count: int, t: int, until: int, window: int,
                 pause: int) -> int:
    """The stop guard after the ``count``-th stop exit (filled at ``t``, already
    in the ring ``stops`` of the last len(stops) exits): blocks buys until
    ``t + pause`` when the len(stops)-th most recent exit lies in the window."""
    need = len(stops)
    if count >= need and stops[count % need] + window > t:
        return max(until, t + pause)
    return until


@_jit
def _simulate(scores: np.ndarray, threshold: float, cooldown_s: int, stop_mul: float,
              trail_mul: float, profit_mul: float, ts: np.ndarray, close: np.ndarray,
              codes: np.ndarray, buy_fill: np.ndarray, buy_price: np.ndarray,
              sell_fill: np.ndarray, sell_price: np.ndarray, bid: np.ndarray, ask: np.ndarray,
              day: np.ndarray, cf: np.ndarray, ci: np.ndarray, out: np.ndarray,
              record: bool, actions: np.ndarray, triggers: np.ndarray, holding: np.ndarray,
              equity: np.ndarray, fill_bar: np.ndarray, fill_side: np.ndarray,
              fill_price: np.ndarray, fill_volume: np.ndarray) -> None:
    """One candidate over the bars (docs/semantics.md), metrics into ``out``.

    Per bar i: first the order decided at i-1 fills or is cancelled, then the
    equity at the close, then the decision. Exit levels are multipliers with
    the tie tolerance folded in (negative or infinite: off). With ``record``
    the per-bar and per-fill arrays are written too (one candidate)."""
    fee_rate, sizing, min_order = cf[_C_FEE], cf[_C_SIZING], cf[_C_MIN]
    min_lo = min_order * (1.0 - _TIE)
    cash, max_position, loss_mul = cf[_C_CASH], cf[_C_MAX_POSITION], cf[_C_LOSS]
    first = ci[_C_FIRST]
    guard_exits, guard_window, guard_pause = ci[_C_GUARD_EXITS], ci[_C_GUARD_WINDOW], \
        ci[_C_GUARD_PAUSE]
    aside = ci[_C_ASIDE] != 0
    sig = _signal_table(scores, threshold)
    stops = np.zeros(max(guard_exits, 1), dtype=np.int64)
    n = len(close)
    coin = 0.0
    pending, pending_volume, pending_trigger = 0, 0.0, _SIGNAL
    cost, bought, cost_fees = 0.0, 0.0, 0.0  # the position's buys
    peak, stop_level, trail_level, profit_level = 0.0, -1.0, -1.0, math.inf
    cool_until, guard_until, n_stops = _NEVER, _NEVER, 0
    cur_day, day_start, halted = _NEVER, 0.0, False
    prev_eq = peak_eq = cash
    s1 = s2 = fees = drawdown = 0.0
    held = fills = sells = wins = n_stop = n_trail = n_profit = 0
    for i in range(first, n):
        if pending == 1 and buy_fill[i - 1]:
            price = buy_price[i - 1]
            value = price * pending_volume
            fee = value * fee_rate
            cash -= value + fee
            coin += pending_volume
            fees += fee
            if bought == 0.0:
                peak = 0.0
            cost += value
            cost_fees += value + fee
            bought += pending_volume
            entry = cost / bought
            stop_level, profit_level = entry * stop_mul, entry * profit_mul
            if record:
                fill_bar[fills], fill_side[fills] = i, 1
                fill_price[fills], fill_volume[fills] = price, pending_volume
            fills += 1
        elif pending == -1 and sell_fill[i - 1]:
            price = sell_price[i - 1]
            value = price * coin
            fee = value * fee_rate
            cash += value - fee
            fees += fee
            wins += value - fee > cost_fees
            if record:
                fill_bar[fills], fill_side[fills] = i, -1
                fill_price[fills], fill_volume[fills] = price, coin
            fills += 1
            sells += 1
            coin = cost = bought = cost_fees = 0.0
            stop_level, trail_level, profit_level = -1.0, -1.0, math.inf
            cool_until = ts[i] + cooldown_s
            n_stop += pending_trigger == _STOP
            n_trail += pending_trigger == _TRAIL
            n_profit += pending_trigger == _PROFIT
            if guard_exits > 0 and pending_trigger in (_STOP, _TRAIL):
                stops[n_stops % guard_exits] = ts[i]
                n_stops += 1
                guard_until = _guard_until(stops, n_stops, ts[i], guard_until, guard_window,
                                           guard_pause)
        pending = 0
        px = close[i]
        value = coin * px
        eq = cash + value
        if coin > 0.0 and px > peak:
            peak = px
            trail_level = peak * trail_mul
        if eq != prev_eq:  # a flat bar's return is 0: nothing to add
            r = eq / prev_eq - 1.0
            s1 += r
            s2 += r * r
            prev_eq = eq
            if eq > peak_eq:
                peak_eq = eq
            elif 1.0 - eq / peak_eq > drawdown:
                drawdown = 1.0 - eq / peak_eq
        hold = value >= min_lo
        held += hold
        if loss_mul >= 0.0:
            if day[i] != cur_day:
                cur_day, day_start, halted = day[i], eq, False
            if eq <= day_start * loss_mul:
                halted = True
        s = sig[codes[i]]
        action, trigger = 0, _SIGNAL
        if hold:
            if px <= stop_level:
                trigger = _STOP
            elif px <= trail_level:
                trigger = _TRAIL
            elif px >= profit_level:
                trigger = _PROFIT
            if trigger != _SIGNAL or s == -1:
                action = -1
        elif s == 1:
            if aside:
                trigger = _ASIDE
            elif halted:
                trigger = _LOSS
            elif ts[i] < guard_until:
                trigger = _GUARD
            elif ts[i] < cool_until:
                trigger = _COOL
            else:
                action = 1
        if record:
            actions[i], triggers[i], holding[i], equity[i] = action, trigger, hold, eq
        if action == 0 or i == n - 1:  # the last bar's order cannot fill
            continue
        if action == 1:
            b = bid[i]
            volume = math.floor(cash / (b * sizing) * _VOLUME_UNITS) / _VOLUME_UNITS
            if max_position > 0.0:
                volume = min(volume, math.floor(max_position / b * _VOLUME_UNITS)
                             / _VOLUME_UNITS)
            if b * volume >= min_lo:
                pending, pending_volume = 1, volume
        elif coin * ask[i] >= min_lo:
            pending, pending_trigger = -1, trigger
    out[_M_EQUITY], out[_M_SUM], out[_M_SUM2] = prev_eq, s1, s2
    out[_M_HELD], out[_M_FILLS], out[_M_SELLS], out[_M_FEES] = held, fills, sells, fees
    out[_M_DRAWDOWN], out[_M_WINS] = drawdown, wins
    out[_M_STOPS], out[_M_TRAILS], out[_M_PROFITS] = n_stop, n_trail, n_profit


@_jit
def _kernel(tables: np.ndarray, thresholds: np.ndarray, cooldown_s: np.ndarray,
            stop_mul: np.ndarray, trail_mul: np.ndarray, profit_mul: np.ndarray,
            ts: np.ndarray, close: np.ndarray, codes: np.ndarray, buy_fill: np.ndarray,
            buy_price: np.ndarray, sell_fill: np.ndarray, sell_price: np.ndarray,
            bid: np.ndarray, ask: np.ndarray, day: np.ndarray, cf: np.ndarray, ci: np.ndarray,
            out: np.ndarray) -> None:
    """Every candidate of a chunk, one after the other (no recording)."""
    i8, f8 = np.zeros(0, dtype=np.int8), np.zeros(0)
    no_bool, no_bars = np.zeros(0, dtype=np.bool_), np.zeros(0, dtype=np.int64)
    for c in range(len(thresholds)):
        _simulate(tables[c], thresholds[c], cooldown_s[c], stop_mul[c], trail_mul[c],
                  profit_mul[c], ts, close, codes, buy_fill, buy_price, sell_fill, sell_price,
                  bid, ask, day, cf, ci, out[c], False, i8, i8, no_bool, f8, no_bars, i8, f8,
                  f8)


# --- parameters per candidate ---------------------------------------------------------


@dataclass(frozen=True)
class _Candidates:
    """The per-candidate parameters as the kernel takes them."""

    thresholds: np.ndarray
    cooldown_s: np.ndarray
    stop_mul: np.ndarray
    trail_mul: np.ndarray
    profit_mul: np.ndarray

    def slice(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                              np.ndarray]:
        return (self.thresholds[a:b], self.cooldown_s[a:b], self.stop_mul[a:b],
                self.trail_mul[a:b], self.profit_mul[a:b])


def _column(name: str, values: ArrayLike | None, default: float, m: int) -> np.ndarray:
    """A per-candidate array of ``m`` floats (``default`` for all if None)."""
    if values is None:
        return np.full(m, float(default))
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (m,):
        raise ValueError(f"{name} must have one value per candidate ({m}), got shape "
                         f"{arr.shape}")
    return arr


def _check(name: str, arr: np.ndarray, ok: np.ndarray, allowed: str) -> None:
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise ValueError(f"{name}[{bad[0]}]={float(arr[bad[0]])!r} must be {allowed}")


def _level_multipliers(pct: np.ndarray, below: bool) -> np.ndarray:
    """Exit level over the reference price (entry or peak), the tie tolerance
    folded in; off (a percentage of 0): -1 for a level below, inf above."""
    with np.errstate(invalid="ignore"):
        if below:
            return np.where(pct > 0, (1.0 - pct / 100.0) * (1.0 + _TIE), -1.0)
        return np.where(pct > 0, (1.0 + pct / 100.0) * (1.0 - _TIE), np.inf)


def _candidates(m: int, params: BacktestParams, period: int, thresholds: ArrayLike | None,
                cooldowns: ArrayLike | None, stop_losses: ArrayLike | None,
                trailing_stops: ArrayLike | None,
                take_profits: ArrayLike | None) -> _Candidates:
    thr = _column("thresholds", thresholds, params.threshold, m)
    cool = _column("cooldowns", cooldowns, params.cooldown_candles, m)
    stop = _column("stop_losses", stop_losses, params.stop_loss_pct, m)
    trail = _column("trailing_stops", trailing_stops, params.trailing_stop_pct, m)
    profit = _column("take_profits", take_profits, params.take_profit_pct, m)
    _check("thresholds", thr, (thr > 0) & (thr <= 1), "in (0, 1]")
    _check("cooldowns", cool, (cool >= 0) & (cool == np.floor(cool)) & (cool < 2**40),
           "a whole number of candles >= 0")
    _check("stop_losses", stop, (stop >= 0) & (stop < 100), "in [0, 100)")
    _check("trailing_stops", trail, (trail >= 0) & (trail < 100), "in [0, 100)")
    _check("take_profits", profit, (profit >= 0) & np.isfinite(profit), "a number >= 0")
    return _Candidates(thr, cool.astype(np.int64) * period,
                       _level_multipliers(stop, below=True),
                       _level_multipliers(trail, below=True),
                       _level_multipliers(profit, below=False))


def _constants(prep: Prepared, params: BacktestParams) -> tuple[np.ndarray, np.ndarray]:
    loss = params.daily_loss_limit_pct
    loss_mul = (1.0 - loss / 100.0) * (1.0 + _TIE) if loss > 0 else -1.0
    cf = np.array([params.fee_rate, 1.0 + params.fee_rate + params.fee_buffer,
                   params.min_order_krw, params.cash, params.max_position_krw, loss_mul])
    ci = np.array([st.FIRST_DECISION, params.stop_guard_exits,
                   params.stop_guard_window_candles * prep.period,
                   params.stop_guard_pause_candles * prep.period,
                   int(params.stand_aside)], dtype=np.int64)
    return cf, ci


class _Market(NamedTuple):
    """The per-bar arguments of the kernel, in its argument order."""

    ts: np.ndarray
    close: np.ndarray
    codes: np.ndarray
    buy_fill: np.ndarray
    buy_price: np.ndarray
    sell_fill: np.ndarray
    sell_price: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    day: np.ndarray


def _market(prep: Prepared) -> _Market:
    """The per-bar arrays of the kernel, in its argument order and dtypes (one
    compiled version for every call)."""
    f8 = np.float64
    return _Market(np.ascontiguousarray(prep.ts, dtype=np.int64),
                   np.ascontiguousarray(prep.close, dtype=f8),
                   np.ascontiguousarray(prep.codes, dtype=np.int16),
                   np.ascontiguousarray(prep.buy_fill, dtype=np.bool_),
                   np.ascontiguousarray(prep.buy_price, dtype=f8),
                   np.ascontiguousarray(prep.sell_fill, dtype=np.bool_),
                   np.ascontiguousarray(prep.sell_price, dtype=f8),
                   np.ascontiguousarray(prep.bid, dtype=f8),
                   np.ascontiguousarray(prep.ask, dtype=f8),
                   np.ascontiguousarray(prep.day, dtype=np.int64))


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchMetrics:
    """Metrics of many parameter sets on one series, one array entry per
    candidate (rows of the weight matrix, in order), with the meanings of
    :class:`bot.optimize.backtest.BacktestResult`'s fields of the same names: the
    trading span is bars ``WINDOW-1 ..``, equity is cash plus coin at each
    close, ``sharpe`` annualises per-bar simple returns (population std).
    ``win_rate`` is NaN without round trips; the ``*_exits`` count filled
    sells by their decision's trigger. Counts equal the exact engine's
    (decisions differ only on ties within ``_TIE``); money and the ratios
    agree to about 1e-9 relative (float64 throughout, the Sharpe ratio from
    one-pass sums of returns and squared returns)."""

    total_return: np.ndarray
    sharpe: np.ndarray
    mean_return: np.ndarray  # per bar
    std_return: np.ndarray  # per bar, population
    exposure: np.ndarray  # share of the trading span holding
    fills: np.ndarray  # buys + sells filled
    round_trips: np.ndarray  # sells filled
    final_equity: np.ndarray  # KRW
    fees: np.ndarray  # KRW
    max_drawdown: np.ndarray  # fraction of the running peak
    win_rate: np.ndarray
    stop_loss_exits: np.ndarray
    trailing_stop_exits: np.ndarray
    take_profit_exits: np.ndarray
    bars: int  # per-bar returns in the trading span
    bars_per_year: float

    ROW = ("total_return", "sharpe", "mean_return", "std_return", "exposure", "fills",
           "round_trips", "final_equity", "fees", "max_drawdown", "win_rate",
           "stop_loss_exits", "trailing_stop_exits", "take_profit_exits")

    def __len__(self) -> int:
        return len(self.total_return)

    def row(self, i: int) -> dict[str, float]:
        """Candidate ``i``'s metrics as plain numbers."""
        return {name: float(getattr(self, name)[i]) for name in self.ROW}


def _metrics(raw: np.ndarray, prep: Prepared, params: BacktestParams) -> BatchMetrics:
    n, first = len(prep), st.FIRST_DECISION
    count = max(n - 1 - first, 0)
    mean = raw[:, _M_SUM] / max(count, 1)
    std = np.sqrt(np.maximum(raw[:, _M_SUM2] / max(count, 1) - mean * mean, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > FLAT_STD, mean / std, 0.0) * math.sqrt(prep.bars_per_year)
        sells = raw[:, _M_SELLS]
        win_rate = np.where(sells > 0, raw[:, _M_WINS] / sells, np.nan)
    counts = {name: np.rint(raw[:, col]).astype(np.int64) for name, col in
              (("fills", _M_FILLS), ("round_trips", _M_SELLS), ("stop_loss_exits", _M_STOPS),
               ("trailing_stop_exits", _M_TRAILS), ("take_profit_exits", _M_PROFITS))}
    return BatchMetrics(
        total_return=raw[:, _M_EQUITY] / params.cash - 1.0, sharpe=sharpe, mean_return=mean,
        std_return=std, exposure=raw[:, _M_HELD] / max(n - first, 1) if n > first
        else np.zeros(len(raw)), final_equity=raw[:, _M_EQUITY].copy(),
        fees=raw[:, _M_FEES].copy(), max_drawdown=raw[:, _M_DRAWDOWN].copy(),
        win_rate=win_rate, bars=count, bars_per_year=prep.bars_per_year, **counts)


# --- the public API ------------------------------------------------------------------


def _threads(threads: int | None) -> int:
    if threads is not None:
        return max(1, int(threads))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def evaluate_batch(candles: CandleSeries | Prepared, weight_matrix: np.ndarray,
                   params: BacktestParams, *, thresholds: ArrayLike | None = None,
                   cooldowns: ArrayLike | None = None, stop_losses: ArrayLike | None = None,
                   trailing_stops: ArrayLike | None = None,
                   take_profits: ArrayLike | None = None, chunk: int = 1024,
                   threads: int | None = None) -> BatchMetrics:
    """Evaluate every row of ``weight_matrix`` (``(m, 6)``, columns in
    ``SIGNAL_NAMES`` order, normalised here) on one series.

    ``thresholds``, ``cooldowns`` (candles), ``stop_losses``,
    ``trailing_stops`` and ``take_profits`` (percent), each of length ``m``,
    give candidate ``c`` its own value; None leaves ``params``' value for all.
    The stop guard, the daily loss limit, costs and cash come from ``params``.

    ``chunk`` candidates at a time (their score tables, 5.8 KB each, are the
    memory that grows with it) on ``threads`` threads (default: the usable
    cores). Neither changes a result: each candidate's loop is the same."""
    prep = prepared(candles, params)
    st.normalise_matrix(weight_matrix)  # validation, one clear error
    weights = np.asarray(weight_matrix, dtype=np.float64)
    m = len(weights)
    cands = _candidates(m, params, prep.period, thresholds, cooldowns, stop_losses,
                        trailing_stops, take_profits)
    raw = np.zeros((m, _N_METRICS))
    raw[:, _M_EQUITY] = params.cash
    if m and len(prep) > st.FIRST_DECISION:
        market, (cf, ci) = _market(prep), _constants(prep, params)
        workers = _threads(threads)
        size = max(1, min(int(chunk), -(-m // workers)))
        bounds = list(range(0, m, size)) + [m]

        def work(p: int) -> None:
            a, b = bounds[p], bounds[p + 1]
            tables = st.score_tables(weights[a:b])
            _kernel(tables, *cands.slice(a, b), *market, cf, ci, raw[a:b])

        if workers == 1 or len(bounds) == 2:
            for p in range(len(bounds) - 1):
                work(p)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, range(len(bounds) - 1)))
    return _metrics(raw, prep, params)


class BatchTrace(NamedTuple):
    """One candidate's run through the batch loop, for tests against the
    exact engine: per bar the decision (``BUY``/``HOLD``/``SELL``), its
    trigger (index into ``TRIGGERS``), the holding state and the equity; per
    fill its bar (the bar it filled in), side (``BUY``/``SELL``), price and
    volume. Bars before ``WINDOW-1`` hold with the trigger ``signal`` and
    the starting cash."""

    actions: np.ndarray
    triggers: np.ndarray
    fill_bars: np.ndarray
    fill_sides: np.ndarray
    fill_prices: np.ndarray
    final_equity: float
    fill_volumes: np.ndarray
    holding: np.ndarray
    equity: np.ndarray


def trace_batch(candles: CandleSeries | Prepared, weights: Mapping[str, float] | None,
                params: BacktestParams, *, threshold: float | None = None,
                cooldown: int | None = None, stop_loss: float | None = None,
                trailing_stop: float | None = None,
                take_profit: float | None = None) -> BatchTrace:
    """Run one candidate (``weights`` as for :func:`bot.optimize.backtest.run_backtest`;
    the overrides as one entry of :func:`evaluate_batch`'s arrays) through the
    batch evaluator's compiled loop, recording every bar and fill."""
    prep = prepared(candles, params)
    n = len(prep)
    cands = _candidates(1, params, prep.period, _one(threshold), _one(cooldown),
                        _one(stop_loss), _one(trailing_stop), _one(take_profit))
    actions, triggers = np.zeros(n, dtype=np.int8), np.full(n, T_SIGNAL, dtype=np.int8)
    holding, equity = np.zeros(n, dtype=np.bool_), np.full(n, float(params.cash))
    bars, sides = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int8)
    prices, volumes = np.zeros(n), np.zeros(n)
    out = np.zeros(_N_METRICS)
    out[_M_EQUITY] = params.cash
    if n > st.FIRST_DECISION:
        cf, ci = _constants(prep, params)
        thr, cool, stop, trail, profit = cands.slice(0, 1)
        _simulate(st.score_table(weights), float(thr[0]), int(cool[0]), float(stop[0]),
                  float(trail[0]), float(profit[0]), *_market(prep),
                  cf, ci, out, True, actions, triggers, holding, equity, bars, sides, prices,
                  volumes)
    k = int(out[_M_FILLS])
    sides = np.where(sides[:k] > 0, BUY, SELL).astype(np.int8)
    return BatchTrace(actions, triggers, bars[:k].copy(), sides, prices[:k].copy(),
                      float(out[_M_EQUITY]), volumes[:k].copy(), holding, equity)


def _one(value: float | None) -> np.ndarray | None:
    return None if value is None else np.array([value], dtype=np.float64)


def warm_up() -> float:
    """Compile (or load from the cache) the batch loop on a tiny series;
    returns the seconds it took. For image builds and worker start-up, so
    that the first optimize run does not pay for the compilation."""
    started = time.perf_counter()
    n = st.WINDOW + 10
    close = 100_000.0 + 1_000.0 * (np.arange(n) % 7)
    series = SimpleNamespace(ts=1_704_067_200 + 60 * np.arange(n, dtype=np.int64), open=close,
                             high=close + 500, low=close - 500, close=close)
    params = BacktestParams(stop_loss_pct=1.0)
    evaluate_batch(series, np.ones((2, st.N_SIGNALS)), params, threads=1)
    trace_batch(series, None, params)
    return time.perf_counter() - started
