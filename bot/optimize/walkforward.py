"""Walk-forward: the nightly optimizer slid over history, traded out of sample.
It answers "does the self-tuning pay?" on a market's own candles.

Windows: with D training days and T test days, the k-th run happens at the
moment ``m_k = first candle + D days + k * T days``. It optimizes exactly as
the nightly job would at that moment (:func:`bot.optimize.search.tune`): the
candles of ``[m_k - D days, m_k)``, split into train and holdout by
OPTIMIZE_HOLDOUT, the groups of OPTIMIZE_TUNE searched against the set in
force, and the verdict rules of :mod:`bot.optimize.search` (adopt, keep, stand aside,
standing aside sticky until an adoption). The decisions of the bars of
``[m_k, m_k + T days)`` are then made with the set in force after that
verdict: adopt trades the new set (its groups in OPTIMIZE_TUNE, the rest the
settings, as :func:`bot.trading.params.combine` says), keep the previous one, and
standing aside makes no new buys while exits and sells go on. In live mode
with LIVE_ALLOW_UNVALIDATED=false the trader buys nothing before the first
adoption, and so does the walk-forward. Nothing a run sees is later than its
moment, and nothing a decision sees is later than its bar.

Trading: one continuous account over the whole out-of-sample span (cash,
position, entry, trailing peak, cooldown, stop guard and the daily loss
limit carried across the windows), with the exact engine of
:mod:`bot.optimize.backtest` run once over the concatenated history and each window's
parameters swapped in at its first bar (:func:`trade_plan`). Swapping at a
boundary keeps the account's state; the cooldown after the last sell is
measured with the cooldown in force at the decision. An order decided at a
window's last bar fills on the next window's first bar, as in the daemon.
The signals are computed on the whole history, as the trader computes them
on every stored candle (the ``day`` signal needs the day's first candle).

``default_return`` trades the settings' own set (WEIGHTS, THRESHOLD, ...)
over the same out-of-sample span with the same engine: the baseline the
self-tuning has to beat. ``buy_and_hold_return`` holds from the close of the
first decision's bar to the last close, no fees, as the backtest defines it.

Pure: candles and settings in, results out. No database, no clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bot.config import Settings
from bot.jsonout import money
from bot.optimize import backtest as bt
from bot.optimize.backtest import (
    BUY,
    SELL,
    BacktestParams,
    BacktestResult,
    CandleSeries,
    Prepared,
    prepare,
    run_backtest,
)
from bot.optimize.search import (
    ADOPT,
    STAND_ASIDE,
    ParamSet,
    combine_sets,
    settings_set,
    slice_candles,
    tune,
)
from bot.trading import strategies as st

log = logging.getLogger(__name__)

DAY = 86_400
STAND_ASIDE_GATE, LIVE_GATE = "stand_aside", "live_gate"


# --- trading a plan of parameter sets ---------------------------------------------


@dataclass(frozen=True)
class Leg:
    """Bars ``start..stop-1`` (indices into the prepared series) decided with
    ``params`` (a set), buying nothing when ``no_buys``."""

    start: int
    stop: int
    params: ParamSet
    no_buys: bool = False


@dataclass(frozen=True)
class Traded:
    """The account over a plan: per bar equity and holding, per fill its bar,
    side and fee, as the exact engine computed them."""

    equity: np.ndarray
    holding: np.ndarray
    actions: np.ndarray
    fill_bars: np.ndarray
    fill_sides: np.ndarray
    fees: float


def trade_plan(prep: Prepared, base: BacktestParams, legs: Sequence[Leg]) -> Traded:
    """Run the exact engine once over ``prep`` as one account, each leg's
    parameters in force over its bars (legs in order, contiguous; ``base``
    gives what no set holds: costs, cash, guards): :func:`bot.optimize.backtest.run_segments`.
    With one leg this is :func:`bot.optimize.backtest.run_backtest` bar for bar."""
    plan = [bt.Segment(leg.start, leg.stop, leg.params.weights,
                       replace(leg.params.apply(base), stand_aside=leg.no_buys))
            for leg in legs] or [bt.Segment(0, len(prep), None, base)]
    result = bt.run_segments(prep, plan)
    bars = np.concatenate([result.buy_bars, result.sell_bars])
    sides = np.concatenate([np.full(len(result.buy_bars), BUY, dtype=np.int8),
                            np.full(len(result.sell_bars), SELL, dtype=np.int8)])
    order = np.argsort(bars, kind="stable")
    return Traded(result.equity, result.holding.copy(), result.actions.copy(), bars[order],
                  sides[order], result.fees)


def slice_prepared(prep: Prepared, start: int) -> Prepared:
    """``prep`` from bar ``start`` on (signals, prices and fills as computed on
    the whole series)."""
    return Prepared(**{f.name: (getattr(prep, f.name)[start:]
                                if isinstance(getattr(prep, f.name), np.ndarray)
                                else getattr(prep, f.name)) for f in fields(prep)})


# --- the walk-forward -----------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One nightly run and the out-of-sample window traded after it. Times
    are epoch seconds, windows ``[start, end)``; ``set_number`` counts the
    walk-forward's adoptions (None: the settings' set); ``gate`` says why no
    buys were made (``stand_aside``, ``live_gate``) or is None."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int
    train_bars: int
    bars: int
    verdict: str
    reason: str
    params: ParamSet
    sources: dict[str, str]
    set_number: int | None
    gate: str | None
    start_equity: float
    end_equity: float
    round_trips: int
    seed: int
    seconds: float

    @property
    def total_return(self) -> float:
        return self.end_equity / self.start_equity - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "train_start": _iso(self.train_start),
            "train_end": _iso(self.train_end), "test_start": _iso(self.test_start),
            "test_end": _iso(self.test_end), "train_bars": self.train_bars, "bars": self.bars,
            "verdict": self.verdict, "reason": self.reason, "set": self.set_number,
            "gate": self.gate, "params": self.params.to_dict(), "sources": self.sources,
            "total_return": self.total_return, "start_equity": money(self.start_equity),
            "end_equity": money(self.end_equity), "round_trips": self.round_trips,
            "seed": self.seed, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class WalkForward:
    """The stitched out-of-sample result (see the module docstring); the
    arrays cover the out-of-sample bars."""

    segments: list[Segment]
    ts: np.ndarray
    close: np.ndarray
    equity: np.ndarray
    default_equity: np.ndarray
    fill_ts: np.ndarray  # the bar (start time) of each fill, in time order
    fill_sides: np.ndarray  # BUY or SELL
    cash: float
    total_return: float
    buy_and_hold_return: float
    default_return: float
    max_drawdown: float
    default_max_drawdown: float
    round_trips: int
    default_round_trips: int
    fills: int
    fees: float
    default_fees: float
    exposure: float
    train_days: float
    test_days: float
    candidates: int
    seed: int
    tune: tuple[str, ...]
    duration_s: float

    @property
    def adoptions(self) -> int:
        return sum(s.verdict == ADOPT for s in self.segments)

    @property
    def stand_asides(self) -> int:
        return sum(s.verdict == STAND_ASIDE for s in self.segments)

    @property
    def keeps(self) -> int:
        return len(self.segments) - self.adoptions - self.stand_asides

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object (money as Decimal: :mod:`bot.jsonout`)."""
        return {
            "start_ts": _iso(int(self.ts[0])) if len(self.ts) else None,
            "end_ts": _iso(int(self.ts[-1])) if len(self.ts) else None,
            "bars": len(self.ts), "train_days": self.train_days, "test_days": self.test_days,
            "candidates": self.candidates, "seed": self.seed, "tune": list(self.tune),
            "total_return": self.total_return,
            "buy_and_hold_return": self.buy_and_hold_return,
            "default_return": self.default_return, "max_drawdown": self.max_drawdown,
            "default_max_drawdown": self.default_max_drawdown,
            "round_trips": self.round_trips, "default_round_trips": self.default_round_trips,
            "fills": self.fills, "fees": money(self.fees),
            "default_fees": money(self.default_fees), "exposure": self.exposure,
            "start_equity": money(self.cash),
            "final_equity": money(float(self.equity[-1]) if len(self.equity) else self.cash),
            "adoptions": self.adoptions, "keeps": self.keeps, "stand_asides": self.stand_asides,
            "duration_s": round(self.duration_s, 3),
            "segments": [s.to_dict() for s in self.segments]}


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def segment_seed(seed: int, index: int) -> int:
    """The search seed of run ``index``: reproducible, different per run."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@dataclass(frozen=True)
class _Run:
    """One nightly run's outcome, as the walk-forward keeps it."""

    verdict: str
    reason: str
    params: ParamSet
    sources: dict[str, str]
    set_number: int | None
    aside: bool
    train_bars: int
    seconds: float


