"""The account as the reports see it: the exchange's balances (or why there
are none), the stored fills by market, and equity against the start and
against buy-and-hold. ``bot status`` (bot/report/status.py) and the daily
report (bot/report/daily.py) both build on these, so they agree on every
number.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.errors import BotError, DatabaseUnavailable, TemporaryError
from bot.models import Balance, FillRow
from bot.storage import markets as market_store
from bot.storage import reports
from bot.trading import accounting

if TYPE_CHECKING:
    from bot.exchange.protocol import Exchange
    from bot.storage import Database


def read_balances(exchange: Exchange | None) -> tuple[list[Balance] | None, str | None]:
    """(balances, None), or (None, why not): an unreachable or refusing
    exchange is something to report, not to raise. The database being down
    (the paper exchange reads it) still raises."""
    if exchange is None:
        return None, "no exchange"
    try:
        return list(exchange.balances()), None
    except DatabaseUnavailable:
        raise
    except (TemporaryError, OSError) as exc:
        return None, f"unreachable: {type(exc).__name__}: {exc}"
    except BotError as exc:  # it answered, with a refusal (keys, IP, permissions)
        return None, f"refused: {type(exc).__name__}: {exc}"


def fills_by_market(db: Database, mode: str) -> dict[str, list[FillRow]]:
    """Every fill of ``mode``, oldest first, by market."""
    by_market: dict[str, list[FillRow]] = defaultdict(list)
    for fill in reports.fills(db, mode):
        by_market[fill.market].append(fill)
    return by_market


def held_markets(balances: list[Balance] | None) -> set[str]:
    """The KRW markets of the coins held (their closes value the account)."""
    return {f"KRW-{b.currency}" for b in balances or () if b.currency != "KRW"}


def account_summary(settings: Settings, db: Database, balances: list[Balance] | None,
                    balance_error: str | None, closes: dict[str, Decimal]) -> dict[str, Any]:
    """Since when the mode trades and its equity then; with balances, the cash,
    the equity now, and the return against buy-and-hold from that start."""
    mode = settings.trading_mode
    since = reports.started(db, mode)
    first = reports.first_equity(db, mode)
    start_equity = first[1] if first else (None if settings.live else settings.paper_start_krw)
    account: dict[str, Any] = {"error": balance_error, "since": since,
                               "start_equity": start_equity}
    if balances is None:
        return account
    krw = next((b for b in balances if b.currency == "KRW"), Balance("KRW", Decimal(0)))
    equity = accounting.equity(balances, closes)
    account.update(krw=krw.balance, krw_locked=krw.locked, equity=equity,
                   return_pct=None, buy_and_hold_pct=None)
    if since is not None and start_equity is not None:
        start_prices = {m: reports.close_at(db, m, settings.timeframe, since)
                        for m in market_store.traded(settings, db)}
        held = accounting.buy_and_hold(start_equity, start_prices, closes, settings.fee_rate)
        account.update(return_pct=_round(accounting.pct(equity, start_equity)),
                       buy_and_hold=held,
                       buy_and_hold_pct=_round(accounting.pct(held, start_equity)))
    return account


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
