"""The one choice between the live and the paper exchange, from the settings:
the only module of the package that knows both implementations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.exchange.paper import PaperAccountView, PaperExchange
from bot.exchange.protocol import Exchange
from bot.exchange.upbit import UpbitClient

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.storage import Database


def make_exchange(settings: Settings, db: Database, *, upbit: UpbitClient | None = None,
                  view: bool = False) -> Exchange:
    """The live Upbit client when TRADING_MODE=live (``upbit`` when given, so
    that one process shares one client and its rate limiter), else the paper
    exchange.

    ``view`` is for looking only (``bot status``, the daily summary from the
    CLI): a live client that gives up within seconds, or the paper account as
    stored, which never settles an order."""
    if settings.live:
        if upbit is not None:
            return upbit
        return UpbitClient.from_settings(settings, quick=view)
    if view:
        return PaperAccountView(db, settings.paper_start_krw)
    return PaperExchange.from_settings(settings, db)
