"""A picture of one backtest for a trader: the closes with the fills, the
equity against buy and hold, the drawdown underneath, and a box with the
numbers (return, buy and hold, drawdown, round trips, fees, Sharpe). And one
of a walk-forward (:func:`plot_walkforward`): the stitched out-of-sample
equity against buy and hold and the defaults, each window's verdict marked.

Optional: matplotlib (the ``plot`` extra) is imported only when a plot is
drawn, and only its object API is used (no pyplot, no global backend switch),
so importing this module costs nothing. :func:`plot_paths` and
:func:`install_hint` need no matplotlib at all.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.errors import PlotUnavailable
from bot.optimize.backtest import BacktestResult, CandleSeries, bars_per_year
from bot.trading.strategies import FIRST_DECISION, WINDOW

if TYPE_CHECKING:  # pragma: no cover - types only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter, PercentFormatter

    from bot.optimize.walkforward import Segment, WalkForward

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".svg", ".pdf")
# Above this many fills the markers would hide the price: they become a rug of
# ticks along the bottom of the price panel instead.
MAX_MARKERS = 300
_BUY, _SELL, _STRATEGY, _HOLD = "tab:green", "tab:red", "tab:blue", "0.55"
_WARMUP = "0.92"


# --- file names and install hint (no matplotlib needed) -------------------------------


def plot_paths(path: str | os.PathLike[str],
               markets: Sequence[str | None]) -> list[Path]:
    """One output file per market: ``path`` itself for one market; for several,
    the market before the suffix of every file (``bt.png`` -> ``bt-KRW-BTC.png``,
    ``bt-KRW-ETH.png``), in the same folder. Raises ``ValueError`` for a file
    name without a supported suffix."""
    base = Path(path)
    if base.suffix.lower() not in SUFFIXES:
        raise ValueError(f"--plot {str(path)!r}: the file name must end in "
                         f"{', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]}")
    if len(markets) <= 1:
        return [base]
    return [base.with_name(f"{base.stem}-{market}{base.suffix}") for market in markets]


def install_hint() -> str:
    """The command that installs matplotlib for this copy of the bot: the
    ``plot`` extra of the checkout it runs from, else of the installed package."""
    root = Path(__file__).resolve().parents[2]  # bot/optimize/plot.py -> the checkout
    if (root / "pyproject.toml").is_file():
        target = "." if Path.cwd().resolve() == root else str(root)
        return f"pip install -e '{target}[plot]'"
    return "pip install 'upbit-bot[plot]'"


def _missing_matplotlib() -> PlotUnavailable:
    return PlotUnavailable(f"--plot needs matplotlib, which is not installed: "
                           f"{install_hint()} (or pip install matplotlib)")


# --- the figure ---------------------------------------------------------------------------


def plot_backtest(candles: CandleSeries, result: BacktestResult,
                  path: str | os.PathLike[str], *, title: str = "",
                  info: Mapping[str, Any] | None = None) -> Path:
    """Draw ``result`` (a backtest of ``candles``) into an image file (PNG, SVG
    or PDF by the suffix), creating a missing folder, and return its path.
    ``info`` may name the ``threshold``, ``aggressiveness``, ``weights`` and
    ``weights_version`` used (the ``backtest --json`` keys); they are listed
    in the summary box. Raises :class:`PlotUnavailable` without matplotlib
    and ``OSError`` when the file cannot be written."""
    figure = backtest_figure(candles, result, title=title, info=info)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    log.debug("plot written to %s", out)
    return out


def plot_or_explain(candles: CandleSeries, result: BacktestResult,
                    path: str | os.PathLike[str], *, title: str = "",
                    info: Mapping[str, Any] | None = None) -> str | None:
    """:func:`plot_backtest`, returning ``None`` on success or one sentence
    saying why no plot was written (for the command line, which prints the
    backtest result first and the sentence after it)."""
    try:
        plot_backtest(candles, result, path, title=title, info=info)
    except PlotUnavailable as exc:
        return str(exc)
    except OSError as exc:
        return f"--plot: cannot write {str(path)!r}: {exc.strerror or exc}"
    return None


def backtest_figure(candles: CandleSeries, result: BacktestResult, *, title: str = "",
                    info: Mapping[str, Any] | None = None) -> Figure:
    """The figure :func:`plot_backtest` saves: axes ``price``, ``equity``,
    ``drawdown`` and ``summary`` (their labels, see ``Axes.get_label``)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise _missing_matplotlib() from None
    ts = np.asarray(candles.ts, dtype=np.int64)
    dates = ts.astype("datetime64[s]")
    close = np.asarray(candles.close, dtype=np.float64)
    first = min(FIRST_DECISION, len(close) - 1)  # the first bar with a decision
    figure = Figure(figsize=(14, 9.5), layout="constrained")
    grid = figure.add_gridspec(3, 2, width_ratios=(4.6, 1), height_ratios=(3, 2, 1.2))
    price = figure.add_subplot(grid[0, 0], label="price")
    equity = figure.add_subplot(grid[1, 0], sharex=price, label="equity")
    drawdown = figure.add_subplot(grid[2, 0], sharex=price, label="drawdown")
    summary = figure.add_subplot(grid[:, 1], label="summary")
    _price_panel(price, dates, close, result)
    _equity_panel(equity, dates, close, result, first)
    _drawdown_panel(drawdown, dates, close, result, first)
    for ax in (price, equity, drawdown):
        _warmup(ax, dates, first, main=ax is price)
        ax.grid(alpha=0.3)
    _legend_above(price)
    _legend_above(equity)
    for ax in (price, equity):
        ax.tick_params(labelbottom=False)
    if len(dates) > 1:  # no margin: AutoDateLocator would put a tick (e.g. Feb 29) before it
        price.set_xlim(dates[0], dates[-1])
    _time_axis(drawdown)
    _summary(summary, result, ts, info or {})
    figure.suptitle(_title(title, result, ts), fontsize=13)
    return figure


