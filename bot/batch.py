"""Batch evaluation for the optimizer: many weight vectors over the same
candles in one call, sharing the weight-independent work (signals, limit
prices, fill flags; see :func:`bot.backtest.prepare`).

The signals take only 3^6 = 729 joint values per bar and the score is linear
in the weights, so a candidate is a pair of 729-entry buy/sell tables; the
holding state is "the last fillable event was a buy", run over candidates
bit-packed 64 per machine word, and the money follows from float32 matrix
products. Memory is bounded by chunking, whatever the number of candidates.
The result is an approximation of :func:`bot.backtest.run_backtest`
(documented on :class:`BatchMetrics`); the optimizer re-scores its finalists
with the exact engine. Pure, like the backtest.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bot import strategies as st
from bot.backtest import (
    _FLAT,
    BacktestParams,
    CandleSeries,
    Prepared,
    _prepared,
)


@dataclass(frozen=True)
class BatchMetrics:
    """Metrics of many weight vectors on one series, one array entry per
    vector (rows of the weight matrix, in order).

    The position path (which bars hold, every fill) is exactly the exact
    engine's as long as cash and position stay far above ``min_order_krw``
    (the usual case: then no order is ever refused for size). The money is
    approximated: per-bar returns are those of an account that, on a buy,
    spends ``cash / (1 + fee_rate + fee_buffer)`` on coin at the bid plus the
    fee and keeps the rest in cash, taken as a constant ``fee_buffer / (1 +
    fee_buffer)`` share of equity while holding (the real share drifts with
    the price), with volumes not rounded to 8 decimals. Measured against the
    exact engine: below 1e-7 of log return per round trip. Sums run in
    float32 per block of bars (float64 across blocks).
    """

    total_return: np.ndarray  # exp(sum of per-bar log returns) - 1
    sharpe: np.ndarray  # annualised, as BacktestResult.sharpe
    mean_return: np.ndarray  # per bar
    std_return: np.ndarray  # per bar, population
    exposure: np.ndarray  # share of the trading span holding
    fills: np.ndarray  # buys + sells filled
    round_trips: np.ndarray  # sells filled
    bars: int  # per-bar returns in the trading span
    bars_per_year: float

    def __len__(self) -> int:
        return len(self.total_return)

    def row(self, i: int) -> dict[str, float]:
        """Candidate ``i``'s metrics as plain numbers."""
        return {name: float(getattr(self, name)[i]) for name in
                ("total_return", "sharpe", "mean_return", "std_return", "exposure", "fills",
                 "round_trips")}


_NO_EVENT = st.N_CODES * 4  # the event-table row of bars that cannot trade
_METRIC_ROWS = 5  # sum r, sum r^2, sum log(1+r), bars holding, fills
_TILE_WORDS = 64  # candidates (x64) unpacked at once: a block's tile stays in cache


def _batch_tables(prep: Prepared) -> np.ndarray:
    """Per bar j, the row of the event table its decision uses:
    ``code * 4 + 2 * buy_fill + sell_fill``; ``_NO_EVENT`` where no order can
    fill (warm-up bars and the last bar)."""
    rows = prep.codes.astype(np.int64) * 4 + 2 * prep.buy_fill + prep.sell_fill
    rows[:st.FIRST_DECISION] = _NO_EVENT
    rows[-1] = _NO_EVENT
    return rows


