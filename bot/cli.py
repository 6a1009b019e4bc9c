"""Command line: ``python -m bot <command>`` (installed as ``bot``).

Exit codes: 0 success, 2 bad usage or configuration, 1 a failure. ``--json``
prints one JSON object on stdout and nothing else; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bot import clock
from bot.config import ConfigError, Settings, get_settings
from bot.errors import BotError
from bot.logs import event, setup_logging

log = logging.getLogger("bot.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line usage: exit code 2."""


def _markets(settings: Settings, market: str | None) -> tuple[str, ...]:
    if market is None:
        return settings.markets
    market = market.strip().upper()
    if not market.startswith("KRW-") or len(market) < 5:
        raise UsageError(f"--market {market!r}: expected a KRW market such as KRW-BTC")
    return (market,)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _database(settings: Settings):
    from bot.storage import Database
    return Database(settings.database_url)


def _upbit(settings: Settings):
    from bot.upbit import UpbitClient
    return UpbitClient.from_settings(settings)


# --- commands -----------------------------------------------------------------


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.storage.migrate import migrate
    result = migrate(_database(settings))
    data = {"applied": list(result.applied), "version": result.current,
            "timescale": result.timescale}
    if args.json:
        _print_json(data)
    else:
        event(log, "db.ready", version=result.current,
              applied=",".join(map(str, result.applied)) or "none",
              backend="timescaledb" if result.timescale else "postgresql")
    return EXIT_OK


def cmd_collect(settings: Settings, args: argparse.Namespace) -> int:
    from bot.collector import collect
    results = collect(_database(settings), _upbit(settings), _markets(settings, args.market),
                      unit=settings.unit, max_candles=settings.backfill_max_candles)
    if args.json:
        _print_json({"markets": [
            {"market": r.market, "inserted": r.inserted, "updated": r.updated,
             "newest_ts": r.newest_ts, "requests": r.requests, "error": r.error}
            for r in results]})
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from bot.collector import Progress, backfill
    if not args.days > 0:
        raise UsageError("--days must be a positive number")
    db, client = _database(settings), _upbit(settings)
    out = []
    for market in _markets(settings, args.market):
        progress = None if args.quiet else Progress(f"backfill {market}")
        r = backfill(db, client, market, days=args.days, unit=settings.unit,
                     progress=progress)
        out.append({"market": market, "inserted": r.inserted, "updated": r.updated,
                    "requests": r.requests, "oldest_ts": r.oldest_ts,
                    "seconds": round(r.seconds, 3)})
    if args.json:
        _print_json({"markets": out})
    return EXIT_OK


def _trade_context(settings: Settings):
    from bot.exchange import make_exchange
    from bot.lifecycle import TradeContext
    from bot.notify import notifier
    db = _database(settings)
    return TradeContext(settings, db, make_exchange(settings, db), notify=notifier(settings))


def cmd_trade(settings: Settings, args: argparse.Namespace) -> int:
    from bot.trader import trade_market
    ctx = _trade_context(settings)
    out = []
    for market in _markets(settings, args.market):
        o = trade_market(ctx, market)
        out.append({"market": market, "status": o.status, "candle_ts": o.candle_ts,
                    "action": o.action, "score": o.score, "signals": o.signals,
                    "reason": o.reason, "weights_version": o.weights_version,
                    "order": None if o.order is None else {
                        "side": o.order.side, "price": str(o.order.price),
                        "volume": str(o.order.volume), "identifier": o.identifier,
                        "state": o.order_state}})
    if args.json:
        _print_json({"markets": out})
    return EXIT_OK


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from bot.lifecycle import reconcile
    results = reconcile(_trade_context(settings), _markets(settings, args.market))
    if args.json:
        _print_json({"markets": [r.__dict__ for r in results]})
    return EXIT_OK if all(r.errors == 0 for r in results) else EXIT_FAILURE


