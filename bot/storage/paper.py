"""SQL of the paper exchange (tables ``paper_balances``, ``paper_orders``,
``paper_trades``). Functions take a cursor so that the paper exchange can put
a reservation or a fill and its balance changes in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg2.extensions import cursor as Cursor

from bot.models import Balance, Fill, Order


@dataclass(frozen=True)
class PaperOrderRow:
    uuid: str
    identifier: str
    market: str
    side: str
    price: Decimal
    volume: Decimal
    remaining_volume: Decimal
    executed_volume: Decimal
    reserved: Decimal
    paid_fee: Decimal
    state: str
    created_at: datetime
    fill_from: datetime
    # When a requested cancel takes effect (None: no cancel asked for).
    cancel_at: datetime | None = None


_ORDER_COLUMNS = ("uuid, identifier, market, side, price, volume, remaining_volume,"
                  " executed_volume, reserved, paid_fee, state, created_at, fill_from,"
                  " cancel_at")


def ensure_account(cur: Cursor, start_krw: Decimal) -> None:
    """Open the account with its starting cash the first time it is used."""
    cur.execute("INSERT INTO paper_balances (currency, balance) VALUES ('KRW', %s)"
                " ON CONFLICT (currency) DO NOTHING", (start_krw,))


def balances(cur: Cursor) -> list[Balance]:
    cur.execute("SELECT currency, balance, locked, avg_buy_price FROM paper_balances"
                " WHERE currency = 'KRW' OR balance > 0 OR locked > 0 ORDER BY currency")
    return [Balance(*row) for row in cur.fetchall()]


def lock_balance(cur: Cursor, currency: str) -> Balance:
    """The currency's row, locked for this transaction (created empty if new)."""
    cur.execute("INSERT INTO paper_balances (currency, balance) VALUES (%s, 0)"
                " ON CONFLICT (currency) DO NOTHING", (currency,))
    cur.execute("SELECT currency, balance, locked, avg_buy_price FROM paper_balances"
                " WHERE currency = %s FOR UPDATE", (currency,))
    return Balance(*cur.fetchone())


def save_balance(cur: Cursor, balance: Balance) -> None:
    cur.execute("UPDATE paper_balances SET balance = %s, locked = %s, avg_buy_price = %s"
                " WHERE currency = %s",
                (balance.balance, balance.locked, balance.avg_buy_price, balance.currency))


def identifier_exists(cur: Cursor, identifier: str) -> bool:
    cur.execute("SELECT 1 FROM paper_orders WHERE identifier = %s", (identifier,))
    return cur.fetchone() is not None


def insert_order(cur: Cursor, row: PaperOrderRow) -> None:
    cur.execute(f"INSERT INTO paper_orders ({_ORDER_COLUMNS}) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (row.uuid, row.identifier, row.market, row.side, row.price, row.volume,
                 row.remaining_volume, row.executed_volume, row.reserved, row.paid_fee,
                 row.state, row.created_at, row.fill_from, row.cancel_at))


def find_order(cur: Cursor, *, uuid: str | None = None, identifier: str | None = None,
               for_update: bool = False) -> PaperOrderRow | None:
    key, value = ("uuid", uuid) if uuid is not None else ("identifier", identifier)
    lock = " FOR UPDATE" if for_update else ""
    cur.execute(f"SELECT {_ORDER_COLUMNS} FROM paper_orders WHERE {key} = %s{lock}", (value,))
    row = cur.fetchone()
    return PaperOrderRow(*row) if row else None


def open_order_uuids(cur: Cursor, market: str | None = None) -> list[str]:
    if market is None:
        cur.execute("SELECT uuid FROM paper_orders WHERE state = 'wait' ORDER BY created_at")
    else:
        cur.execute("SELECT uuid FROM paper_orders WHERE state = 'wait' AND market = %s"
                    " ORDER BY created_at", (market,))
    return [row[0] for row in cur.fetchall()]


def finish_order(cur: Cursor, uuid: str, *, state: str, executed_volume: Decimal,
                 paid_fee: Decimal) -> None:
    cur.execute("UPDATE paper_orders SET state = %s, executed_volume = %s,"
                " remaining_volume = volume - %s, paid_fee = %s WHERE uuid = %s",
                (state, executed_volume, executed_volume, paid_fee, uuid))


def set_cancel_at(cur: Cursor, uuid: str, cancel_at: datetime) -> None:
    cur.execute("UPDATE paper_orders SET cancel_at = %s WHERE uuid = %s", (cancel_at, uuid))


def insert_paper_fill(cur: Cursor, order_uuid: str, fill: Fill, fee: Decimal) -> None:
    cur.execute("INSERT INTO paper_trades (uuid, order_uuid, market, side, price, volume, funds,"
                " fee, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (fill.uuid, order_uuid, fill.market, fill.side, fill.price, fill.volume,
                 fill.funds, fee, fill.created_at))


def fills_of(cur: Cursor, order_uuid: str) -> tuple[Fill, ...]:
    cur.execute("SELECT uuid, market, side, price, volume, funds, created_at FROM paper_trades"
                " WHERE order_uuid = %s ORDER BY created_at, uuid", (order_uuid,))
    return tuple(Fill(*row) for row in cur.fetchall())


@dataclass(frozen=True)
class FillCandle:
    """What the fill model reads of the candle that decides an order."""

    ts: datetime
    open: Decimal
    low: Decimal
    high: Decimal


def first_candle(cur: Cursor, market: str, timeframe: str, since: datetime,
                 before: datetime | None = None) -> tuple[FillCandle, bool] | None:
    """The first candle starting at or after ``since`` (and before ``before``)
    and whether it is final; None when there is none."""
    cur.execute("SELECT ts, open, low, high, coalesce((meta->>'final')::boolean, false)"
                " FROM candles WHERE market = %s AND timeframe = %s AND ts >= %s"
                " AND (%s::timestamptz IS NULL OR ts < %s)"
                " ORDER BY ts LIMIT 1", (market, timeframe, since, before, before))
    row = cur.fetchone()
    return (FillCandle(*row[:4]), bool(row[4])) if row else None


def to_order(row: PaperOrderRow, fills: tuple[Fill, ...] = ()) -> Order:
    return Order(uuid=row.uuid, market=row.market, side=row.side, ord_type="limit",
                 state=row.state, price=row.price, volume=row.volume,
                 remaining_volume=row.remaining_volume, executed_volume=row.executed_volume,
                 paid_fee=row.paid_fee, created_at=row.created_at, identifier=row.identifier,
                 fills=fills)