def _windows(ts: np.ndarray, train_days: float, test_days: float) -> list[tuple[int, int]]:
    first = int(ts[0]) + round(train_days * DAY)
    step = round(test_days * DAY)
    out = []
    moment = first
    while moment <= int(ts[-1]):
        out.append((moment, moment + step))
        moment += step
    return out


def walk_forward(settings: Settings, candles: CandleSeries, *, train_days: float | None = None,
                 test_days: float = 1.0, candidates: int | None = None, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> WalkForward:
    """Slide the nightly job over ``candles`` (module docstring). Raises
    ``ValueError`` with one sentence when the candles cannot hold one window."""
    started = time.perf_counter()
    train_days = float(settings.optimize_lookback_days if train_days is None else train_days)
    if not train_days > 0 or not test_days > 0:
        raise ValueError("--train-days and --test-days must be positive")
    base = BacktestParams.from_settings(settings)
    prep = prepare(candles, base)  # validates the candles too
    ts = prep.ts
    windows = _windows(ts, train_days, test_days)
    if not windows:
        raise ValueError(f"the candles span {(ts[-1] - ts[0]) / DAY:.2f} days: a walk-forward "
                         f"needs more than --train-days ({train_days:g}) days")
    first_bar = int(np.searchsorted(ts, windows[0][0]))
    if first_bar < st.FIRST_DECISION:
        raise ValueError(f"the first test window starts at candle {first_bar}: the first "
                         f"decision needs {st.FIRST_DECISION} candles before it; raise "
                         "--train-days")
    runs = _nightly_runs(settings, candles, ts, windows, train_days, candidates, seed,
                         progress)
    return _stitch(settings, base, prep, windows, runs, first_bar, train_days, test_days,
                   candidates or settings.optimize_candidates, seed, started)


def _nightly_runs(settings: Settings, candles: CandleSeries, ts: np.ndarray,
                  windows: list[tuple[int, int]], train_days: float, candidates: int | None,
                  seed: int, progress: Callable[[int, int], None] | None) -> list[_Run]:
    """Each window's run and the set in force after it, in order: each run
    judges against the set the previous ones left in force."""
    default = settings_set(settings)
    in_force, sources = combine_sets(default, None, (), (), "")
    aside, number = False, None
    runs = []
    for k, (moment, _end) in enumerate(windows):
        t0 = time.perf_counter()
        lo = int(np.searchsorted(ts, moment - round(train_days * DAY)))
        hi = int(np.searchsorted(ts, moment))
        lookback = slice_candles(candles, lo, hi)
        outcome = tune(settings, lookback, in_force, standing_aside=aside,
                         candidates=candidates, seed=segment_seed(seed, k), report_train=False)
        if outcome.verdict == ADOPT:
            number = (number or 0) + 1
            in_force, sources = combine_sets(default, outcome.best, outcome.tune,
                                        settings.optimize_tune, f"optimizer #{number}")
            aside = False
        elif outcome.verdict == STAND_ASIDE:
            aside = True
        runs.append(_Run(outcome.verdict, outcome.reason, in_force, dict(sources), number,
                         aside, hi - lo, time.perf_counter() - t0))
        log.debug("walk-forward run %d/%d: %s (%s)", k + 1, len(windows), outcome.verdict,
                  outcome.reason)
        if progress is not None:
            progress(k + 1, len(windows))
    return runs


def _gate(settings: Settings, run: _Run) -> str | None:
    if run.aside:
        return STAND_ASIDE_GATE
    if settings.live and run.set_number is None and not settings.live_allow_unvalidated:
        return LIVE_GATE
    return None


def _stitch(settings: Settings, base: BacktestParams, prep: Prepared,
            windows: list[tuple[int, int]], runs: list[_Run], first_bar: int,
            train_days: float, test_days: float, candidates: int, seed: int,
            started: float) -> WalkForward:
    """Fill every window with its run's set, as one account; the defaults too."""
    offset = first_bar - st.FIRST_DECISION
    oos = slice_prepared(prep, offset)
    ts = oos.ts
    bounds = [int(np.searchsorted(ts, start)) for start, _ in windows] + [len(ts)]
    legs = [Leg(bounds[k], bounds[k + 1], run.params, _gate(settings, run) is not None)
            for k, run in enumerate(runs)]
    traded = trade_plan(oos, base, legs)
    default = settings_set(settings)
    default_result: BacktestResult = run_backtest(oos, default.weights, default.apply(base))
    span = slice(st.FIRST_DECISION, len(ts))
    equity, default_equity = traded.equity[span], default_result.equity[span]
    segments = []
    sells = traded.fill_bars[traded.fill_sides == SELL]
    for k, ((start, end), run) in enumerate(zip(windows, runs, strict=True)):
        a, b = bounds[k], bounds[k + 1]
        before = float(traded.equity[a - 1]) if a > st.FIRST_DECISION else base.cash
        after = float(traded.equity[b - 1]) if b > a else before
        segments.append(Segment(
            k, start - round(train_days * DAY), start, start, end, run.train_bars, b - a,
            run.verdict, run.reason, run.params, run.sources, run.set_number,
            _gate(settings, run), before, after, int(np.sum((sells > a) & (sells <= b))),
            segment_seed(seed, k), run.seconds))
    close = oos.close[span]
    return WalkForward(
        segments=segments, ts=ts[span], close=close, equity=equity,
        default_equity=default_equity, fill_ts=ts[traded.fill_bars],
        fill_sides=traded.fill_sides, cash=base.cash,
        total_return=float(equity[-1] / base.cash - 1.0),
        buy_and_hold_return=float(close[-1] / close[0] - 1.0),
        default_return=default_result.total_return,
        max_drawdown=bt.max_drawdown(equity),
        default_max_drawdown=bt.max_drawdown(default_equity),
        round_trips=len(sells), default_round_trips=default_result.round_trips,
        fills=len(traded.fill_bars), fees=traded.fees, default_fees=default_result.fees,
        exposure=float(traded.holding[span].mean()) if len(equity) else 0.0,
        train_days=train_days, test_days=float(test_days), candidates=candidates, seed=seed,
        tune=tuple(settings.optimize_tune), duration_s=time.perf_counter() - started)