def _series(settings: Settings, args: argparse.Namespace) -> list[tuple[str | None, Any]]:
    """(market, candles) pairs from --csv or from the database."""
    from bot.backtest import load_csv
    if args.csv:
        if args.market or args.days:
            raise UsageError("--csv replaces --market/--days: give one or the other")
        try:
            return [(None, load_csv(args.csv))]
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    from bot.storage import candles as candle_store
    db = _database(settings)
    days = args.days or settings.optimize_lookback_days
    if not days > 0:
        raise UsageError("--days must be a positive number")
    now = clock.now()
    since, until = now - timedelta(days=days), clock.floor_to_unit(now, settings.unit)
    return [(m, candle_store.load_arrays(db, m, settings.timeframe, since=since, until=until))
            for m in _markets(settings, args.market)]


def _one_or_many(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"markets": items}


def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.backtest import BacktestParams, run_backtest
    from bot.config import parse_weights
    from bot.optimizer import current_weights
    from bot.strategies import normalise_weights
    try:
        weights = parse_weights(args.weights) if args.weights else None
        params = replace(BacktestParams.from_settings(settings),
                         **{k: float(v) for k, v in (("threshold", args.threshold),
                                                     ("aggressiveness", args.aggressiveness))
                            if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = []
    for market, candles in _series(settings, args):
        use = weights
        version = None
        if use is None and market is not None:
            use, version = current_weights(settings, _database(settings), market)
        if len(candles) == 0:
            raise UsageError(f"no candles stored for {market}: run `bot backfill` first")
        result = run_backtest(candles, use, params)
        data = {"market": market, **result.to_dict(), "weights": normalise_weights(use),
                "weights_version": version, "threshold": params.threshold,
                "aggressiveness": params.aggressiveness}
        out.append(data)
        if args.plot:
            from bot.plot import plot_backtest
            path = args.plot if len(out) == 1 else f"{market}-{args.plot}"
            plot_backtest(candles, result, path, title=market or args.csv)
            data["plot"] = str(path)
        event(log, "backtest", market=market or args.csv, bars=result.bars,
              total_return=round(result.total_return, 6),
              buy_and_hold=round(result.buy_and_hold_return, 6),
              max_drawdown=round(result.max_drawdown, 6), sharpe=round(result.sharpe, 3),
              round_trips=result.round_trips, fees=round(result.fees, 2))
    if args.json:
        _print_json(_one_or_many(out))
    return EXIT_OK


def cmd_optimize(settings: Settings, args: argparse.Namespace) -> int:
    from bot.optimizer import optimize_market, search
    from bot.strategies import normalise_weights
    if args.candidates is not None and args.candidates < 1:
        raise UsageError("--candidates must be at least 1")
    out = []
    if args.csv:
        (_, candles), = _series(settings, args)
        outcome = search(settings, candles, normalise_weights(dict(settings.weights)),
                         candidates=args.candidates, seed=args.seed or 0)
        out.append(_optimize_json(None, outcome, None, None))
    else:
        db = _database(settings)
        for market in _markets(settings, args.market):
            run = optimize_market(settings, db, market, days=args.days,
                                  candidates=args.candidates, seed=args.seed,
                                  save=not args.no_save)
            out.append(_optimize_json(market, run.outcome, run.run_id, run.weights_version))
    if args.json:
        _print_json(_one_or_many(out))
    return EXIT_OK


def _optimize_json(market: str | None, outcome, run_id: int | None,
                   version: int | None) -> dict[str, Any]:
    headline = outcome.holdout_new or {}
    return {"market": market, **headline, "weights": outcome.weights,
            "current_weights": outcome.current_weights, "adopted": outcome.adopted,
            "reason": outcome.reason,
            "train": {"new": outcome.train_new, "current": outcome.train_current,
                      "objective_new": outcome.objective_train_new,
                      "objective_current": outcome.objective_train_current},
            "holdout": {"new": outcome.holdout_new, "current": outcome.holdout_current,
                        "objective_new": outcome.objective_holdout_new,
                        "objective_current": outcome.objective_holdout_current},
            "candidates": outcome.candidates, "duration_s": round(outcome.duration_s, 3),
            "seed": outcome.seed, "run_id": run_id, "weights_version": version}


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runner import run
    event(log, "run.starting", **settings.public_summary())
    return run(schedule_file=args.schedule_file, loglevel=settings.log_level)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from bot import status
    markets = _markets(settings, args.market) if args.market else None
    return status.run(settings, sys.stdout, as_json=args.json, markets=markets)


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    from bot import status
    return status.health(settings, args.role, sys.stdout)


# --- parser -------------------------------------------------------------------

Command = Callable[[Settings, argparse.Namespace], int]


def _add(sub: Any, name: str, func: Command, help_text: str, *, market: bool = True,
         json_flag: bool = True) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    if market:
        parser.add_argument("--market", help="one market (default: every market in MARKETS)")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    _add(sub, "migrate", cmd_migrate, "apply pending database migrations", market=False)
    _add(sub, "collect", cmd_collect, "run one collect pass")
    p = _add(sub, "backfill", cmd_backfill, "fill candle history for the last N days")
    p.add_argument("--days", type=float, required=True, help="how many days back")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add(sub, "trade", cmd_trade, "run one decision pass (paper unless TRADING_MODE=live)")
    _add(sub, "reconcile", cmd_reconcile, "run one reconcile pass over open orders")
    p = _add(sub, "backtest", cmd_backtest, "backtest the weights on stored candles or a CSV")
    _data_options(p)
    p.add_argument("--weights", help="e.g. trend=1,momentum=2 (default: the weights in use)")
    p.add_argument("--threshold", type=float, help="override THRESHOLD")
    p.add_argument("--aggressiveness", type=float, help="override AGGRESSIVENESS")
    p.add_argument("--plot", metavar="FILE.png", help="draw equity, fills and drawdown")
    p = _add(sub, "optimize", cmd_optimize, "search the weights and adopt them if better")
    _data_options(p)
    p.add_argument("--candidates", type=int, help="weight vectors to try (OPTIMIZE_CANDIDATES)")
    p.add_argument("--seed", type=int, help="random seed (default: one per market and day)")
    p.add_argument("--no-save", action="store_true", help="report only: store nothing")
    _add(sub, "status", cmd_status, "one screen: candles, decisions, positions, PnL, workers;"
         " exit 1 when something is wrong")
    p = _add(sub, "health", cmd_health, "exit 0 when ROLE's heartbeat is fresh, else 1",
             market=False, json_flag=False)
    p.add_argument("role", help="collector, trader, optimizer or beat")
    p = _add(sub, "run", cmd_run, "run Beat and the three workers as child processes",
             market=False, json_flag=False)
    p.add_argument("--schedule-file", default="celerybeat-schedule",
                   help="where Beat keeps its state (default: ./celerybeat-schedule)")
    return parser


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=float, help="days of stored candles "
                        "(default: OPTIMIZE_LOOKBACK_DAYS)")
    parser.add_argument("--csv", metavar="FILE", help="candles from a CSV "
                        "(ts,open,high,low,close,volume) instead of the database")


def _configure_clock(settings: Settings) -> None:
    clock.configure(float(settings.bot_clock_speedup), float(settings.bot_clock_epoch))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        settings = get_settings()
    except ConfigError as exc:
        sys.stderr.write(f"bot: {exc}\n")
        return EXIT_USAGE
    setup_logging(settings.log_level, settings.log_format, role=f"cli.{args.command}",
                  secrets=(settings.upbit_access_key, settings.upbit_secret_key))
    _configure_clock(settings)
    try:
        return args.func(settings, args)
    except UsageError as exc:
        sys.stderr.write(f"bot {args.command}: {exc}\n")
        return EXIT_USAGE
    except BotError as exc:
        event(log, "command.failed", level=logging.ERROR, command=args.command,
              error=type(exc).__name__, detail=str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
