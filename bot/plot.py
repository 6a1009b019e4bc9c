"""A picture of one backtest: closes with the fills marked, the equity curve
against buy and hold, and the drawdown underneath. Optional: matplotlib (the ``plot`` extra) is
imported only when a plot is drawn, and only its object API is used (no
pyplot, no global backend switch), so importing this module costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bot.backtest import BacktestResult, CandleSeries
from bot.strategies import FIRST_DECISION


def _dates(ts: np.ndarray) -> np.ndarray:
    return np.asarray(ts, dtype="datetime64[s]")


def plot_backtest(candles: CandleSeries, result: BacktestResult,
                  path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Draw ``result`` (a backtest of ``candles``) into an image file (PNG,
    SVG or PDF by the suffix) and return its path. Raises ``ImportError``
    with the install hint when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("plotting needs matplotlib: pip install 'upbit-bot[plot]'") from exc
    dates = _dates(candles.ts)
    close = np.asarray(candles.close, dtype=np.float64)
    figure = Figure(figsize=(12, 9), layout="constrained")
    price, equity, drawdown = figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 1))
    _price_panel(price, dates, close, result)
    _equity_panel(equity, dates, close, result)
    _drawdown_panel(drawdown, dates, result)
    summary = (f"return {result.total_return:+.2%}  buy&hold {result.buy_and_hold_return:+.2%}"
               f"  max drawdown {result.max_drawdown:.2%}  sharpe {result.sharpe:.2f}"
               f"  round trips {result.round_trips}")
    figure.suptitle(f"{title}\n{summary}" if title else summary)
    out = Path(path)
    figure.savefig(out, dpi=110)
    return out


def _price_panel(ax: Any, dates: np.ndarray, close: np.ndarray, result: BacktestResult) -> None:
    ax.plot(dates, close, color="0.35", linewidth=0.7, label="close")
    ax.scatter(dates[result.buy_bars], result.buy_prices, marker="^", color="tab:green",
               s=18, label=f"buy fills ({len(result.buy_bars)})", zorder=3)
    ax.scatter(dates[result.sell_bars], result.sell_prices, marker="v", color="tab:red",
               s=18, label=f"sell fills ({len(result.sell_bars)})", zorder=3)
    ax.set_ylabel("KRW")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)


def _equity_panel(ax: Any, dates: np.ndarray, close: np.ndarray,
                  result: BacktestResult) -> None:
    # Buy and hold from the first decision, as BacktestResult.buy_and_hold_return.
    first = min(FIRST_DECISION, len(close) - 1)
    ax.plot(dates, result.equity / result.equity[0], color="tab:blue", linewidth=0.9,
            label="strategy")
    ax.plot(dates[first:], close[first:] / close[first], color="0.6", linewidth=0.7,
            label="buy and hold")
    ax.set_ylabel("equity / start")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)


def _drawdown_panel(ax: Any, dates: np.ndarray, result: BacktestResult) -> None:
    """How far equity is below its running peak (as BacktestResult.max_drawdown)."""
    peak = np.maximum.accumulate(result.equity)
    drawdown = result.equity / peak - 1.0
    ax.fill_between(dates, drawdown * 100, 0, color="tab:red", alpha=0.35, linewidth=0)
    ax.set_ylabel("drawdown %")
    ax.grid(alpha=0.3)
