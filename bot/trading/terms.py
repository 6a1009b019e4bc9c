"""The terms Upbit sets for a market, as the trader applies them: no new buys
on a delisted, warned or (unless BUY_ON_CAUTION) cautioned market; prices on
the market's own tick; and in live mode the account's own fee and minimum
order. All read from the ``markets`` table (bot/data/markets.py refreshes it);
the KRW tick table and the settings stand in for what was never read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from bot import rules
from bot.config import Settings
from bot.logs import event
from bot.storage import Database
from bot.storage import markets as market_store
from bot.storage.markets import MarketRow

log = logging.getLogger(__name__)

_TOLD_TABLE: set[str] = set()  # markets already warned of the table fallback


@dataclass(frozen=True)
class Terms:
    market: str
    tick: Decimal | None  # None: bot.money's KRW tick table
    bid_fee: Decimal
    min_order_krw: Decimal
    blocked: tuple[str, str] | None  # (trigger, reason) when no new buys


def terms_of(settings: Settings, db: Database, market: str) -> Terms:
    row = market_store.get(db, market)
    tick = None if row is None else row.tick_size
    if tick is None and market not in _TOLD_TABLE:
        _TOLD_TABLE.add(market)
        event(log, "market.tick_table", level=logging.WARNING, market=market,
              detail="no tick read from Upbit for this market yet: prices follow the KRW"
              " tick table")
    fee, minimum = settings.fee_rate, settings.min_order_krw
    if settings.live and row is not None and row.chance_at is not None:
        fee = row.bid_fee if row.bid_fee is not None else fee
        minimum = row.min_total if row.min_total is not None else minimum
    return Terms(market, tick, fee, minimum, blocked(settings, row))


def blocked(settings: Settings, row: MarketRow | None) -> tuple[str, str] | None:
    """Why Upbit's word on the market forbids new buys (None: it does not, or
    nothing was read yet). Sells and exits are never blocked."""
    if row is None:
        return None
    if not row.listed:
        return rules.DELISTED, f"delisted: Upbit no longer lists {row.market}: no new buys"
    if row.warning:
        return (rules.MARKET_WARNING, f"market_warning: Upbit put {row.market} under"
                " investment warning (유의 종목): no new buys")
    if row.cautions and not settings.buy_on_caution:
        return (rules.MARKET_CAUTION, f"market_caution: Upbit flags {row.market}"
                f" ({', '.join(row.cautions)}): no new buys (BUY_ON_CAUTION=false)")
    if settings.markets_top and not row.selected:
        return (rules.DESELECTED, f"deselected: MARKETS=top:{settings.markets_top} no longer"
                f" selects {row.market}: no new buys; its position is still sold")
    return None