def _batch_coefficients(prep: Prepared, params: BacktestParams) -> np.ndarray:
    """``(5, 2n)`` float32 ``[hold | flip]`` so that a vector's metric sums are
    ``coef[:, :n] @ H + coef[:, n:] @ F`` with ``H_j`` = holding at close j
    and ``F_j = H_j xor H_{j-1}``.

    The return of bar j is ``R`` while holding through it, ``E`` when a buy
    fills on it and ``X`` when a sell does; with ``en = (F + H - H') / 2``,
    ``ex = (F - H + H') / 2`` and ``H H' = (H + H' - F) / 2`` (``H' = H_{j-1}``)
    each metric is linear in H, H' and F; the H' term moves to bar j-1.
    """
    c, n = prep.close, len(prep)
    f, buffer = params.fee_rate, params.fee_buffer
    # A buy spends cash / (1 + f + buffer) on coin plus its fee; the rest, about
    # buffer / (1 + buffer) of equity, stays in cash while holding.
    invested = 1.0 / (1.0 + buffer)
    zero = np.zeros(n)
    R, E, X = zero.copy(), zero.copy(), zero.copy()
    R[1:] = (c[1:] / c[:-1] - 1.0) * invested
    E[1:] = (buffer + c[1:] / prep.bid[:-1]) / (1.0 + f + buffer) - 1.0
    X[1:] = (prep.ask[:-1] * (1.0 - f) / c[:-1] - 1.0) * invested
    coef = np.zeros((_METRIC_ROWS, 2 * n))
    for row, (r, e, x) in enumerate(((R, E, X), (R * R, E * E, X * X),
                                     (np.log1p(R), np.log1p(E), np.log1p(X)))):
        a, b, d = (r + e - x) / 2, (r - e + x) / 2, (e + x - r) / 2
        coef[row, :n] = a
        coef[row, :n - 1] += b[1:]
        coef[row, n:] = d
    coef[3, :n] = 1.0
    coef[4, n:] = 1.0
    span = st.FIRST_DECISION + 1  # H and F are zero before the first possible fill
    coef[:, :span] = 0.0
    coef[:, n:n + span] = 0.0
    return coef.astype(np.float32)


def _pack(table: np.ndarray, words: int) -> np.ndarray:
    """Bool rows -> uint64 words, candidate c at bit c % 64 of word c // 64."""
    packed = np.packbits(table, axis=1, bitorder="little")
    out = np.zeros((len(table), words * 8), dtype=np.uint8)
    out[:, :packed.shape[1]] = packed
    return out.view(np.uint64)


