"""Shared plumbing of the daemon benchmarks (bench_latency.py,
bench_collect_throughput.py): a scratch database, the daemon's Celery
processes started as under docker compose (each with its log in a file), log
parsing and the statistics they report. Not a benchmark by itself.

The private Redis server and the fake Upbit come from the end-to-end test
support (testkit/e2e.py, testkit/fakeupbit.py)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # testkit.fakeupbit and testkit.e2e live in the repository, not in the package.
    sys.path.insert(0, str(ROOT))

from testkit.e2e import admin, dsn_for  # noqa: E402, F401 (re-exported for the benches)

DEFAULT_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", os.environ.get(
    "TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
ACCESS_KEY, SECRET_KEY = "bench-access-key", "bench-secret-key-" * 4


# --- database -------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(admin_dsn: str, prefix: str) -> Iterator[str]:
    """A new database ``<prefix>_<pid>`` (its DSN), dropped at the end."""
    name = f"{prefix}_{os.getpid()}"
    admin(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin(admin_dsn, f"CREATE DATABASE {name}")
    try:
        yield dsn_for(admin_dsn, name)
    finally:
        admin(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- processes ------------------------------------------------------------------------


def worker_args(queue: str, node: str, concurrency: int) -> list[str]:
    """``celery worker`` as bin/docker-compose.yaml starts it."""
    return ["-A", "bot.worker.app", "worker", "-Q", queue, "-n", node, "-c", str(concurrency),
            "--without-gossip", "--without-mingle", "-l", "INFO"]


def beat_args(schedule_file: Path) -> list[str]:
    return ["-A", "bot.worker.app", "beat", "-s", str(schedule_file), "-l", "INFO"]


class Processes:
    """Celery processes, each in its own session, logging to ``<workdir>/<name>.log``."""

    def __init__(self, env: Mapping[str, str], workdir: Path):
        self.env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(ROOT), **env}
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str, celery_args: Sequence[str]) -> None:
        with self.log_path(name).open("a") as handle:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "celery", *celery_args], env=self.env,
                cwd=self.workdir, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True)

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_ready(self, names: Sequence[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            while " ready." not in self.log(name):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n"
                                       f"{self.log(name)[-3000:]}")
                time.sleep(0.2)

    def stop(self, name: str, grace: float = 20.0) -> None:
        """Celery's warm shutdown (SIGTERM to the process group), then SIGKILL."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


# --- logs -----------------------------------------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+)\s+(\S+) (\S+)(.*)$")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def log_events(text: str, name: str | None = None) -> Iterator[tuple[float, str, dict[str, str]]]:
    """(unix time, event, fields) of each bot.logs text line (``name``: that event only)."""
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match or (name is not None and match.group(4) != name):
            continue
        moment = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC).timestamp()
        fields = {k: v.strip('"') for k, v in _FIELD.findall(match.group(5))}
        yield moment, match.group(4), fields


def count_events(text: str, names: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for _, name, _ in log_events(text):
        if name in counts:
            counts[name] += 1
    return counts


def parse_utc(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- numbers --------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, median, p90, worst (max) and best (min), seconds rounded to ms."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "median": None, "p90": None, "worst": None, "best": None}
    return {"n": len(ordered), "median": round(quantile(ordered, 0.5), 3),
            "p90": round(quantile(ordered, 0.9), 3), "worst": round(ordered[-1], 3),
            "best": round(ordered[0], 3)}


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most events within any ``window`` seconds."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, moment in enumerate(ordered):
        while moment - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def machine(admin_dsn: str) -> dict[str, object]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    postgres = "?"
    with contextlib.suppress(psycopg2.Error):
        conn = psycopg2.connect(admin_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                postgres = cur.fetchone()[0]
        finally:
            conn.close()
    import celery
    redis_version = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             timeout=5).stdout
        found = re.search(r"v=(\S+)", out)
        redis_version = found.group(1) if found else "?"
    memory = "?"
    with contextlib.suppress(OSError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "celery": celery.__version__,
            "postgresql": postgres, "redis": redis_version}


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
