"""Seeded synthetic 1-minute KRW candles with the statistical shape of real
minute data, for benchmarks and for choosing defaults.

A geometric random walk makes every strategy look the same: it has no
microstructure to scalp, no volatility regimes, no trends to follow and no
reversals to fade. :func:`generate` builds a latent "efficient" mid price and
the traded prices around it from these parts, each there for one stylised fact
of real BTC/KRW minutes:

* **Intraday activity cycle** (``_activity``): a smooth 24-hour profile in KST
  with peaks at 09:00 (Upbit's daily candle opens) and 22:30 (US session), a
  trough before dawn. Volume (and, in the illiquid profile, the trade rate)
  scales with it, volatility with its square root.
* **Volatility clustering**: the log-volatility is the sum of two stationary
  AR(1) processes, a slow one (half-life a day: calm and hectic days) and a
  fast one (half-life ~20 minutes: bursts). Autocorrelation of ``|r|`` is
  then positive and decays slowly over tens to hundreds of lags. The AR(1)
  recursion is vectorised (``_ar1``: an exponential filter via block-wise
  ``np.cumsum``), so a year takes a fraction of a second.
* **Fat tails**: the mid's shocks are Student-t (5 degrees of freedom,
  scaled to unit variance); with the stochastic volatility the excess
  kurtosis of minute returns is well above 0.
* **Hour-scale trends and reversals**: the mid has a drift that is itself an
  Ornstein-Uhlenbeck process with a half-life of hours (scaled by the slow
  volatility level), so prices run up or down for hours and then turn.
  Hourly returns are positively autocorrelated and the 4-hour/1-hour
  variance ratio is above 1 (a random walk: ~0 and ~1).
* **Bid-ask bounce**: each trade deviates from the mid by plus or minus an
  effective half-spread (the quoted spread plus short-lived price impact,
  proportional to the local volatility), buyer or seller at random. Close to
  close returns then have lag-1 autocorrelation ``-b^2 / (1 + 2 b^2)`` for a
  half-spread of ``b`` local standard deviations (about -0.2 for the liquid
  profile), as in real crypto minutes.
* **Illiquidity** (``profile="illiquid"``): trades arrive as a Poisson
  process whose rate follows the activity cycle and the volatility; a minute
  without a trade has no candle at all (as on Upbit), so the last price
  stays flat until the next trade. With few trades in a minute the
  high-low range is narrower, and a single trade makes ``o = h = l = c``.
* **Candles**: open and close are the first and last trade (mid plus
  bounce; in the liquid profile the open is the previous close, since the
  next trade follows within seconds); high and low are the extremes of a Brownian bridge between the
  minute's start and end mid (sampled exactly from the bridge's maximum
  distribution) plus the half-spread; all four on Upbit's KRW tick for their
  level (``bot.money.KRW_TICKS``: 1,000 KRW at 50 M, 1 KRW at 500 KRW).
  Volume (coins) is the minute's KRW turnover over the price: the activity
  cycle times the volatility level times the size of the move, with
  log-normal noise, so volume is correlated with volatility.

The defaults resemble BTC/KRW: a 1-minute return standard deviation of about
0.07 % (0.05-0.09 % over 30-day samples), a median daily high-low range of
about 4 %, a daily return standard deviation of about 3.5 %. ``start_price=500`` gives a cheap alt
whose 1 KRW tick (0.2 %) dominates minute moves.

:func:`statistics` measures every property on any candles (also real ones
loaded with ``bot.optimize.backtest.load_csv``), :func:`random_walk` is the plain
geometric random walk to compare against, :func:`write_csv` writes the
``ts,open,high,low,close,volume`` file that ``bot backtest --csv`` reads.

Pure: numpy and the project's tick table only; no database, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from bot.data.csvdata import write_csv  # noqa: F401 - the bench script's CSV writer
from bot.models import CandleArrays
from bot.money import KRW_TICKS, RoundMode

START = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 1440  # minutes
KST_OFFSET_MIN = 9 * 60  # UTC+9, no daylight saving


@dataclass(frozen=True)
class Profile:
    """One market's microstructure; minutes are the time unit."""

    name: str
    volatility: float  # mean per-minute std of the mid's log return
    bounce: float  # effective half-spread, in local per-minute standard deviations
    tail_df: float  # Student-t degrees of freedom of the mid's shocks
    slow_vol_std: float  # stationary std of the slow log-volatility component
    slow_vol_half_life: float
    fast_vol_std: float
    fast_vol_half_life: float
    trend: float  # stationary std of the drift, in per-minute volatilities
    trend_half_life: float
    trades_per_minute: float | None  # Poisson mean; None: a trade every minute
    daily_turnover_krw: float


