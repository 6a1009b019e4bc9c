"""Keeping up with what Upbit says about the markets (docs/upbit.md):

- the market list with each coin's investment warning (``market_event.warning``,
  유의 종목, which often ends in delisting) and caution flags, hourly;
- each traded market's price tick (``/v1/orderbook/instruments``), daily and at
  once after Upbit refused a price as off the tick;
- in live mode, the account's own fees and minimum order per market
  (``/v1/orders/chance``), daily.

Everything is stored in the ``markets`` table, where the trader reads it: no
new buys on a warned, cautioned (unless BUY_ON_CAUTION) or delisted market,
orders on the market's own tick, and in live mode the account's fee and
minimum in sizing. A change of a traded market's state is logged (and
notified) once, on the refresh that first sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from bot.config import Settings
from bot.errors import BotError
from bot.logs import event
from bot.models import MarketInfo, OrderChance, Ticker
from bot.storage import Database
from bot.storage import markets as market_store
from bot.storage.markets import MarketRow

log = logging.getLogger(__name__)

QUOTE = "KRW"
Notify = Callable[..., None]


class MarketSource(Protocol):
    """What this module asks Upbit (bot.exchange.upbit.UpbitClient)."""

    def markets(self, details: bool = True) -> list[MarketInfo]: ...

    def tickers_all(self, quote: str = QUOTE) -> list[Ticker]: ...

    def tick_sizes(self, markets: Sequence[str]) -> dict[str, Decimal]: ...

    def order_chance(self, market: str) -> OrderChance: ...


@dataclass(frozen=True)
class MarketChange:
    """A market's state as a refresh first saw it differ from the stored one."""

    market: str
    listed: bool
    warning: bool
    cautions: tuple[str, ...]
    was: tuple[bool, bool, tuple[str, ...]] | None  # (listed, warning, cautions) before

    @property
    def flagged(self) -> bool:
        """Under warning, cautioned or delisted: what blocks new buys."""
        return not self.listed or self.warning or bool(self.cautions)

    def describe(self) -> str:
        if not self.listed:
            return "Upbit no longer lists it"
        if self.warning:
            text = "Upbit put it under investment warning (유의 종목)"
            return text + (f", cautions {', '.join(self.cautions)}" if self.cautions else "")
        if self.cautions:
            return f"Upbit flags it: {', '.join(self.cautions)}"
        return "no warning or caution any more"


def refresh_listing(db: Database, source: MarketSource, now: datetime,
                    watched: Iterable[str], *, notify: Notify | None = None
                    ) -> list[MarketChange]:
    """Read and store Upbit's KRW market list and the 24-hour traded values;
    log (and notify) each change of a ``watched`` market (the traded ones).
    Returns every change, watched or not."""
    infos = [i for i in source.markets(details=True) if i.market.startswith(QUOTE + "-")]
    stored = market_store.all_rows(db)
    changes = list(_changes(infos, stored))
    market_store.store_listing(db, infos, now, changed=[c.market for c in changes])
    market_store.store_traded_values(db, traded_values(source.tickers_all(QUOTE)))
    watch = set(watched)
    for change in changes:
        if change.market in watch and (change.flagged or change.was is not None):
            _tell(change, notify)
    return changes


def traded_values(tickers: Iterable[Ticker]) -> dict[str, Decimal]:
    return {t.market: t.acc_trade_price_24h for t in tickers}


def _changes(infos: Sequence[MarketInfo], stored: dict[str, MarketRow]
             ) -> Iterable[MarketChange]:
    seen = set()
    for info in infos:
        seen.add(info.market)
        now_flags = (True, info.warning, tuple(sorted(info.cautions)))
        row = stored.get(info.market)
        if row is None or row.flags != now_flags:
            yield MarketChange(info.market, *now_flags, None if row is None else row.flags)
    for name, row in stored.items():
        if name not in seen and row.listed:
            yield MarketChange(name, False, row.warning, row.cautions, row.flags)


def _tell(change: MarketChange, notify: Notify | None) -> None:
    level = logging.WARNING if change.flagged else logging.INFO
    event(log, "market.warning" if change.flagged else "market.cleared", level=level,
          market=change.market, listed=change.listed,
          warning=change.warning, cautions=",".join(change.cautions) or "none",
          detail=change.describe())
    if notify is not None and change.flagged:
        notify("market.warning", market=change.market, detail=change.describe())


def refresh_ticks(db: Database, source: MarketSource, markets: Sequence[str],
                  now: datetime) -> dict[str, Decimal]:
    """Read and store the ticks of ``markets``; on an error the stored ticks
    (or the KRW table) stay in use, with a warning."""
    if not markets:
        return {}
    try:
        ticks = source.tick_sizes(list(markets))
    except BotError as exc:
        event(log, "market.ticks_unavailable", level=logging.WARNING, markets=",".join(markets),
              error=type(exc).__name__, detail=f"{exc}: the stored ticks (or the KRW tick"
              " table) stay in use")
        return {}
    market_store.store_ticks(db, ticks, now)
    return ticks