def _event_tables(weights: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Bit-packed tables indexed by event row: B (a buy fills) and K (a sell
    does not fill), one bit per candidate."""
    tables = st.score_tables(weights)
    k = len(weights)
    buy = np.zeros((_NO_EVENT + 1, k), dtype=bool)
    keep = np.ones((_NO_EVENT + 1, k), dtype=bool)
    buy4 = buy[:_NO_EVENT].reshape(st.N_CODES, 4, k)
    keep4 = keep[:_NO_EVENT].reshape(st.N_CODES, 4, k)
    buy4[:, 2, :] = buy4[:, 3, :] = (tables >= threshold).T
    keep4[:, 1, :] = keep4[:, 3, :] = (tables > -threshold).T
    words = -(-k // 64)
    return _pack(buy, words), _pack(keep, words)


def _evaluate_chunk(weights: np.ndarray, rows: list[int], coef: np.ndarray, threshold: float,
                    block: int) -> tuple[np.ndarray, np.ndarray]:
    """Metric sums ``(5, k)`` and the final holding state of ``k`` candidates.

    With threshold > 0 no bar is both a buy and a sell event, so the holding
    state follows ``H_{j+1} = B_j | (H_j & K_j)``: one pass over the bars with
    64 candidates per machine word (a forward fill of the events, done in the
    bit domain). Each block of bars is then unpacked to float32, a tile of
    candidates at a time into a reused buffer, and reduced by matrix products.
    """
    k = len(weights)
    buy, keep = _event_tables(weights, threshold)
    words, n = buy.shape[1], len(rows)
    sums = np.zeros((_METRIC_ROWS, words * 64))
    state = np.zeros(words, dtype=np.uint64)
    bits_buffer = np.empty((2 * block, words), dtype=np.uint64)
    tile_buffer = np.empty((2 * block, _TILE_WORDS * 64), dtype=np.float32)
    band, bor = np.bitwise_and, np.bitwise_or
    for a in range(st.FIRST_DECISION + 1, n, block):
        b = min(n, a + block)
        length = b - a
        bits = bits_buffer[:2 * length]
        prev = state
        for j, out in zip(range(a, b), bits[:length], strict=True):
            row = rows[j - 1]
            band(prev, keep[row], out=out)
            bor(out, buy[row], out=out)
            prev = out
        np.bitwise_xor(bits[0], state, out=bits[length])
        np.bitwise_xor(bits[1:length], bits[:length - 1], out=bits[length + 1:])
        state = bits[length - 1].copy()
        block_coef = np.concatenate([coef[:, a:b], coef[:, n + a:n + b]], axis=1)
        for w0 in range(0, words, _TILE_WORDS):
            w1 = min(words, w0 + _TILE_WORDS)
            packed = np.ascontiguousarray(bits[:, w0:w1]).view(np.uint8)
            tile = tile_buffer[:2 * length, :(w1 - w0) * 64]
            np.copyto(tile, np.unpackbits(packed, axis=1, bitorder="little"), casting="unsafe")
            sums[:, w0 * 64:w1 * 64] += block_coef @ tile
    final = np.unpackbits(state.view(np.uint8), count=k, bitorder="little").astype(bool)
    return sums[:, :k], final


def evaluate_batch(candles: CandleSeries | Prepared, weight_matrix: np.ndarray,
                   params: BacktestParams, *, chunk: int = 16384, block: int = 512,
                   threads: int = 1) -> BatchMetrics:
    """Evaluate every row of ``weight_matrix`` (``(m, 6)``, columns in
    ``SIGNAL_NAMES`` order, normalised here) on one series.

    Signals, limit prices and fill flags are computed once; each candidate
    then costs one pass of bit operations over the bars (64 candidates per
    word) and one float32 matrix product per block of bars. Memory is
    bounded by ``chunk`` candidates times ``block`` bars whatever ``m`` is.

    ``threads`` > 1 evaluates chunks in parallel (numpy releases the GIL).
    The default, 1, leaves the cores to a multi-threaded BLAS, which runs the
    matrix products in parallel already; with a single-threaded BLAS
    (``OPENBLAS_NUM_THREADS=1``) pass the core count instead: two layers of
    spinning threads on two cores are slower than either alone.
    """
    prep = _prepared(candles, params)
    st.normalise_matrix(weight_matrix)  # validation; each chunk normalises once, as
    weights = np.asarray(weight_matrix, dtype=np.float64)  # run_backtest does
    m, n = len(weights), len(prep)
    span_returns = max(n - 1 - st.FIRST_DECISION, 0)
    sums, final = np.zeros((_METRIC_ROWS, m)), np.zeros(m, dtype=bool)
    if m and span_returns:
        rows = _batch_tables(prep).tolist()
        coef = _batch_coefficients(prep, params)
        workers = max(1, threads)
        pieces = max(-(-m // chunk), min(workers, -(-m // 256)))
        bounds = np.linspace(0, m, pieces + 1).astype(int)

        def work(p: int) -> tuple[np.ndarray, np.ndarray]:
            return _evaluate_chunk(weights[bounds[p]:bounds[p + 1]], rows, coef,
                                   params.threshold, block)

        with ThreadPoolExecutor(max_workers=min(workers, pieces)) as pool:
            for p, (part, last) in enumerate(pool.map(work, range(pieces))):
                sums[:, bounds[p]:bounds[p + 1]] = part
                final[bounds[p]:bounds[p + 1]] = last
    count = max(span_returns, 1)
    mean = sums[0] / count
    std = np.sqrt(np.maximum(sums[1] / count - mean * mean, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > _FLAT, mean / std, 0.0) * math.sqrt(prep.bars_per_year)
    fills = np.rint(sums[4]).astype(np.int64)
    return BatchMetrics(
        total_return=np.expm1(sums[2]),
        sharpe=sharpe,
        mean_return=mean,
        std_return=std,
        exposure=sums[3] / max(n - st.FIRST_DECISION, 1),
        fills=fills,
        round_trips=(fills - final) // 2,
        bars=span_returns,
        bars_per_year=prep.bars_per_year,
    )
