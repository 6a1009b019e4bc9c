"""The backtest plot: one predictable file per market, the result kept when
matplotlib is missing, and a figure with what a trader reads (KRW prices,
dated UTC time axis, fills, warm-up, the numbers)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.optimize import backtest as bt
from bot.optimize import plot
from bot.trading.strategies import FIRST_DECISION, WINDOW
from testkit import ROOT
from testkit.candles import store_closes
from testkit.cli import run_bot
from testkit.series import candles, random_walk

PNG = b"\x89PNG\r\n\x1a\n"
PARAMS = bt.BacktestParams(aggressiveness=0.0)


def _write_csv(path: Path, series) -> Path:
    lines = ["ts,open,high,low,close,volume"]
    for t, o, h, lo, c in zip(series.ts, series.open, series.high, series.low, series.close,
                              strict=True):
        stamp = datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{o:.0f},{h:.0f},{lo:.0f},{c:.0f},1")
    path.write_text("\n".join(lines) + "\n")
    return path


def _traded() -> tuple[bt.CandleArrays, bt.BacktestResult]:
    series = random_walk(800, 9, vol=0.003)
    result = bt.run_backtest(series, {"momentum": 1.0}, PARAMS)
    assert result.round_trips >= 3  # the figure below has fills to show
    return series, result


# --- file names ----------------------------------------------------------------------------


def test_one_market_keeps_the_name_several_get_the_market_before_the_suffix():
    assert plot.plot_paths("/tmp/x/bt.png", ["KRW-BTC"]) == [Path("/tmp/x/bt.png")]
    assert plot.plot_paths("bt.svg", [None]) == [Path("bt.svg")]  # a CSV has no market
    assert plot.plot_paths("/tmp/x/bt.png", ["KRW-BTC", "KRW-ETH"]) == [
        Path("/tmp/x/bt-KRW-BTC.png"), Path("/tmp/x/bt-KRW-ETH.png")]


@pytest.mark.parametrize("name", ["bt", "bt.txt", "/tmp/x/"])
def test_a_name_without_an_image_suffix_is_refused(name):
    with pytest.raises(ValueError, match=r"must end in \.png, \.svg or \.pdf"):
        plot.plot_paths(name, ["KRW-BTC"])


def test_two_markets_write_one_plot_each_into_a_missing_folder(db, database_url, tmp_path):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=420)
    for seed, market in enumerate(("KRW-BTC", "KRW-ETH")):
        closes = random_walk(400, seed, vol=0.003).close
        store_closes(db, market, closes, start=start, spread="20000")
    target = tmp_path / "new" / "folder" / "bt.png"
    done = run_bot("backtest", "--days", "2", "--json", "--plot", str(target),
                   env={"DATABASE_URL": database_url, "MARKETS": "KRW-BTC,KRW-ETH"},
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["markets"]
    expected = {m: target.with_name(f"bt-{m}.png") for m in ("KRW-BTC", "KRW-ETH")}
    assert {r["market"]: r["plot"] for r in report} == {m: str(p) for m, p in
                                                        expected.items()}
    for path in expected.values():
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in target.parent.iterdir()) == ["bt-KRW-BTC.png",
                                                               "bt-KRW-ETH.png"]


def test_a_bad_plot_name_stops_before_any_work(tmp_path):
    csv = _write_csv(tmp_path / "c.csv", random_walk(300, 1))
    done = run_bot("backtest", "--csv", str(csv), "--json", "--plot", "bt.txt", env={},
                   cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == (
        "bot backtest: --plot 'bt.txt': the file name must end in .png, .svg or .pdf")


# --- no matplotlib ----------------------------------------------------------------------------

# `import matplotlib` fails when sys.modules holds None for it, as when it is not installed.
WITHOUT_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; from bot.cli import main;"
                      " raise SystemExit(main(sys.argv[1:]))")


def test_without_matplotlib_the_result_is_printed_then_one_line(tmp_path):
    csv = _write_csv(tmp_path / "c.csv", random_walk(600, 2, vol=0.003))
    import subprocess
    done = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, "backtest", "--csv",
                           str(csv), "--json", "--plot", str(tmp_path / "bt.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    result = json.loads(done.stdout)  # the backtest result, complete
    assert result["bars"] == 600 and "total_return" in result and "plot" not in result
    assert "Traceback" not in done.stderr
    told = [line for line in done.stderr.splitlines() if line.startswith("bot backtest:")]
    assert told == ["bot backtest: --plot needs matplotlib, which is not installed:"
                    " pip install -e '.[plot]' (or pip install matplotlib)"]
    assert not (tmp_path / "bt.png").exists()


def test_the_install_hint_fits_the_copy(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    assert plot.install_hint() == "pip install -e '.[plot]'"
    monkeypatch.chdir(tmp_path)
    assert plot.install_hint() == f"pip install -e '{ROOT}[plot]'"
    # An installed copy: no pyproject.toml above it.
    installed = tmp_path / "site-packages" / "bot" / "optimize" / "plot.py"
    monkeypatch.setattr(plot, "__file__", str(installed))
    assert plot.install_hint() == "pip install 'upbit-bot[plot]'"


# --- the figure ---------------------------------------------------------------------------------


def _axes(figure):
    return {ax.get_label(): ax for ax in figure.axes if ax.get_label()}


def _texts(ax) -> str:
    return "\n".join(t.get_text() for t in ax.texts)


def test_the_figure_shows_what_a_trader_reads():
    pytest.importorskip("matplotlib")
    series, result = _traded()
    info = {"threshold": 0.2, "aggressiveness": 0.0015, "weights": {"momentum": 1.0},
            "weights_version": 4}
    figure = plot.backtest_figure(series, result, title="KRW-BTC", info=info)
    figure.draw_without_rendering()  # lays out the ticks
    axes = _axes(figure)
    price, equity, drawdown, summary = (axes[k] for k in ("price", "equity", "drawdown",
                                                          "summary"))
    # KRW with thousands separators and no 1e7 offset
    assert price.get_ylabel() == "price (KRW)" and equity.get_ylabel() == "equity (KRW)"
    assert price.yaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in price.get_yticklabels() if t.get_text()]
    assert labels and all("," in label for label in labels), labels
    # time in UTC, dated with the year
    assert drawdown.get_xlabel() == "time (UTC)"
    ticks = [t.get_text() for t in drawdown.get_xticklabels()]
    assert any(label.startswith("2024-03-01") for label in ticks), ticks
    title = figure.get_suptitle()
    assert title.startswith("KRW-BTC: 2024-03-01 00:00 to 2024-03-01 13:19 UTC")
    assert "800 1-minute bars" in title
    # fills as markers at their bar and price, the warm-up shaded and in the legend
    legend = [t.get_text() for t in price.get_legend().get_texts()]
    assert f"buy fill ({len(result.buy_bars)})" in legend
    assert any(text.startswith(f"warm-up: the first {WINDOW} bars") for text in legend)
    buys = next(c for c in price.collections if c.get_label().startswith("buy fill"))
    assert len(buys.get_offsets()) == len(result.buy_bars)
    assert np.allclose(np.asarray(buys.get_offsets())[:, 1], result.buy_prices)
    shade = next(p for p in price.patches if p.get_label().startswith("warm-up"))
    dates = series.ts.astype("datetime64[s]")
    from matplotlib.dates import date2num
    assert shade.get_x() + shade.get_width() == pytest.approx(date2num(dates[FIRST_DECISION]))
    # equity against buy and hold, drawdown
    lines = {line.get_label(): line for line in equity.get_lines()}
    assert f"strategy {result.total_return:+.2%}" in lines
    assert f"buy and hold {result.buy_and_hold_return:+.2%}" in lines
    assert np.allclose(lines[f"strategy {result.total_return:+.2%}"].get_ydata(),
                       result.equity)
    assert drawdown.get_ylabel() == "drawdown"
    assert f"max -{result.max_drawdown:.2%}".replace("%", " %") in _texts(drawdown)
    # the numbers
    box = _texts(summary)
    for needle in (f"{result.total_return:+.2%}", f"{result.buy_and_hold_return:+.2%}",
                   f"{result.max_drawdown:.2%}", f"{result.fees:,.0f} KRW",
                   "annualised from\n1-minute bars", f"{result.sharpe:.2f}",
                   "weights (version 4)", "momentum"):
        assert needle in box, needle
    assert f"round trips   {result.round_trips:>14}" in box


def test_many_fills_become_ticks_on_the_axis(monkeypatch):
    pytest.importorskip("matplotlib")
    series, result = _traded()
    monkeypatch.setattr(plot, "MAX_MARKERS", 2)
    price = _axes(plot.backtest_figure(series, result))["price"]
    assert not any(c.get_label().startswith("buy fill (") for c in price.collections)
    rug = next(c for c in price.collections if c.get_label().startswith("buy fills"))
    assert rug.get_label() == f"buy fills ({len(result.buy_bars)}, ticks)"
    assert len(rug.get_segments()) == len(result.buy_bars)


def test_fewer_bars_than_the_window_say_so():
    pytest.importorskip("matplotlib")
    series = random_walk(50, 3)
    figure = plot.backtest_figure(series, bt.run_backtest(series, None, PARAMS))
    assert f"fewer than {WINDOW} bars: no decision was made" in _texts(_axes(figure)["price"])


def test_a_cheap_coin_keeps_its_decimals():
    pytest.importorskip("matplotlib")
    close = 0.5 + 0.01 * np.sin(np.arange(400) / 20)
    series = candles(np.round(close, 4))
    figure = plot.backtest_figure(series, bt.run_backtest(series, None, PARAMS))
    figure.draw_without_rendering()
    labels = [t.get_text() for t in _axes(figure)["price"].get_yticklabels() if t.get_text()]
    assert len(set(labels)) == len(labels) > 2 and all("." in label for label in labels)


def test_plot_writes_a_png_into_a_missing_folder(tmp_path):
    pytest.importorskip("matplotlib")
    series, result = _traded()
    out = plot.plot_backtest(series, result, tmp_path / "a" / "b" / "run.png", title="KRW-BTC")
    assert out == tmp_path / "a" / "b" / "run.png"
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 20_000


def test_an_unwritable_path_is_one_sentence(tmp_path):
    pytest.importorskip("matplotlib")
    series, result = _traded()
    blocker = tmp_path / "file"
    blocker.write_text("")
    problem = plot.plot_or_explain(series, result, blocker / "run.png")
    assert problem is not None and problem.startswith(f"--plot: cannot write '{blocker}")
    assert "\n" not in problem