def refresh_chances(db: Database, source: MarketSource, markets: Sequence[str], now: datetime,
                    *, fee_rate: Decimal, min_order_krw: Decimal) -> list[OrderChance]:
    """Live mode: read and store the account's fees and minimum per market;
    warn once (on the refresh that first sees it) when they differ from
    FEE_RATE / MIN_ORDER_KRW, which stay the paper and backtest values."""
    stored = market_store.all_rows(db)
    out = []
    for market in markets:
        chance = source.order_chance(market)
        before = stored.get(market)
        market_store.store_chance(db, chance, now)
        out.append(chance)
        differs = _differences(chance, fee_rate, min_order_krw)
        if differs and (before is None or _chance_of(before) != _values(chance)):
            event(log, "market.fees_differ", level=logging.WARNING, market=market,
                  detail="; ".join(differs) + ": live orders use the exchange's values,"
                  " paper trading and backtests the settings'")
    return out


def _values(c: OrderChance) -> tuple[Decimal, Decimal, Decimal]:
    return c.bid_fee, c.ask_fee, max(c.min_total_bid, c.min_total_ask)


def _chance_of(row: MarketRow) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    return row.bid_fee, row.ask_fee, row.min_total


def _differences(c: OrderChance, fee_rate: Decimal, min_order_krw: Decimal) -> list[str]:
    out = []
    if c.bid_fee != fee_rate or c.ask_fee != fee_rate:
        out.append(f"fee bid {c.bid_fee} / ask {c.ask_fee} (FEE_RATE={fee_rate})")
    minimum = max(c.min_total_bid, c.min_total_ask)
    if minimum != min_order_krw:
        out.append(f"minimum order {minimum} KRW (MIN_ORDER_KRW={min_order_krw})")
    return out


DAY = timedelta(days=1)


@dataclass(frozen=True)
class Refreshed:
    listed: int  # KRW markets Upbit lists
    changes: tuple[MarketChange, ...]
    ticks: int  # markets whose tick was read
    chances: int  # markets whose fees were read (live mode)
    joined: tuple[str, ...] = ()  # MARKETS=top:N: markets new in the traded set


def refresh(db: Database, source: MarketSource, settings: Settings, now: datetime, *,
            notify: Notify | None = None, ticks_every: timedelta = DAY,
            chances_every: timedelta = DAY) -> Refreshed:
    """The hourly pass: the market list; the traded markets' ticks when a day
    old (or never read); in live mode their fees and minimums when a day old."""
    changes = refresh_listing(db, source, now, market_store.managed(settings, db),
                              notify=notify)
    stored = market_store.all_rows(db)
    listed = sum(1 for row in stored.values() if row.listed)
    joined: tuple[str, ...] = ()
    if settings.markets_top:
        joined = choose(db, settings, stored, now)
    traded = [m for m in market_store.managed(settings, db) if m in stored and stored[m].listed]
    stale_ticks = [m for m in traded if _older(stored[m].tick_at, now, ticks_every)]
    ticks = refresh_ticks(db, source, stale_ticks, now)
    chances: list[OrderChance] = []
    if settings.live:
        stale = [m for m in traded if _older(stored[m].chance_at, now, chances_every)]
        chances = refresh_chances(db, source, stale, now, fee_rate=settings.fee_rate,
                                  min_order_krw=settings.min_order_krw)
    return Refreshed(listed, tuple(changes), len(ticks), len(chances), joined)


def _older(at: datetime | None, now: datetime, age: timedelta) -> bool:
    return at is None or now - at >= age


def select_top(rows: Iterable[MarketRow], count: int, *, exclude: Iterable[str] = (),
               buy_on_caution: bool = False) -> tuple[str, ...]:
    """MARKETS=top:N: the ``count`` listed KRW markets with the highest 24-hour
    traded value, leaving out warned ones, cautioned ones (unless
    ``buy_on_caution``) and ``exclude``; most traded first."""
    skip = set(exclude)
    fit = [r for r in rows if r.listed and not r.warning and r.market not in skip
           and r.traded_value_24h is not None and (buy_on_caution or not r.cautions)]
    fit.sort(key=lambda r: (-(r.traded_value_24h or 0), r.market))
    return tuple(r.market for r in fit[:count])


def choose(db: Database, settings: Settings, stored: dict[str, MarketRow],
           now: datetime) -> tuple[str, ...]:
    """Store the top:N selection; log who joined and who left. Returns the
    markets that joined (the worker backfills them before they are traded)."""
    before = market_store.selected(db)
    chosen = select_top(stored.values(), settings.markets_top, exclude=settings.markets_exclude,
                        buy_on_caution=settings.buy_on_caution)
    market_store.store_selection(db, chosen, now)
    joined = tuple(m for m in chosen if m not in before)
    left = tuple(m for m in before if m not in chosen)
    if joined or left:
        event(log, "markets.selected", count=len(chosen), markets=",".join(chosen),
              joined=",".join(joined) or "none", left=",".join(left) or "none",
              detail="a market that left is no longer bought; its position is still sold")
    return joined
