"""The backtest: replay a candle series through the decision and the fill model.

Public API (small, like backtesting.py's ``Backtest.run()``):

* :class:`BacktestParams` - threshold, aggressiveness, fees, minimum order,
  starting cash (``BacktestParams.from_settings(settings)``);
* :func:`run_backtest` - the exact engine, one weight vector, returns one
  :class:`BacktestResult` whose field names are the ``--json`` keys;
* :func:`prepare` - the weight-independent part, reusable (also by
  :func:`bot.optimize.batch.evaluate_batch`, many weight vectors at once for the
  optimizer);
* :func:`limit_price` / :func:`limit_prices` - the order price, exact and
  vectorised.

Semantics (docs/semantics.md): the decision at
bar i is :func:`bot.trading.strategies.decide` on the ``WINDOW`` closes ending at bar i
with the engine's own holding state (holding = coin value at close i >=
``min_order_krw``). A buy is a limit bid at ``close_i * (1 + aggressiveness)``
rounded up to the KRW tick for ``floor8(cash / (price * (1 + fee_rate +
fee_buffer)))`` coins; a sell is a limit ask for the whole coin balance at
``close_i * (1 - aggressiveness)`` rounded down. No order worth less than
``min_order_krw``. The order fills on bar i+1 at its limit price if
``low_{i+1} <= bid`` (``high_{i+1} >= ask``), else it is cancelled; the
decision at bar i+1 already sees that fill. Fees are ``fee_rate`` of the filled
value on each side. The money arithmetic of each fill is ``Decimal``, as in the
paper exchange; only the equity curve between fills is float.

Speed: signals, scores, limit prices and fill flags are vectorised over all
bars; the flat/long state machine is a loop over *trades* (the next fillable
event is found with ``bisect``), never over bars.

Pure: no database, no exchange, no settings lookups (``from_settings`` takes
the settings object it is given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import numpy as np

from bot import rules
from bot.money import AGGRESSIVENESS_DECIMALS, KRW_TICKS, floor_volume, round_price
from bot.rules import ExitRules, GuardRules
from bot.trading import strategies as st

if TYPE_CHECKING:  # the type only: the engine imports no configuration ("Pure" above)
    from bot.config import Settings

BUY, HOLD, SELL = 1, 0, -1  # values of BacktestResult.actions
ACTION_NAMES = {BUY: "buy", HOLD: "hold", SELL: "sell"}
_YEAR_SECONDS = 365 * 86_400
FLAT_STD = 1e-12  # a per-bar return deviation below this is no risk taken: Sharpe 0


class CandleSeries(Protocol):
    """Anything with ``ts`` (epoch seconds) and ``open/high/low/close`` arrays,
    oldest first, e.g. :class:`bot.models.CandleArrays`. Read-only, so that
    frozen dataclasses qualify."""

    @property
    def ts(self) -> np.ndarray: ...
    @property
    def open(self) -> np.ndarray: ...
    @property
    def high(self) -> np.ndarray: ...
    @property
    def low(self) -> np.ndarray: ...
    @property
    def close(self) -> np.ndarray: ...


class SizedCandles(CandleSeries, Protocol):
    """A :class:`CandleSeries` that knows its number of candles, as
    :class:`bot.models.CandleArrays` and :class:`Prepared` do."""

    def __len__(self) -> int: ...


# --- parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestParams:
    """The trading settings a backtest replays (the settings' names, as
    numbers). ``BacktestParams()`` is the bare strategy with every exit and
    guard off; :meth:`from_settings` is what the daemon trades."""

    threshold: float = 0.2
    aggressiveness: float = 0.0015
    fee_rate: float = 0.0005
    fee_buffer: float = 0.0005
    min_order_krw: float = 5000.0
    cash: float = 1_000_000.0
    max_position_krw: float = 0.0  # 0: no cap
    stop_loss_pct: float = 0.0
    trailing_stop_pct: float = 0.0
    take_profit_pct: float = 0.0
    cooldown_candles: int = 0
    stop_guard_exits: int = 0
    stop_guard_window_candles: int = 60
    stop_guard_pause_candles: int = 120
    daily_loss_limit_pct: float = 0.0
    stand_aside: bool = False  # the optimizer's verdict: no new buys

    def __post_init__(self) -> None:
        checks = (
            ("threshold", 0.0 < self.threshold <= 1.0, "in (0, 1]"),
            ("aggressiveness", 0.0 <= self.aggressiveness < 0.1, "in [0, 0.1)"),
            ("fee_rate", 0.0 <= self.fee_rate < 0.1, "in [0, 0.1)"),
            ("fee_buffer", 0.0 <= self.fee_buffer < 0.1, "in [0, 0.1)"),
            ("min_order_krw", 0.0 < self.min_order_krw < math.inf, "positive"),
            ("cash", 0.0 < self.cash < math.inf, "positive"),
            ("max_position_krw", 0.0 <= self.max_position_krw < math.inf, ">= 0"),
            ("stop_loss_pct", 0.0 <= self.stop_loss_pct < 100.0, "in [0, 100)"),
            ("trailing_stop_pct", 0.0 <= self.trailing_stop_pct < 100.0, "in [0, 100)"),
            ("take_profit_pct", 0.0 <= self.take_profit_pct < math.inf, ">= 0"),
            ("cooldown_candles", self.cooldown_candles >= 0, ">= 0"),
            ("stop_guard_exits", self.stop_guard_exits >= 0, ">= 0"),
            ("stop_guard_window_candles", self.stop_guard_window_candles >= 1, ">= 1"),
            ("stop_guard_pause_candles", self.stop_guard_pause_candles >= 1, ">= 1"),
            ("daily_loss_limit_pct", 0.0 <= self.daily_loss_limit_pct <= 100.0, "in [0, 100]"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} must be {allowed}")
        if _decimals(self.aggressiveness) > AGGRESSIVENESS_DECIMALS:
            raise ValueError(f"aggressiveness={self.aggressiveness!r} must have at most "
                             f"{AGGRESSIVENESS_DECIMALS} decimals")

    @classmethod
    def from_settings(cls, settings: Settings) -> BacktestParams:
        """From :class:`bot.config.Settings`: every setting of the same name,
        PAPER_START_KRW as the cash."""
        return cls(threshold=float(settings.threshold),
                   aggressiveness=float(settings.aggressiveness),
                   fee_rate=float(settings.fee_rate), fee_buffer=float(settings.fee_buffer),
                   min_order_krw=float(settings.min_order_krw),
                   cash=float(settings.paper_start_krw),
                   max_position_krw=float(settings.max_position_krw),
                   stop_loss_pct=float(settings.stop_loss_pct),
                   trailing_stop_pct=float(settings.trailing_stop_pct),
                   take_profit_pct=float(settings.take_profit_pct),
                   cooldown_candles=settings.cooldown_candles,
                   stop_guard_exits=settings.stop_guard_exits,
                   stop_guard_window_candles=settings.stop_guard_window_candles,
                   stop_guard_pause_candles=settings.stop_guard_pause_candles,
                   daily_loss_limit_pct=float(settings.daily_loss_limit_pct))

    def exit_rules(self) -> ExitRules:
        return ExitRules(_dec(self.stop_loss_pct), _dec(self.trailing_stop_pct),
                         _dec(self.take_profit_pct))

    def guard_rules(self) -> GuardRules:
        return GuardRules(self.cooldown_candles, self.stop_guard_exits,
                          self.stop_guard_window_candles, self.stop_guard_pause_candles)


def _decimals(value: float) -> int:
    exponent = _dec(value).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _dec(value: float) -> Decimal:
    # The shortest repr round-trips, so 0.0005 becomes Decimal("0.0005").
    return Decimal(repr(float(value)))


# --- limit prices ------------------------------------------------------------------

# The tick table as ascending arrays for searchsorted. A tick below 1 is kept as
# its integer inverse so that units / inverse is the correctly rounded float of
# the exact decimal price.
_BAND_FLOOR = np.array([float(lo) for lo, _ in reversed(KRW_TICKS)])
_BAND_TICK = np.array([float(tick) for _, tick in reversed(KRW_TICKS)])
_BAND_MUL = np.array([float(t) if t >= 1 else 1.0 for _, t in reversed(KRW_TICKS)])
_BAND_DIV = np.array([1.0 if t >= 1 else float(1 / t) for _, t in reversed(KRW_TICKS)])
_BAND_TICK_DEC = tuple(tick for _, tick in reversed(KRW_TICKS))
# Valid domain of the float rounding, checked by BacktestParams and the
# AGGRESSIVENESS setting: a close on its tick times (1 +/- a), with ``a`` of at
# most AGGRESSIVENESS_DECIMALS decimals, is either a tick multiple or at least
# 1e-7 ticks away from one (tick ratios between bands are 1, 2, 5 or 10). The
# float error of that product is a few ulps, below _REL_SNAP ticks per tick of
# price, so snapping within max(_SNAP, q * _REL_SNAP) ticks is exact while
# q * _REL_SNAP < 1e-7, that is for prices below MAX_EXACT_PRICE.
_SNAP = 1e-9
_REL_SNAP = 4e-15
MAX_EXACT_PRICE = 2e10

Side = Literal["bid", "ask"]


def limit_price(close: float | Decimal, aggressiveness: float | Decimal, side: Side) -> Decimal:
    """The exact order price: ``close * (1 + a)`` rounded up for a bid,
    ``close * (1 - a)`` rounded down for an ask, on the KRW tick
    (:func:`bot.money.round_price`). Floats enter through their shortest
    repr. This is the reference :func:`limit_prices` is tested against."""
    c = close if isinstance(close, Decimal) else _dec(close)
    a = aggressiveness if isinstance(aggressiveness, Decimal) else _dec(aggressiveness)
    if side == "bid":
        return round_price(c * (1 + a), "up")
    return round_price(c * (1 - a), "down")


def _tick_units(price: np.ndarray, up: bool) -> tuple[np.ndarray, np.ndarray]:
    """Round float prices onto the tick: (number of ticks, band index)."""
    band = np.searchsorted(_BAND_FLOOR, price, side="right") - 1
    np.maximum(band, 0, out=band)
    q = price / _BAND_TICK[band]
    nearest = np.rint(q)
    near = np.abs(q - nearest) <= np.maximum(_SNAP, q * _REL_SNAP)
    units = np.where(near, nearest, np.ceil(q) if up else np.floor(q))
    np.maximum(units, 1.0, out=units)  # round_price never rounds down to zero
    return units, band.astype(np.int8)


def _price_of(units: np.ndarray, band: np.ndarray) -> np.ndarray:
    return units * _BAND_MUL[band] / _BAND_DIV[band]


def limit_prices(close: np.ndarray, aggressiveness: float, side: Side) -> np.ndarray:
    """Vectorised :func:`limit_price` as floats: equal to
    ``float(limit_price(c, a, side))`` for every close on the price tick below
    MAX_EXACT_PRICE KRW, for an aggressiveness of at most
    AGGRESSIVENESS_DECIMALS decimals (the domain BacktestParams enforces)."""
    c = np.asarray(close, dtype=np.float64)
    factor = 1.0 + aggressiveness if side == "bid" else 1.0 - aggressiveness
    units, band = _tick_units(c * factor, up=side == "bid")
    return _price_of(units, band)


# --- candles ------------------------------------------------------------------------


def _columns(candles: CandleSeries) -> tuple[np.ndarray, ...]:
    ts = np.asarray(candles.ts, dtype=np.int64)
    cols = tuple(np.asarray(getattr(candles, name), dtype=np.float64)
                 for name in ("open", "high", "low", "close"))
    n = len(ts)
    if n == 0:
        raise ValueError("no candles")
    if ts.ndim != 1 or any(col.shape != (n,) for col in cols):
        raise ValueError("ts, open, high, low and close must be 1-D arrays of one length")
    if n > 1 and not np.all(ts[1:] > ts[:-1]):
        bad = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
        raise ValueError(f"candle timestamps must increase; candle {bad} does not")
    for name, col in zip(("open", "high", "low", "close"), cols, strict=True):
        if not np.all(np.isfinite(col)) or np.any(col <= 0):
            raise ValueError(f"{name} prices must be finite and positive")
    return (ts, *cols)


def bars_per_year(ts: np.ndarray) -> float:
    """Bars in a year at the series' typical spacing (median step, so that
    minutes without trades do not count): 525,600 for 1-minute candles."""
    t = np.asarray(ts, dtype=np.int64)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 60.0
    return _YEAR_SECONDS / max(step, 1.0)


@dataclass(frozen=True, eq=False)
class Prepared:
    """The parameter-independent part of a backtest of one series under one
    ``aggressiveness``: signal codes, limit prices and fills per bar. Build
    with :func:`prepare`; reuse across parameter sets.

    For an order decided at the close of bar i (docs/semantics.md, "Fills"):
    ``buy_fill[i]`` says a bid at ``bid[i]`` fills on bar i+1, at
    ``buy_price[i] = min(open[i+1], bid[i])``; likewise ``sell_fill`` /
    ``sell_price = max(open[i+1], ask[i])`` for the ask. The last bar's
    orders never fill. ``day[i]`` is the UTC day (days since the epoch) of bar
    i's close, the daily loss limit's day; ``period`` the bar length in
    seconds."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    codes: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_units: np.ndarray
    bid_band: np.ndarray
    ask_units: np.ndarray
    ask_band: np.ndarray
    buy_fill: np.ndarray
    sell_fill: np.ndarray
    buy_price: np.ndarray
    sell_price: np.ndarray
    day: np.ndarray
    period: int
    aggressiveness: float
    bars_per_year: float

    def __len__(self) -> int:
        return len(self.ts)

    def bid_decimal(self, i: int) -> Decimal:
        return Decimal(int(self.bid_units[i])) * _BAND_TICK_DEC[self.bid_band[i]]

    def ask_decimal(self, i: int) -> Decimal:
        return Decimal(int(self.ask_units[i])) * _BAND_TICK_DEC[self.ask_band[i]]


