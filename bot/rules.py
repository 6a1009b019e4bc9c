"""The trading rules every engine shares (docs/semantics.md): exits, buy
guards, the position's entry, and the fill model.

Pure and exact: prices and percentages are ``Decimal``; times are whatever
the caller counts in (epoch seconds with an ``int`` period in the backtest,
``datetime`` with a ``timedelta`` period in the trader), since the rules only
add and compare them. The trader, the paper exchange and the exact backtest
call these functions; the batch evaluator restates them in float64 for speed,
and the property tests hold it to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

# Decision triggers: why a decision is what it is (decisions.trigger).
SIGNAL = "signal"
STOP_LOSS, TRAILING_STOP, TAKE_PROFIT = "stop_loss", "trailing_stop", "take_profit"
EXITS = (STOP_LOSS, TRAILING_STOP, TAKE_PROFIT)
STOP_EXITS = frozenset({STOP_LOSS, TRAILING_STOP})  # what the stop guard counts
STAND_ASIDE, LIVE_GATE, PAUSED = "stand_aside", "live_gate", "paused"
LOSS_LIMIT, STOP_GUARD, COOLDOWN = "loss_limit", "stop_guard", "cooldown"
KILL_SWITCH = "kill_switch"
# What Upbit says of the market (bot/data/markets.py): live trading only.
DELISTED, MARKET_WARNING, MARKET_CAUTION = "delisted", "market_warning", "market_caution"
DESELECTED = "deselected"  # MARKETS=top:N dropped the market: its position is only sold
MARKET_GUARDS = (DELISTED, MARKET_WARNING, MARKET_CAUTION, DESELECTED)
# What blocks a buy, in precedence order (the first that applies is named).
GUARDS = (*MARKET_GUARDS, STAND_ASIDE, LIVE_GATE, PAUSED, LOSS_LIMIT, STOP_GUARD, COOLDOWN)
# The reason classes a dashboard groups triggers into.
TRIGGER_CLASS = {SIGNAL: "signal", **{name: "exit" for name in EXITS},
                 LOSS_LIMIT: "guard", STOP_GUARD: "guard", COOLDOWN: "guard", PAUSED: "guard",
                 LIVE_GATE: "guard", STAND_ASIDE: "stand_aside", KILL_SWITCH: "kill_switch",
                 **{name: "guard" for name in MARKET_GUARDS}}

_HUNDRED = Decimal(100)

T = TypeVar("T")  # a time: int seconds or datetime


@dataclass(frozen=True)
class ExitRules:
    """STOP_LOSS_PCT, TRAILING_STOP_PCT, TAKE_PROFIT_PCT (0 turns one off)."""

    stop_loss_pct: Decimal = Decimal(0)
    trailing_stop_pct: Decimal = Decimal(0)
    take_profit_pct: Decimal = Decimal(0)

    def stop_level(self, entry: Decimal) -> Decimal | None:
        return entry * (1 - self.stop_loss_pct / _HUNDRED) if self.stop_loss_pct > 0 else None

    def trailing_level(self, peak: Decimal) -> Decimal | None:
        if self.trailing_stop_pct <= 0:
            return None
        return peak * (1 - self.trailing_stop_pct / _HUNDRED)

    def profit_level(self, entry: Decimal) -> Decimal | None:
        if self.take_profit_pct <= 0:
            return None
        return entry * (1 + self.take_profit_pct / _HUNDRED)

    def trigger(self, close: Decimal, entry: Decimal, peak: Decimal) -> str | None:
        """The exit a held position takes at this close, or None. Precedence:
        stop-loss, trailing stop, take-profit."""
        stop = self.stop_level(entry)
        if stop is not None and close <= stop:
            return STOP_LOSS
        trail = self.trailing_level(peak)
        if trail is not None and close <= trail:
            return TRAILING_STOP
        profit = self.profit_level(entry)
        if profit is not None and close >= profit:
            return TAKE_PROFIT
        return None


@dataclass(frozen=True)
class GuardRules:
    """COOLDOWN_CANDLES and the stop guard's three settings, in candles."""

    cooldown_candles: int = 0
    stop_guard_exits: int = 0
    stop_guard_window_candles: int = 0
    stop_guard_pause_candles: int = 0

    def cooldown_blocks(self, decision: T, last_sell_bar: T | None, period: Any) -> bool:
        """True while a buy decided at ``decision`` is in the cooldown after the
        last sell fill's bar."""
        if self.cooldown_candles <= 0 or last_sell_bar is None:
            return False
        return decision < last_sell_bar + self.cooldown_candles * period

    def stop_guard_until(self, stop_bars: Sequence[T], period: Any) -> T | None:
        """The time until which the stop guard blocks buys, given the bars of
        the stop exits filled so far (oldest first); None if it never did."""
        n = self.stop_guard_exits
        if n <= 0 or len(stop_bars) < n:
            return None
        window = self.stop_guard_window_candles * period
        until = None
        for k in range(n - 1, len(stop_bars)):
            f = stop_bars[k]
            # k - (n - 1) is the n-th most recent stop up to f: all n lie in the window
            if stop_bars[k - (n - 1)] + window > f:
                end = f + self.stop_guard_pause_candles * period
                until = end if until is None or until < end else until
        return until

    def stop_guard_blocks(self, decision: T, stop_bars: Sequence[T], period: Any) -> bool:
        until = self.stop_guard_until([b for b in stop_bars if b <= decision], period)
        return until is not None and decision < until


def daily_loss_reached(equity: Decimal, start: Decimal, limit_pct: Decimal) -> bool:
    """DAILY_LOSS_LIMIT_PCT: equity at or below the day's start less the limit."""
    return limit_pct > 0 and start > 0 and equity <= start * (1 - limit_pct / _HUNDRED)


def fill_price(side: str, limit: Decimal, open_: Decimal, low: Decimal,
               high: Decimal) -> Decimal | None:
    """Where a limit order decided at the close before this candle fills, or
    None (cancelled): a marketable order takes the open, else the limit if the
    candle reaches it."""
    if side == "bid":
        if open_ <= limit:
            return open_
        return limit if low <= limit else None
    if open_ >= limit:
        return open_
    return limit if high >= limit else None


def slippage(price: Decimal, close: Decimal) -> Decimal:
    """A fill's price against its decision's close: ``price / close - 1``."""
    return price / close - 1


@dataclass(frozen=True)
class FillEvent:
    """One fill as the position rules see it."""

    bar: Any  # the bar (candle start) during which it filled
    side: str  # bid | ask
    price: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Position:
    """The open position: volume-weighted entry (no fees) and the bar of its
    first buy fill."""

    entry: Decimal
    first_bar: Any
    volume: Decimal


def position_of(fills: Iterable[FillEvent], min_order_krw: Decimal) -> Position | None:
    """The position the fills (oldest first) leave open, or None. A sell that
    leaves coin worth less than MIN_ORDER_KRW at its price closes the position;
    the next buy starts a new one."""
    cost = volume = Decimal(0)
    held = Decimal(0)
    first = None
    for fill in fills:
        if fill.side == "bid":
            if first is None:
                first = fill.bar
            cost += fill.price * fill.volume
            volume += fill.volume
            held += fill.volume
        else:
            held -= fill.volume
            if held * fill.price < min_order_krw:
                cost = volume = Decimal(0)
                first = None
    if first is None or volume <= 0:
        return None
    return Position(cost / volume, first, held)
