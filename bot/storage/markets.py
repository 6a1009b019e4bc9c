"""The ``markets`` table: what Upbit says about each market (listed, investment
warning, caution flags), its tick and the account's fees and minimum, as the
collector last read them (bot/data/markets.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.config import Settings
from bot.models import MarketInfo, OrderChance, timeframe_of
from bot.storage.db import Database
from bot.storage.orders import ACTIVE_STATES

_COLUMNS = ("market, korean_name, english_name, listed, warning, cautions, changed_at, seen_at,"
            " traded_value_24h, tick_size, tick_at, bid_fee, ask_fee, maker_bid_fee,"
            " maker_ask_fee, min_total, chance_at, selected, selected_at")


@dataclass(frozen=True)
class MarketRow:
    market: str
    korean_name: str
    english_name: str
    listed: bool
    warning: bool
    cautions: tuple[str, ...]
    changed_at: datetime
    seen_at: datetime
    traded_value_24h: Decimal | None
    tick_size: Decimal | None
    tick_at: datetime | None
    bid_fee: Decimal | None
    ask_fee: Decimal | None
    maker_bid_fee: Decimal | None
    maker_ask_fee: Decimal | None
    min_total: Decimal | None
    chance_at: datetime | None
    selected: bool = False
    selected_at: datetime | None = None

    @property
    def flags(self) -> tuple[bool, bool, tuple[str, ...]]:
        """What a change of state compares: listed, warning, cautions."""
        return self.listed, self.warning, self.cautions


def _row(v: Sequence[Any]) -> MarketRow:
    return MarketRow(v[0], v[1], v[2], v[3], v[4], tuple(sorted(v[5] or ())), *v[6:])


def all_rows(db: Database) -> dict[str, MarketRow]:
    with db.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM markets")
        return {row[0]: _row(row) for row in cur.fetchall()}


def get(db: Database, market: str) -> MarketRow | None:
    with db.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM markets WHERE market = %s", (market,))
        row = cur.fetchone()
    return None if row is None else _row(row)


def store_listing(db: Database, listed: Iterable[MarketInfo], now: datetime,
                  changed: Iterable[str]) -> None:
    """Record Upbit's market list as seen at ``now``: every market in it as
    listed with its flags, every stored market missing from it as not listed.
    ``changed``: the markets whose flags differ from what was stored (their
    ``changed_at`` becomes ``now``)."""
    items = list(listed)
    moved = set(changed)
    with db.cursor() as cur:
        for info in items:
            cur.execute(
                "INSERT INTO markets (market, korean_name, english_name, listed, warning,"
                " cautions, changed_at, seen_at) VALUES (%s, %s, %s, true, %s, %s, %s, %s)"
                " ON CONFLICT (market) DO UPDATE SET korean_name = EXCLUDED.korean_name,"
                " english_name = EXCLUDED.english_name, listed = true,"
                " warning = EXCLUDED.warning, cautions = EXCLUDED.cautions,"
                " seen_at = EXCLUDED.seen_at, changed_at = CASE WHEN %s THEN EXCLUDED.changed_at"
                " ELSE markets.changed_at END",
                (info.market, info.korean_name, info.english_name, info.warning,
                 sorted(info.cautions), now, now, info.market in moved))
        names = [info.market for info in items]
        cur.execute("UPDATE markets SET listed = false, seen_at = %s,"
                    " changed_at = CASE WHEN listed THEN %s ELSE changed_at END"
                    " WHERE NOT (market = ANY(%s))", (now, now, names))


def store_traded_values(db: Database, values: Mapping[str, Decimal]) -> None:
    """The 24-hour traded value (KRW) of each market Upbit's tickers named."""
    with db.cursor() as cur:
        for market, value in values.items():
            cur.execute("UPDATE markets SET traded_value_24h = %s WHERE market = %s",
                        (value, market))


def store_ticks(db: Database, ticks: Mapping[str, Decimal], now: datetime) -> None:
    with db.cursor() as cur:
        for market, tick in ticks.items():
            cur.execute("UPDATE markets SET tick_size = %s, tick_at = %s WHERE market = %s",
                        (tick, now, market))


def store_chance(db: Database, chance: OrderChance, now: datetime) -> None:
    with db.cursor() as cur:
        cur.execute("UPDATE markets SET bid_fee = %s, ask_fee = %s, maker_bid_fee = %s,"
                    " maker_ask_fee = %s, min_total = %s, chance_at = %s WHERE market = %s",
                    (chance.bid_fee, chance.ask_fee, chance.maker_bid_fee,
                     chance.maker_ask_fee, max(chance.min_total_bid, chance.min_total_ask),
                     now, chance.market))


def tick_of(db: Database, market: str) -> Decimal | None:
    """The market's stored tick (None: never read)."""
    with db.cursor() as cur:
        cur.execute("SELECT tick_size FROM markets WHERE market = %s", (market,))
        row = cur.fetchone()
    return None if row is None else row[0]


def store_selection(db: Database, chosen: Sequence[str], now: datetime) -> None:
    """MARKETS=top:N: ``chosen`` is the traded set from now on."""
    with db.cursor() as cur:
        cur.execute("UPDATE markets SET selected = true, selected_at = %s"
                    " WHERE market = ANY(%s) AND NOT selected", (now, list(chosen)))
        cur.execute("UPDATE markets SET selected = false WHERE selected"
                    " AND NOT (market = ANY(%s))", (list(chosen),))


def selected(db: Database) -> tuple[str, ...]:
    """The stored top:N selection, most traded first."""
    with db.cursor() as cur:
        cur.execute("SELECT market FROM markets WHERE selected"
                    " ORDER BY traded_value_24h DESC NULLS LAST, market")
        return tuple(row[0] for row in cur.fetchall())


def traded(settings: Settings, db: Database) -> tuple[str, ...]:
    """The markets bought and sold now: MARKETS, or with MARKETS=top:N the
    stored selection (empty until the first refresh chose one)."""
    return selected(db) if settings.markets_top else settings.markets


def held(db: Database, settings: Settings) -> tuple[str, ...]:
    """Markets this mode still holds by its recorded fills (worth at least
    MIN_ORDER_KRW at the newest close) or has an active order in."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT o.market FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.mode = %s"
            " GROUP BY o.market HAVING sum(CASE WHEN o.side = 'bid' THEN f.volume"
            " ELSE -f.volume END) * (SELECT c.close FROM candles c WHERE c.market = o.market"
            " AND c.timeframe = %s ORDER BY c.ts DESC LIMIT 1) >= %s"
            " UNION SELECT market FROM orders WHERE mode = %s AND state IN %s",
            (settings.trading_mode, timeframe_of(settings.unit), settings.min_order_krw,
             settings.trading_mode, ACTIVE_STATES))
        return tuple(sorted(row[0] for row in cur.fetchall()))


def managed(settings: Settings, db: Database) -> tuple[str, ...]:
    """What the collector, the trader and ``bot status`` look after: the traded
    markets, then those left holding a position or an order (sold, never bought)."""
    now_traded = traded(settings, db)
    return now_traded + tuple(m for m in held(db, settings) if m not in now_traded)
