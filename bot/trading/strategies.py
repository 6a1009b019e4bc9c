"""The six signals, the weighted score and the buy/sell/hold decision: the one
definition the trader and the backtest share (docs/semantics.md).

Two forms of the same arithmetic live here:

* per window (:func:`signals_for_window`, :func:`score`, :func:`decide`): what
  the trader calls once per candle on the last ``WINDOW`` closed candles;
* vectorised over a whole series (:func:`signal_matrix`, :func:`signal_codes`,
  :func:`score_table`, :func:`score_tables`): what the backtest and the
  optimizer use.

The two forms agree bit for bit, not merely approximately (the property tests in
``tests/trading/test_strategies.py`` prove it bar by bar). To get there every float
operation is done in the same order in both forms: the 5- and 20-close sums are
explicit left-to-right additions, signs come from comparisons, the rolling
max/min is exact by nature, and a score is looked up in a 729-entry table built
with the very additions :func:`score` performs.

Pure: no database, no exchange, no clock, no settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bot.models import SIGNAL_NAMES

WINDOW = 200  # closed candles one decision looks at
FIRST_DECISION = WINDOW - 1  # index of the first bar with a full window
N_SIGNALS = len(SIGNAL_NAMES)
N_CODES = 3**N_SIGNALS  # joint values of the six signals: 729
SCALPING_STEP = 0.001  # a one-bar move of at least 0.1 % is a scalping signal
_DAY_SECONDS = 86_400

Action = Literal["buy", "sell", "hold"]


# --- weights -------------------------------------------------------------------


def normalise_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Weights over ``SIGNAL_NAMES`` scaled to sum 1; a missing name weighs 0.

    ``None`` or ``{}`` means equal weights. Unknown names, negative, NaN or
    infinite weights and an all-zero mapping raise ``ValueError``. Sums are
    left-to-right additions in ``SIGNAL_NAMES`` order (never ``sum()``,
    which Python 3.12 compensates), so :func:`normalise_matrix` can repeat
    them exactly. The result sums to exactly 1.0 in floats, which makes
    normalising idempotent: ``normalise_weights(normalise_weights(w)) ==
    normalise_weights(w)``, bit for bit.
    """
    if not weights:
        weights = dict.fromkeys(SIGNAL_NAMES, 1.0)
    unknown = sorted(set(weights) - set(SIGNAL_NAMES))
    if unknown:
        raise ValueError(f"unknown signal names {unknown}; allowed: {', '.join(SIGNAL_NAMES)}")
    raw = [float(weights.get(name, 0.0)) for name in SIGNAL_NAMES]
    for name, value in zip(SIGNAL_NAMES, raw, strict=True):
        if not (value >= 0.0 and value != float("inf")):  # also rejects NaN
            raise ValueError(f"weight {name}={value!r} must be a finite number >= 0")
    total = _left_sum(raw)
    if not total > 0.0:
        raise ValueError("weights must not all be zero")
    scaled = _unit_sum([value / total for value in raw])
    return dict(zip(SIGNAL_NAMES, scaled, strict=True))