PROFILES: dict[str, Profile] = {
    "liquid": Profile("liquid", volatility=0.00055, bounce=0.55, tail_df=5.0,
                      slow_vol_std=0.35, slow_vol_half_life=DAY, fast_vol_std=0.35,
                      fast_vol_half_life=20.0, trend=0.06, trend_half_life=240.0,
                      trades_per_minute=None, daily_turnover_krw=150e9),
    "illiquid": Profile("illiquid", volatility=0.0007, bounce=0.6, tail_df=5.0,
                        slow_vol_std=0.35, slow_vol_half_life=DAY, fast_vol_std=0.35,
                        fast_vol_half_life=20.0, trend=0.06, trend_half_life=240.0,
                        trades_per_minute=1.5, daily_turnover_krw=300e6),
}


# --- the KRW tick, vectorised ---------------------------------------------------------

# Ascending bands; a tick below 1 is kept as its integer inverse so that
# units / inverse is the correctly rounded float of the exact decimal price.
_BAND_FLOOR = np.array([float(lo) for lo, _ in reversed(KRW_TICKS)])
_BAND_MUL = np.array([float(t) if t >= 1 else 1.0 for _, t in reversed(KRW_TICKS)])
_BAND_DIV = np.array([1.0 if t >= 1 else float(1 / t) for _, t in reversed(KRW_TICKS)])


def to_tick(price: np.ndarray, mode: RoundMode) -> np.ndarray:
    """Prices rounded onto the KRW tick of their band, ``mode`` one of
    ``"nearest"``, ``"up"``, ``"down"`` (as ``bot.money.round_price``); never 0.
    Band bounds are multiples of the next band's tick, so rounding across a
    bound still lands on the tick."""
    p = np.asarray(price, dtype=np.float64)
    band = np.maximum(np.searchsorted(_BAND_FLOOR, p, side="right") - 1, 0)
    q = p * _BAND_DIV[band] / _BAND_MUL[band]
    # "nearest" rounds ties up, as ROUND_HALF_UP does.
    rounded = {"nearest": lambda: np.floor(q + 0.5), "up": lambda: np.ceil(q),
               "down": lambda: np.floor(q)}[mode]()
    units = np.maximum(rounded, 1.0)
    return units * _BAND_MUL[band] / _BAND_DIV[band]


# --- model parts ------------------------------------------------------------------------

_MAX_EXPONENT = 20.0  # block length of _ar1: weights phi**-k stay below e**20