def bar_period(ts: np.ndarray) -> int:
    """The bar length in seconds: the smallest step between candles (minutes
    without trades only lengthen steps), 60 for fewer than two candles."""
    t = np.asarray(ts, dtype=np.int64)
    return int(np.diff(t).min()) if len(t) > 1 else 60


def prepare(candles: CandleSeries, params: BacktestParams) -> Prepared:
    """Signals, limit prices and fills of a series, vectorised."""
    ts, open_, high, low, close = _columns(candles)
    codes = st.signal_codes(st.signal_matrix(ts, open_, close))
    a = params.aggressiveness
    bid_units, bid_band = _tick_units(close * (1.0 + a), up=True)
    ask_units, ask_band = _tick_units(close * (1.0 - a), up=False)
    bid, ask = _price_of(bid_units, bid_band), _price_of(ask_units, ask_band)
    n = len(ts)
    buy_fill = np.zeros(n, dtype=bool)
    sell_fill = np.zeros(n, dtype=bool)
    buy_fill[:-1] = low[1:] <= bid[:-1]
    sell_fill[:-1] = high[1:] >= ask[:-1]
    buy_price, sell_price = bid.copy(), ask.copy()
    buy_price[:-1] = np.minimum(open_[1:], bid[:-1])
    sell_price[:-1] = np.maximum(open_[1:], ask[:-1])
    period = bar_period(ts)
    day = (ts + period) // 86_400
    return Prepared(ts, open_, high, low, close, codes, bid, ask, bid_units.astype(np.int64),
                    bid_band, ask_units.astype(np.int64), ask_band, buy_fill, sell_fill,
                    buy_price, sell_price, day, period, a, bars_per_year(ts))


