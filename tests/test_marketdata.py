"""The synthetic market data of bench/marketdata.py: reproducible, valid candles
(Upbit ticks, OHLC order, minute timestamps), a CSV that the backtest reads
back exactly, and each stylised fact of real minute data on fixed seeds, next
to a random walk that lacks it."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from bench import marketdata as md
from bot.data.csvdata import load_csv
from bot.money import floor_volume, is_on_tick, round_price
from testkit import ROOT

MONTH = 30 * md.DAY
FIELDS = ("ts", "open", "high", "low", "close", "volume")


def same(a: md.CandleArrays, b: md.CandleArrays) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


@pytest.fixture(scope="module")
def month() -> dict[str, dict[str, float]]:
    """Statistics of 30 days per series, computed once for the module."""
    return {
        "liquid": md.statistics(md.generate(MONTH, seed=11)),
        "illiquid": md.statistics(md.generate(MONTH, seed=12, profile="illiquid")),
        "walk": md.statistics(md.random_walk(MONTH, seed=13)),
    }


# --- reproducible and valid -------------------------------------------------------------


@pytest.mark.parametrize("profile", ["liquid", "illiquid"])
def test_a_seed_gives_the_same_candles_and_another_seed_others(profile: str) -> None:
    first = md.generate(5000, seed=7, profile=profile)
    assert same(first, md.generate(5000, seed=7, profile=profile))
    assert not np.array_equal(first.close, md.generate(5000, seed=8, profile=profile).close)


@pytest.mark.parametrize("profile", ["liquid", "illiquid"])
@pytest.mark.parametrize("start_price", [50_000_000.0, 1_050_000.0, 500.0, 101.0])
def test_candles_are_valid(profile: str, start_price: float) -> None:
    n, start = 6000, md.START + 3 * 86_400
    c = md.generate(n, seed=3, profile=profile, start_price=start_price, start_ts=start)
    assert c.ts.dtype == np.int64
    assert np.all(c.ts % 60 == 0) and np.all(np.diff(c.ts) > 0)
    assert c.ts[0] >= start and c.ts[-1] < start + 60 * n
    assert len(c) == n if profile == "liquid" else 0 < len(c) < n
    assert np.all(c.low <= np.minimum(c.open, c.close))
    assert np.all(np.maximum(c.open, c.close) <= c.high)
    assert np.all(c.low > 0) and np.all(c.volume > 0)
    volumes = [Decimal(repr(v)) for v in c.volume.tolist()]
    assert [floor_volume(v) for v in volumes] == volumes  # Upbit's 8 decimals
    prices = np.unique(np.concatenate([c.open, c.high, c.low, c.close]))
    off_tick = [p for p in prices.tolist() if not is_on_tick(Decimal(repr(p)))]
    assert off_tick == []


def test_price_levels_have_their_tick() -> None:
    btc = md.generate(2000, seed=1)
    alt = md.generate(2000, seed=1, start_price=500.0)
    assert np.all(btc.close % 1000 == 0)  # 1,000 KRW at 50 M
    assert np.all(alt.close % 1 == 0) and 300 < alt.close.min() < alt.close.max() < 800
    assert len(np.unique(np.diff(alt.close))) < 30  # a few ticks a minute, not a continuum


@pytest.mark.parametrize("mode", ["nearest", "up", "down"])
def test_to_tick_agrees_with_round_price(mode: str) -> None:
    prices = np.exp(np.random.default_rng(0).uniform(np.log(0.05), np.log(3e8), 5000))
    ours = md.to_tick(prices, mode)
    theirs = [float(round_price(Decimal(repr(p)), mode)) for p in prices.tolist()]
    assert ours.tolist() == theirs


@pytest.mark.parametrize("phi", [0.5, 0.97, 0.9995])
def test_vectorised_ar1_is_the_recursion(phi: float) -> None:
    x = np.random.default_rng(1).standard_normal(3000)
    expected, state = [], 0.7
    for value in x.tolist():
        state = phi * state + value
        expected.append(state)
    np.testing.assert_allclose(md._ar1(x, phi, 0.7), expected, rtol=1e-9, atol=1e-9)


def test_bad_arguments_are_refused_with_a_sentence() -> None:
    for kwargs, words in (({"n_minutes": 0}, "n_minutes"),
                          ({"n_minutes": 10, "start_price": -1.0}, "start_price"),
                          ({"n_minutes": 10, "start_ts": md.START + 30}, "minute start"),
                          ({"n_minutes": 10, "profile": "thin"}, "unknown profile"),
                          ({"n_minutes": 10, "volatility": 0.5}, "volatility")):
        with pytest.raises(ValueError, match=words):
            md.generate(**kwargs)
    with pytest.raises(ValueError, match="at least 2 days"):
        md.statistics(md.generate(600, seed=0))


# --- CSV --------------------------------------------------------------------------------


@pytest.mark.parametrize("start_price", [50_000_000.0, 50.0])
def test_csv_reads_back_exactly(tmp_path: Path, start_price: float) -> None:
    candles = md.generate(3000, seed=5, profile="illiquid", start_price=start_price)
    path = tmp_path / "candles.csv"
    md.write_csv(candles, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ts,open,high,low,close,volume"
    assert lines[1].startswith("2024-01-01T00:") and lines[1].split(",")[0].endswith(":00Z")
    assert len(lines) == len(candles) + 1
    assert same(load_csv(path), candles)


def test_bench_script_writes_a_csv_and_refuses_bad_days(tmp_path: Path) -> None:
    path = tmp_path / "alt.csv"
    script = str(ROOT / "bench" / "bench_marketdata.py")
    done = subprocess.run([sys.executable, script, "--csv", str(path), "--days", "2",
                           "--seed", "4", "--profile", "illiquid", "--start-price", "500"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = md.generate(2 * md.DAY, seed=4, profile="illiquid", start_price=500.0)
    assert same(load_csv(path), expected)
    bad = subprocess.run([sys.executable, script, "--days", "0"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    assert "--days: '0' must be at least 1" in bad.stderr and "Traceback" not in bad.stderr


# --- the statistics themselves ------------------------------------------------------------


def test_statistics_carry_the_price_over_minutes_without_a_candle() -> None:
    walk = md.random_walk(4 * md.DAY, seed=2)
    keep = np.arange(len(walk)) % 4 != 1  # every fourth minute without a candle
    thinned = md.CandleArrays(*(getattr(walk, f)[keep] for f in FIELDS))
    stats = md.statistics(thinned)
    assert stats["gap_share"] == pytest.approx(0.25, abs=1e-3)
    # A carried price makes a zero return, then the two minutes' move at once.
    assert stats["return_std_pct"] == pytest.approx(md.statistics(walk)["return_std_pct"],
                                                    rel=0.02)
    assert stats["volume_profile_ratio"] > 1.0


# --- the stylised facts, on fixed seeds ---------------------------------------------------


def test_the_bid_ask_bounce_makes_lag1_autocorrelation_negative(month) -> None:
    assert month["liquid"]["lag1_autocorr"] < -0.1
    assert month["illiquid"]["lag1_autocorr"] < -0.05
    assert abs(month["walk"]["lag1_autocorr"]) < 0.03


def test_volatility_clusters_and_the_clustering_decays_slowly(month) -> None:
    for name in ("liquid", "illiquid"):
        s = month[name]
        assert s["abs_autocorr_10"] > 0.05
        assert s["abs_autocorr_60"] > 0.02
    assert abs(month["walk"]["abs_autocorr_10"]) < 0.03


def test_returns_have_fat_tails(month) -> None:
    assert month["liquid"]["excess_kurtosis"] > 1.0
    assert month["illiquid"]["excess_kurtosis"] > 1.0
    assert abs(month["walk"]["excess_kurtosis"]) < 0.3


def test_the_illiquid_profile_has_minutes_without_candles(month) -> None:
    assert 0.2 <= month["illiquid"]["gap_share"] <= 0.6
    assert month["liquid"]["gap_share"] == 0.0


def test_volume_follows_the_kst_day_and_the_volatility(month) -> None:
    for name in ("liquid", "illiquid"):
        s = month[name]
        assert s["volume_profile_ratio"] > 1.5
        assert s["volume_peak_hour_kst"] in (8, 9, 10, 21, 22, 23)
        assert s["volume_range_corr"] > 0.2
    assert month["walk"]["volume_profile_ratio"] < 1.2


def test_the_scale_is_btc_like(month) -> None:
    s = month["liquid"]
    assert 0.04 < s["return_std_pct"] < 0.12
    assert 1.0 < s["daily_range_pct"] < 10.0


def test_prices_trend_for_hours_unlike_a_random_walk() -> None:
    # Three months: hourly statistics need more hours than one month has to
    # separate cleanly from a random walk's.
    trending = md.statistics(md.generate(90 * md.DAY, seed=21))
    walk = md.statistics(md.random_walk(90 * md.DAY, seed=21))
    assert trending["variance_ratio_4h"] > 1.15
    assert trending["variance_ratio_4h"] > walk["variance_ratio_4h"] + 0.05
    assert trending["hourly_autocorr"] > 0.05
    assert trending["hourly_autocorr"] > walk["hourly_autocorr"] + 0.03
