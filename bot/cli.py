"""Command line: ``python -m bot <command>`` (installed as ``bot``).

Exit codes: 0 success, 2 bad usage or configuration, 1 a failure. ``--json``
prints one JSON object on stdout and nothing else; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bot import clock
from bot.config import Settings, get_settings
from bot.errors import BotError, ConfigError, DatabaseUnavailable, UsageError
from bot.jsonout import dumps, with_money
from bot.logs import event, setup_logging

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _markets(settings: Settings, market: str | None, *,
             configured: bool = False) -> tuple[str, ...]:
    """The markets a command works on. With ``configured``, the market must be
    one of MARKETS: collecting, trading or watching an unconfigured market
    would be half-done work nobody asked for (backfill, backtest and optimize
    take any market, for research)."""
    names = settings.markets
    if settings.markets_top and (market is None or configured):
        from bot.storage import markets as market_store
        names = market_store.managed(settings, _resources(settings).db)
    if market is None:
        return names
    market = market.strip().upper()
    if not market.startswith("KRW-") or len(market) < 5:
        raise UsageError(f"--market {market!r}: expected a KRW market such as KRW-BTC")
    if configured and market not in names:
        which = f"the top:{settings.markets_top} selection" if settings.markets_top \
            else "MARKETS"
        raise UsageError(f"--market {market} is not in {which} ({','.join(names)}):"
                         " add it to MARKETS to collect and trade it")
    return (market,)


def _print_json(data: Any) -> None:
    sys.stdout.write(dumps(data) + "\n")
    sys.stdout.flush()


def _resources(settings: Settings):
    from bot.worker.resources import Resources
    return Resources(settings)


# --- commands -----------------------------------------------------------------


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.storage.migrate import migrate
    result = migrate(_resources(settings).db)
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
    from bot.data.collector import collect
    res = _resources(settings)
    results = collect(res.db, res.upbit,
                      _markets(settings, args.market, configured=True),
                      unit=settings.unit, max_candles=settings.backfill_max_candles)
    if args.json:
        _print_json({"markets": [
            {"market": r.market, "inserted": r.inserted, "updated": r.updated,
             "newest_ts": r.newest_ts, "requests": r.requests, "error": r.error}
            for r in results]})
    # A market Upbit does not list is a configuration mistake, not a failure to retry.
    unknown = [r.market for r in results if r.unknown_market]
    for market in unknown:
        sys.stderr.write(f"bot collect: market {market} does not exist on Upbit"
                         f" (check {'--market' if args.market else 'MARKETS'})\n")
    if unknown:
        return EXIT_USAGE
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from bot.data.collector import Progress, backfill
    from bot.errors import UnknownMarket
    if not args.days > 0:
        raise UsageError("--days must be a positive number")
    res = _resources(settings)
    db, client = res.db, res.upbit
    out = []
    for market in _markets(settings, args.market):
        progress = None if args.quiet else Progress(f"backfill {market}")
        try:
            r = backfill(db, client, market, days=args.days, unit=settings.unit,
                         progress=progress)
        except UnknownMarket as exc:
            raise UsageError(f"{exc} (check {'--market' if args.market else 'MARKETS'})"
                             ) from None
        out.append({"market": market, "inserted": r.inserted, "updated": r.updated,
                    "requests": r.requests, "oldest_ts": r.oldest_ts,
                    "seconds": round(r.seconds, 3)})
    if args.json:
        _print_json({"markets": out})
    return EXIT_OK


def cmd_trade(settings: Settings, args: argparse.Namespace) -> int:
    from bot.trading.trader import trade_market
    ctx = _resources(settings).trade_context()
    out = []
    for market in _markets(settings, args.market, configured=True):
        o = trade_market(ctx, market)
        if o.status == "already_decided":
            # The daemon (or an earlier `bot trade`) decided this candle: say what.
            event(log, "decision.exists", market=market, candle=o.candle_ts, action=o.action,
                  trigger=o.trigger,
                  score=round(o.score or 0.0, 4), order=o.identifier or "none",
                  state=o.order_state or "-", why=o.reason)
        out.append({"market": market, "status": o.status, "candle_ts": o.candle_ts,
                    "action": o.action, "trigger": o.trigger, "score": o.score,
                    "signals": o.signals,
                    "reason": o.reason, "weights_version": o.weights_version,
                    "order": None if o.order is None else {
                        "side": o.order.side, "price": str(o.order.price),
                        "volume": str(o.order.volume), "identifier": o.identifier,
                        "state": o.order_state}})
    if args.json:
        _print_json({"markets": out})
    return EXIT_OK


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from bot.trading.lifecycle import reconcile
    results = reconcile(_resources(settings).trade_context(),
                        _markets(settings, args.market, configured=True))
    if args.json:
        _print_json({"markets": [r.__dict__ for r in results]})
    return EXIT_OK if all(r.errors == 0 for r in results) else EXIT_FAILURE


def _series(settings: Settings, args: argparse.Namespace) -> list[tuple[str | None, Any]]:
    """(market, candles) pairs from --csv or from the database."""
    from bot.data.csvdata import load_csv
    if args.csv:
        if args.market or args.days:
            raise UsageError("--csv replaces --market/--days: give one or the other")
        try:
            return [(None, load_csv(args.csv))]
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    from bot.storage import candles as candle_store
    db = _resources(settings).db
    days = settings.optimize_lookback_days if args.days is None else args.days
    if not days > 0:
        raise UsageError("--days must be a positive number")
    now = clock.now()
    since, until = now - timedelta(days=days), clock.floor_to_unit(now, settings.unit)
    return [(m, candle_store.load_arrays(db, m, settings.timeframe, since=since, until=until))
            for m in _markets(settings, args.market)]


def _one_or_many(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"markets": items}


def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.config import parse_weights
    from bot.optimize.backtest import BacktestParams, run_backtest
    from bot.trading.in_force import current_weights
    from bot.trading.strategies import normalise_weights
    try:
        weights = parse_weights(args.weights) if args.weights else None
        params = replace(BacktestParams.from_settings(settings),
                         **{k: float(v) for k, v in (("threshold", args.threshold),
                                                     ("aggressiveness", args.aggressiveness))
                            if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from bot.optimize.plot import plot_or_explain, plot_paths
    series = _series(settings, args)
    try:  # a bad --plot name stops the command before any work
        plots = plot_paths(args.plot, [m for m, _ in series]) if args.plot else []
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = []
    plot_problem = None  # why no plot was written; told after the results
    for k, (market, candles) in enumerate(series):
        use = weights
        version = None
        if use is None and market is not None:
            use, version = current_weights(settings, _resources(settings).db, market)
        if len(candles) == 0:
            raise UsageError(f"no candles stored for {market}: run `bot backfill` first")
        result = run_backtest(candles, use, params)
        data = {"market": market, **_metrics(result.to_dict()), "weights": normalise_weights(use),
                "weights_version": version, "threshold": params.threshold,
                "aggressiveness": params.aggressiveness}
        out.append(data)
        if plots and plot_problem is None:
            plot_problem = plot_or_explain(candles, result, plots[k], title=market or args.csv,
                                           info=data)
            if plot_problem is None:
                data["plot"] = str(plots[k])
        event(log, "backtest", market=market or args.csv, bars=result.bars,
              total_return=round(result.total_return, 6),
              buy_and_hold=round(result.buy_and_hold_return, 6),
              max_drawdown=round(result.max_drawdown, 6), sharpe=round(result.sharpe, 3),
              round_trips=result.round_trips, fees=round(result.fees, 2))
    if args.json:
        _print_json(_one_or_many(out))
    if plot_problem:  # the results above are kept; the plot is the usage problem
        sys.stderr.write(f"bot backtest: {plot_problem}\n")
        return EXIT_USAGE
    return EXIT_OK


def cmd_optimize(settings: Settings, args: argparse.Namespace) -> int:
    from bot.optimize.job import optimize_market
    from bot.optimize.search import tune
    if args.candidates is not None and args.candidates < 1:
        raise UsageError("--candidates must be at least 1")
    if args.days is not None and not args.days > 0:
        raise UsageError("--days must be a positive number")
    out = []
    if args.csv:
        (_, candles), = _series(settings, args)
        outcome = tune(settings, candles, candidates=args.candidates, seed=args.seed or 0)
        out.append(_optimize_json(None, outcome, None, None))
    else:
        db = _resources(settings).db
        for market in _markets(settings, args.market):
            run = optimize_market(settings, db, market, days=args.days,
                                  candidates=args.candidates, seed=args.seed,
                                  save=not args.no_save)
            out.append(_optimize_json(market, run.outcome, run.run_id, run.weights_version))
    if args.json:
        _print_json(_one_or_many(out))
    return EXIT_OK


def cmd_walkforward(settings: Settings, args: argparse.Namespace) -> int:
    from bot.optimize.walkforward import walk_forward
    train = settings.optimize_lookback_days if args.train_days is None else args.train_days
    for name, value in (("--train-days", train), ("--test-days", args.test_days),
                        ("--days", args.days)):
        if value is not None and not value > 0:
            raise UsageError(f"{name} must be a positive number")
    if args.candidates is not None and args.candidates < 1:
        raise UsageError("--candidates must be at least 1")
    if args.days is None and not args.csv:
        args.days = train + 30  # a month out of sample after the first training window
    from bot.optimize.plot import plot_paths, walkforward_or_explain
    series = _series(settings, args)
    try:  # a bad --plot name stops the command before any work
        plots = plot_paths(args.plot, [m for m, _ in series]) if args.plot else []
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out, plot_problem = [], None
    for k, (market, candles) in enumerate(series):
        name = market or args.csv
        if len(candles) == 0:
            raise UsageError(f"no candles stored for {market}: run `bot backfill` first")
        progress = None
        if not args.quiet:
            from bot.data.collector import Progress
            bar = Progress(f"walkforward {name}")

            def progress(done: int, total: int, bar: Any = bar) -> None:
                bar.update(done / total, f"{done}/{total} runs")
        try:
            wf = walk_forward(settings, candles, train_days=train, test_days=args.test_days,
                              candidates=args.candidates, seed=args.seed, progress=progress)
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
        data = {"market": market, **wf.to_dict()}
        if plots and plot_problem is None:
            plot_problem = walkforward_or_explain(wf, plots[k], title=name)
            if plot_problem is None:
                data["plot"] = str(plots[k])
        out.append(data)
        event(log, "walkforward", market=name, segments=len(wf.segments),
              total_return=round(wf.total_return, 6),
              default_return=round(wf.default_return, 6),
              buy_and_hold=round(wf.buy_and_hold_return, 6),
              max_drawdown=round(wf.max_drawdown, 6), round_trips=wf.round_trips,
              fees=round(wf.fees, 2), adoptions=wf.adoptions, keeps=wf.keeps,
              stand_asides=wf.stand_asides, seconds=round(wf.duration_s, 1))
    if args.json:
        _print_json(_one_or_many(out))
    if plot_problem:
        sys.stderr.write(f"bot walkforward: {plot_problem}\n")
        return EXIT_USAGE
    return EXIT_OK


def _metrics(data: dict[str, Any] | None) -> dict[str, Any] | None:
    from bot.optimize.backtest import BacktestResult
    return None if data is None else with_money(data, BacktestResult.MONEY)


def _optimize_json(market: str | None, outcome, run_id: int | None,
                   version: int | None) -> dict[str, Any]:
    headline = _metrics(outcome.holdout_new) or {}
    return {"market": market, **headline, "verdict": outcome.verdict,
            "params": outcome.params, "current_params": outcome.current_params,
            "tune": list(outcome.tune), "weights": outcome.weights,
            "current_weights": outcome.current_weights, "adopted": outcome.adopted,
            "reason": outcome.reason,
            "train": {"new": _metrics(outcome.train_new),
                      "current": _metrics(outcome.train_current),
                      "objective_new": outcome.objective_train_new,
                      "objective_current": outcome.objective_train_current},
            "holdout": {"new": _metrics(outcome.holdout_new),
                        "current": _metrics(outcome.holdout_current),
                        "objective_new": outcome.objective_holdout_new,
                        "objective_current": outcome.objective_holdout_current,
                        "t_new": outcome.t_holdout_new,
                        "t_current": outcome.t_holdout_current},
            "candidates": outcome.candidates, "duration_s": round(outcome.duration_s, 3),
            "seed": outcome.seed, "run_id": run_id, "weights_version": version}


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from bot.worker.runner import run
    folder = Path(args.schedule_file).absolute().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        # Beat would crash-loop on it until bot run gives up: say so at once.
        raise UsageError(f"--schedule-file {args.schedule_file}: {folder} is not a writable"
                         " folder")
    event(log, "run.starting", **settings.public_summary())
    return run(schedule_file=args.schedule_file, loglevel=settings.log_level,
               telegram=bool(settings.telegram_bot_token),
               metrics=settings.metrics_port > 0)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from bot.report import status
    markets = _markets(settings, args.market, configured=True) if args.market else None
    if args.watch is not None:
        from bot.report.watch import watch
        if args.json:
            raise UsageError("--watch draws the screen: it does not go with --json")
        if not args.watch > 0:
            raise UsageError("--watch takes a positive number of seconds")
        return watch(settings, sys.stdout, args.watch, markets=markets)
    return status.run(settings, sys.stdout, as_json=args.json, markets=markets)


def cmd_markets(settings: Settings, args: argparse.Namespace) -> int:
    """Read what Upbit says about the markets now (as the hourly task does) and
    show the traded ones: selected or held, warnings, tick, 24-hour value."""
    from bot.data.markets import refresh
    from bot.storage import markets as market_store
    res = _resources(settings)
    done = refresh(res.db, res.upbit, settings, clock.now())
    rows = market_store.all_rows(res.db)
    traded = set(market_store.traded(settings, res.db))
    shown = []
    for name in market_store.managed(settings, res.db):
        row = rows.get(name)
        shown.append({
            "market": name, "traded": name in traded, "listed": bool(row and row.listed),
            "warning": bool(row and row.warning), "cautions": list(row.cautions) if row else [],
            "tick": None if row is None else row.tick_size,
            "traded_value_24h": None if row is None else row.traded_value_24h})
    if args.json:
        _print_json({"listed": done.listed, "joined": list(done.joined),
                     "changes": [c.market for c in done.changes], "markets": shown})
        return EXIT_OK
    sys.stdout.write(f"Upbit lists {done.listed} KRW markets"
                     + (f"; top:{settings.markets_top} selects {len(traded)}"
                        if settings.markets_top else "") + "\n")
    for m in shown:
        state = ("DELISTED" if not m["listed"] else "WARNING" if m["warning"]
                 else "caution " + ",".join(m["cautions"]) if m["cautions"] else "ok")
        value = "-" if m["traded_value_24h"] is None else f"{m['traded_value_24h']:,.0f} KRW"
        tick = "-" if m["tick"] is None else f"{m['tick']:f}"
        sys.stdout.write(f"{m['market']:<12} {'traded' if m['traded'] else 'held  '}  "
                         f"{state:<10} tick {tick:<8} 24h {value}\n")
    return EXIT_OK


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    from bot.report import status
    return status.health(settings, args.role, sys.stdout)


def cmd_metrics(settings: Settings, args: argparse.Namespace) -> int:
    """Serve Prometheus metrics until SIGTERM."""
    from bot.report.exporter import serve
    if not settings.metrics_port:
        raise UsageError("METRICS_PORT=0 turns the exporter off: set a port to run it")
    return serve(settings)


def _who() -> str:
    import getpass
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def _pause_market(args: argparse.Namespace) -> str | None:
    from bot.report.commands import market_name
    return None if args.market is None else market_name(args.market)


def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    """No new buys in one market (or all); stored, so the trader sees it."""
    from bot.report.commands import set_pause
    market = _pause_market(args)
    text = set_pause(_resources(settings).db, market, _who(), clock.now())
    again = "bot resume" + ("" if market is None else f" --market {market}")
    sys.stdout.write(f"{text} `{again}` to buy again.\n")
    return EXIT_OK


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    from bot.report.commands import end_pause
    sys.stdout.write(end_pause(_resources(settings).db, _pause_market(args), _who()) + "\n")
    return EXIT_OK


def cmd_telegram(settings: Settings, args: argparse.Namespace) -> int:
    """Answer commands in TELEGRAM_CHAT_ID until SIGTERM."""
    from bot.errors import TelegramError
    from bot.exchange.factory import make_exchange
    from bot.report import telegram
    from bot.report.commands import Commands
    from bot.worker.runtime import runtime
    if not settings.telegram_bot_token:
        # compose starts the service anyway, and would restart one that exits
        return telegram.idle()
    rt = runtime(settings)
    commands = Commands(settings, rt.db, rt.trade_context(),
                        make_exchange(settings, rt.db, view=True),
                        heartbeats=lambda: _heartbeats(rt),
                        lock=lambda market: rt.market_lock("orders", market, wait=10.0))
    poller = telegram.Poller(settings, rt.db, telegram.TelegramApi(
        settings.telegram_bot_token, base=args.api_base), commands.handle)
    try:
        return telegram.serve(poller)
    except TelegramError as exc:
        # A wrong token or a second poller: restarting cannot fix it.
        sys.stderr.write(f"bot telegram: {exc}: check TELEGRAM_BOT_TOKEN (and that no other"
                         " poller or webhook uses this bot)\n")
        return EXIT_USAGE


def _heartbeats(rt: Any) -> dict[str, float] | None:
    import redis

    from bot.report.status import read_heartbeats
    try:
        return read_heartbeats(rt.redis)
    except redis.RedisError:
        return None


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


HEALTH_ROLES = ("collector", "trader", "optimizer", "beat")
DESCRIPTION = ("The Upbit trading daemon's command line: collect candles, trade (paper unless "
               "TRADING_MODE=live), backtest and optimize, watch. Settings come from the "
               "environment and ./.env (see .env.example).")
EPILOG = ("Exit codes: 0 success, 1 a failure, 2 bad usage or configuration. With --json a "
          "command prints one JSON object on stdout; logs go to stderr. "
          "`bot COMMAND --help` describes one command.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the closes with the fills, equity against buy and hold, the"
                   " drawdown and the numbers into FILE (.png, .svg or .pdf; a missing folder"
                   " is created; needs matplotlib). With several markets one file each, the"
                   " market before the suffix: bt.png -> bt-KRW-BTC.png, bt-KRW-ETH.png")
    p = _add(sub, "optimize", cmd_optimize, "search the parameter sets (OPTIMIZE_TUNE): adopt"
             " one if better out of sample, stand aside if the set in force is losing")
    _data_options(p)
    p.add_argument("--candidates", type=int, help="parameter sets to try (OPTIMIZE_CANDIDATES)")
    p.add_argument("--seed", type=int, help="random seed (default: one per market and day)")
    p.add_argument("--no-save", action="store_true", help="report only: store nothing")
    p = _add(sub, "walkforward", cmd_walkforward, "slide the nightly optimizer over history:"
             " optimize on the trailing --train-days, trade the next --test-days out of sample"
             " with its verdict (adopt, keep, stand aside), stitch the out-of-sample equity")
    p.add_argument("--days", type=float, help="days of stored candles (default: --train-days"
                   " + 30)")
    p.add_argument("--csv", metavar="FILE", help="candles from a CSV "
                   "(ts,open,high,low,close,volume) instead of the database")
    p.add_argument("--train-days", type=float, help="days each run optimizes on "
                   "(OPTIMIZE_LOOKBACK_DAYS; split by OPTIMIZE_HOLDOUT as the nightly job)")
    p.add_argument("--test-days", type=float, default=1.0,
                   help="days traded out of sample after each run (default 1)")
    p.add_argument("--candidates", type=int, help="parameter sets per run (OPTIMIZE_CANDIDATES)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the stitched equity against buy and hold and the defaults,"
                   " each window's verdict marked (.png, .svg or .pdf; needs matplotlib)")
    p = _add(sub, "status", cmd_status, "one screen: candles, decisions, positions, PnL,"
             " workers; exit 1 when something is wrong")
    p.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SECONDS",
                   help="redraw the screen in place every SECONDS (default 2) until Ctrl-C")
    _add(sub, "markets", cmd_markets, "read Upbit's market list now: warnings, ticks, the"
         " top:N selection", market=False)
    p = _add(sub, "health", cmd_health, "exit 0 when ROLE's heartbeat is fresh, else 1",
             market=False, json_flag=False)
    p.add_argument("role", choices=HEALTH_ROLES, help="one of " + ", ".join(HEALTH_ROLES))
    p = _add(sub, "run", cmd_run, "run Beat and the three workers as child processes",
             market=False, json_flag=False)
    p.add_argument("--schedule-file", default="celerybeat-schedule",
                   help="where Beat keeps its state (default: ./celerybeat-schedule)")
    p = _add(sub, "pause", cmd_pause, "no new buys in one market (--market) or all; exits"
             " and sells go on; stored until `bot resume`", json_flag=False)
    p = _add(sub, "resume", cmd_resume, "end the pause of one market (--market) or every"
             " pause", json_flag=False)
    p = _add(sub, "telegram", cmd_telegram, "answer commands in TELEGRAM_CHAT_ID (/status,"
             " /pause, /sell, ...) until SIGTERM", market=False, json_flag=False)
    p.add_argument("--api-base", default="https://api.telegram.org", help=argparse.SUPPRESS)
    _add(sub, "metrics", cmd_metrics, "serve Prometheus metrics on http://METRICS_HOST:"
         "METRICS_PORT/metrics until SIGTERM", market=False, json_flag=False)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("upbit-bot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=float, help="days of stored candles "
                        "(default: OPTIMIZE_LOOKBACK_DAYS)")
    parser.add_argument("--csv", metavar="FILE", help="candles from a CSV "
                        "(ts,open,high,low,close,volume) instead of the database")


def _env_hint(exc: BotError, settings: Settings) -> str | None:
    """Where the settings came from, when a database that cannot be reached
    is the compose default: the usual cause is a ``bot`` run outside the
    project folder, which found no ``.env``."""
    from bot.config import SETTINGS, env_file_path
    if not isinstance(exc, DatabaseUnavailable):
        return None
    default = next(s.default for s in SETTINGS if s.name == "DATABASE_URL")
    if settings.database_url != default:
        return None
    path = env_file_path()
    found = "read" if path.is_file() else "not found"
    return (f"DATABASE_URL is the docker compose default; {path} was {found}: run bot from "
            "the project folder, set ENV_FILE=/path/to/.env, or set DATABASE_URL")


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
        fields = {"hint": hint} if (hint := _env_hint(exc, settings)) else {}
        event(log, "command.failed", level=logging.ERROR, command=args.command,
              error=type(exc).__name__, detail=str(exc), **fields)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
