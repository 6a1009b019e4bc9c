"""Prometheus metrics of the installation, read when Prometheus scrapes.

:class:`BotCollector` is a custom prometheus_client collector: each scrape
reads the database (account, positions, PnL, decisions, orders, fills,
candles, the optimizer's verdicts, the decision latency) and Redis (the
heartbeats and the Upbit request counts of :class:`bot.exchange.transport.RedisCounts`).
It keeps no state of its own, so a restarted exporter, or two of them, show
the same numbers. A source that does not answer leaves its metrics out and
``upbit_bot_up{source}`` says 0: the exporter itself always answers.

Amounts are KRW in TRADING_MODE's account, reckoned as ``bot status`` reckons
them (bot/report/account.py, average-cost PnL net of fees). Candle ages are on
the daemon's clock, heartbeat ages on the wall clock, as in ``bot status``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError

from bot import clock
from bot.config import Settings
from bot.errors import DatabaseUnavailable, SchemaMissing
from bot.logs import event
from bot.models import Balance, FillRow, coin_of
from bot.report.account import fills_by_market, held_markets, read_balances
from bot.report.status import read_heartbeats
from bot.rules import TRIGGER_CLASS
from bot.storage import keys, reports
from bot.storage import markets as market_store
from bot.storage.orders import ACTIVE_STATES
from bot.trading import accounting

if TYPE_CHECKING:
    import redis

    from bot.exchange.protocol import Exchange
    from bot.storage import Database
    from bot.storage.reports import NewestCandle

log = logging.getLogger(__name__)

PREFIX = "upbit_bot_"
# Seconds from a candle's close to its decision: the trader is triggered at
# the close, so most fall in the first buckets; the tail shows a lagging worker.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Redis hash -> (metric name without _total, help)
_UPBIT_COUNTS = (
    (keys.UPBIT_REQUESTS, "upbit_requests", "Requests sent to Upbit, by ratelimit group"),
    (keys.UPBIT_RATE_LIMITED, "upbit_rate_limited",
     "Upbit answers 429 (too many requests), by ratelimit group"),
    (keys.UPBIT_BANNED, "upbit_banned", "Upbit answers 418 (banned), by ratelimit group"),
)


class BotCollector(Collector):
    """Every metric, read at :meth:`collect` from ``db``, ``client`` (Redis)
    and ``exchange`` (the balances: the stored paper account, or Upbit in
    live mode)."""

    def __init__(self, settings: Settings, db: Database, client: redis.Redis,
                 exchange: Exchange | None, *, now: Callable[[], datetime] = clock.now,
                 wall: Callable[[], float] = time.time):
        self._settings = settings
        self._db = db
        self._client = client
        self._exchange = exchange
        self._now = now
        self._wall = wall

    def describe(self) -> Iterable[Metric]:
        # Registering must not read the database: nothing to check up front.
        return ()

    def collect(self) -> Iterable[Metric]:
        up: dict[str, int] = {"exchange": 0}
        families: list[Metric] = []
        try:
            families += self._from_database(up)
            up["database"] = 1
        except (DatabaseUnavailable, SchemaMissing) as exc:
            up["database"] = 0
            _source_down("database", exc)
        try:
            families += self._from_redis()
            up["redis"] = 1
        except RedisError as exc:
            up["redis"] = 0
            _source_down("redis", exc)
        gauge = GaugeMetricFamily(PREFIX + "up", "1 when the source answered this scrape, "
                                  "else 0 (its metrics are left out)", labels=["source"])
        for source in ("database", "redis", "exchange"):
            gauge.add_metric([source], up[source])
        return [gauge, *families]

    # --- the database ------------------------------------------------------------

    def _from_database(self, up: dict[str, int]) -> list[Metric]:
        settings, db = self._settings, self._db
        mode = settings.trading_mode
        balances, _ = read_balances(self._exchange)
        up["exchange"] = int(balances is not None)
        by_market = fills_by_market(db, mode)
        markets = sorted(set(market_store.managed(settings, db)) | set(by_market)
                         | held_markets(balances))
        newest = {m: c for m in markets
                  if (c := reports.newest_candle(db, m, settings.timeframe)) is not None}
        closes = {m: c.close for m, c in newest.items()}
        return [*_account(mode, balances, closes),
                *_markets(markets, by_market, balances, closes),
                _candle_ages(newest, self._now()),
                _decisions(decision_counts(db, mode)),
                _orders(order_states(db, mode)),
                _fills(fill_counts(db, mode)),
                _verdicts(latest_verdicts(db)),
                _latency(decision_latency(db, mode, 60.0 * settings.unit, LATENCY_BUCKETS))]

    # --- Redis -------------------------------------------------------------------

    def _from_redis(self) -> list[Metric]:
        wall = self._wall()
        ages = GaugeMetricFamily(PREFIX + "heartbeat_age_seconds", "Seconds since the "
                                 "worker role's last heartbeat", labels=["role"])
        for role, at in sorted(read_heartbeats(self._client).items()):
            ages.add_metric([role], max(0.0, wall - at))
        families: list[Metric] = [ages]
        for key, name, text in _UPBIT_COUNTS:
            counter = CounterMetricFamily(PREFIX + name, text, labels=["group"])
            for group, n in sorted(_hash_counts(self._client.hgetall(key)).items()):
                counter.add_metric([group], n)
            families.append(counter)
        return families


def _source_down(source: str, exc: Exception) -> None:
    event(log, "metrics.source_down", level=logging.WARNING, source=source,
          error=type(exc).__name__, detail=str(exc).strip().splitlines()[0] if str(exc) else "-")


def _hash_counts(raw: Mapping[Any, Any]) -> dict[str, int]:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)
    counts: dict[str, int] = {}
    for group, n in raw.items():
        try:
            counts[text(group)] = int(n)
        except (TypeError, ValueError):
            continue  # not ours to read
    return counts


# --- the families ------------------------------------------------------------------


def _account(mode: str, balances: list[Balance] | None,
             closes: Mapping[str, Decimal]) -> list[Metric]:
    equity = GaugeMetricFamily(PREFIX + "equity_krw", "Cash plus every coin at its last "
                               "close, in KRW", labels=["mode"])
    cash = GaugeMetricFamily(PREFIX + "cash_krw", "KRW in the account, free and locked in "
                             "orders", labels=["mode"])
    if balances is not None:
        krw = sum((b.balance + b.locked for b in balances if b.currency == "KRW"), Decimal(0))
        equity.add_metric([mode], float(accounting.equity(balances, closes)))
        cash.add_metric([mode], float(krw))
    return [equity, cash]


def _markets(markets: Sequence[str], by_market: Mapping[str, list[FillRow]],
             balances: list[Balance] | None, closes: Mapping[str, Decimal]) -> list[Metric]:
    value = GaugeMetricFamily(PREFIX + "position_value_krw", "The coins held at the last "
                              "close, in KRW", labels=["market"])
    unrealised = GaugeMetricFamily(PREFIX + "unrealised_pnl_krw", "The position's value "
                                   "against its average entry, in KRW", labels=["market"])
    realised = GaugeMetricFamily(PREFIX + "realised_pnl_krw", "Realised profit and loss "
                                 "since the first fill, net of fees, in KRW", labels=["market"])
    fees = GaugeMetricFamily(PREFIX + "fees_krw", "Fees paid since the first fill, in KRW",
                             labels=["market"])
    for market in markets:
        led = accounting.ledger(market, by_market.get(market, ()))
        realised.add_metric([market], float(led.realised))
        fees.add_metric([market], float(led.fees))
        held = _holding(market, balances, closes.get(market), led)
        if held is not None:
            value.add_metric([market], float(held[0]))
            unrealised.add_metric([market], float(held[1]))
    return [value, unrealised, realised, fees]


def _holding(market: str, balances: list[Balance] | None, close: Decimal | None,
             led: accounting.Ledger) -> tuple[Decimal, Decimal] | None:
    """(value, unrealised PnL) of the coins held, as ``bot status`` values them
    (the exchange's average buy price, else the fills'); None when unknown."""
    if balances is None or close is None:
        return None
    balance = next((b for b in balances if b.currency == coin_of(market)), None)
    if balance is None:
        return Decimal(0), Decimal(0)
    volume = balance.balance + balance.locked
    entry = balance.avg_buy_price if balance.avg_buy_price > 0 else led.avg_entry
    gain = volume * (close - entry) if entry and volume > 0 else Decimal(0)
    return volume * close, gain


def _candle_ages(newest: Mapping[str, NewestCandle], now: datetime) -> Metric:
    ages = GaugeMetricFamily(PREFIX + "candle_age_seconds", "Seconds since the newest stored "
                             "candle began (on the daemon's clock)", labels=["market"])
    for market, candle in sorted(newest.items()):
        ages.add_metric([market], max(0.0, (now - candle.ts).total_seconds()))
    return ages


def _decisions(rows: Iterable[tuple[str, str, str, int]]) -> Metric:
    by_class: Counter[tuple[str, str, str]] = Counter()
    for market, action, trigger, n in rows:
        by_class[(market, action, TRIGGER_CLASS.get(trigger, "other"))] += n
    counter = CounterMetricFamily(PREFIX + "decisions", "Decisions recorded, by market, action"
                                  " and the class of their trigger (bot.rules.TRIGGER_CLASS)",
                                  labels=["market", "action", "reason_class"])
    for labels, n in sorted(by_class.items()):
        counter.add_metric(list(labels), n)
    return counter


def _orders(states: Mapping[str, int]) -> Metric:
    gauge = GaugeMetricFamily(PREFIX + "orders", "Orders recorded, by state (the active "
                              "states are always present)", labels=["state"])
    # An active state at 0 is still shown, so that a graph of open orders has a line.
    for state in sorted(set(ACTIVE_STATES) | set(states)):
        gauge.add_metric([state], states.get(state, 0))
    return gauge


def _fills(rows: Iterable[tuple[str, str, int]]) -> Metric:
    counter = CounterMetricFamily(PREFIX + "fills", "Fills recorded, by market and side "
                                  "(bid, ask)", labels=["market", "side"])
    for market, side, n in sorted(rows):
        counter.add_metric([market, side], n)
    return counter


def _verdicts(latest: Mapping[str, str]) -> Metric:
    gauge = GaugeMetricFamily(PREFIX + "optimizer_verdict", "1 for the verdict of the "
                              "market's latest optimizer run (adopt, keep, stand_aside)",
                              labels=["market", "verdict"])
    for market, verdict in sorted(latest.items()):
        gauge.add_metric([market, verdict], 1)
    return gauge


def _latency(counts: tuple[list[int], float]) -> Metric:
    cumulative, total = counts
    histogram = HistogramMetricFamily(PREFIX + "decision_latency_seconds", "Seconds from a "
                                      "candle's close to its decision being recorded")
    buckets = [(floatToGoString(b), float(n))
               for b, n in zip(LATENCY_BUCKETS, cumulative[:-1], strict=True)]
    buckets.append(("+Inf", float(cumulative[-1])))
    histogram.add_metric([], buckets, total)
    return histogram


# --- the queries (read only) ---------------------------------------------------------


def decision_counts(db: Database, mode: str) -> list[tuple[str, str, str, int]]:
    """``(market, action, trigger, count)`` of every decision of ``mode``."""
    with db.cursor() as cur:
        cur.execute("SELECT market, action, trigger, count(*) FROM decisions WHERE mode = %s"
                    " GROUP BY market, action, trigger", (mode,))
        return [(m, a, t, int(n)) for m, a, t, n in cur.fetchall()]


def order_states(db: Database, mode: str) -> dict[str, int]:
    with db.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM orders WHERE mode = %s GROUP BY state",
                    (mode,))
        return {state: int(n) for state, n in cur.fetchall()}


def fill_counts(db: Database, mode: str) -> list[tuple[str, str, int]]:
    with db.cursor() as cur:
        cur.execute("SELECT market, side, count(*) FROM fills WHERE mode = %s"
                    " GROUP BY market, side", (mode,))
        return [(m, s, int(n)) for m, s, n in cur.fetchall()]


def latest_verdicts(db: Database) -> dict[str, str]:
    """Each market's latest optimizer run's verdict."""
    with db.cursor() as cur:
        cur.execute("SELECT DISTINCT ON (market) market, verdict FROM optimizer_runs"
                    " ORDER BY market, id DESC")
        return dict(cur.fetchall())


def decision_latency(db: Database, mode: str, period_s: float,
                     bounds: Sequence[float]) -> tuple[list[int], float]:
    """(how many decisions of ``mode`` came at most each of ``bounds`` seconds
    after their candle's close, then all of them; the sum of those seconds).
    A candle closes ``period_s`` after it begins (its ``candle_ts``)."""
    params: dict[str, Any] = {"mode": mode, "period": timedelta(seconds=period_s)}
    filters = []
    for i, bound in enumerate(bounds):
        params[f"b{i}"] = bound
        filters.append(f"count(*) FILTER (WHERE s <= %(b{i})s)")
    with db.cursor() as cur:
        cur.execute(f"SELECT {', '.join(filters)}, count(*), coalesce(sum(s), 0) FROM"
                    " (SELECT extract(epoch FROM created_at - candle_ts - %(period)s) AS s"
                    " FROM decisions WHERE mode = %(mode)s) AS d", params)
        row = cur.fetchone()
    return [int(n) for n in row[:-1]], float(row[-1])
