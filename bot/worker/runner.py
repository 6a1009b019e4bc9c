"""``bot run``: Beat and the three workers as child processes, for a machine
without Docker.

Each child's output is copied to our stdout with its name in front; our own
lines (``run.*`` events) go through the log setup like any command's.

- **Restarts.** A child that dies is started again, as compose's
  ``restart: unless-stopped`` would, after 1 s, 2 s, 4 s, 8 s ... (doubling
  per death within the window, at most 30 s); the others keep running. Only a
  child that dies 5 times within 300 s makes ``bot run`` give up: it stops
  the others and exits 1 (see :class:`RestartPolicy`).
- **A child that exits 2** (a bad setting, or in live mode a key Upbit
  refuses: its ``bot:`` line says which) is not started again: ``bot run``
  stops the others and exits 2.
- **Stopping.** SIGTERM, SIGINT (Ctrl-C) or SIGHUP: every child gets SIGTERM
  (Celery's warm shutdown: no new task, the one at hand finishes), and
  whatever is left after the grace period (15 s), or at a second signal, is
  killed with its process group. Exit code 0.
- **If ``bot run`` itself dies** (even by SIGKILL), the kernel sends each
  child SIGTERM (Linux ``PR_SET_PDEATHSIG``): nothing goes on trading without
  its supervisor.

The signal handlers only count the signal (a plain attribute) and the
interpreter's wakeup fd wakes the main loop: a Python signal handler runs in
the main thread between two bytecodes, possibly while that thread holds a
lock, so it must never take one (``threading.Event.set`` there deadlocked
``bot run``, issue 9).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TextIO

from bot.logs import event

log = logging.getLogger(__name__)

EXIT_CONFIG = 2  # a child's exit code for what no restart can fix

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# what signal.signal returns: a function, SIG_DFL or SIG_IGN, or None
_Handler = Callable[[int, FrameType | None], object] | int | None
PREFIX_WIDTH = 9  # len("optimizer")


@dataclass(frozen=True)
class Child:
    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead child is started again, and when ``bot run`` gives up.

    The n-th death within ``window`` seconds waits ``first_delay * 2**(n-1)``
    seconds (at most ``max_delay``) before the restart; the ``max_deaths``-th
    death within ``window`` is final. With the defaults a child that crashes
    at once is tried 5 times in about half a minute; one that dies now and
    then is always restarted after 1 s."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    window: float = 300.0
    max_deaths: int = 5

    def delay(self, deaths: int) -> float:
        """Seconds before the restart that follows the ``deaths``-th death."""
        return min(self.max_delay, self.first_delay * 2 ** max(0, deaths - 1))


def children(python: str = sys.executable, schedule_file: str = "celerybeat-schedule",
             loglevel: str = "INFO", *, telegram: bool = False,
             metrics: bool = False) -> list[Child]:
    # -q: no banners; every line a child prints is in the log format.
    celery = (python, "-m", "celery", "-q")
    worker = ("worker", "--without-gossip", "--without-mingle", "-l", loglevel)
    return [
        Child("beat", (*celery, "-A", "bot.worker.app", "beat", "-s", schedule_file, "-l",
                       loglevel)),
        Child("collector", (*celery, "-A", "bot.worker.app", *worker, "-Q", "collector_queue",
                            "-n", "collector@%h", "-c", "1")),
        Child("trader", (*celery, "-A", "bot.worker.app", *worker, "-Q", "trader_queue",
                         "-n", "trader@%h", "-c", "2")),
        Child("optimizer", (*celery, "-A", "bot.worker.app", *worker, "-Q", "optimizer_queue",
                            "-n", "optimizer@%h", "-c", "1")),
    ] + telegram_children(python, telegram) + metrics_children(python, metrics)


def telegram_children(python: str, enabled: bool) -> list[Child]:
    """``bot telegram``, the command poller, only with TELEGRAM_BOT_TOKEN set:
    without a token it would exit 2 and make ``bot run`` give up."""
    return [Child("telegram", (python, "-m", "bot", "telegram"))] if enabled else []


def metrics_children(python: str, enabled: bool) -> list[Child]:
    """``bot metrics``, the Prometheus exporter, unless METRICS_PORT=0. A taken
    port does not kill it (it waits for the port), so it never makes ``bot
    run`` give up on the trading workers."""
    return [Child("metrics", (python, "-m", "bot", "metrics"))] if enabled else []


# --- signals ------------------------------------------------------------------------------


class StopSignals:
    """Stop requests from SIGTERM/SIGINT/SIGHUP, safe for a signal handler.

    The handler only stores to attributes. ``signal.set_wakeup_fd`` makes
    the interpreter write a byte to our pipe for every signal (SIGCHLD too,
    so a child's death wakes the loop at once), which :meth:`wait` selects on.
    """

    def __init__(self) -> None:
        self.count = 0
        self.signum = 0
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous: dict[int, _Handler] = {}
        self._previous_fd = -1

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.count += 1

    def install(self) -> None:
        """Must run in the main thread (Python delivers signals there)."""
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self.handler)
        # A handler of our own (not SIG_DFL) so that SIGCHLD reaches the wakeup fd.
        self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_fd)
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or ``timeout`` seconds pass."""
        with contextlib.suppress(InterruptedError, ValueError, OSError):
            ready, _, _ = select.select([self._read], [], [], max(0.0, timeout))
            if ready:
                while os.read(self._read, 512):
                    pass

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "-"


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    return None


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send the child SIGTERM when
    ``bot run`` dies (Linux); None elsewhere. libc is looked up here, in
    the parent, so that the forked child only calls a function pointer."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm, parent = 1, int(signal.SIGTERM), os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # bot run died before prctl took effect
            os._exit(1)

    return preexec


# --- the children -------------------------------------------------------------------------


@dataclass
class _Running:
    spec: Child
    proc: subprocess.Popen | None = None
    pump: threading.Thread | None = None
    started: float = 0.0
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    outcome: int | str | None = None  # exit code, or "killed" after the grace period


def _pump(name: str, stream: TextIO, out: TextIO, lock: threading.Lock) -> None:
    """Copy a child's lines to ``out`` behind its name, until the child and
    its pool processes have closed the pipe. A JSON line (LOG_FORMAT=json)
    stays as it is: it names its worker, and stays one JSON object."""
    for line in iter(stream.readline, ""):
        if not line.endswith("\n"):  # the last words of a killed child
            line += "\n"
        text = line if line.startswith("{") else f"{name:<{PREFIX_WIDTH}} | {line}"
        # Keep draining even if our output is gone: a full pipe would block the child.
        with lock, contextlib.suppress(OSError, ValueError):
            out.write(text)
            out.flush()
    stream.close()


def _describe(code: int) -> dict[str, int | str]:
    if code < 0:
        with contextlib.suppress(ValueError):
            return {"code": code, "signal": signal.Signals(-code).name}
    return {"code": code}


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a child's process group (its Celery pool processes), if any is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """The children: started, restarted when they die (:class:`RestartPolicy`),
    stopped. Runs in the main thread; :class:`StopSignals` ends :meth:`serve`."""

    def __init__(self, specs: Sequence[Child], env: Mapping[str, str] | None = None,
                 out: TextIO | None = None, grace: float = 15.0,
                 policy: RestartPolicy | None = None,
                 signals: StopSignals | None = None):
        self.env = dict(env) if env is not None else None
        self.out = out or sys.stdout
        self.grace = grace
        self.policy = policy or RestartPolicy()
        self.signals = signals or StopSignals()
        self.children = {spec.name: _Running(spec) for spec in specs}
        self.reason = ""  # why serve() gave up
        self.failure = 1  # serve()'s code when it gives up
        self._out_lock = threading.Lock()
        self._preexec = _pdeathsig_setter()

    def start(self) -> None:
        for child in self.children.values():
            self._spawn(child)

    def _spawn(self, child: _Running) -> None:
        # PR_SET_PDEATHSIG fires when the *thread* that forked the child ends:
        # only the main thread, which lives as long as bot run, may fork.
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("bot run starts its children from the main thread only")
        proc = subprocess.Popen(child.spec.argv, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                bufsize=1, env=self.env, start_new_session=True,
                                preexec_fn=self._preexec)
        child.proc, child.started, child.restart_at = proc, time.monotonic(), None
        child.pump = threading.Thread(target=_pump, name=f"pump-{child.spec.name}",
                                      args=(child.spec.name, proc.stdout, self.out,
                                            self._out_lock), daemon=True)
        child.pump.start()

    def serve(self) -> int:
        """Restart children that die until a stop signal (0) or until one of
        them dies too often (1)."""
        while not self.signals.count:
            now = time.monotonic()
            for child in self.children.values():
                if child.restart_at is None and child.proc.poll() is not None:
                    if not self._died(child, now):
                        return self.failure
                elif child.restart_at is not None and child.restart_at <= now:
                    self._spawn(child)
            due = [c.restart_at for c in self.children.values() if c.restart_at is not None]
            self.signals.wait(min([0.5, *(t - now for t in due)]))
        return 0

    def _died(self, child: _Running, now: float) -> bool:
        """Schedule the restart of a dead child; False when it is given up."""
        proc = child.proc
        _kill_group(proc.pid)  # pool processes left behind by a killed main process
        deaths = child.deaths
        deaths.append(now)
        while deaths and now - deaths[0] > self.policy.window:
            deaths.popleft()
        fields = {"child": child.spec.name, "pid": proc.pid, **_describe(proc.returncode),
                  "uptime_s": round(now - child.started, 1)}
        if proc.returncode == EXIT_CONFIG:
            # A setting or the Upbit key is wrong (its `bot:` line said which):
            # starting it again cannot help, and each start asks Upbit again.
            event(log, "run.gave_up", level=logging.ERROR, **fields, deaths=len(deaths),
                  window_s=self.policy.window, detail="exited 2: fix what its `bot:` line"
                  " names, then start again")
            self.reason, self.failure = f"{child.spec.name} exited 2", EXIT_CONFIG
            return False
        if len(deaths) >= self.policy.max_deaths:
            event(log, "run.gave_up", level=logging.ERROR, **fields, deaths=len(deaths),
                  window_s=self.policy.window,
                  detail=f"died {len(deaths)} times within {self.policy.window:g} s")
            self.reason = f"{child.spec.name} died {len(deaths)} times"
            return False
        delay = self.policy.delay(len(deaths))
        event(log, "run.restart", level=logging.WARNING, **fields, restart_in_s=delay,
              deaths=len(deaths), window_s=self.policy.window)
        child.restart_at = now + delay
        return True

    def stop(self, reason: str = "") -> dict[str, int | str]:
        """SIGTERM every child, SIGKILL what is left after the grace period
        or at a further signal; the children's exit codes."""
        event(log, "run.stopping", reason=reason or self.signals.name, grace_s=self.grace)
        signals_seen = self.signals.count
        running = [c for c in self.children.values() if c.proc is not None
                   and c.restart_at is None and c.proc.poll() is None]
        for child in running:
            # The main process only: Celery's warm shutdown lets the task at
            # hand finish; a SIGTERM to its pool processes would abort it.
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(c.proc.poll() is None for c in running):
            if time.monotonic() >= deadline or self.signals.count > signals_seen:
                for child in running:
                    if child.proc.poll() is None:
                        _kill_group(child.proc.pid)
                        child.proc.wait()
                        child.outcome = "killed"
                break
            self.signals.wait(min(0.2, deadline - time.monotonic()))
        for child in self.children.values():
            if child.proc is None:
                continue
            _kill_group(child.proc.pid)  # nothing of a child may outlive bot run
            if child.outcome is None:  # its exit code (a dead one's, awaiting its restart)
                child.outcome = child.proc.returncode
        for child in self.children.values():
            if child.pump is not None:
                child.pump.join(5)  # its last lines before ours
        return {name: c.outcome for name, c in self.children.items() if c.outcome is not None}


def run(env: Mapping[str, str] | None = None, schedule_file: str = "celerybeat-schedule",
        loglevel: str = "INFO", out: TextIO | None = None, *,
        specs: Sequence[Child] | None = None, policy: RestartPolicy | None = None,
        grace: float = 15.0, telegram: bool = False, metrics: bool = False) -> int:
    """Start the children, keep them running, stop them; the exit code."""
    stop = StopSignals()
    supervisor = Supervisor(specs or children(schedule_file=schedule_file, loglevel=loglevel,
                                              telegram=telegram, metrics=metrics),
                            env, out, grace, policy, stop)
    stop.install()
    code = 1
    try:
        supervisor.start()
        code = supervisor.serve()
    finally:
        exits = supervisor.stop(supervisor.reason)
        event(log, "run.stopped", exit=code, **exits)
        stop.restore()
    return code