def _left_sum(values: Sequence[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


def _unit_sum(weights: list[float]) -> list[float]:
    """Set the last non-zero weight to ``1.0 - (sum of those before it)`` so
    that the weights' left-to-right float sum is exactly 1.0 (a change of an
    ulp or two). Normalising again then divides by 1.0 and changes nothing,
    so weights normalised twice (stored, then passed to decide) score
    exactly like weights normalised once (as the backtest does)."""
    last = max(k for k, value in enumerate(weights) if value > 0.0)
    rest = 1.0 - _left_sum(weights[:last])
    if rest >= 0.0:  # not so only for weights some 1e16 times apart
        weights[last] = rest
    return weights


def normalise_matrix(weight_matrix: np.ndarray) -> np.ndarray:
    """Row-wise :func:`normalise_weights` of an ``(m, 6)`` matrix (columns in
    ``SIGNAL_NAMES`` order), with the same float operations."""
    w = np.asarray(weight_matrix, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != N_SIGNALS:
        raise ValueError(f"weight matrix must have shape (m, {N_SIGNALS}), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite numbers >= 0")
    total = _column_sum(w)
    if np.any(total <= 0):
        raise ValueError("a weight vector must not be all zero")
    scaled = w / total[:, None]
    # As _unit_sum, row by row: the last non-zero weight gets 1.0 - the rest.
    last = N_SIGNALS - 1 - np.argmax(scaled[:, ::-1] > 0.0, axis=1)
    before = np.zeros((len(w), N_SIGNALS))
    for k in range(1, N_SIGNALS):
        before[:, k] = before[:, k - 1] + scaled[:, k - 1]
    rows = np.arange(len(w))
    rest = 1.0 - before[rows, last]
    keep = rest >= 0.0
    scaled[rows[keep], last[keep]] = rest[keep]
    return scaled


def _column_sum(w: np.ndarray) -> np.ndarray:
    total = np.zeros(len(w))
    for k in range(N_SIGNALS):
        total += w[:, k]
    return total


def weights_vector(weights: Mapping[str, float] | None) -> np.ndarray:
    """The raw (un-normalised) weights as a length-6 vector in ``SIGNAL_NAMES``
    order, for building weight matrices; checked like :func:`normalise_weights`."""
    normalise_weights(weights)  # validation only
    if not weights:
        return np.ones(N_SIGNALS)
    return np.array([float(weights.get(name, 0.0)) for name in SIGNAL_NAMES])


# --- per window ----------------------------------------------------------------


def _cmp(a: float, b: float) -> int:
    """sign(a - b) without the subtraction: ties (and NaN) give 0."""
    return (a > b) - (a < b)


def _chain_sum(values: Sequence[float]) -> float:
    # Left to right, exactly as _chain_sums adds shifted slices.
    total = values[0]
    for value in values[1:]:
        total += value
    return total


def _scalping(last: float, prev: float) -> int:
    if not prev > 0.0:
        return 0
    change = (last - prev) / prev
    if change >= SCALPING_STEP:
        return 1
    if change <= -SCALPING_STEP:
        return -1
    return 0


def _window(closes: Sequence[float] | np.ndarray) -> list[float]:
    c = np.asarray(closes, dtype=np.float64)
    if c.ndim != 1 or len(c) < WINDOW:
        raise ValueError(f"need at least {WINDOW} closes, got {len(c)}")
    c = c[-WINDOW:]
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("closes must be finite and positive")
    return c.tolist()


def _known_day_open(day_open: float | None) -> float | None:
    if day_open is None:
        return None
    value = float(day_open)
    return value if np.isfinite(value) and value > 0 else None


def signals_for_window(closes: Sequence[float] | np.ndarray,
                       day_open: float | None) -> dict[str, int]:
    """The six signals on the last ``WINDOW`` closes (``closes[-1]`` is the bar
    deciding). Raises ``ValueError`` with fewer than ``WINDOW`` closes or a
    non-finite / non-positive close; :func:`decide` turns the short case into
    a hold. ``day_open`` is the open of the first candle of the last bar's UTC
    day; ``None`` (or a non-positive value) means unknown and gives ``day = 0``.
    """
    c = _window(closes)
    last, prev = c[-1], c[-2]
    opened = _known_day_open(day_open)
    earlier = c[:-1]
    values = {
        "trend": _cmp(last, prev),
        "momentum": _cmp(last, c[-6]),
        "swing": _cmp(_chain_sum(c[-5:]) / 5.0, _chain_sum(c[-20:]) / 20.0),
        "scalping": _scalping(last, prev),
        "day": 0 if opened is None else _cmp(last, opened),
        "price_action": 1 if last > max(earlier) else (-1 if last < min(earlier) else 0),
    }
    return {name: values[name] for name in SIGNAL_NAMES}


def score(signals: Mapping[str, int], weights: Mapping[str, float] | None) -> float:
    """``sum(w_k * s_k)`` over ``SIGNAL_NAMES`` in that order, with the weights
    normalised first; lies in [-1, 1]. Missing signals count as 0."""
    w = normalise_weights(weights)
    total = 0.0
    for name in SIGNAL_NAMES:
        total += w[name] * signals.get(name, 0)
    return total


@dataclass(frozen=True)
class Decision:
    """What the strategy wants at one bar. ``action`` is what to do, ``score``
    and ``signals`` why; ``reason`` is a short text for the log."""

    action: Action
    score: float
    signals: dict[str, int] = field(default_factory=dict)
    reason: str = ""


def _check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 < value <= 1.0:
        # A zero threshold would let one bar be both a buy and a sell signal.
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    return value


def decide(closes: Sequence[float] | np.ndarray, day_open: float | None,
           weights: Mapping[str, float] | None, threshold: float, holding: bool) -> Decision:
    """The decision at the last of ``closes`` (closed candles, oldest first).

    Buy when flat and ``score >= threshold``; sell when holding and
    ``score <= -threshold``; otherwise hold. Fewer than ``WINDOW`` closes:
    hold with reason ``"not enough candles"``. ``threshold`` may be a
    ``Decimal``; it is compared as a float, as in the backtest.
    """
    thr = _check_threshold(threshold)
    if len(closes) < WINDOW:
        return Decision("hold", 0.0, {name: 0 for name in SIGNAL_NAMES}, "not enough candles")
    signals = signals_for_window(closes, day_open)
    value = score(signals, weights)
    if not holding and value >= thr:
        return Decision("buy", value, signals, f"score {value:.4f} >= {thr:g} while flat")
    if holding and value <= -thr:
        return Decision("sell", value, signals, f"score {value:.4f} <= -{thr:g} while holding")
    if holding:
        return Decision("hold", value, signals, f"score {value:.4f} > -{thr:g} while holding")
    return Decision("hold", value, signals, f"score {value:.4f} < {thr:g} while flat")


# --- vectorised over a series ----------------------------------------------------


def _cmp_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a > b).astype(np.int8) - (a < b).astype(np.int8)


def _chain_sums(c: np.ndarray, width: int) -> np.ndarray:
    """``out[k] = c[k] + c[k+1] + ... + c[k+width-1]``, added left to right like
    :func:`_chain_sum`, for every k."""
    count = len(c) - width + 1
    total = c[0:count].copy()
    for shift in range(1, width):
        total += c[shift:shift + count]
    return total


def _rolling_max(x: np.ndarray, width: int) -> np.ndarray:
    """``out[k] = max(x[k:k+width])`` in O(n) (van Herk / Gil-Werman): maxima of
    block prefixes and suffixes; a window spans at most two blocks. Exact."""
    n = len(x)
    blocks = -(-n // width)
    padded = np.full(blocks * width, -np.inf)
    padded[:n] = x
    grid = padded.reshape(blocks, width)
    prefix = np.maximum.accumulate(grid, axis=1).ravel()
    suffix = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    count = n - width + 1
    return np.maximum(suffix[:count], prefix[width - 1:width - 1 + count])


def day_opens(ts: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """For each bar, the open of the first candle of its UTC day among the
    candles up to it (``ts`` ascending, epoch seconds)."""
    t = np.asarray(ts, dtype=np.int64)
    n = len(t)
    day = t // _DAY_SECONDS
    first = np.ones(n, dtype=bool)
    first[1:] = day[1:] != day[:-1]
    index = np.where(first, np.arange(n), 0)
    np.maximum.accumulate(index, out=index)
    return np.asarray(open_, dtype=np.float64)[index]


def signal_matrix(ts: np.ndarray, open_: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``(n, 6)`` int8: row i holds the signals of the window ending at bar i,
    columns in ``SIGNAL_NAMES`` order. Rows before ``FIRST_DECISION`` (no
    full window yet) are zeros and invalid: callers mask them by index.
    Equal, bar for bar, to :func:`signals_for_window` on each window."""
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    out = np.zeros((n, N_SIGNALS), dtype=np.int8)
    if n < WINDOW:
        return out
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("closes must be finite and positive")
    rows = slice(FIRST_DECISION, n)
    last = c[FIRST_DECISION:]
    prev = c[FIRST_DECISION - 1:n - 1]
    out[rows, 0] = _cmp_arrays(last, prev)
    out[rows, 1] = _cmp_arrays(last, c[FIRST_DECISION - 5:n - 5])
    mean5 = _chain_sums(c, 5)[FIRST_DECISION - 4:] / 5.0
    mean20 = _chain_sums(c, 20)[FIRST_DECISION - 19:] / 20.0
    out[rows, 2] = _cmp_arrays(mean5, mean20)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (last - prev) / prev
    out[rows, 3] = (change >= SCALPING_STEP).astype(np.int8) - (change <= -SCALPING_STEP)
    opened = day_opens(ts, open_)[FIRST_DECISION:]
    known = np.isfinite(opened) & (opened > 0)
    out[rows, 4] = np.where(known, _cmp_arrays(last, opened), 0)
    earlier = c[:n - 1]  # the 199 closes before bar i are earlier[i-199 : i]
    highest = _rolling_max(earlier, WINDOW - 1)
    lowest = -_rolling_max(-earlier, WINDOW - 1)
    out[rows, 5] = (last > highest).astype(np.int8) - (last < lowest)
    return out


_POWERS = 3 ** np.arange(N_SIGNALS, dtype=np.int16)


def signal_codes(sig: np.ndarray) -> np.ndarray:
    """``(n,)`` int16 in 0..728: ``sum((s_k + 1) * 3**k)``. Signals all 0 give
    364, which scores 0 and never trades."""
    s = np.asarray(sig, dtype=np.int16) + 1
    return (s * _POWERS).sum(axis=1, dtype=np.int16)


def code_signals() -> np.ndarray:
    """``(729, 6)`` int8: the signals each code stands for."""
    codes = np.arange(N_CODES)
    return np.stack([(codes // 3**k) % 3 - 1 for k in range(N_SIGNALS)], axis=1).astype(np.int8)


_CODE_SIGNALS = code_signals().astype(np.float64)


def score_tables(weight_matrix: np.ndarray) -> np.ndarray:
    """``(m, 729)`` float64: the score of every code under each weight vector
    (rows of ``weight_matrix``, normalised here). The same additions, in the
    same order, as :func:`score`, so a table entry equals ``score()`` exactly."""
    w = normalise_matrix(weight_matrix)
    total = np.zeros((len(w), N_CODES))
    for k in range(N_SIGNALS):
        total += w[:, k:k + 1] * _CODE_SIGNALS[None, :, k]
    return total


def score_table(weights: Mapping[str, float] | None) -> np.ndarray:
    """``(729,)`` float64: :func:`score` of every code under ``weights``."""
    return score_tables(weights_vector(weights)[None, :])[0]
