"""Plain value types shared by the exchange clients, storage and the jobs.

Money is ``Decimal`` here (exact, as the exchange needs it); the numeric
engines (strategies, backtest) work on float arrays built from these.
Timestamps are timezone-aware UTC ``datetime``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # annotations only: importing the types costs no numpy
    import numpy as np

Side = Literal["bid", "ask"]

# The domain's fixed vocabularies (the settings are checked against them).
CANDLE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)  # the minute candles Upbit serves
SIGNAL_NAMES = ("trend", "momentum", "swing", "scalping", "day", "price_action")
# What NOTIFY_EVENTS may name (each has a message in the notifications).
NOTIFY_EVENT_NAMES = ("order.filled", "order.cancelled", "weights.adopted",
                      "weights.stood_aside", "job.failing", "risk.loss_limit", "daily.summary",
                      "market.warning", "key.expiring")
# What OPTIMIZE_TUNE may name: the parameter groups the optimizer can tune.
TUNABLE = ("weights", "threshold", "cooldown", "exits")
# The values of a parameter set, and the OPTIMIZE_TUNE group that tunes each.
PARAMETERS = ("weights", "threshold", "cooldown_candles", "stop_loss_pct", "trailing_stop_pct",
              "take_profit_pct")
GROUP_OF = {"weights": "weights", "threshold": "threshold", "cooldown_candles": "cooldown",
            "stop_loss_pct": "exits", "trailing_stop_pct": "exits", "take_profit_pct": "exits"}


def timeframe_of(unit: int) -> str:
    """The ``candles.timeframe`` of UNIT-minute candles: ``1`` -> ``1m``."""
    return f"{unit}m"


def coin_of(market: str) -> str:
    """The coin a KRW market trades: ``KRW-BTC`` -> ``BTC``."""
    return market.split("-", 1)[1]

OPEN_STATES = frozenset({"wait", "watch"})


@dataclass(frozen=True, slots=True)
class Candle:
    """One candle; ``ts`` is the start of its period in UTC."""

    market: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    unit: int = 1
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Balance:
    """One currency of an account. ``balance`` is free to use, ``locked`` is
    held by open orders (Upbit's meaning: available = balance)."""

    currency: str
    balance: Decimal
    locked: Decimal = Decimal(0)
    avg_buy_price: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill of an order, as the exchange reports it."""

    uuid: str
    market: str
    side: Side
    price: Decimal
    volume: Decimal
    funds: Decimal
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FillRow:
    """One fill as this daemon recorded it (a row of the ``fills`` table)."""

    order_id: int
    market: str
    side: str  # bid | ask
    price: Decimal
    volume: Decimal
    funds: Decimal
    fee: Decimal
    traded_at: datetime


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the exchange reports it."""

    uuid: str
    market: str
    side: Side
    ord_type: str
    state: str
    price: Decimal | None
    volume: Decimal | None
    remaining_volume: Decimal
    executed_volume: Decimal
    paid_fee: Decimal
    created_at: datetime
    identifier: str | None = None
    fills: tuple[Fill, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class CandleArrays:
    """Candles as float arrays for the numeric engines; ``ts`` as int64
    seconds since the epoch (UTC)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """One market of Upbit's list (``/v1/market/all?is_details=true``).
    ``warning``: under investment warning (유의 종목); ``cautions``: the
    caution flags Upbit has raised (``PRICE_FLUCTUATIONS``, ...)."""

    market: str
    korean_name: str
    english_name: str
    warning: bool = False
    cautions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Ticker:
    """A market's ticker: the last price, the value traded over the last 24
    hours (in the quote currency) and when Upbit took the snapshot (UTC)."""

    market: str
    trade_price: Decimal
    acc_trade_price_24h: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class OrderChance:
    """The account's own terms for a market (``/v1/orders/chance``): fee
    rates (``0.0005`` is 0.05 %) and the minimum order value per side."""

    market: str
    bid_fee: Decimal
    ask_fee: Decimal
    maker_bid_fee: Decimal
    maker_ask_fee: Decimal
    min_total_bid: Decimal
    min_total_ask: Decimal


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One of the account's API keys and when it expires (UTC). The key is
    left out of ``repr`` so that logging the value cannot leak it."""

    access_key: str = field(repr=False)
    expire_at: datetime
