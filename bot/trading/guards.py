"""One market's exits and buy guards at one decision, from what is stored
(docs/semantics.md). The rules themselves are :mod:`bot.rules`; this module
reads their inputs (the position's fills, the peak close, the stop exits, the
last sell) and words the outcome for the decision's reason and ``bot status``.
The trader and ``bot status`` both call it, so they cannot disagree.

Times: ``decision_ts`` is the start of the decided candle; a guard's
``until`` is the moment from which a buy may be decided again (the close of
the first candle it no longer blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from bot import rules
from bot.storage import markets as market_store
from bot.storage import pauses, positions
from bot.trading.terms import blocked

if TYPE_CHECKING:  # types only: bot status imports this without the optimizer's numpy
    from bot.config import Settings
    from bot.storage import Database
    from bot.trading.params import InForce


@dataclass(frozen=True)
class Holding:
    """The open position: volume-weighted entry of its buy fills, the bar of
    the first one, the highest close since that bar, the volume the fills leave."""

    entry: Decimal
    first_bar: datetime
    peak: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Outcome:
    """An exit or a guard that applies: its trigger name and why, in words."""

    trigger: str
    reason: str
    until: datetime | None = None  # guards: buys again from then (None: until it changes)


def exit_rules(params: InForce) -> rules.ExitRules:
    return rules.ExitRules(params.stop_loss_pct, params.trailing_stop_pct,
                           params.take_profit_pct)


def guard_rules(settings: Settings, params: InForce) -> rules.GuardRules:
    return rules.GuardRules(params.cooldown_candles, settings.stop_guard_exits,
                            settings.stop_guard_window_candles,
                            settings.stop_guard_pause_candles)


def holding(settings: Settings, db: Database, market: str, decision_ts: datetime,
            close: Decimal) -> Holding | None:
    """The position this mode's stored fills leave open in ``market``, with its
    peak through ``decision_ts`` from the stored candles; None when the fills
    explain no open position (nothing bought, or coins bought elsewhere)."""
    fills = positions.fill_events(db, settings.trading_mode, market, settings.unit)
    position = rules.position_of(fills, settings.min_order_krw)
    if position is None:
        return None
    peak = positions.peak_close(db, market, settings.timeframe, position.first_bar, decision_ts)
    # A live fill may land in a candle after the decided one: its peak is this close.
    peak = close if peak is None else max(peak, close)
    return Holding(position.entry, position.first_bar, peak, position.volume)


def exit_levels(exits: rules.ExitRules, held: Holding) -> dict[str, Decimal | None]:
    """Each exit's price level (None: that exit is off)."""
    return {rules.STOP_LOSS: exits.stop_level(held.entry),
            rules.TRAILING_STOP: exits.trailing_level(held.peak),
            rules.TAKE_PROFIT: exits.profit_level(held.entry)}


def exit_taken(exits: rules.ExitRules, held: Holding, close: Decimal) -> Outcome | None:
    """The exit this close takes (:meth:`bot.rules.ExitRules.trigger`), or None."""
    name = exits.trigger(close, held.entry, held.peak)
    if name is None:
        return None
    level = exit_levels(exits, held)[name]
    if name == rules.STOP_LOSS:
        text = f"<= {price(level)} (entry {price(held.entry)} - {pct(exits.stop_loss_pct)}%)"
    elif name == rules.TRAILING_STOP:
        text = (f"<= {price(level)} (peak {price(held.peak)} - "
                f"{pct(exits.trailing_stop_pct)}%)")
    else:
        text = f">= {price(level)} (entry {price(held.entry)} + {pct(exits.take_profit_pct)}%)"
    return Outcome(name, f"{name}: close {price(close)} {text}")


def buy_guards(settings: Settings, db: Database, market: str, params: InForce,
               decision_ts: datetime, *, loss_limit: bool) -> list[Outcome]:
    """Every guard that blocks a buy decided at ``decision_ts``, in
    :data:`bot.rules.GUARDS` order (the first one is the decision's trigger).
    ``loss_limit``: whether today's loss limit was reached (the trader knows,
    it records the day's equity)."""
    period = timedelta(minutes=settings.unit)
    found: dict[str, Outcome] = {}
    upbit_says = blocked(settings, market_store.get(db, market))
    if upbit_says is not None:
        found[upbit_says[0]] = Outcome(*upbit_says)
    if params.standing_aside:
        found[rules.STAND_ASIDE] = Outcome(
            rules.STAND_ASIDE, "stand_aside: the optimizer's latest verdict for this market is"
            " stand aside: no buys until a run adopts parameters")
    if settings.live and params.version is None and not settings.live_allow_unvalidated:
        found[rules.LIVE_GATE] = Outcome(
            rules.LIVE_GATE, "live_gate: no parameter set adopted for this market"
            " (LIVE_ALLOW_UNVALIDATED=false): no buys in live mode")
    paused = pauses.pause_of(db, market)
    if paused is not None:
        found[rules.PAUSED] = paused_outcome(paused, market)
    if loss_limit:
        close_day = (decision_ts + period).astimezone(UTC).date()
        midnight = datetime(close_day.year, close_day.month, close_day.day, tzinfo=UTC)
        found[rules.LOSS_LIMIT] = Outcome(
            rules.LOSS_LIMIT, "loss_limit: daily loss limit reached: no new buys until"
            " 00:00 UTC", midnight + timedelta(days=1))
    guard = guard_rules(settings, params)
    if guard.stop_guard_exits > 0:
        bars = [b for b in positions.stop_exit_bars(db, settings.trading_mode, market,
                                                    settings.unit) if b <= decision_ts]
        if guard.stop_guard_blocks(decision_ts, bars, period):
            until = guard.stop_guard_until(bars, period)
            found[rules.STOP_GUARD] = Outcome(
                rules.STOP_GUARD, f"stop_guard: {guard.stop_guard_exits} stop exits within "
                f"{guard.stop_guard_window_candles} candles (the last in the {when(bars[-1])} "
                f"candle): no buys until {when(until + period)}", until + period)
    if guard.cooldown_candles > 0:
        sells = [f.bar for f in positions.fill_events(db, settings.trading_mode, market,
                                                      settings.unit) if f.side == "ask"]
        last = sells[-1] if sells else None
        if guard.cooldown_blocks(decision_ts, last, period):
            end = last + guard.cooldown_candles * period + period
            found[rules.COOLDOWN] = Outcome(
                rules.COOLDOWN, f"cooldown: a sell filled in the {when(last)} candle "
                f"(COOLDOWN_CANDLES={guard.cooldown_candles}): no buys until {when(end)}", end)
    return [found[name] for name in rules.GUARDS if name in found]


def paused_outcome(paused: pauses.Pause, market: str) -> Outcome:
    """A stored pause (``bot pause``, Telegram's /pause) as a guard: it lasts
    until someone resumes, so it has no ``until``."""
    which = "all markets" if paused.market is None else market
    flag = "" if paused.market is None else f" --market {market}"
    again = "" if paused.market is None else f" {market}"
    return Outcome(rules.PAUSED, f"paused: buys in {which} paused since {when(paused.since)}"
                   f" by {paused.by}: no new buys until resumed (`bot resume{flag}` or"
                   f" /resume{again})")


def when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%m-%d %H:%MZ")


def price(value: Decimal | None) -> str:
    """A price or level for a reason: thousands separated, at most 2 decimals
    from 100 KRW up (8 below), trailing zeros dropped."""
    if value is None:
        return "-"
    text = f"{value:,.2f}" if abs(value) >= 100 else f"{value:,.8f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def pct(value: Decimal) -> str:
    return format(value.normalize(), "f")