def _ar1(x: np.ndarray, phi: float, y0: float = 0.0) -> np.ndarray:
    """``y[t] = phi * y[t-1] + x[t]`` with ``y[-1] = y0``, vectorised.

    Within a block ``y[s+k] = phi**(k+1) * y[s-1] + phi**k * cumsum(x * phi**-j)``;
    blocks are short enough that ``phi**-j`` cannot overflow, and only the
    carry from block to block is a Python loop (n / block scalars)."""
    n = len(x)
    if n == 0:
        return np.empty(0)
    length = int(min(n, max(1, _MAX_EXPONENT // -math.log(phi))))
    blocks = -(-n // length)
    padded = np.zeros(blocks * length)
    padded[:n] = x
    k = np.arange(length)
    weight = phi ** -k.astype(np.float64)
    local = np.cumsum(padded.reshape(blocks, length) * weight, axis=1) / weight
    carry = np.empty(blocks)
    state, decay = y0, phi**length
    for i, end in enumerate(local[:, -1].tolist()):
        carry[i] = state
        state = decay * state + end
    return (local + carry[:, None] * phi ** (k + 1.0)).ravel()[:n]


def _stationary_ar1(rng: np.random.Generator, n: int, std: float,
                    half_life: float) -> np.ndarray:
    """A stationary AR(1) with the given standard deviation and half-life."""
    phi = 0.5 ** (1.0 / half_life)
    shocks = rng.standard_normal(n) * std * math.sqrt(1.0 - phi * phi)
    return _ar1(shocks, phi, rng.standard_normal() * std)  # y[0] is stationary too


def _activity(minute_of_day_kst: np.ndarray) -> np.ndarray:
    """Relative trading activity by KST minute of day, mean 1 over a day."""
    day = np.arange(DAY, dtype=np.float64)

    def bump(centre_h: float, width_h: float) -> np.ndarray:
        d = np.abs(day - centre_h * 60.0)
        d = np.minimum(d, DAY - d)  # circular distance
        return np.exp(-0.5 * (d / (width_h * 60.0)) ** 2)

    profile = 0.35 + 1.1 * bump(9.0, 1.2) + 0.9 * bump(22.5, 1.8) + 0.35 * bump(15.0, 3.0)
    profile /= profile.mean()
    return profile[minute_of_day_kst]


def _bridge_extreme(a: np.ndarray, b: np.ndarray, var: np.ndarray,
                    rng: np.random.Generator, sign: float) -> np.ndarray:
    """The maximum (sign +1) or minimum (-1) of a Brownian bridge from ``a`` to
    ``b`` with variance ``var``: ``P(M > m) = exp(-2 (m-a)(m-b) / var)``, solved."""
    e = rng.standard_exponential(len(a))
    return 0.5 * (a + b + sign * np.sqrt((b - a) ** 2 + 2.0 * var * e))


# --- the generator -------------------------------------------------------------------


def _check(n_minutes: int, start_price: float, start_ts: int,
           profile: str | Profile, volatility: float | None) -> Profile:
    if isinstance(n_minutes, bool) or not isinstance(n_minutes, int | np.integer) \
            or n_minutes < 1:
        raise ValueError(f"n_minutes must be a positive integer, got {n_minutes!r}")
    if not (math.isfinite(start_price) and start_price > 0):
        raise ValueError(f"start_price must be a positive number, got {start_price!r}")
    if int(start_ts) % 60:
        raise ValueError(f"start_ts must be at a minute start, got {start_ts!r}")
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
        profile = PROFILES[profile]
    if volatility is not None:
        if not (math.isfinite(volatility) and 0 < volatility < 0.05):
            raise ValueError(f"volatility must be in (0, 0.05) per minute, got {volatility!r}")
        profile = replace(profile, volatility=volatility)
    return profile


def generate(n_minutes: int, *, seed: int = 0, start_price: float = 50_000_000.0,
             profile: str | Profile = "liquid", start_ts: int = START,
             volatility: float | None = None) -> CandleArrays:
    """``n_minutes`` minutes of candles from ``start_ts`` (UTC seconds at a
    minute start); in the illiquid profile minutes without a trade have no
    candle. Same arguments, same candles. ``volatility`` overrides the
    profile's per-minute volatility of the mid. Bad arguments raise
    ``ValueError``."""
    p = _check(n_minutes, start_price, start_ts, profile, volatility)
    n = int(n_minutes)
    rng = np.random.default_rng(seed)
    minute = int(start_ts) // 60 + np.arange(n, dtype=np.int64)
    activity = _activity((minute + KST_OFFSET_MIN) % DAY)

    # Volatility: activity cycle x slow regime x fast bursts, mean square ~1.
    slow = _stationary_ar1(rng, n, p.slow_vol_std, p.slow_vol_half_life)
    fast = _stationary_ar1(rng, n, p.fast_vol_std, p.fast_vol_half_life)
    log_var = p.slow_vol_std**2 + p.fast_vol_std**2
    level = np.exp(slow + fast - log_var)  # E[level^2] = 1
    sigma = p.volatility * np.sqrt(activity) * level

    # Mid: OU drift (in slow-regime volatilities) plus Student-t shocks.
    df = p.tail_df
    z = rng.standard_t(df, n) / math.sqrt(df / (df - 2.0))
    trend = _stationary_ar1(rng, n, p.trend, p.trend_half_life)
    drift = trend * p.volatility * np.exp(slow - p.slow_vol_std**2 / 2)
    mid = math.log(start_price) + np.cumsum(drift + sigma * z)
    mid_before = np.concatenate([[math.log(start_price)], mid[:-1]])

    # Trades: every minute, or Poisson with the activity and volatility.
    if p.trades_per_minute is None:
        trades = np.full(n, np.inf)
    else:
        trades = rng.poisson(p.trades_per_minute * activity * level).astype(np.float64)
    half_spread = p.bounce * sigma
    side_open = rng.integers(0, 2, n) * 2.0 - 1.0
    side_close = rng.integers(0, 2, n) * 2.0 - 1.0
    # Fewer trades sample less of the path: shrink the bridge's variance.
    path_var = sigma**2 * (1.0 - 1.0 / np.maximum(trades, 1.0))
    log_high = _bridge_extreme(mid_before, mid, path_var, rng, 1.0) + half_spread
    log_low = _bridge_extreme(mid_before, mid, path_var, rng, -1.0) - half_spread
    log_close = mid + side_close * half_spread
    single = trades == 1  # one trade: open = high = low = close
    log_open = np.where(single, log_close, mid_before + side_open * half_spread)
    log_high = np.where(single, log_close, log_high)
    log_low = np.where(single, log_close, log_low)

    close = to_tick(np.exp(log_close), "nearest")
    if p.trades_per_minute is None:  # the next trade follows the last within seconds
        open_ = np.concatenate([to_tick(np.array([start_price]), "nearest"), close[:-1]])
    else:  # the first trade may come long after the last one
        open_ = to_tick(np.exp(log_open), "nearest")
    high = np.maximum(to_tick(np.exp(log_high), "up"), np.maximum(open_, close))
    low = np.minimum(to_tick(np.exp(log_low), "down"), np.minimum(open_, close))

    # Volume: KRW turnover by activity, volatility level and move size.
    size = rng.lognormal(-0.18, 0.6, n)  # mean 1
    move = 0.5 + 0.5 * np.abs(z) / math.sqrt(2.0 / math.pi)
    if p.trades_per_minute is None:
        krw = p.daily_turnover_krw / DAY * activity * level * move * size
    else:
        per_trade = p.daily_turnover_krw / DAY / p.trades_per_minute
        krw = per_trade * np.maximum(trades, 1.0) * move * size
    volume = np.maximum(np.floor(krw / close * 1e8), 1.0) / 1e8

    keep = trades > 0
    return CandleArrays((minute[keep] * 60).astype(np.int64), open_[keep], high[keep],
                        low[keep], close[keep], volume[keep])


def random_walk(n_minutes: int, *, seed: int = 0, start_price: float = 50_000_000.0,
                start_ts: int = START, volatility: float = 0.0006) -> CandleArrays:
    """The baseline: a geometric random walk with Gaussian minute returns of
    constant ``volatility``, every minute a candle, uniform random volume, on
    the tick (as ``bench/bench_backtest.py``'s ``synthetic``)."""
    _check(n_minutes, start_price, start_ts, "liquid", volatility)
    n = int(n_minutes)
    rng = np.random.default_rng(seed)
    close = to_tick(start_price * np.exp(np.cumsum(rng.normal(0.0, volatility, n))), "nearest")
    open_ = np.concatenate([[to_tick(np.array([start_price]), "nearest")[0]], close[:-1]])
    high = to_tick(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, volatility / 2, n))),
                   "up")
    low = to_tick(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, volatility / 2, n))),
                  "down")
    volume = np.floor((rng.random(n) + 1e-3) * 1e8) / 1e8
    ts = (int(start_ts) + 60 * np.arange(n, dtype=np.int64)).astype(np.int64)
    return CandleArrays(ts, open_, high, low, close, volume)


