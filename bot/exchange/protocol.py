"""The one small interface the trader talks to, implemented by the live Upbit
client (:class:`bot.exchange.upbit.UpbitClient`) and by the paper exchange
(:class:`bot.exchange.paper.PaperExchange`). Everything above it is shared by paper and
live trading line for line."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from bot.models import Balance, Order

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.exchange.upbit import UpbitClient
    from bot.storage import Database


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


def make_exchange(settings: Settings, db: Database, *, upbit: UpbitClient | None = None,
                  view: bool = False) -> Exchange:
    """The one choice of exchange: the live Upbit client when TRADING_MODE=live
    (``upbit`` when given, so that one process shares one client and its rate
    limiter), else the paper exchange.

    ``view`` is for looking only (``bot status``, the daily summary from the
    CLI): a live client that gives up within seconds, or the paper account as
    stored, which never settles an order."""
    if settings.live:
        if upbit is not None:
            return upbit
        from bot.exchange.upbit import UpbitClient
        return UpbitClient.from_settings(settings, quick=view)
    from bot.exchange.paper import PaperAccountView, PaperExchange
    if view:
        return PaperAccountView(db, settings.paper_start_krw)
    return PaperExchange.from_settings(settings, db)


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
