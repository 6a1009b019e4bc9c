"""The one small interface the trader talks to, implemented by the live Upbit
client (:class:`bot.exchange.upbit.UpbitClient`) and by the paper exchange
(:class:`bot.exchange.paper.PaperExchange`), and the balance look-ups on what
it returns. Everything above it is shared by paper and live trading line for
line; which implementation runs is :func:`bot.exchange.factory.make_exchange`'s
choice."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from bot.models import Balance, Order


class Exchange(Protocol):
    def balances(self) -> list[Balance]:
        """Every currency of the account; ``balance`` is the free amount."""
        ...

    def place_limit_order(self, market: str, side: str, price: Decimal, volume: Decimal,
                          identifier: str) -> Order:
        """Place a limit order; raises on refusal, never retries by itself."""
        ...

    def get_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        """The order with its trades; raises ``OrderNotFound``."""
        ...

    def open_orders(self, market: str | None = None) -> list[Order]:
        ...

    def cancel_order(self, *, uuid: str | None = None, identifier: str | None = None) -> Order:
        ...


def free_balance(balances: list[Balance], currency: str) -> Decimal:
    """Upbit's ``balance`` (already free of what open orders lock)."""
    for balance in balances:
        if balance.currency == currency:
            return balance.balance
    return Decimal(0)


def total_balance(balances: list[Balance], currency: str) -> Decimal:
    for balance in balances:
        if balance.currency == currency:
            return balance.balance + balance.locked
    return Decimal(0)
