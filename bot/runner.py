"""``bot run``: Beat and the three workers as child processes, for a machine
without Docker.

Each child's output is copied to ours with its name in front. Ctrl-C or
SIGTERM stops every child (SIGTERM, then SIGKILL after a grace period); if a
child dies on its own, the others are stopped too and ``bot run`` exits 1, so
that a supervisor (systemd, ...) can restart the whole set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Child:
    name: str
    argv: tuple[str, ...]


def children(python: str = sys.executable, schedule_file: str = "celerybeat-schedule",
             loglevel: str = "INFO") -> list[Child]:
    celery = (python, "-m", "celery")
    worker = ("worker", "--without-gossip", "--without-mingle", "-l", loglevel)
    return [
        Child("beat", (*celery, "-A", "bot.scheduler", "beat", "-s", schedule_file, "-l",
                       loglevel)),
        Child("collector", (*celery, "-A", "bot.tasks", *worker, "-Q", "collector_queue",
                            "-n", "collector@%h", "-c", "1")),
        Child("trader", (*celery, "-A", "bot.tasks", *worker, "-Q", "trader_queue",
                         "-n", "trader@%h", "-c", "2")),
        Child("optimizer", (*celery, "-A", "bot.tasks", *worker, "-Q", "optimizer_queue",
                            "-n", "optimizer@%h", "-c", "1")),
    ]


def _pump(name: str, stream: TextIO, out: TextIO, lock: threading.Lock) -> None:
    width = 9
    for line in iter(stream.readline, ""):
        with lock:
            out.write(f"{name:<{width}} | {line}")
            out.flush()
    stream.close()


class Supervisor:
    def __init__(self, specs: Sequence[Child], env: Mapping[str, str] | None = None,
                 out: TextIO | None = None, grace: float = 15.0):
        self.specs = list(specs)
        self.env = dict(env) if env is not None else None
        self.out = out or sys.stdout
        self.grace = grace
        self.procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        for spec in self.specs:
            proc = subprocess.Popen(spec.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1, env=self.env,
                                    start_new_session=True)
            self.procs[spec.name] = proc
            threading.Thread(target=_pump, args=(spec.name, proc.stdout, self.out, self._lock),
                             daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                # Celery's warm shutdown: finish the task at hand, then exit.
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc in self.procs.values():
            left = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def wait(self) -> int:
        """Block until a stop is requested (0) or a child dies (1)."""
        while not self._stopping.is_set():
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is not None:
                    with self._lock:
                        self.out.write(f"{'run':<9} | {name} exited with code {code};"
                                       " stopping the others\n")
                        self.out.flush()
                    return 1
            self._stopping.wait(0.5)
        return 0


def run(env: Mapping[str, str] | None = None, schedule_file: str = "celerybeat-schedule",
        loglevel: str = "INFO", out: TextIO | None = None) -> int:
    supervisor = Supervisor(children(schedule_file=schedule_file, loglevel=loglevel), env, out)

    def on_signal(signum: int, _frame) -> None:
        supervisor._stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        supervisor.start()
        code = supervisor.wait()
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
