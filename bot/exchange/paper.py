"""The paper exchange: a simulated Upbit account kept in the database.

It speaks the same interface as the live client (:class:`bot.exchange.protocol.Exchange`)
and refuses what Upbit refuses (price off the tick, more than 8 volume
decimals, below the minimum order value, not enough funds, an identifier used
before), with Upbit's error names. Cash starts at PAPER_START_KRW; an open bid
reserves ``price * volume * (1 + FEE_RATE)`` KRW and an open ask its volume.

Fills follow docs/semantics.md, shared with the backtest, as Upbit executes a
limit order: an order placed during candle period P (that is, just after the
close of the decision's candle) is matched against the first final candle
starting at or after P (:func:`bot.rules.fill_price`): a bid fills whole at
that candle's open when the open is at or below its limit (marketable: the
best ask), else at its limit when the low reaches it, else it is cancelled
unfilled; asks mirror this with the high. The fee is FEE_RATE of the filled
value; what a cheaper bid fill leaves of its reservation returns to free KRW.

A cancel is a request, as on Upbit (docs/upbit.md): with ``cancel_delay`` the
answer is still ``wait``, and until the delay has passed the order meets the
candles that start before its end by the same model (so it may still fill,
``done``); then it ends ``cancel``. With no delay (the default) it ends at once.
Matching happens lazily, whenever the account is read. Each order is settled
in its own transaction with its row locked, so concurrent readers cannot fill
it twice.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from bot import clock
from bot.errors import InsufficientFunds, InvalidOrder, OrderNotFound
from bot.models import Balance, Fill, Order, coin_of, timeframe_of
from bot.money import VOLUME_QUANTUM, is_on_tick
from bot.rules import fill_price
from bot.storage import Database
from bot.storage import markets as market_store
from bot.storage import paper as store

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from bot.config import Settings

DUPLICATE_IDENTIFIER = "duplicate_identifier"


def _refuse(cls: type[InvalidOrder], name: str, message: str) -> InvalidOrder:
    return cls(message, name=name, status=400, method="POST", path="/paper/orders")


class PaperExchange:
    """A simulated Upbit account in the database (see the module docstring)."""

    def __init__(self, db: Database, *, start_krw: Decimal, fee_rate: Decimal,
                 min_order_krw: Decimal, unit: int = 1,
                 now: Callable[[], datetime] = clock.now,
                 cancel_delay: timedelta = timedelta(0)):
        self.db = db
        self.cancel_delay = cancel_delay
        self.start_krw = start_krw
        self.fee_rate = fee_rate
        self.min_order_krw = min_order_krw
        self.unit = unit
        self.timeframe = timeframe_of(unit)
        self.now = now

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> PaperExchange:
        return cls(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                   min_order_krw=settings.min_order_krw, unit=settings.unit)

    # --- the Exchange interface ---------------------------------------------

    def balances(self) -> list[Balance]:
        self.settle()
        with self.db.cursor() as cur:
            store.ensure_account(cur, self.start_krw)
            return store.balances(cur)

    def place_limit_order(self, market: str, side: str, price: Decimal, volume: Decimal,
                          identifier: str) -> Order:
        self._validate(market, side, price, volume)
        self.settle(market)
        created = self.now()
        currency = "KRW" if side == "bid" else coin_of(market)
        reserve = price * volume * (1 + self.fee_rate) if side == "bid" else volume
        with self.db.cursor() as cur:
            store.ensure_account(cur, self.start_krw)
            if store.identifier_exists(cur, identifier):
                raise _refuse(InvalidOrder, DUPLICATE_IDENTIFIER,
                              f"identifier {identifier} was used before")
            funds = store.lock_balance(cur, currency)
            if funds.balance < reserve:
                raise _refuse(InsufficientFunds, f"insufficient_funds_{side}",
                              f"{currency} {funds.balance} free, {reserve} needed")
            store.save_balance(cur, replace(funds, balance=funds.balance - reserve,
                                            locked=funds.locked + reserve))
            row = store.PaperOrderRow(
                uuid=str(uuidlib.uuid4()), identifier=identifier, market=market, side=side,
                price=price, volume=volume, remaining_volume=volume,
                executed_volume=Decimal(0), reserved=reserve, paid_fee=Decimal(0),
                state="wait", created_at=created,
                fill_from=clock.floor_to_unit(created, self.unit))
            store.insert_order(cur, row)
        return store.to_order(row)

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        found = self._find(uuid, identifier)
        if found.state == "wait":
            self._settle_one(found.uuid)
            found = self._find(found.uuid, None)
        with self.db.cursor() as cur:
            return store.to_order(found, store.fills_of(cur, found.uuid))

    def open_orders(self, market: str | None = None) -> list[Order]:
        self.settle(market)
        with self.db.cursor() as cur:
            uuids = store.open_order_uuids(cur, market)
            return [store.to_order(store.find_order(cur, uuid=u)) for u in uuids]

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        found = self._find(uuid, identifier)
        self._settle_one(found.uuid)
        with self.db.cursor() as cur:
            row = store.find_order(cur, uuid=found.uuid, for_update=True)
            if row.state != "wait":
                raise _refuse(InvalidOrder, "order_not_open",
                              f"order {row.uuid} is already {row.state}")
            if not self.cancel_delay:
                self._cancel(cur, row)
                return store.to_order(replace(row, state="cancel"), store.fills_of(cur, row.uuid))
            if row.cancel_at is None:  # asked again: the first request's end stands
                row = replace(row, cancel_at=self.now() + self.cancel_delay)
                store.set_cancel_at(cur, row.uuid, row.cancel_at)
            return store.to_order(row, store.fills_of(cur, row.uuid))

    # --- matching -----------------------------------------------------------

    def settle(self, market: str | None = None) -> None:
        """Match every open order against the candles that closed since."""
        with self.db.cursor() as cur:
            uuids = store.open_order_uuids(cur, market)
        for order_uuid in uuids:
            self._settle_one(order_uuid)

    def _settle_one(self, order_uuid: str) -> None:
        with self.db.cursor() as cur:
            row = store.find_order(cur, uuid=order_uuid, for_update=True)
            if row is None or row.state != "wait":
                return
            # A requested cancel ends the order's time: later candles never meet it.
            found = store.first_candle(cur, row.market, self.timeframe, row.fill_from,
                                       before=row.cancel_at)
            if found is None:
                if row.cancel_at is not None and self.now() >= row.cancel_at:
                    self._cancel(cur, row)
                return
            candle, final = found
            if not final:
                return  # the candle that decides has not closed yet
            price = fill_price(row.side, row.price, candle.open, candle.low, candle.high)
            if price is None:
                self._cancel(cur, row)
                return
            # Stamped inside the candle that filled it (its bar, bot/storage/positions.py).
            self._fill(cur, row, price, traded_at=max(candle.ts, row.created_at))

    def _fill(self, cur: Cursor, row: store.PaperOrderRow, price: Decimal,
              traded_at: datetime) -> None:
        funds = price * row.volume
        fee = funds * self.fee_rate
        coin = coin_of(row.market)
        krw = store.lock_balance(cur, "KRW")
        held = store.lock_balance(cur, coin)
        if row.side == "bid":
            # The reservation was limit * volume + its fee; a fill below the
            # limit leaves the difference, which is free again.
            quantity = held.balance + held.locked
            average = (quantity * held.avg_buy_price + funds) / (quantity + row.volume)
            store.save_balance(cur, replace(krw, balance=krw.balance + row.reserved - funds - fee,
                                            locked=krw.locked - row.reserved))
            store.save_balance(cur, replace(held, balance=held.balance + row.volume,
                                            avg_buy_price=average))
        else:
            left = held.balance + held.locked - row.volume
            store.save_balance(cur, replace(held, locked=held.locked - row.volume,
                                            avg_buy_price=held.avg_buy_price if left else 0))
            store.save_balance(cur, replace(krw, balance=krw.balance + funds - fee))
        trade = Fill(uuid=f"{row.uuid}-1", market=row.market, side=row.side, price=price,
                      volume=row.volume, funds=funds, created_at=traded_at)
        store.insert_paper_fill(cur, row.uuid, trade, fee)
        store.finish_order(cur, row.uuid, state="done", executed_volume=row.volume, paid_fee=fee)

    def _cancel(self, cur: Cursor, row: store.PaperOrderRow) -> None:
        self._release(cur, row)
        store.finish_order(cur, row.uuid, state="cancel", executed_volume=row.executed_volume,
                           paid_fee=row.paid_fee)

    def _release(self, cur: Cursor, row: store.PaperOrderRow) -> None:
        currency = "KRW" if row.side == "bid" else coin_of(row.market)
        funds = store.lock_balance(cur, currency)
        store.save_balance(cur, replace(funds, balance=funds.balance + row.reserved,
                                        locked=funds.locked - row.reserved))

    # --- helpers --------------------------------------------------------------

    def _validate(self, market: str, side: str, price: Decimal, volume: Decimal) -> None:
        if side not in ("bid", "ask"):
            raise _refuse(InvalidOrder, "validation_error", f"side must be bid or ask: {side}")
        # The market's own tick as Upbit last gave it (bot/data/markets.py), else the table.
        if price <= 0 or not is_on_tick(price, market_store.tick_of(self.db, market)):
            raise _refuse(InvalidOrder, f"invalid_price_{side}", f"price {price} is off the tick")
        if volume <= 0 or volume != volume.quantize(VOLUME_QUANTUM):
            raise _refuse(InvalidOrder, "invalid_volume",
                          f"volume {volume} must be positive with at most 8 decimals")
        if price * volume < self.min_order_krw:
            raise _refuse(InvalidOrder, f"under_min_total_{side}",
                          f"order value {price * volume} is below {self.min_order_krw} KRW")

    def _find(self, uuid: str | None, identifier: str | None) -> store.PaperOrderRow:
        if uuid is None and identifier is None:
            raise ValueError("uuid or identifier required")
        with self.db.cursor() as cur:
            row = store.find_order(cur, uuid=uuid, identifier=identifier)
        if row is None:
            raise OrderNotFound(f"no paper order {uuid or identifier}", name="order_not_found",
                                status=404, method="GET", path="/paper/order")
        return row


class PaperAccountView:
    """The paper exchange's account as stored, read-only: unlike
    :meth:`PaperExchange.balances` it matches no open order, so
    looking at the status never changes what the trader will find."""

    def __init__(self, db: Database, start_krw: Decimal):
        self.db = db
        self.start_krw = start_krw

    def balances(self) -> list[Balance]:
        with self.db.cursor() as cur:
            rows = store.balances(cur)
        if not any(b.currency == "KRW" for b in rows):  # the account was never opened
            rows.insert(0, Balance("KRW", self.start_krw))
        return rows
