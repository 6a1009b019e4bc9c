"""Synthetic candle series for the engines' tests: hand-written closes, a
random walk, and a market whose momentum truly predicts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from bot.models import Candle, CandleArrays
from bot.storage import Database
from bot.storage import candles as candle_store

DAY0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())


def candles(close, high=None, low=None, open_=None, start=DAY0) -> CandleArrays:
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    o = np.concatenate([[c[0]], c[:-1]]) if open_ is None else np.asarray(open_, float)
    h = np.maximum(o, c) if high is None else np.asarray(high, float)
    lo = np.minimum(o, c) if low is None else np.asarray(low, float)
    return CandleArrays(start + 60 * np.arange(n, dtype=np.int64), o, h, lo, c, np.ones(n))


def random_walk(n: int, seed: int, *, price: float = 50_000_000.0, vol: float = 0.001,
                drift: float = 0.0) -> CandleArrays:
    rng = np.random.default_rng(seed)
    close = np.round(price * np.exp(np.cumsum(rng.normal(drift, vol, n))) / 1000) * 1000
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    return candles(close, high, low, open_)


def momentum_market(n: int, seed: int, edge: float = 0.0, vol: float = 0.001,
                    drift: float = 0.0) -> CandleArrays:
    """A random walk; with ``edge`` the next log return gets ``edge * momentum``
    (the sign of close - close five bars earlier): momentum truly predicts.
    ``drift`` is added to every log return (negative: a steady fall)."""
    rng = np.random.default_rng(seed)
    close = np.empty(n)
    close[:6] = 50_000_000.0
    noise = rng.normal(0.0, vol, n)
    for t in range(6, n):
        close[t] = close[t - 1] * np.exp(edge * np.sign(close[t - 1] - close[t - 6]) + drift
                                         + noise[t])
    close = np.round(close / 1000) * 1000
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    return CandleArrays(DAY0 + 60 * np.arange(n, dtype=np.int64), open_, high, low, close,
                        np.ones(n))


def store_arrays(db: Database, arrays: CandleArrays, market: str = "KRW-BTC") -> datetime:
    """Store ``arrays`` as final 1-minute candles of ``market`` (prices in whole
    won); the newest candle's start."""
    rows = [Candle(market, datetime.fromtimestamp(int(t), UTC), Decimal(f"{o:.0f}"),
                   Decimal(f"{h:.0f}"), Decimal(f"{lo:.0f}"), Decimal(f"{c:.0f}"), Decimal(1),
                   Decimal(f"{c:.0f}"), 1, {"final": True})
            for t, o, h, lo, c in zip(arrays.ts, arrays.open, arrays.high, arrays.low,
                                      arrays.close, strict=True)]
    candle_store.upsert_candles(db, rows, "1m")
    return datetime.fromtimestamp(int(arrays.ts[-1]), UTC)
