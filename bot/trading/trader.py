"""The trader job: one decision per market per closed candle, and at most one
order for it.

A pass for a market: load the last 200 closed candles, refuse stale or
unconfirmed data and candles already decided (cheaply: Beat's fallback trade
mostly ends here), reconcile the market's orders (so the position is
current), then decide as docs/semantics.md defines it, with the parameters in
force (:func:`bot.trading.in_force.params_in_force`): while held, the exits
(stop-loss, trailing stop, take-profit, :mod:`bot.trading.guards`) before the signal
(:func:`bot.trading.strategies.decide`); while flat, a buy signal unless a guard
blocks it (stand aside, live gate, daily loss limit, stop guard, cooldown: the
action becomes ``hold``). The decision's ``trigger`` names what decided it.
Then write the decision and the order (state ``new``) in one transaction and
send the order (:func:`bot.trading.lifecycle.send_order`). The decision row is unique
per market and candle, so a second evaluation of a candle changes nothing; the
order's identifier derives from the decision, so no retry can place it twice.

Sizing follows docs/semantics.md: a bid at close * (1 + AGGRESSIVENESS) rounded up to
the tick for floor8(budget / (price * (1 + FEE_RATE + FEE_BUFFER))) coins; an
ask for the whole free coin balance at close * (1 - AGGRESSIVENESS) rounded
down; nothing below MIN_ORDER_KRW. The budget is the free KRW divided among
the configured markets that hold no position (all of it with one market),
capped by MAX_POSITION_KRW.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from bot import rules
from bot.clock import floor_to_unit
from bot.exchange.protocol import free_balance, total_balance
from bot.logs import event
from bot.models import Balance, coin_of
from bot.money import floor_volume, fmt, round_price
from bot.storage import candles as candle_store
from bot.storage import decisions as decision_store
from bot.storage import equity as equity_store
from bot.storage import markets as market_store
from bot.storage import orders as order_store
from bot.trading import accounting, guards, strategies
from bot.trading.in_force import params_in_force
from bot.trading.lifecycle import TradeContext, reconcile_market, send_order
from bot.trading.params import InForce
from bot.trading.terms import terms_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderPlan:
    side: str
    price: Decimal
    volume: Decimal

    @property
    def value(self) -> Decimal:
        return self.price * self.volume


@dataclass(frozen=True)
class TradeOutcome:
    market: str
    status: str  # decided | already_decided | skipped
    candle_ts: datetime | None = None
    action: str = "hold"
    score: float | None = None
    signals: dict[str, int] | None = None
    reason: str = ""
    order: OrderPlan | None = None
    identifier: str | None = None
    order_state: str | None = None
    weights_version: int | None = None
    trigger: str = rules.SIGNAL  # what decided it (bot.rules: signal, an exit, a guard, ...)


def order_identifier(mode: str, market: str, candle_ts: datetime, side: str) -> str:
    """Unique per decision (Upbit never accepts an identifier twice)."""
    return f"ubot-{mode}-{market}-{candle_ts:%Y%m%dT%H%MZ}-{side}"


def plan_buy(krw_free: Decimal, close: Decimal, *, aggressiveness: Decimal, fee_rate: Decimal,
             fee_buffer: Decimal, min_order_krw: Decimal,
             max_position_krw: Decimal = Decimal(0), tick: Decimal | None = None
             ) -> OrderPlan | str:
    """The bid for a budget, or why there is none (``tick``: the market's own,
    None for the KRW table)."""
    price = round_price(close * (1 + aggressiveness), "up", tick)
    volume = floor_volume(krw_free / (price * (1 + fee_rate + fee_buffer)))
    if max_position_krw > 0:
        volume = min(volume, floor_volume(max_position_krw / price))
    if price * volume < min_order_krw:
        return (f"buy below the minimum order: {fmt(price * volume)} KRW < {fmt(min_order_krw)}"
                f" KRW ({fmt(krw_free)} KRW free)")
    return OrderPlan("bid", price, volume)


def plan_sell(coin_free: Decimal, close: Decimal, *, aggressiveness: Decimal,
              min_order_krw: Decimal, tick: Decimal | None = None) -> OrderPlan | str:
    """The ask for the whole free balance, or why there is none."""
    price = round_price(close * (1 - aggressiveness), "down", tick)
    volume = floor_volume(coin_free)
    if price * volume < min_order_krw:
        return (f"sell below the minimum order: {fmt(price * volume)} KRW <"
                f" {fmt(min_order_krw)} KRW")
    return OrderPlan("ask", price, volume)


def _latest_closes(ctx: TradeContext, balances: list[Balance], market: str,
                   close: Decimal) -> dict[str, Decimal]:
    markets = set(market_store.traded(ctx.settings, ctx.db)) | {
        f"KRW-{b.currency}" for b in balances if b.currency != "KRW"}
    closes = candle_store.latest_closes(ctx.db, sorted(markets), ctx.settings.timeframe)
    closes[market] = close
    return closes


def _loss_limit_halted(ctx: TradeContext, equity: Decimal, day: date, now: datetime) -> bool:
    """Record the day's starting equity (at its first decision); True once the
    day's loss limit is reached. ``day``: the UTC date of the decided candle's
    close, as in the backtest (not the wall clock's)."""
    pct = ctx.settings.daily_loss_limit_pct
    start, halted = equity_store.start_of_day(ctx.db, ctx.mode, day, equity)
    if pct <= 0:
        return False
    if halted:
        return True
    if rules.daily_loss_reached(equity, start, pct):
        if equity_store.halt(ctx.db, ctx.mode, day, now):
            event(log, "risk.loss_limit", level=logging.WARNING, equity=equity.quantize(1),
                  start_equity=start.quantize(1), limit_pct=pct,
                  detail="no new buys until the next UTC day")
            ctx.notify("risk.loss_limit", equity=equity, start_equity=start, limit_pct=pct)
        return True
    return False


def _buy_budget(ctx: TradeContext, balances: list[Balance], closes: dict[str, Decimal]) -> Decimal:
    krw = free_balance(balances, "KRW")
    flat = 0
    for market in market_store.traded(ctx.settings, ctx.db):
        coin = total_balance(balances, coin_of(market))
        if coin * closes.get(market, Decimal(0)) < ctx.settings.min_order_krw:
            flat += 1
    return krw / max(flat, 1)


def _plan(ctx: TradeContext, market: str, action: str, balances: list[Balance], close: Decimal,
          closes: dict[str, Decimal]) -> OrderPlan | str:
    s = ctx.settings
    if order_store.active(ctx.db, ctx.mode, market):
        return "an order for this market is still open"
    terms = terms_of(s, ctx.db, market)
    if action == "buy":
        return plan_buy(_buy_budget(ctx, balances, closes), close,
                        aggressiveness=s.aggressiveness, fee_rate=terms.bid_fee,
                        fee_buffer=s.fee_buffer, min_order_krw=terms.min_order_krw,
                        max_position_krw=s.max_position_krw, tick=terms.tick)
    return plan_sell(free_balance(balances, coin_of(market)), close,
                     aggressiveness=s.aggressiveness, min_order_krw=terms.min_order_krw,
                     tick=terms.tick)


def _skip(market: str, reason: str, candle_ts: datetime | None = None,
          level: int = logging.INFO) -> TradeOutcome:
    event(log, "decision.skipped", level=level, market=market, candle=candle_ts, reason=reason)
    return TradeOutcome(market, "skipped", candle_ts, reason=reason)


def trade_market(ctx: TradeContext, market: str, *,
                 pending_level: int = logging.INFO) -> TradeOutcome:
    """One decision pass for one market (see the module docstring).

    ``pending_level``: the level of the skip for a candle not confirmed closed
    yet. The daemon passes DEBUG: that skip is routine there (Beat's trade
    comes first, the collector's follow-up triggers the decision)."""
    s = ctx.settings
    now = ctx.now()
    period = ctx.period
    window = candle_store.load_candles(ctx.db, market, s.timeframe,
                                       until=floor_to_unit(now, s.unit), limit=strategies.WINDOW)
    if not window:
        return _skip(market, "no closed candles stored yet", level=logging.WARNING)
    newest = window[-1]
    age = now - (newest.ts + period)
    if age > 2 * period:
        return _skip(market, f"stale data: newest closed candle closed {int(age.total_seconds())}"
                     " s ago", newest.ts, logging.WARNING)
    if not newest.meta.get("final"):
        return _skip(market, "newest candle not confirmed closed yet", newest.ts, pending_level)
    if decision_store.exists(ctx.db, market, newest.ts):
        # A retried or redelivered task: finish sending what that decision wrote.
        if any(o.exchange_uuid is None for o in order_store.active(ctx.db, ctx.mode, market)):
            reconcile_market(ctx, market, adopt_unknown=False)
        return _already_decided(ctx, market, newest.ts)
    # Take the exchange's view of this market's orders first, so that
    # "holding" and "an order is open" are current.
    reconcile_market(ctx, market, adopt_unknown=False)

    params = params_in_force(s, ctx.db, market)
    balances = ctx.exchange.balances()
    coin = coin_of(market)
    close = newest.close
    # Coin locked in an open ask is still held (docs/semantics.md: coin * close).
    holding = total_balance(balances, coin) * close >= s.min_order_krw
    day_start = newest.ts.replace(hour=0, minute=0, second=0, microsecond=0)
    day_open = candle_store.day_open(ctx.db, market, s.timeframe, day_start, newest.ts + period)
    decision = strategies.decide([float(c.close) for c in window],
                                 None if day_open is None else float(day_open),
                                 params.weights, float(params.threshold), holding)
    closes = _latest_closes(ctx, balances, market, close)
    # Short of a full window there is no decision (docs/semantics.md): no exit,
    # and no start of the day's equity either.
    full = len(window) >= strategies.WINDOW
    day = (newest.ts + period).astimezone(UTC).date()
    halted = full and _loss_limit_halted(ctx, accounting.equity(balances, closes), day, now)
    action, trigger, reason = _apply_rules(ctx, market, params, decision, newest.ts, close,
                                           holding and full, halted)
    plan: OrderPlan | str | None = None
    if action != "hold":
        if not s.trading_enabled:
            trigger, plan = rules.KILL_SWITCH, "kill switch: TRADING_ENABLED=false"
        else:
            plan = _plan(ctx, market, action, balances, close, closes)
    if isinstance(plan, str):
        reason = f"{reason}; {plan}"

    identifier = None
    with ctx.db.cursor() as cur:
        decision_id = decision_store.insert(
            cur, market=market, candle_ts=newest.ts, mode=ctx.mode, close=close,
            signals=decision.signals, weights=params.weights, weights_version=params.version,
            score=decision.score, action=action, reason=reason, trigger=trigger)
        if decision_id is None:  # decided concurrently by another pass
            return _already_decided(ctx, market, newest.ts)
        if isinstance(plan, OrderPlan):
            identifier = order_identifier(ctx.mode, market, newest.ts, plan.side)
            order_id = order_store.insert_new(
                cur, identifier=identifier, mode=ctx.mode, market=market, side=plan.side,
                price=plan.price, volume=plan.volume, decision_id=decision_id, created_at=now)
    outcome = TradeOutcome(market, "decided", newest.ts, action, decision.score,
                           decision.signals, reason, plan if isinstance(plan, OrderPlan) else None,
                           identifier, weights_version=params.version, trigger=trigger)
    _log_decision(outcome)
    if identifier is not None:
        state = send_order(ctx, order_store.by_id(ctx.db, order_id))
        outcome = TradeOutcome(**{**outcome.__dict__, "order_state": state})
    return outcome


def _apply_rules(ctx: TradeContext, market: str, params: InForce,
                 decision: strategies.Decision, candle_ts: datetime, close: Decimal,
                 exits_apply: bool, halted: bool) -> tuple[str, str, str]:
    """(action, trigger, reason): the exits while held (before the signal), the
    guards on a buy signal while flat (docs/semantics.md). Exits and sells are
    never blocked."""
    if exits_apply:
        held = guards.holding(ctx.settings, ctx.db, market, candle_ts, close)
        hit = None if held is None else guards.exit_taken(guards.exit_rules(params), held, close)
        if hit is not None:
            return "sell", hit.trigger, hit.reason
    elif decision.action == "buy":
        blocking = guards.buy_guards(ctx.settings, ctx.db, market, params, candle_ts,
                                     loss_limit=halted)
        if blocking:
            return "hold", blocking[0].trigger, f"{decision.reason}; {blocking[0].reason}"
    return decision.action, rules.SIGNAL, decision.reason


def _already_decided(ctx: TradeContext, market: str, candle_ts: datetime) -> TradeOutcome:
    """The stored decision for this candle (and its order), as it was made."""
    row = decision_store.get(ctx.db, market, candle_ts)
    if row is None:  # pragma: no cover - rows are never deleted
        return TradeOutcome(market, "already_decided", candle_ts,
                            reason="this candle was already decided")
    order = order_store.by_decision(ctx.db, row.id)
    return TradeOutcome(
        market, "already_decided", candle_ts, row.action, row.score, dict(row.signals),
        row.reason,
        None if order is None else OrderPlan(order.side, order.price, order.volume),
        None if order is None else order.identifier,
        None if order is None else order.state, row.weights_version, row.trigger)


def _log_decision(o: TradeOutcome) -> None:
    fields = {"market": o.market, "candle": o.candle_ts, "action": o.action,
              "trigger": o.trigger, "score": round(o.score or 0.0, 4),
              "signals": " ".join(f"{k}={v:+d}" for k, v in (o.signals or {}).items()),
              "weights_version": o.weights_version or "default"}
    if o.order is not None:
        fields.update(order=o.order.side, price=o.order.price, volume=o.order.volume,
                      identifier=o.identifier)
    if o.order is None or o.trigger != rules.SIGNAL:  # an exit says at which level
        fields["why"] = o.reason
    event(log, "decision", **fields)


def trade(ctx: TradeContext, markets: tuple[str, ...] | None = None) -> list[TradeOutcome]:
    """A decision pass over the markets; errors propagate (the task retries)."""
    return [trade_market(ctx, market)
            for market in markets or market_store.managed(ctx.settings, ctx.db)]