def prepared(candles: CandleSeries | Prepared, params: BacktestParams) -> Prepared:
    if isinstance(candles, Prepared):
        if candles.aggressiveness != params.aggressiveness:
            raise ValueError("prepared for a different aggressiveness")
        return candles
    return prepare(candles, params)


# --- the exact engine ---------------------------------------------------------------------

# Decision triggers as codes (BacktestResult.triggers); names as in bot.rules.
TRIGGERS = (rules.SIGNAL, rules.STOP_LOSS, rules.TRAILING_STOP, rules.TAKE_PROFIT,
            rules.STAND_ASIDE, rules.LOSS_LIMIT, rules.STOP_GUARD, rules.COOLDOWN)
T_SIGNAL, T_STOP, T_TRAIL, T_PROFIT, T_ASIDE, T_LOSS, T_GUARD, T_COOL = range(len(TRIGGERS))
_STOP_CODES = (T_STOP, T_TRAIL)
# Floats closer than this (relative) to a rule's level are decided in Decimal.
_TIE = 1e-9
_FIRST_STEP = 64  # bars looked at per chunk at first (grows 4x while nothing fills)


class _Fill(NamedTuple):
    bar: int  # the bar during which the order filled (decision bar + 1)
    side: int  # BUY or SELL
    price: Decimal
    volume: Decimal
    fee: Decimal
    cash: Decimal  # after the fill
    coin: Decimal
    trigger: int  # the decision's trigger code
    slippage: Decimal  # price / decision close - 1


