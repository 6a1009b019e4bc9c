"""Profit and loss from recorded fills: average-cost accounting per market,
account equity at market prices, and the buy-and-hold benchmark.

Pure functions over plain values (no SQL, no exchange): ``bot status`` and the
daily summary feed them rows from :mod:`bot.storage.reports` and balances from
the exchange.

Conventions:

- A buy adds its volume and its cost (funds + fee) to the position; the
  average entry is cost / volume, buy fees included.
- A sell realises ``funds - fee - average entry * volume``; realised PnL is
  therefore net of every fee. Fees are also totalled on their own.
- Coins sold that no recorded buy explains (held before the bot started, or
  bought by hand) have no known cost: their volume is counted in
  ``unmatched_volume`` and left out of the PnL rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.models import Balance, FillRow

ZERO = Decimal(0)


@dataclass(frozen=True)
class Ledger:
    """One market's account from its fills; ``*_since`` counts only fills at
    or after the ``since`` given to :func:`ledger` (today, the last 24 h, ...)."""

    market: str
    volume: Decimal = ZERO  # coins held according to the fills
    cost: Decimal = ZERO  # what those coins cost, buy fees included
    realised: Decimal = ZERO
    realised_since: Decimal = ZERO
    fees: Decimal = ZERO
    fees_since: Decimal = ZERO
    trades: int = 0  # orders with at least one fill
    trades_since: int = 0
    bought: Decimal = ZERO  # KRW spent on buys (funds)
    sold: Decimal = ZERO  # KRW received from sells (funds)
    unmatched_volume: Decimal = ZERO

    @property
    def avg_entry(self) -> Decimal | None:
        return self.cost / self.volume if self.volume > 0 else None


def ledger(market: str, fills: Iterable[FillRow], since: datetime | None = None) -> Ledger:
    """Average-cost accounting over ``fills`` (any order; sorted here by time)."""
    volume = cost = realised = realised_since = fees = fees_since = ZERO
    bought = sold = unmatched = ZERO
    orders: set[int] = set()
    orders_since: set[int] = set()
    for fill in sorted(fills, key=lambda f: (f.traded_at, f.order_id)):
        recent = since is None or fill.traded_at >= since
        fees += fill.fee
        orders.add(fill.order_id)
        if recent:
            fees_since += fill.fee
            orders_since.add(fill.order_id)
        if fill.side == "bid":
            volume += fill.volume
            cost += fill.funds + fill.fee
            bought += fill.funds
            continue
        sold += fill.funds
        matched = min(fill.volume, volume)
        if matched <= 0:
            unmatched += fill.volume
            continue
        share = matched / fill.volume
        cost_out = cost * matched / volume
        gain = (fill.funds - fill.fee) * share - cost_out
        realised += gain
        if recent:
            realised_since += gain
        unmatched += fill.volume - matched
        volume -= matched
        cost -= cost_out
        if volume <= 0:
            volume, cost = ZERO, ZERO
    return Ledger(market, volume, cost, realised, realised_since, fees, fees_since, len(orders),
                  len(orders_since), bought, sold, unmatched)


def equity(balances: Iterable[Balance], closes: Mapping[str, Decimal]) -> Decimal:
    """KRW (free and locked) plus every coin at its market's last close (the
    exchange's average buy price when no close is known)."""
    total = ZERO
    for balance in balances:
        amount = balance.balance + balance.locked
        if balance.currency == "KRW":
            total += amount
        else:
            total += amount * (closes.get(f"KRW-{balance.currency}") or balance.avg_buy_price)
    return total


def buy_and_hold(start_equity: Decimal, start_prices: Mapping[str, Decimal | None],
                 prices: Mapping[str, Decimal | None], fee_rate: Decimal = ZERO) -> Decimal:
    """What ``start_equity`` would be worth had it been split equally across the
    markets at their start prices (paying one buy fee) and held. A market with
    a price missing keeps its share as cash."""
    if not start_prices:
        return start_equity
    share = start_equity / len(start_prices)
    total = ZERO
    for market, start in start_prices.items():
        now = prices.get(market)
        if start and now and start > 0:
            total += share * (1 - fee_rate) * now / start
        else:
            total += share
    return total


def pct(value: Decimal | None, base: Decimal | None) -> float | None:
    """``value / base - 1`` in percent, or None when unknown."""
    if value is None or base is None or base <= 0:
        return None
    return float((value / base - 1) * 100)
