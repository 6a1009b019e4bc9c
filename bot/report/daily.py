"""The daily report: the last N hours in numbers (:func:`daily_report`), and
the daily summary the Beat schedule sends (:func:`send_daily_summary`): the
same numbers as one message, logged and notified as ``daily.summary``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot import clock
from bot.config import Settings
from bot.logs import event
from bot.report.account import account_summary, fills_by_market, held_markets, read_balances
from bot.report.messages import summary_text
from bot.report.notify import notifier
from bot.storage import candles as candle_store
from bot.storage import markets as market_store
from bot.trading import accounting

if TYPE_CHECKING:
    from bot.exchange.protocol import Exchange
    from bot.storage import Database

log = logging.getLogger(__name__)


def daily_report(settings: Settings, db: Database, exchange: Exchange | None, *,
                 now: datetime | None = None, hours: float = 24) -> dict[str, Any]:
    """The last ``hours`` in numbers: realised PnL, fees and trades (per market
    and in total), equity now against the start and against buy-and-hold.
    Raises :class:`~bot.errors.DatabaseUnavailable`; an unreachable exchange
    only leaves the equity unknown (``error`` says why)."""
    now = now or clock.now()
    since = now - timedelta(hours=hours)
    balances, error = read_balances(exchange)
    by_market = fills_by_market(db, settings.trading_mode)
    names = sorted(set(market_store.traded(settings, db)) | set(by_market))
    closes = candle_store.latest_closes(db, sorted(set(names) | held_markets(balances)),
                                        settings.timeframe)
    ledgers = [accounting.ledger(m, by_market.get(m, ()), since=since) for m in names]
    account = account_summary(settings, db, balances, error, closes)
    zero = Decimal(0)
    return {
        "mode": settings.trading_mode, "since": since, "until": now, "hours": hours,
        "realised": sum((x.realised_since for x in ledgers), zero),
        "fees": sum((x.fees_since for x in ledgers), zero),
        "trades": sum(x.trades_since for x in ledgers),
        "realised_total": sum((x.realised for x in ledgers), zero),
        "equity": account.get("equity"), "start_equity": account.get("start_equity"),
        "started": account.get("since"), "return_pct": account.get("return_pct"),
        "buy_and_hold_pct": account.get("buy_and_hold_pct"), "error": error,
        "markets": [{"market": x.market, "realised": x.realised_since, "fees": x.fees_since,
                     "trades": x.trades_since, "holding": x.volume} for x in ledgers],
    }


def daily_summary(settings: Settings, db: Database, exchange: Exchange | None, *,
                  now: datetime | None = None) -> dict[str, Any]:
    """The last 24 hours (:func:`daily_report`) with its message in ``text``."""
    report = daily_report(settings, db, exchange, now=now)
    report["text"] = summary_text(report)
    return report


def send_daily_summary(settings: Settings, db: Database, exchange: Exchange | None, *,
                       notify: Callable[..., None] | None = None,
                       now: datetime | None = None) -> dict[str, Any]:
    """Log the daily summary (event ``daily.summary``) and send it as a
    notification of the same name; returns the summary. Raises only what
    :func:`daily_summary` raises (the database being down)."""
    report = daily_summary(settings, db, exchange, now=now)
    won = Decimal(1)
    event(log, "daily.summary", hours=report["hours"], realised=report["realised"].quantize(won),
          fees=report["fees"].quantize(won), trades=report["trades"],
          equity=None if report["equity"] is None else report["equity"].quantize(won),
          return_pct=report["return_pct"], buy_and_hold_pct=report["buy_and_hold_pct"],
          error=report["error"])
    (notify or notifier(settings))("daily.summary", **{k: v for k, v in report.items()
                                                       if k != "text"})
    return report