def _title(title: str, result: BacktestResult, ts: np.ndarray) -> str:
    span = f"{_utc(result.start_ts)} to {_utc(result.end_ts)} UTC"
    bars = f"{result.bars:,} {_bar_name(ts)} bars"
    return f"{title or 'backtest'}: {span}, {bars}"


def _utc(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z")[:16]


def _bar_seconds(ts: np.ndarray) -> float:
    return 365 * 86_400 / bars_per_year(ts)


def _bar_name(ts: np.ndarray) -> str:
    """'1-minute', '15-minute', '4-hour', '1-day': the series' typical step."""
    step = round(_bar_seconds(ts))
    for unit, name in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if step >= unit and step % unit == 0:
            return f"{step // unit}-{name}"
    return f"{step}-second"


# --- panels ----------------------------------------------------------------------------------


def _price_panel(ax: Axes, dates: np.ndarray, close: np.ndarray,
                 result: BacktestResult) -> None:
    ax.plot(dates, close, color="0.25", linewidth=0.7, label="close")
    buys, sells = len(result.buy_bars), len(result.sell_bars)
    if buys + sells <= MAX_MARKERS:
        ax.scatter(dates[result.buy_bars], result.buy_prices, marker="^", s=28,
                   color=_BUY, edgecolors="none", alpha=0.85, zorder=3,
                   label=f"buy fill ({buys:,})")
        ax.scatter(dates[result.sell_bars], result.sell_prices, marker="v", s=28,
                   color=_SELL, edgecolors="none", alpha=0.85, zorder=3,
                   label=f"sell fill ({sells:,})")
    else:
        _rug(ax, dates, result)
    ax.set_ylabel("price (KRW)")
    ax.yaxis.set_major_formatter(_krw_formatter())


def _rug(ax: Axes, dates: np.ndarray, result: BacktestResult) -> None:
    """Fills as thin ticks in two rows along the bottom of the panel: their
    density shows when the strategy trades without covering the price."""
    axis = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.vlines(dates[result.buy_bars], 0.0, 0.035, transform=axis, color=_BUY,
              linewidth=0.5, alpha=0.7, label=f"buy fills ({len(result.buy_bars):,}, ticks)")
    ax.vlines(dates[result.sell_bars], 0.04, 0.075, transform=axis, color=_SELL,
              linewidth=0.5, alpha=0.7,
              label=f"sell fills ({len(result.sell_bars):,}, ticks)")
    low, high = ax.get_ylim()
    ax.set_ylim(low - 0.09 * (high - low), high)  # room for the rug below the closes


def _equity_panel(ax: Axes, dates: np.ndarray, close: np.ndarray, result: BacktestResult,
                  first: int) -> None:
    cash = float(result.equity[0])  # no fill before the first decision: the starting cash
    ax.plot(dates, result.equity, color=_STRATEGY, linewidth=1.0,
            label=f"strategy {result.total_return:+.2%}")
    # Buy and hold the starting cash from the first decision, as
    # BacktestResult.buy_and_hold_return (no fees).
    ax.plot(dates[first:], cash * close[first:] / close[first], color=_HOLD, linewidth=0.8,
            label=f"buy and hold {result.buy_and_hold_return:+.2%}")
    ax.axhline(cash, color="0.3", linewidth=0.6, linestyle=":")
    ax.set_ylabel("equity (KRW)")
    ax.yaxis.set_major_formatter(_krw_formatter())
    # matplotlib's stubs type these functions' argument as any ArrayLike; it
    # passes numpy arrays.
    ret = ax.secondary_yaxis("right", functions=(
        lambda krw: (krw / cash - 1) * 100,  # type: ignore[operator]
        lambda pct: cash * (1 + pct / 100)))  # type: ignore[operator]
    ret.set_ylabel("return since start")
    ret.yaxis.set_major_formatter(_percent_formatter())


def _drawdown_panel(ax: Axes, dates: np.ndarray, close: np.ndarray, result: BacktestResult,
                    first: int) -> None:
    """How far equity is below its running peak over the trading span, as
    BacktestResult.max_drawdown, with buy and hold's drawdown for scale."""
    curve = result.equity[first:]
    dd = (curve / np.maximum.accumulate(curve) - 1.0) * 100
    held = close[first:]
    hold_dd = (held / np.maximum.accumulate(held) - 1.0) * 100
    ax.fill_between(dates[first:], dd, 0, color=_SELL, alpha=0.35, linewidth=0,
                    label="strategy")
    ax.plot(dates[first:], hold_dd, color=_HOLD, linewidth=0.7, label="buy and hold")
    worst = int(np.argmin(dd))
    if dd[worst] < 0:
        _label_worst(ax, dates, first + worst, float(dd[worst]))
        ax.set_ylim(bottom=min(dd[worst], float(hold_dd.min())) * 1.15)
    ax.set_ylabel("drawdown")
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.legend(loc="lower left", fontsize=8, frameon=True, framealpha=0.85)


def _label_worst(ax: Axes, dates: np.ndarray, bar: int, drawdown: float) -> None:
    right = bar > 0.75 * len(dates)  # near the right edge the label goes to the left
    ax.annotate(f"max {drawdown:.2f} %", (dates[bar], drawdown), xytext=(-4 if right else 4, 2),
                textcoords="offset points", ha="right" if right else "left", va="bottom",
                fontsize=8, color="darkred",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none",
                      "alpha": 0.8})