def _le(x: np.ndarray, level: np.ndarray | float, exact: Callable[[int], bool]) -> np.ndarray:
    """``x <= level``, with the near ties decided by ``exact(j)``."""
    hit = x <= level
    near = np.abs(x - level) <= _TIE * np.abs(level)
    if near.any():
        for j in np.flatnonzero(near).tolist():
            hit[j] = exact(j)
    return hit


def _day_firsts(day: np.ndarray, first: int) -> np.ndarray:
    """For each bar, the index of the first decision bar of its day (-1 before
    the first decision)."""
    n = len(day)
    out = np.full(n, -1, dtype=np.int64)
    if n > first:
        d = day[first:]
        starts = np.r_[True, d[1:] != d[:-1]]
        idx = np.where(starts, np.arange(first, n), 0)
        out[first:] = np.maximum.accumulate(idx)
    return out


class _Engine:
    """The state machine of docs/semantics.md over one series, stepping from
    fill to fill. Between two fills cash, coin and the position are constant,
    so every bar's decision in that stretch is computed for a whole chunk of
    bars at once in floats; near ties are settled in Decimal, and each
    candidate fill is checked exactly before it is taken."""

    def __init__(self, prep: Prepared, params: BacktestParams, wants_buy: np.ndarray,
                 wants_sell: np.ndarray):
        self.prep, self.params = prep, params
        self.n = n = len(prep)
        self.close, self.ts = prep.close, prep.ts
        self.wants_buy, self.wants_sell = wants_buy, wants_sell
        self.fee_rate = _dec(params.fee_rate)
        self.sizing = 1 + self.fee_rate + _dec(params.fee_buffer)
        self.min_order, self.min_f = _dec(params.min_order_krw), params.min_order_krw
        self.max_position = _dec(params.max_position_krw)
        self.exits, self.guards = params.exit_rules(), params.guard_rules()
        self.loss_pct = _dec(params.daily_loss_limit_pct)
        self.cash, self.coin, self.coin_f = _dec(params.cash), Decimal(0), 0.0
        self.cost = self.bought = Decimal(0)  # the position's buys
        self.first_bar = -1  # the bar of the position's first buy fill
        self.peak = -math.inf  # highest close of the position before the chunk at hand
        self.cooldown_until = -1  # ts before which a buy is in the cooldown
        self.guard_until = -1  # ts before which the stop guard blocks buys
        self.stop_ts: list[int] = []
        self.fills: list[_Fill] = []
        self.day_first = _day_firsts(prep.day, st.FIRST_DECISION)
        self.day_start: dict[int, Decimal] = {}  # the day's start equity
        self.halted: set[int] = set()  # days whose loss limit was reached
        self.days_started: list[int] = []  # day_start's keys, in order
        self.actions = np.full(n, HOLD, dtype=np.int8)
        self.triggers = np.full(n, T_SIGNAL, dtype=np.int8)
        self.holding = np.zeros(n, dtype=bool)

    def close_dec(self, i: int) -> Decimal:
        return _dec(self.close[i])

    # --- one chunk of bars under constant state -----------------------------------

    def _holding(self, a: int, close: np.ndarray) -> np.ndarray:
        if self.coin_f == 0.0:
            return np.zeros(len(close), dtype=bool)
        return _le(-self.coin_f * close, -self.min_f,
                   lambda j: self.coin * self.close_dec(a + j) >= self.min_order)

    def _sell_triggers(self, a: int, close: np.ndarray) -> np.ndarray:
        """The sell trigger of each bar if the position is held there, -1 if none."""
        out = np.where(self.wants_sell[a:a + len(close)], T_SIGNAL, -1).astype(np.int8)
        if self.bought <= 0:
            return out
        entry = self.cost / self.bought
        profit = self.exits.profit_level(entry)
        if profit is not None:
            hit = _le(-close, -float(profit),
                      lambda j: self.close_dec(a + j) >= profit)
            out[hit] = T_PROFIT
        trail_pct = self.exits.trailing_stop_pct
        if trail_pct > 0:
            peak = np.maximum(np.maximum.accumulate(close), self.peak)
            factor = 1 - trail_pct / 100
            hit = _le(close, peak * float(factor), lambda j: self.close_dec(a + j)
                      <= _dec(float(peak[j])) * factor)
            out[hit] = T_TRAIL
        stop = self.exits.stop_level(entry)
        if stop is not None:
            hit = _le(close, float(stop), lambda j: self.close_dec(a + j) <= stop)
            out[hit] = T_STOP
        return out

    def _loss_limit(self, a: int, c: int, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per bar of the chunk: whether its day has reached the loss limit by
        that bar, and whether that bar itself reaches it. Fills in the start
        equity of days starting here (dropped again past a fill: _commit)."""
        halted, hits = np.zeros(c - a, dtype=bool), np.zeros(c - a, dtype=bool)
        lo = max(a, st.FIRST_DECISION)
        if self.loss_pct <= 0 or lo >= c:
            return halted, hits
        days, firsts = self.prep.day[lo:c], self.day_first[lo:c]
        one_day = days[0] == days[-1]  # the common case, kept cheap
        for b in ([int(firsts[0])] if one_day else np.unique(firsts).tolist()):
            day = int(self.prep.day[b])
            if b >= a and day not in self.day_start:
                self.day_start[day] = self.cash + self.coin * self.close_dec(b)
                self.days_started.append(day)
        factor = 1 - self.loss_pct / 100
        if one_day:
            limit: np.ndarray | float = float(self.day_start[int(days[0])] * factor)
        else:
            unique, where = np.unique(days, return_inverse=True)
            limit = np.array([float(self.day_start[int(d)] * factor) for d in unique])[where]
        hit = _le(float(self.cash) + self.coin_f * close[lo - a:], limit,
                  lambda j: self.cash + self.coin * self.close_dec(lo + j)
                  <= self.day_start[int(days[j])] * factor)
        last = np.maximum.accumulate(np.where(hit, np.arange(lo, c), -1))
        halted[lo - a:] = last >= firsts
        if self.halted:
            if one_day:
                halted[lo - a:] |= int(days[0]) in self.halted
            else:
                halted[lo - a:] |= np.isin(days, np.fromiter(self.halted, dtype=np.int64))
        hits[lo - a:] = hit
        return halted, hits

    def _commit(self, a: int, stop: int, hits: np.ndarray) -> None:
        """Keep what bars a..stop-1 established about the loss limit."""
        if self.loss_pct <= 0:
            return
        hit = hits[:stop - a]
        if hit.any():
            self.halted.update(int(d) for d in np.unique(self.prep.day[a:stop][hit]))
        last_day = int(self.prep.day[stop - 1])
        # a day started after the fill was started with the state before it
        while self.days_started and self.days_started[-1] > last_day:
            del self.day_start[self.days_started.pop()]

    def _buy_blocks(self, a: int, c: int,
                    close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The guard blocking a buy at each bar (-1: none), in rules.GUARDS
        order, and the loss limit's hits (see _loss_limit)."""
        ts = self.ts[a:c]
        out = np.full(c - a, -1, dtype=np.int8)
        if ts[0] < self.cooldown_until:
            out[ts < self.cooldown_until] = T_COOL
        if ts[0] < self.guard_until:
            out[ts < self.guard_until] = T_GUARD
        halted, hits = self._loss_limit(a, c, close)
        out[halted] = T_LOSS
        if self.params.stand_aside:
            out[:] = T_ASIDE
        return out, hits

    def _affordable(self) -> bool:
        """Whether any bid can reach the minimum: its value is at most
        cash / sizing (and MAX_POSITION_KRW), whatever the price."""
        budget = self.cash / self.sizing
        if self.max_position > 0:
            budget = min(budget, self.max_position)
        return budget >= self.min_order

    def _bid(self, i: int) -> tuple[Decimal, Decimal] | None:
        price = self.prep.bid_decimal(i)
        volume = floor_volume(self.cash / (price * self.sizing))
        if self.max_position > 0:
            volume = min(volume, floor_volume(self.max_position / price))
        return (price, volume) if price * volume >= self.min_order else None

    def chunk(self, a: int, c: int) -> int | None:
        """Decide bars a..c-1; return the first bar whose order fills (its
        decisions are written up to it), or None (all written)."""
        close = self.close[a:c]
        hold = self._holding(a, close)
        sell = self._sell_triggers(a, close) if self.coin > 0 else np.full(c - a, -1, np.int8)
        block, hits = self._buy_blocks(a, c, close)
        wants = self.wants_buy[a:c] & ~hold
        actions = np.where(hold, np.where(sell >= 0, SELL, HOLD),
                           np.where(wants & (block < 0), BUY, HOLD)).astype(np.int8)
        triggers = np.where(hold, np.maximum(sell, T_SIGNAL),
                            np.where(wants & (block >= 0), block, T_SIGNAL)).astype(np.int8)
        maybe = (actions == SELL) & self.prep.sell_fill[a:c]
        if self._affordable():
            maybe |= (actions == BUY) & self.prep.buy_fill[a:c]
        event = None
        for j in np.flatnonzero(maybe):
            i = a + int(j)
            if actions[j] == SELL:
                ok = self.coin * self.prep.ask_decimal(i) >= self.min_order
            else:
                ok = self._bid(i) is not None
            if ok:
                event = i
                break
        stop = c if event is None else event + 1
        self.holding[a:stop] = hold[:stop - a]
        self.actions[a:stop] = actions[:stop - a]
        self.triggers[a:stop] = triggers[:stop - a]
        self._commit(a, stop, hits)
        if self.first_bar >= 0:
            self.peak = max(self.peak, float(close[:stop - a].max()))
        return event

    # --- fills ---------------------------------------------------------------------

    def _candle(self, f: int) -> tuple[Decimal, Decimal, Decimal]:
        return _dec(self.prep.open[f]), _dec(self.prep.low[f]), _dec(self.prep.high[f])

    def buy(self, i: int) -> None:
        order = self._bid(i)
        assert order is not None  # noqa: S101 - chunk() checked it
        limit, volume = order
        f = i + 1
        price = rules.fill_price("bid", limit, *self._candle(f))
        assert price is not None  # noqa: S101 - prep.buy_fill said it fills
        value = price * volume
        fee = value * self.fee_rate
        self.cash -= value + fee
        self.coin += volume
        self.coin_f = float(self.coin)
        if self.first_bar < 0:
            self.first_bar, self.peak = f, -math.inf
        else:  # adding to a position held below the minimum since first_bar
            self.peak = float(self.close[self.first_bar:f].max())
        self.cost += price * volume
        self.bought += volume
        self.fills.append(_Fill(f, BUY, price, volume, fee, self.cash, self.coin, T_SIGNAL,
                                rules.slippage(price, self.close_dec(i))))

    def sell(self, i: int) -> None:
        limit, volume = self.prep.ask_decimal(i), self.coin
        f = i + 1
        price = rules.fill_price("ask", limit, *self._candle(f))
        assert price is not None  # noqa: S101 - prep.sell_fill said it fills
        value = price * volume
        fee = value * self.fee_rate
        self.cash += value - fee
        self.coin, self.coin_f = Decimal(0), 0.0
        self.cost = self.bought = Decimal(0)
        self.first_bar, self.peak = -1, -math.inf
        trigger = int(self.triggers[i])
        period = self.prep.period
        self.cooldown_until = int(self.ts[f]) + self.guards.cooldown_candles * period
        if trigger in _STOP_CODES:
            self.stop_ts.append(int(self.ts[f]))
            until = self.guards.stop_guard_until(self.stop_ts, period)
            self.guard_until = -1 if until is None else until
        self.fills.append(_Fill(f, SELL, price, volume, fee, self.cash, self.coin, trigger,
                                rules.slippage(price, self.close_dec(i))))

    def set_params(self, params: BacktestParams) -> None:
        """Decide from here on with ``params`` (a walk-forward's next set),
        keeping the account: cash, coin, position, fills and guards so far."""
        self.params = params
        self.exits, self.guards = params.exit_rules(), params.guard_rules()
        period = self.prep.period
        sells = [f for f in self.fills if f.side == SELL]
        if sells:  # the cooldown in force counts from the last sell fill
            self.cooldown_until = int(self.ts[sells[-1].bar]) + params.cooldown_candles * period
        until = self.guards.stop_guard_until(self.stop_ts, period)
        self.guard_until = -1 if until is None else until

    def run(self, start: int, stop: int) -> None:
        """Decide bars start..stop-1, filling orders as they come (an order
        decided at stop-1 fills on bar stop)."""
        k = start
        while k < stop:
            a, step, event = k, _FIRST_STEP, None
            while a < stop and event is None:
                c = min(stop, a + step)
                event = self.chunk(a, c)
                a, step = c, step * 4
            if event is None:
                return
            if self.actions[event] == BUY:
                self.buy(event)
            else:
                self.sell(event)
            k = event + 1


@dataclass(frozen=True)
class BacktestResult:
    """One backtest. The scalar fields are the ``--json`` keys (see
    :meth:`to_dict`); the arrays are per bar or per fill, for tests and plots.

    Metrics cover the trading span, bars ``WINDOW-1 .. bars-1`` (the first
    ``WINDOW-1`` bars only warm the window up): ``total_return`` is
    ``final_equity / cash - 1``; ``buy_and_hold_return`` is the close at the
    last bar over the close at the first decision, minus 1; ``max_drawdown``
    the largest fall of equity from its running peak, as a fraction;
    ``sharpe`` the mean over the standard deviation (population) of per-bar
    simple equity returns, times ``sqrt(bars per year)``; ``round_trips`` the
    sells filled; ``fills`` buys plus sells filled; ``win_rate`` the share of
    round trips whose sale (after its fee) beat the cost of its buys (with
    fees), ``None`` without round trips; ``exposure`` the share of bars
    holding; ``fees`` KRW paid; ``start_ts``/``end_ts`` the first and last
    candle (ISO-8601 UTC); ``bars`` the number of candles.
    """

    final_equity: float
    total_return: float
    buy_and_hold_return: float
    max_drawdown: float
    sharpe: float
    round_trips: int
    fills: int
    win_rate: float | None
    exposure: float
    fees: float
    start_ts: str
    end_ts: str
    bars: int
    stop_loss_exits: int
    trailing_stop_exits: int
    take_profit_exits: int
    guarded_buys: int
    mean_slippage: float | None
    equity: np.ndarray = field(repr=False)  # KRW at each close
    actions: np.ndarray = field(repr=False)  # BUY/SELL/HOLD decided at each bar
    triggers: np.ndarray = field(repr=False)  # each decision's trigger (TRIGGERS codes)
    holding: np.ndarray = field(repr=False)  # the holding state each decision saw
    scores: np.ndarray = field(repr=False)  # score at each bar (0 before WINDOW-1)
    buy_bars: np.ndarray = field(repr=False)  # bar of each buy fill
    buy_prices: np.ndarray = field(repr=False)
    sell_bars: np.ndarray = field(repr=False)
    sell_prices: np.ndarray = field(repr=False)
    sell_triggers: np.ndarray = field(repr=False)  # the trigger of each sell's decision
    slippages: np.ndarray = field(repr=False)  # of each fill, in time order

    ARRAYS = ("equity", "actions", "triggers", "holding", "scores", "buy_bars", "buy_prices",
              "sell_bars", "sell_prices", "sell_triggers", "slippages")
    MONEY = ("final_equity", "fees")  # KRW amounts: decimal strings in --json

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """The JSON object: scalar fields; with ``arrays=True`` the per-bar and
        per-fill arrays too, as lists."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.ARRAYS:
                if arrays:
                    out[f.name] = value.tolist()
            else:
                out[f.name] = value
        return out


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _per_bar(fills: list[_Fill], n: int, cash: float) -> tuple[np.ndarray, np.ndarray]:
    """Cash and coin after each bar's fills, from the fill list."""
    starts = np.array([0] + [f.bar for f in fills], dtype=np.int64)
    cash_seg = np.array([cash] + [float(f.cash) for f in fills])
    coin_seg = np.array([0.0] + [float(f.coin) for f in fills])
    lengths = np.diff(np.append(starts, n))
    return np.repeat(cash_seg, lengths), np.repeat(coin_seg, lengths)


def max_drawdown(curve: np.ndarray) -> float:
    """The largest fall of an equity curve from its running peak, as a fraction."""
    if not len(curve):
        return 0.0
    return float(np.max(1.0 - curve / np.maximum.accumulate(curve)))


def _win_rate(fills: list[_Fill]) -> float | None:
    wins = trips = 0
    cost = Decimal(0)
    for f in fills:
        if f.side == BUY:
            cost += f.price * f.volume + f.fee
        else:
            trips += 1
            wins += f.price * f.volume - f.fee > cost
            cost = Decimal(0)
    return wins / trips if trips else None


def _sharpe(equity: np.ndarray, per_year: float) -> float:
    if len(equity) < 2:
        return 0.0
    returns = equity[1:] / equity[:-1] - 1.0
    std = float(returns.std())
    return float(returns.mean()) / std * math.sqrt(per_year) if std > FLAT_STD else 0.0


@dataclass(frozen=True)
class Segment:
    """Bars ``start..stop-1`` of one account decided with these weights and
    parameters (a walk-forward's out-of-sample window). Costs, cash and the
    aggressiveness come from the first segment's parameters."""

    start: int
    stop: int
    weights: Mapping[str, float] | None
    params: BacktestParams


def run_backtest(candles: CandleSeries | Prepared, weights: Mapping[str, float] | None,
                 params: BacktestParams) -> BacktestResult:
    """Backtest one parameter set on a candle series (oldest first) with the
    rules of docs/semantics.md, exactly. ``candles`` may be a
    :class:`Prepared` of the same aggressiveness to skip the signals."""
    return run_segments(candles, [Segment(0, len(candles.ts), weights, params)])


def run_segments(candles: CandleSeries | Prepared,
                 segments: Sequence[Segment]) -> BacktestResult:
    """:func:`run_backtest` with the parameters changing between contiguous
    segments (in order), one account throughout."""
    if not segments:
        raise ValueError("no segments")
    params = segments[0].params
    prep = prepared(candles, params)
    n = len(prep)
    first = st.FIRST_DECISION
    scores = np.zeros(n)
    wants_buy, wants_sell = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for seg in segments:
        a, b = max(seg.start, first), min(seg.stop, n)
        if a < b:
            scores[a:b] = st.score_table(seg.weights)[prep.codes[a:b]]
            wants_buy[a:b] = scores[a:b] >= seg.params.threshold
            wants_sell[a:b] = scores[a:b] <= -seg.params.threshold
    engine = _Engine(prep, params, wants_buy, wants_sell)
    for seg in segments:
        engine.set_params(seg.params)
        engine.run(max(seg.start, first), min(seg.stop, n))
    return _result(prep, params, engine, scores)


def _result(prep: Prepared, params: BacktestParams, engine: _Engine,
            scores: np.ndarray) -> BacktestResult:
    fills = engine.fills
    n = len(prep)
    first = st.FIRST_DECISION
    cash, coin = _per_bar(fills, n, params.cash)
    close = prep.close
    equity = cash + coin * close
    span = min(first, n - 1)
    curve = equity[span:]
    buys = [f for f in fills if f.side == BUY]
    sells = [f for f in fills if f.side == SELL]
    sell_triggers = np.array([f.trigger for f in sells], dtype=np.int8)
    triggers = engine.triggers
    return BacktestResult(
        final_equity=float(equity[-1]),
        total_return=float(equity[-1] / params.cash - 1.0),
        buy_and_hold_return=float(close[-1] / close[span] - 1.0),
        max_drawdown=max_drawdown(curve),
        sharpe=_sharpe(curve, prep.bars_per_year),
        round_trips=len(sells),
        fills=len(fills),
        win_rate=_win_rate(fills),
        exposure=float(engine.holding[span:].mean()) if n > first else 0.0,
        fees=float(sum((f.fee for f in fills), Decimal(0))),
        start_ts=_iso(prep.ts[0]),
        end_ts=_iso(prep.ts[-1]),
        bars=n,
        stop_loss_exits=int(np.sum(sell_triggers == T_STOP)),
        trailing_stop_exits=int(np.sum(sell_triggers == T_TRAIL)),
        take_profit_exits=int(np.sum(sell_triggers == T_PROFIT)),
        guarded_buys=int(np.sum(triggers >= T_ASIDE)),
        mean_slippage=(float(sum((f.slippage for f in fills), Decimal(0)) / len(fills))
                       if fills else None),
        equity=equity,
        actions=engine.actions,
        triggers=triggers,
        holding=engine.holding,
        scores=scores,
        buy_bars=np.array([f.bar for f in buys], dtype=np.int64),
        buy_prices=np.array([float(f.price) for f in buys]),
        sell_bars=np.array([f.bar for f in sells], dtype=np.int64),
        sell_prices=np.array([float(f.price) for f in sells]),
        sell_triggers=sell_triggers,
        slippages=np.array([float(f.slippage) for f in fills]),
    )
