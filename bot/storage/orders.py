"""The ``orders`` and ``fills`` tables: every order the trader sends, written
before it is sent, and each of its fills exactly once (with its slippage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg2.extensions import cursor as Cursor

from bot.models import Fill, Order
from bot.rules import slippage
from bot.storage.db import Database

# 'cancelling': the daemon asked for a cancel and the exchange has not ended
# the order yet; it can still fill, so it stays active until 'cancel' or 'done'.
ACTIVE_STATES = ("new", "wait", "watch", "cancelling")
EXCHANGE_OPEN_STATES = ("wait", "watch")


@dataclass(frozen=True)
class OrderRow:
    id: int
    identifier: str
    mode: str
    market: str
    side: str
    price: Decimal
    volume: Decimal
    state: str
    exchange_uuid: str | None
    decision_id: int | None
    executed_volume: Decimal
    paid_fee: Decimal
    error: str | None
    cancel_reason: str | None
    created_at: datetime
    sent_at: datetime | None
    cancel_requested_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def cancelling(self) -> bool:
        return self.state == "cancelling"


_COLUMNS = ("id, identifier, mode, market, side, price, volume, state, exchange_uuid,"
            " decision_id, executed_volume, paid_fee, error, cancel_reason, created_at, sent_at,"
            " cancel_requested_at")


def insert_new(cur: Cursor, *, identifier: str, mode: str, market: str, side: str,
               price: Decimal, volume: Decimal, decision_id: int | None,
               created_at: datetime) -> int:
    cur.execute("INSERT INTO orders (identifier, mode, market, side, price, volume, state,"
                " decision_id, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'new', %s, %s, %s) RETURNING id",
                (identifier, mode, market, side, price, volume, decision_id, created_at,
                 created_at))
    return cur.fetchone()[0]


def _one(db: Database, where: str, params: tuple) -> OrderRow | None:
    with db.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM orders WHERE {where}", params)
        row = cur.fetchone()
    return OrderRow(*row) if row else None


def by_identifier(db: Database, identifier: str) -> OrderRow | None:
    return _one(db, "identifier = %s", (identifier,))


def by_id(db: Database, order_id: int) -> OrderRow | None:
    return _one(db, "id = %s", (order_id,))


def by_decision(db: Database, decision_id: int) -> OrderRow | None:
    """The decision's order: the newest, when a refused one was placed again
    (bot.trading.lifecycle's retry on a new tick)."""
    return _one(db, "decision_id = %s ORDER BY id DESC LIMIT 1", (decision_id,))


def known(db: Database, *, uuid: str, identifier: str | None) -> bool:
    with db.cursor() as cur:
        cur.execute("SELECT 1 FROM orders WHERE exchange_uuid = %s OR identifier = %s",
                    (uuid, identifier or ""))
        return cur.fetchone() is not None


def active(db: Database, mode: str, market: str | None = None) -> list[OrderRow]:
    sql = f"SELECT {_COLUMNS} FROM orders WHERE mode = %s AND state IN %s"
    params: list = [mode, ACTIVE_STATES]
    if market is not None:
        sql += " AND market = %s"
        params.append(market)
    with db.cursor() as cur:
        cur.execute(sql + " ORDER BY id", params)
        return [OrderRow(*row) for row in cur.fetchall()]


# An open answer leaves a requested cancel pending: the row stays 'cancelling'.
_FOLLOW_STATE = ("CASE WHEN state = 'cancelling' AND %(state)s IN %(open)s THEN 'cancelling'"
                 " ELSE %(state)s END")


def record_exchange_state(db: Database, order_id: int, order: Order,
                          sent_at: datetime | None = None) -> None:
    """Take the exchange's view of an order (uuid, state, executed volume, fee)."""
    with db.cursor() as cur:
        cur.execute(f"UPDATE orders SET exchange_uuid = %(uuid)s, state = {_FOLLOW_STATE},"
                    " executed_volume = %(executed)s, paid_fee = %(fee)s,"
                    " sent_at = coalesce(sent_at, %(sent_at)s), updated_at = now()"
                    " WHERE id = %(id)s",
                    _state_params(order, id=order_id, sent_at=sent_at))


def mark_cancelling(db: Database, order_id: int, *, reason: str, at: datetime) -> None:
    """The daemon asks the exchange to cancel: written before the request, so
    that however it ends, its end is reported as the cancel it was."""
    with db.cursor() as cur:
        cur.execute("UPDATE orders SET state = 'cancelling', cancel_reason = %s,"
                    " cancel_requested_at = %s, updated_at = now() WHERE id = %s",
                    (reason, at, order_id))


def unmark_cancelling(db: Database, order_id: int, state: str) -> None:
    """The exchange refused the cancel: the order is back to ``state``."""
    with db.cursor() as cur:
        cur.execute("UPDATE orders SET state = %s, cancel_reason = NULL,"
                    " cancel_requested_at = NULL, updated_at = now()"
                    " WHERE id = %s AND state = 'cancelling'", (state, order_id))


def _state_params(order: Order, **more: object) -> dict[str, object]:
    return {"uuid": order.uuid, "state": order.state, "open": EXCHANGE_OPEN_STATES,
            "executed": order.executed_volume, "fee": order.paid_fee, **more}


def mark(db: Database, order_id: int, state: str, *, error: str | None = None,
         cancel_reason: str | None = None) -> None:
    with db.cursor() as cur:
        cur.execute("UPDATE orders SET state = %s, error = coalesce(%s, error),"
                    " cancel_reason = coalesce(%s, cancel_reason), updated_at = now()"
                    " WHERE id = %s", (state, error, cancel_reason, order_id))


def adopt(db: Database, mode: str, order: Order) -> int:
    """Record an order the exchange has and the database had never seen."""
    identifier = order.identifier or f"external-{order.uuid}"
    with db.cursor() as cur:
        cur.execute("INSERT INTO orders (identifier, mode, market, side, ord_type, price, volume,"
                    " state, exchange_uuid, executed_volume, paid_fee, created_at, sent_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (identifier) DO UPDATE SET exchange_uuid = EXCLUDED.exchange_uuid"
                    " RETURNING id",
                    (identifier, mode, order.market, order.side, order.ord_type,
                     order.price or 0, order.volume or 0, order.state, order.uuid,
                     order.executed_volume, order.paid_fee, order.created_at, order.created_at))
        return cur.fetchone()[0]


def insert_fill(db: Database, order: OrderRow, trade: Fill, fee: Decimal) -> bool:
    """Record a fill once, with its slippage against the close of the order's
    decision (none for an order without one); False when this trade uuid is
    already recorded."""
    with db.cursor() as cur:
        slip = None
        if order.decision_id is not None:
            cur.execute("SELECT close FROM decisions WHERE id = %s", (order.decision_id,))
            row = cur.fetchone()
            slip = None if row is None or row[0] <= 0 else slippage(trade.price, row[0])
        cur.execute("INSERT INTO fills (order_id, trade_uuid, mode, market, side, price, volume,"
                    " funds, fee, traded_at, slippage)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (trade_uuid) DO NOTHING RETURNING id",
                    (order.id, trade.uuid, order.mode, order.market, order.side, trade.price,
                     trade.volume, trade.funds, fee, trade.created_at, slip))
        return cur.fetchone() is not None


def fills_of(db: Database, order_id: int) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute("SELECT trade_uuid, price, volume, funds, fee FROM fills WHERE order_id = %s"
                    " ORDER BY traded_at, id", (order_id,))
        return cur.fetchall()


def count(db: Database, mode: str | None = None) -> int:
    with db.cursor() as cur:
        if mode is None:
            cur.execute("SELECT count(*) FROM orders")
        else:
            cur.execute("SELECT count(*) FROM orders WHERE mode = %s", (mode,))
        return cur.fetchone()[0]