def _warmup(ax: Axes, dates: np.ndarray, first: int, *, main: bool) -> None:
    """Shade the bars up to the first decision (the window is not full before
    it); ``main`` is the panel that names it in its legend."""
    end = dates[first]
    label = f"warm-up: the first {WINDOW} bars fill the window, no decision" if main else None
    ax.axvspan(dates[0], end, color=_WARMUP, zorder=0, linewidth=0, label=label)
    if len(dates) > FIRST_DECISION:  # the first decision is inside the series
        ax.axvline(end, color="0.5", linewidth=0.6, linestyle="--", zorder=1)
    elif main:
        ax.text(0.5, 0.5, f"fewer than {WINDOW} bars: no decision was made", ha="center",
                va="center", transform=ax.transAxes, fontsize=12, color="0.3",
                bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"})


def _legend_above(ax: Axes) -> None:
    """One row of legend entries just above the panel, so it hides no data."""
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=5, frameon=False,
              fontsize=9, borderaxespad=0.2, handlelength=1.5)


def _time_axis(ax: Axes, maxticks: int = 12) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    locator = AutoDateLocator(minticks=5, maxticks=maxticks)
    # Every label at the day level or above carries the year; intraday ticks
    # show the date at midnight, and the offset text names the date otherwise.
    formatter = ConciseDateFormatter(
        locator,
        formats=["%Y", "%Y-%m", "%Y-%m-%d", "%H:%M", "%H:%M", "%H:%M:%S"],
        zero_formats=["", "%Y", "%Y-%m-%d", "%Y-%m-%d", "%H:%M", "%H:%M"],
        offset_formats=["", "", "", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d %H:%M"])
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("time (UTC)")


# --- the summary box -----------------------------------------------------------------------


def _summary(ax: Axes, result: BacktestResult, ts: np.ndarray,
             info: Mapping[str, Any]) -> None:
    ax.axis("off")
    start = float(result.equity[0])
    bar = _bar_name(ts)
    per_bar = math.sqrt(bars_per_year(ts))
    win = "n/a" if result.win_rate is None else f"{result.win_rate:.0%}"
    rows = [
        ("total return", f"{result.total_return:+.2%}"),
        ("buy and hold", f"{result.buy_and_hold_return:+.2%}"),
        ("max drawdown", f"{result.max_drawdown:.2%}"),
        ("round trips", f"{result.round_trips:,}"),
        ("win rate", win),
        ("exposure", f"{result.exposure:.0%}"),
        ("fees", f"{_krw(result.fees)} KRW"),
        ("fees / start", f"{result.fees / start:.2%}"),
        ("start", f"{_krw(start)} KRW"),
        ("final", f"{_krw(result.final_equity)} KRW"),
        ("Sharpe", f"{result.sharpe:.2f}"),
    ]
    text = "\n".join(f"{k:<14}{v:>14}" for k, v in rows)
    # A per-bar Sharpe annualised from minutes is large: say how it was scaled.
    text += (f"\n\nSharpe: annualised from\n{bar} bars, the per-bar\nmean / std "
             f"x sqrt(bars a year)\n= x {per_bar:,.0f}")
    text += _settings_text(info)
    ax.text(0.0, 1.0, text, transform=ax.transAxes, va="top", ha="left",
            family="monospace", fontsize=9.5, linespacing=1.45,
            bbox={"boxstyle": "round,pad=0.6", "facecolor": "0.97", "edgecolor": "0.7"})


def _settings_text(info: Mapping[str, Any]) -> str:
    lines = []
    if info.get("threshold") is not None:
        lines.append(f"{'threshold':<14}{float(info['threshold']):>14g}")
    if info.get("aggressiveness") is not None:
        lines.append(f"{'aggressiveness':<14}{float(info['aggressiveness']):>14.2%}")
    weights = info.get("weights") or {}
    if weights:
        version = info.get("weights_version")
        lines.append("weights" + (f" (version {version})" if version is not None else ""))
        lines += [f"  {name:<12}{float(w):>14.3f}" for name, w in weights.items()]
    return "\n\n" + "\n".join(lines) if lines else ""


# --- the walk-forward --------------------------------------------------------------------

# Each verdict's colour: the window's shading and its return bar.
VERDICT_COLOURS = {"adopt": "tab:green", "keep": "0.6", "stand_aside": "tab:red"}
_DEFAULTS = "tab:orange"


def plot_walkforward(wf: WalkForward, path: str | os.PathLike[str], *,
                     title: str = "") -> Path:
    """Draw a walk-forward (:class:`bot.optimize.walkforward.WalkForward`) into an image
    file, creating a missing folder; raises as :func:`plot_backtest`."""
    figure = walkforward_figure(wf, title=title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    log.debug("plot written to %s", out)
    return out


def walkforward_or_explain(wf: WalkForward, path: str | os.PathLike[str], *,
                           title: str = "") -> str | None:
    """:func:`plot_walkforward`, returning ``None`` or why no plot was written."""
    try:
        plot_walkforward(wf, path, title=title)
    except PlotUnavailable as exc:
        return str(exc)
    except OSError as exc:
        return f"--plot: cannot write {str(path)!r}: {exc.strerror or exc}"
    return None


def walkforward_figure(wf: WalkForward, *, title: str = "") -> Figure:
    """Axes ``equity`` (the stitched out-of-sample equity against buy and hold
    and the settings' defaults, each window shaded by its verdict),
    ``windows`` (each window's out-of-sample return, coloured by verdict) and
    ``summary``."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise _missing_matplotlib() from None
    dates = wf.ts.astype("datetime64[s]")
    figure = Figure(figsize=(14, 8.5), layout="constrained")
    grid = figure.add_gridspec(2, 2, width_ratios=(4.6, 1), height_ratios=(3, 1.3))
    equity = figure.add_subplot(grid[0, 0], label="equity")
    windows = figure.add_subplot(grid[1, 0], sharex=equity, label="windows")
    summary = figure.add_subplot(grid[:, 1], label="summary")
    _shade_verdicts(equity, wf)
    if len(dates):
        equity.plot(dates, wf.equity, color=_STRATEGY, linewidth=1.1,
                    label=f"walk-forward {wf.total_return:+.2%}")
        equity.plot(dates, wf.cash * wf.close / wf.close[0], color=_HOLD, linewidth=0.8,
                    label=f"buy and hold {wf.buy_and_hold_return:+.2%}")
        equity.plot(dates, wf.default_equity, color=_DEFAULTS, linewidth=0.8,
                    label=f"defaults {wf.default_return:+.2%}")
        equity.set_xlim(dates[0], dates[-1])
    equity.axhline(wf.cash, color="0.3", linewidth=0.6, linestyle=":")
    equity.set_ylabel("equity (KRW)")
    equity.yaxis.set_major_formatter(_krw_formatter())
    handles, _labels = equity.get_legend_handles_labels()
    handles += [Patch(color=VERDICT_COLOURS[v], alpha=0.25, label=text) for v, text in
                (("adopt", f"adopted ({wf.adoptions})"), ("keep", f"kept ({wf.keeps})"),
                 ("stand_aside", f"stood aside ({wf.stand_asides})"))]
    equity.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=6,
                  frameon=False, fontsize=9, borderaxespad=0.2, handlelength=1.5)
    _window_returns(windows, wf)
    for ax in (equity, windows):
        ax.grid(alpha=0.3)
    equity.tick_params(labelbottom=False)
    _time_axis(windows, maxticks=8)  # the narrower panel: fewer dates, none overlapping
    _walkforward_summary(summary, wf)
    start = _utc(_iso(wf.segments[0].test_start)) if wf.segments else "?"
    end = _utc(_iso(wf.segments[-1].test_end)) if wf.segments else "?"
    figure.suptitle(f"{title or 'walk-forward'}: out of sample {start} to {end} UTC, "
                    f"{len(wf.segments)} windows of {wf.test_days:g} day(s) after "
                    f"{wf.train_days:g} days of training", fontsize=13)
    return figure


def _iso(ts: int) -> str:
    return str(np.datetime64(int(ts), "s")) + "Z"


def _span(segment: Segment) -> tuple[np.datetime64, np.datetime64]:
    return (np.datetime64(int(segment.test_start), "s"),
            np.datetime64(int(segment.test_end), "s"))


def _shade_verdicts(ax: Axes, wf: WalkForward) -> None:
    """Each window shaded by the verdict of the run before it; an adoption
    also gets a line at its window's start."""
    for segment in wf.segments:
        start, end = _span(segment)
        # matplotlib's stubs type axvspan/axvline positions as float; its date
        # converter takes the datetime64 values every panel here plots.
        if segment.verdict != "keep":
            ax.axvspan(start, end,  # type: ignore[arg-type]
                       color=VERDICT_COLOURS[segment.verdict], alpha=0.12, linewidth=0,
                       zorder=0)
        if segment.verdict == "adopt":
            ax.axvline(start,  # type: ignore[arg-type]
                       color=VERDICT_COLOURS["adopt"], linewidth=0.8, alpha=0.8, zorder=1)


def _window_returns(ax: Axes, wf: WalkForward) -> None:
    if not wf.segments:
        return
    starts = [_span(s)[0] for s in wf.segments]
    width = np.timedelta64(int(wf.test_days * 86_400 * 0.9), "s")
    returns = [s.total_return * 100 for s in wf.segments]
    colours = [VERDICT_COLOURS[s.verdict] for s in wf.segments]
    ax.bar(starts, returns, width=width, align="edge", color=colours, alpha=0.8)
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.set_ylabel("window return")
    ax.yaxis.set_major_formatter(_percent_formatter())


def _walkforward_summary(ax: Axes, wf: WalkForward) -> None:
    ax.axis("off")
    rows = [
        ("walk-forward", f"{wf.total_return:+.2%}"),
        ("buy and hold", f"{wf.buy_and_hold_return:+.2%}"),
        ("defaults", f"{wf.default_return:+.2%}"),
        ("max drawdown", f"{wf.max_drawdown:.2%}"),
        ("  defaults", f"{wf.default_max_drawdown:.2%}"),
        ("round trips", f"{wf.round_trips:,}"),
        ("  defaults", f"{wf.default_round_trips:,}"),
        ("fees", f"{_krw(wf.fees)} KRW"),
        ("  defaults", f"{_krw(wf.default_fees)} KRW"),
        ("exposure", f"{wf.exposure:.0%}"),
        ("windows", f"{len(wf.segments):,}"),
        ("adopted", f"{wf.adoptions:,}"),
        ("kept", f"{wf.keeps:,}"),
        ("stood aside", f"{wf.stand_asides:,}"),
        ("start", f"{_krw(wf.cash)} KRW"),
        ("candidates", f"{wf.candidates:,}"),
        ("seed", f"{wf.seed}"),
    ]
    text = "\n".join(f"{k:<14}{v:>14}" for k, v in rows)
    text += "\n\ntuned: " + ", ".join(wf.tune)
    ax.text(0.0, 1.0, text, transform=ax.transAxes, va="top", ha="left",
            family="monospace", fontsize=9.5, linespacing=1.45,
            bbox={"boxstyle": "round,pad=0.6", "facecolor": "0.97", "edgecolor": "0.7"})


# --- number formats -----------------------------------------------------------------------


def _krw(value: float) -> str:
    return f"{value:,.0f}"


def _krw_formatter() -> Formatter:
    """Whole KRW with thousands separators (no ``1e7`` offset); decimals only
    when the ticks are closer than 1 KRW (coins priced below a few KRW)."""
    from matplotlib.ticker import Formatter

    class KrwFormatter(Formatter):
        decimals = 0

        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:,.{self.decimals}f}"

        def format_ticks(self, values: Sequence[float]) -> list[str]:
            steps = np.diff(np.asarray(values, dtype=np.float64))
            step = float(np.min(np.abs(steps))) if len(steps) else 1.0
            self.decimals = 0 if step >= 1 or step <= 0 else min(8, math.ceil(-math.log10(step)))
            return [self(v) for v in values]

        def format_data_short(self, value: float) -> str:
            return f"{value:,.{max(self.decimals, 0)}f}"

    return KrwFormatter()


def _percent_formatter() -> PercentFormatter:
    from matplotlib.ticker import PercentFormatter
    return PercentFormatter(xmax=100, decimals=None)