# --- statistics -----------------------------------------------------------------------

MIN_STATISTICS_MINUTES = 2 * DAY


def _autocorr(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    denominator = float(np.dot(x, x))
    if lag >= len(x) or denominator == 0.0:
        return float("nan")
    return float(np.dot(x[:-lag], x[lag:]) / denominator)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _excess_kurtosis(x: np.ndarray) -> float:
    d = x - x.mean()
    var = float(np.mean(d * d))
    return float(np.mean(d**4) / var**2 - 3.0) if var > 0 else float("nan")


def _variance_ratio(r: np.ndarray, k: int) -> float:
    """``Var(sum of k returns) / (k Var(one return))`` on non-overlapping sums."""
    usable = len(r) // k * k
    sums = r[:usable].reshape(-1, k).sum(axis=1)
    return float(sums.var() / (k * r[:usable].var()))


def _daily(ts: np.ndarray, high: np.ndarray, low: np.ndarray,
           close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """High, low and last close of each whole UTC day (Upbit's day) in ``ts``."""
    first = -(-int(ts[0]) // 86_400)
    last = (int(ts[-1]) + 60) // 86_400  # exclusive
    inside = (ts >= first * 86_400) & (ts < last * 86_400)
    day = ts[inside] // 86_400
    if not len(day):
        return np.empty(0), np.empty(0), np.empty(0)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    ends = np.r_[starts[1:], len(day)] - 1
    return (np.maximum.reduceat(high[inside], starts), np.minimum.reduceat(low[inside], starts),
            close[inside][ends])


def statistics(candles: CandleArrays) -> dict[str, float]:
    """The stylised facts of ``candles`` (at least two days' span).

    Return statistics are on the minute grid with the last close carried
    over minutes without a candle (the price is flat between trades):
    ``return_std_pct``, ``lag1_autocorr`` (bid-ask bounce: < 0 on real
    minutes), ``abs_autocorr_1/10/60`` (volatility clustering: > 0, slowly
    decaying), ``excess_kurtosis`` (fat tails: > 0), ``hourly_autocorr`` and
    ``variance_ratio_4h`` (4-hour vs 1-hour returns; trends: > 0 and > 1),
    ``variance_ratio_1h`` (60-minute vs 1-minute; the bounce pulls it below 1),
    ``hourly_moves_gt_1pct`` (share of hours moving more than 1 %; hours are
    60-minute blocks from the first candle),
    ``daily_range_pct`` (median UTC-day high/low range) and
    ``daily_return_std_pct``. Candle statistics: ``gap_share`` (minutes
    without a candle), ``volume_profile_ratio`` (max/min mean volume per KST
    hour of day, gaps counting as 0), ``volume_peak_hour_kst`` and
    ``volume_range_corr`` (volume vs (high - low) / close, per candle)."""
    ts = np.asarray(candles.ts, dtype=np.int64)
    if len(ts) < 2 or (ts[-1] - ts[0]) // 60 + 1 < MIN_STATISTICS_MINUTES:
        raise ValueError(f"statistics need candles spanning at least "
                         f"{MIN_STATISTICS_MINUTES // DAY} days")
    if np.any(np.diff(ts) <= 0) or np.any(ts % 60):
        raise ValueError("statistics need minute-start ts that strictly increase")
    close = np.asarray(candles.close, dtype=np.float64)
    high = np.asarray(candles.high, dtype=np.float64)
    low = np.asarray(candles.low, dtype=np.float64)
    volume = np.asarray(candles.volume, dtype=np.float64)
    slot = (ts - ts[0]) // 60
    minutes = int(slot[-1]) + 1
    carried = np.full(minutes, -1, dtype=np.int64)
    carried[slot] = np.arange(len(ts))
    grid_close = close[np.maximum.accumulate(carried)]  # slot[0] == 0
    r = np.diff(np.log(grid_close))
    abs_r = np.abs(r)
    hourly = np.diff(np.log(grid_close[::60]))
    day_high, day_low, day_close = _daily(ts, high, low, close)

    hour_kst = ((ts // 60 + KST_OFFSET_MIN) % DAY) // 60
    grid_hour = ((ts[0] // 60 + np.arange(minutes) + KST_OFFSET_MIN) % DAY) // 60
    per_hour = (np.bincount(hour_kst, weights=volume, minlength=24)
                / np.maximum(np.bincount(grid_hour, minlength=24), 1))
    candle_range = (high - low) / close
    return {
        "candles": float(len(ts)),
        "minutes": float(minutes),
        "gap_share": 1.0 - len(ts) / minutes,
        "return_std_pct": float(r.std() * 100),
        "lag1_autocorr": _autocorr(r, 1),
        "abs_autocorr_1": _autocorr(abs_r, 1),
        "abs_autocorr_10": _autocorr(abs_r, 10),
        "abs_autocorr_60": _autocorr(abs_r, 60),
        "excess_kurtosis": _excess_kurtosis(r),
        "variance_ratio_1h": _variance_ratio(r, 60),
        "hourly_autocorr": _autocorr(hourly, 1),
        "variance_ratio_4h": _variance_ratio(hourly, 4),
        "hourly_moves_gt_1pct": float(np.mean(np.abs(hourly) > 0.01)),
        "daily_range_pct": float(np.median((day_high - day_low) / day_low) * 100)
        if len(day_low) else float("nan"),
        "daily_return_std_pct": float(np.diff(np.log(day_close)).std() * 100)
        if len(day_close) > 2 else float("nan"),
        "volume_profile_ratio": float(per_hour.max() / per_hour.min())
        if per_hour.min() > 0 else float("inf"),
        "volume_peak_hour_kst": float(per_hour.argmax()),
        "volume_range_corr": _corr(volume, candle_range),
    }
