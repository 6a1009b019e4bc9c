"""Order lifecycle: send an order exactly once, then follow it to ``done`` or
``cancel``.

Every order row is written (state ``new``) before it is sent. Sending first
looks the order's ``identifier`` up at the exchange, so a retried or
redelivered task finds the order it already placed instead of placing a
second one; a POST whose answer was lost is resolved the same way. The
reconcile pass (each minute, and at worker start) takes the exchange's view of
every active order: records each fill once (unique trade uuid), follows the
state, asks for a cancel of limit orders open longer than
ORDER_TIMEOUT_SECONDS, adopts open orders the database has never seen, and logs
every difference. One order's error does not stop the others.

A cancel is a request (docs/upbit.md): the order is ``cancelling`` from just
before the request until the exchange reports ``cancel`` or ``done``; it stays
active and keeps being polled, and what fills meanwhile is recorded like any
fill. ``order.cancelled`` comes only with ``cancel``; an order that filled in
full while cancelling ends ``done``, its ``order.filled`` lines saying so. A
cancel still pending ORDER_TIMEOUT_SECONDS after it was asked for is asked for
again (its request may have been lost, or the process died before sending it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, cast

from bot import clock
from bot.config import Settings
from bot.errors import (
    BotError,
    ExchangeError,
    OrderNotFound,
    OrderSubmitUnknown,
    TemporaryError,
)
from bot.exchange.protocol import Exchange
from bot.logs import event
from bot.models import Order
from bot.money import floor_volume, round_price
from bot.storage import Database
from bot.storage import markets as market_store
from bot.storage import orders as order_store
from bot.storage.orders import OrderRow

log = logging.getLogger(__name__)


@dataclass
class TradeContext:
    """What the trader and the reconcile pass work with."""

    settings: Settings
    db: Database
    exchange: Exchange
    now: Callable[[], datetime] = clock.now
    notify: Callable[..., None] = field(default=lambda *a, **k: None)

    @property
    def mode(self) -> str:
        return self.settings.trading_mode

    @property
    def period(self) -> timedelta:
        return timedelta(minutes=self.settings.unit)


@dataclass
class ReconcileResult:
    market: str | None
    checked: int = 0
    fills: int = 0
    cancel_requested: int = 0
    cancelled: int = 0
    adopted: int = 0
    errors: int = 0
    sent: int = 0


def _order_fields(row: OrderRow) -> dict:
    return {"market": row.market, "side": row.side, "price": row.price, "volume": row.volume,
            "identifier": row.identifier}


def send_order(ctx: TradeContext, row: OrderRow) -> str:
    """Place ``row`` unless the exchange already has its identifier; returns
    the resulting state. Raises a temporary error when the outcome is unknown
    (the order stays ``new`` for the retry or the next reconcile)."""
    try:
        return _take(ctx, row, ctx.exchange.get_order(identifier=row.identifier), "found")
    except OrderNotFound:
        pass
    try:
        placed = ctx.exchange.place_limit_order(row.market, row.side, row.price, row.volume,
                                                row.identifier)
    except OrderSubmitUnknown as unknown:
        try:
            return _take(ctx, row, ctx.exchange.get_order(identifier=row.identifier), "found")
        except OrderNotFound:
            event(log, "order.unknown", level=logging.WARNING, **_order_fields(row),
                  detail="no answer to the order; will look the identifier up again")
        raise unknown
    except TemporaryError:
        raise  # not placed (429, connect timeout): stays 'new' for the retry
    except ExchangeError as exc:
        # Refused. It may still have landed in an earlier attempt whose answer
        # was lost (a reused identifier is refused too): look once more.
        try:
            return _take(ctx, row, ctx.exchange.get_order(identifier=row.identifier), "found")
        except OrderNotFound:
            pass
        order_store.mark(ctx.db, row.id, "rejected", error=f"{exc.name or exc.status}: "
                         f"{exc.error_message}")
        event(log, "order.rejected", level=logging.WARNING, **_order_fields(row),
              error=exc.name, status=exc.status, detail=exc.error_message)
        retried = _retry_on_new_tick(ctx, row, exc)
        return "rejected" if retried is None else retried
    return _take(ctx, row, placed, "placed")


RETICK_SUFFIX = "-t"  # the identifier of the one retry on a new tick


class TickSource(Protocol):
    def tick_sizes(self, markets: Sequence[str]) -> dict[str, Decimal]: ...


def _retry_on_new_tick(ctx: TradeContext, row: OrderRow, refused: ExchangeError) -> str | None:
    """Upbit refused the price as off the tick (its ticks change): read the
    market's tick at once, store it, and place the order once more on it,
    under a new identifier (Upbit never takes one twice). None: no retry."""
    if not (refused.name or "").startswith("invalid_price_") \
            or row.identifier.endswith(RETICK_SUFFIX) or not hasattr(ctx.exchange, "tick_sizes"):
        return None
    source = cast(TickSource, ctx.exchange)
    try:
        tick = source.tick_sizes([row.market]).get(row.market)
    except BotError:
        return None
    if tick is None:
        return None
    market_store.store_ticks(ctx.db, {row.market: tick}, ctx.now())
    price = round_price(row.price, "up" if row.side == "bid" else "down", tick)
    volume = row.volume if row.side == "ask" else floor_volume(row.price * row.volume / price)
    if price == row.price or volume <= 0:
        return None
    with ctx.db.cursor() as cur:
        new_id = order_store.insert_new(
            cur, identifier=row.identifier + RETICK_SUFFIX, mode=row.mode, market=row.market,
            side=row.side, price=price, volume=volume, decision_id=row.decision_id,
            created_at=ctx.now())
    event(log, "order.retick", level=logging.WARNING, **_order_fields(row), tick=tick,
          new_price=price, new_volume=volume, detail="refused as off the tick: the market's"
          " tick was read again and the order is placed once more on it")
    return send_order(ctx, order_store.by_id(ctx.db, new_id))


def _take(ctx: TradeContext, row: OrderRow, order: Order, how: str) -> str:
    order_store.record_exchange_state(ctx.db, row.id, order, sent_at=ctx.now())
    event(log, f"order.{how}", **_order_fields(row), uuid=order.uuid, state=order.state)
    if order.fills:
        _record_fills(ctx, order_store.by_id(ctx.db, row.id), order)
    return order.state


def _record_fills(ctx: TradeContext, row: OrderRow, order: Order) -> int:
    """Record each fill of ``order`` once; the fee is the order's ``paid_fee``
    shared by funds (Upbit's fills (its ``trades``) carry no fee of their own)."""
    total_funds = sum((t.funds for t in order.fills), Decimal(0))
    new = 0
    for fill in order.fills:
        if len(order.fills) == 1:
            fee = order.paid_fee  # exact: no share of a share to round
        elif total_funds > 0:
            fee = order.paid_fee * fill.funds / total_funds
        else:
            fee = fill.funds * ctx.settings.fee_rate
        if order_store.insert_fill(ctx.db, row, fill, fee):
            new += 1
            event(log, "order.filled", market=row.market, side=row.side, price=fill.price,
                  volume=fill.volume, funds=fill.funds, fee=fee.quantize(Decimal("0.0001")),
                  identifier=row.identifier, trade=fill.uuid)
            ctx.notify("order.filled", market=row.market, side=row.side, price=fill.price,
                       volume=fill.volume, funds=fill.funds, fee=fee)
    return new


def _reconcile_one(ctx: TradeContext, row: OrderRow, result: ReconcileResult) -> None:
    now = ctx.now()
    if row.exchange_uuid is None:
        try:
            order = ctx.exchange.get_order(identifier=row.identifier)
        except OrderNotFound:
            if now - row.created_at < ctx.period:
                # Written but never confirmed sent, and still fresh: send it.
                if send_order(ctx, row) != "rejected":
                    result.sent += 1
            else:
                order_store.mark(ctx.db, row.id, "failed", error="never reached the exchange")
                event(log, "order.failed", level=logging.WARNING, **_order_fields(row),
                      detail="never reached the exchange; too old to send now")
            return
        event(log, "order.recovered", **_order_fields(row), uuid=order.uuid, state=order.state,
              detail="found by identifier")
    else:
        order = ctx.exchange.get_order(uuid=row.exchange_uuid)
    result.fills += _record_fills(ctx, row, order)
    if not (row.cancelling and order.is_open) and order.state != row.state:
        event(log, "order.state", market=row.market, identifier=row.identifier,
              database=row.state, exchange=order.state)
    order_store.record_exchange_state(ctx.db, row.id, order)
    timeout = timedelta(seconds=ctx.settings.order_timeout_seconds)
    if row.cancelling:
        if not order.is_open:
            _cancel_ended(ctx, row, order, now, result)
        elif now - (row.cancel_requested_at or now) > timeout:
            _request_cancel(ctx, row, order, row.cancel_reason or "timeout", result)
    elif order.is_open and now - (row.sent_at or row.created_at) > timeout:
        _request_cancel(ctx, row, order, "timeout", result)


def _request_cancel(ctx: TradeContext, row: OrderRow, order: Order, reason: str,
                    result: ReconcileResult) -> None:
    """Ask for a cancel; the order stays ``cancelling`` (active) until the
    exchange ends it, which the next look at it (now, or the next pass) sees."""
    now = ctx.now()
    order_store.mark_cancelling(ctx.db, row.id, reason=reason, at=now)
    try:
        answer = ctx.exchange.cancel_order(uuid=order.uuid)
    except TemporaryError:
        raise  # it may have landed: stays 'cancelling'; asked again after the timeout
    except ExchangeError:
        # Refused; most often because the order ended since we looked.
        if not row.cancelling:
            order_store.unmark_cancelling(ctx.db, row.id, order.state)
        if ctx.exchange.get_order(uuid=order.uuid).is_open:
            raise
        _reconcile_one(ctx, order_store.by_id(ctx.db, row.id), result)
        return
    result.cancel_requested += 1
    event(log, "order.cancel_requested", **_order_fields(row), uuid=order.uuid, reason=reason,
          age_s=_age_s(row, now), again=row.cancelling, state=answer.state,
          executed=answer.executed_volume)
    result.fills += _record_fills(ctx, row, answer)
    if not answer.is_open:
        # An answer to a cancel need not list the trades (testkit/fakeupbit.py
        # sends none): one more look records them, then ends the order.
        _reconcile_one(ctx, order_store.by_id(ctx.db, row.id), result)


def _cancel_ended(ctx: TradeContext, row: OrderRow, order: Order, now: datetime,
                  result: ReconcileResult) -> None:
    if order.state != "cancel":
        return  # filled in full before the cancel took: 'done', told by its order.filled
    result.cancelled += 1
    reason = row.cancel_reason or "timeout"
    remaining = row.volume - order.executed_volume
    event(log, "order.cancelled", **_order_fields(row), reason=reason, age_s=_age_s(row, now),
          executed=order.executed_volume, remaining=remaining)
    ctx.notify("order.cancelled", market=row.market, side=row.side, price=row.price,
               volume=row.volume, reason=reason, executed=order.executed_volume,
               remaining=remaining)


def _age_s(row: OrderRow, now: datetime) -> int:
    return int((now - (row.sent_at or row.created_at)).total_seconds())


def reconcile_market(ctx: TradeContext, market: str | None, *,
                     adopt_unknown: bool = True) -> ReconcileResult:
    """Bring every active order of ``market`` (None: all) in line with the exchange."""
    result = ReconcileResult(market)
    for row in order_store.active(ctx.db, ctx.mode, market):
        result.checked += 1
        try:
            _reconcile_one(ctx, row, result)
        except ExchangeError as exc:
            result.errors += 1
            event(log, "order.reconcile_failed", level=logging.WARNING, **_order_fields(row),
                  error=type(exc).__name__, detail=str(exc))
    if adopt_unknown:
        try:
            open_now = ctx.exchange.open_orders(market)
        except ExchangeError as exc:
            result.errors += 1
            event(log, "order.reconcile_failed", level=logging.WARNING, market=market,
                  error=type(exc).__name__, detail=str(exc))
            open_now = []
        for order in open_now:
            if not order_store.known(ctx.db, uuid=order.uuid, identifier=order.identifier):
                order_store.adopt(ctx.db, ctx.mode, order)
                result.adopted += 1
                event(log, "order.adopted", level=logging.WARNING, market=order.market,
                      side=order.side, price=order.price, volume=order.volume, uuid=order.uuid,
                      identifier=order.identifier, detail="open at the exchange, unknown here")
    return result


def reconcile(ctx: TradeContext, markets: Sequence[str] | None = None, *,
              each: Callable[[str, Callable[[], ReconcileResult]],
                             ReconcileResult | None] | None = None) -> list[ReconcileResult]:
    """A reconcile pass over ``markets`` (default: the configured ones), one
    ``reconcile`` line per market (DEBUG when nothing changed: the pass comes
    every minute). ``each(market, job)`` runs one market's pass (the worker
    holds the market's order lock there) and may skip it by returning None."""
    results = []
    for market in markets or market_store.managed(ctx.settings, ctx.db):
        def job(market: str = market) -> ReconcileResult:
            return reconcile_market(ctx, market)

        result = job() if each is None else each(market, job)
        if result is None:
            continue
        results.append(result)
        changed = (result.fills or result.cancel_requested or result.cancelled
                   or result.adopted or result.sent or result.errors)
        event(log, "reconcile", level=logging.INFO if changed else logging.DEBUG,
              market=market, checked=result.checked, fills=result.fills,
              cancelled=result.cancelled, adopted=result.adopted, sent=result.sent,
              errors=result.errors, cancel_requested=result.cancel_requested)
    return results
