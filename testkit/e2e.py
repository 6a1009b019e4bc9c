"""Support for the end-to-end tests: a private Redis server, a TCP proxy that
can cut PostgreSQL away, and the daemon's processes (Beat and the three
workers) started as real ``celery`` processes with their logs in files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psycopg2

from testkit import ROOT


def admin(admin_dsn: str, sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) outside a transaction."""
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def dsn_for(admin_dsn: str, name: str) -> str:
    """The DSN of database ``name`` on the admin DSN's server."""
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.25):
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - a check may fail while things start
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


class RedisServer:
    """A Redis of our own on a free port, with an append-only file so that
    queued messages survive a restart, as under docker compose."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.dir), "--logfile",
             str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, 10, "redis to start")

    def ping(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` drops every
    connection and refuses new ones until ``restore()``: an outage."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the 5 s were for connecting: idle is fine
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns -= {src, dst}

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self.listener.close()


ROLES = {
    "collector": ("-A", "bot.worker.app", "worker", "-Q", "collector_queue"),
    "trader": ("-A", "bot.worker.app", "worker", "-Q", "trader_queue"),
    "optimizer": ("-A", "bot.worker.app", "worker", "-Q", "optimizer_queue"),
    "beat": ("-A", "bot.worker.app", "beat"),
}


class Stack:
    """The daemon's processes for one test, each logging to its own file."""

    def __init__(self, env: Mapping[str, str], workdir: Path):
        self.env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(ROOT), **env}
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}

    def log_path(self, role: str) -> Path:
        return self.workdir / f"{role}.{self.starts.get(role, 0)}.log"

    def start(self, role: str) -> None:
        self.starts[role] = self.starts.get(role, 0) + 1
        args = [sys.executable, "-m", "celery", *ROLES[role]]
        if role == "beat":
            args += ["-s", str(self.workdir / "celerybeat-schedule")]
        else:
            # the same node name after a restart, as a restarted container keeps its host name
            args += ["-n", f"{role}@e2e", "-c", "1", "--without-gossip",
                     "--without-mingle", "--without-heartbeat"]
        handle = self.log_path(role).open("w")
        self.procs[role] = subprocess.Popen(args, env=self.env, cwd=self.workdir,
                                            stdout=handle, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        handle.close()

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        """Kill the role's whole process group (the worker and its pool
        children), as a container's death would."""
        proc = self.procs.pop(role)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(30)

    def alive(self, role: str) -> bool:
        proc = self.procs.get(role)
        return proc is not None and proc.poll() is None

    def log(self, role: str, start: int | None = None) -> str:
        """The role's log of its ``start``-th run (default: the latest)."""
        number = start or self.starts.get(role, 0)
        path = self.workdir / f"{role}.{number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        for role in list(self.procs):
            proc = self.procs[role]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for role in list(self.procs):
            proc = self.procs.pop(role)
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
