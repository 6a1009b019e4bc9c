"""Stand-ins for Beat and the workers, for the tests of ``bot run``'s
supervisor (bot/worker/runner.py) that start and stop it many times: real
processes, real signals, no Celery.

``python -m tests.worker.fake_children child NAME [--ignore-term] [--die S CODE] [--once FILE]
[--go FILE]`` prints ``ready NAME PID`` and sleeps; SIGTERM makes it print
``stopped NAME`` and exit 0 (``--ignore-term``: it ignores SIGTERM); ``--die``
makes it exit with CODE after S seconds (counted once FILE of ``--go``
exists; with ``--once FILE``: only while FILE is absent, which that first run
creates).

``python -m tests.worker.fake_children supervise [options] SPEC...`` runs
:func:`bot.worker.runner.run` over such children (SPEC: ``NAME`` or
``NAME:option,...`` with ``ignore-term``, ``die=S/CODE``, ``once=FILE``,
``go=FILE``). With ``--worst-moment SIGNAL``, a SIGUSR1 makes the supervisor's
main thread raise SIGNAL right after it takes any lock, from then on: a
signal arriving at the worst moment."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path


def child(args: argparse.Namespace) -> int:
    def on_term(_signum, _frame):
        print(f"stopped {args.name}", flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else on_term)
    print(f"ready {args.name} {os.getpid()}", flush=True)
    if args.die and not (args.once and Path(args.once).exists()):
        if args.once:
            Path(args.once).touch()
        while args.go and not Path(args.go).exists():
            time.sleep(0.05)
        time.sleep(float(args.die[0]))
        return int(args.die[1])
    while True:
        time.sleep(60)


def _spec(text: str):
    from bot.worker.runner import Child
    name, _, options = text.partition(":")
    argv = [sys.executable, "-m", "tests.worker.fake_children", "child", name]
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        values = value.split("/") if key == "die" else [value] if value else []
        argv += [f"--{key}", *values]
    return Child(name, tuple(argv))


def _arm_worst_moment(signum: int) -> None:
    """From now on the main thread raises ``signum`` each time it has just
    taken a lock: its handler runs while that lock is held."""
    main = threading.main_thread()

    def hook(_frame, what, arg):
        if (what == "c_return" and getattr(arg, "__name__", "") in ("acquire", "__enter__")
                and threading.current_thread() is main):
            signal.raise_signal(signum)

    sys.setprofile(hook)


def supervise(args: argparse.Namespace) -> int:
    from bot.logs import setup_logging
    from bot.worker.runner import RestartPolicy, run
    setup_logging("INFO", role="cli.run")
    specs = [_spec(text) for text in args.specs]
    policy = RestartPolicy(first_delay=args.first_delay, max_delay=args.first_delay * 4,
                           window=args.window, max_deaths=args.max_deaths)
    if args.worst_moment:
        signum = signal.Signals[args.worst_moment]
        # What run() restores when it returns, while the hook still raises.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        # The test arms it once the children are up: then run() is in its loop.
        signal.signal(signal.SIGUSR1, lambda *_: _arm_worst_moment(signum))
    return run(specs=specs, policy=policy, grace=args.grace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.worker.fake_children")
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("child")
    c.add_argument("name")
    c.add_argument("--ignore-term", action="store_true")
    c.add_argument("--die", nargs=2, metavar=("SECONDS", "CODE"))
    c.add_argument("--once", metavar="FILE")
    c.add_argument("--go", metavar="FILE")
    s = sub.add_parser("supervise")
    s.add_argument("specs", nargs="+")
    s.add_argument("--grace", type=float, default=5.0)
    s.add_argument("--first-delay", type=float, default=0.05)
    s.add_argument("--window", type=float, default=300.0)
    s.add_argument("--max-deaths", type=int, default=5)
    s.add_argument("--worst-moment", metavar="SIGNAL")
    args = parser.parse_args(argv)
    return child(args) if args.mode == "child" else supervise(args)


if __name__ == "__main__":
    raise SystemExit(main())
