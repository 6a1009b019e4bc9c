"""`bot run` (bot/worker/runner.py): its children's output prefixed with their
names, every line in the log format; stopped by SIGTERM or SIGINT whenever
the signal comes; a dead child restarted while the others keep working, a
child that keeps dying given up; no child outliving `bot run`.

The supervisor's behaviour is tested over small stand-in children
(tests/worker/fake_children.py), so that it can be started and stopped many times;
`bot run` itself with real Celery workers, a private Redis, a scratch
database and the fake Upbit server."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from bot.worker.runner import RestartPolicy, _pump
from testkit.e2e import ROOT, RedisServer, wait_for
from testkit.fakeupbit import FakeUpbit
from testkit.logcapture import LINE

pytestmark = [pytest.mark.timeout(180)]

PREFIXED = re.compile(r"^(beat|collector|trader|optimizer) +\| (.*)$")


class Output:
    """A process's merged stdout and stderr, read line by line in a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, match: Callable[[str], bool], what: str, timeout: float = 60,
                  count: int = 1) -> list[str]:
        return wait_for(lambda: len(found := [x for x in list(self.lines) if match(x)]) >= count
                        and found, timeout, what)

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return code

    def text(self) -> str:
        return "\n".join(self.lines)


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_alive(pgid: int) -> bool:
    """Any running process in process group ``pgid`` (a child and its pool)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # state ppid pgrp ...
                return True
    return False


def _children_of(pid: int) -> dict[str, int]:
    """``bot run``'s children by name (beat, collector, trader, optimizer)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if ppid == pid:
            name = "beat" if "beat" in argv else argv[argv.index("-Q") + 1].split("_")[0]
            found[name] = int(entry.name)
    return found


# --- the supervisor, over stand-in children -----------------------------------------------


def supervise(*args: str) -> Output:
    proc = subprocess.Popen([sys.executable, "-m", "tests.worker.fake_children", "supervise",
                             *args],
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Output(proc)


def _ready(out: Output, names: str = "abc", count: int = 1) -> dict[str, int]:
    """Wait for each child's ``count``-th start; their newest pids."""
    pids = {}
    for name in names:
        lines = out.wait_line(lambda x, n=name: x.startswith(f"{n:<9} | ready {n} "),
                              f"{name} to start", count=count)
        pids[name] = int(lines[-1].rsplit(" ", 1)[1])
    return pids


def _events(out: Output, name: str) -> list[str]:
    return [x for x in out.lines if (m := LINE.match(x)) and m.group(4) == name]


def test_restart_delays_double_up_to_the_cap():
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert (policy.max_deaths, policy.window) == (5, 300)


def test_child_lines_get_the_name_in_front_and_json_lines_stay_json():
    text = ('2026-11-25T08:00:01.123Z INFO  trader decision market=KRW-BTC\n'
            '{"time": "2026-11-25T08:00:01.123Z", "worker": "trader", "event": "decision"}\n'
            'half a line, then SIGKILL')
    out = io.StringIO()
    _pump("trader", io.StringIO(text), out, threading.Lock())
    first, second = out.getvalue().splitlines()[:2]
    assert first == "trader    | 2026-11-25T08:00:01.123Z INFO  trader decision market=KRW-BTC"
    assert json.loads(second)["event"] == "decision"
    # a line cut short still ends: the next line (ours) starts on its own
    assert out.getvalue().endswith("trader    | half a line, then SIGKILL\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_the_worst_moment_still_stops_bot_run(sig):
    """Once the children are up, the signal is raised in the main thread
    right after it takes a lock, every time: a handler that takes a lock
    (threading.Event.set did) deadlocks here on the first one."""
    out = supervise("a", "b", "c", "--worst-moment", sig.name)
    pids = _ready(out)
    out.proc.send_signal(signal.SIGUSR1)
    assert out.finish(30) == 0, out.text()
    assert _events(out, "run.stopped"), out.text()
    wait_for(lambda: not any(map(_alive, pids.values())), 10, "the children to be gone")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_bot_run_stops_on_a_signal_in_its_wait_loop_many_times_in_a_row(sig):
    for attempt in range(8):
        out = supervise("a", "b", "c")
        pids = _ready(out)
        out.proc.send_signal(sig)
        assert out.finish(30) == 0, (attempt, out.text())
        for name in "abc":
            assert f"{name:<9} | stopped {name}" in out.lines, (attempt, out.text())
        [stopping] = _events(out, "run.stopping")
        assert f"reason={sig.name}" in stopping
        [stopped] = _events(out, "run.stopped")
        assert stopped.endswith(" exit=0 a=0 b=0 c=0"), stopped
        assert not any(map(_alive, pids.values()))


def test_a_dead_child_is_restarted_and_the_others_keep_running(tmp_path):
    out = supervise("a", f"b:die=0.2/3,once={tmp_path / 'b-died'}", "c")
    first = _ready(out)
    again = _ready(out, "b", count=2)
    [restart] = _events(out, "run.restart")
    assert f"child=b pid={first['b']} code=3 " in restart and "deaths=1" in restart
    assert again["b"] != first["b"]
    assert _alive(first["a"]) and _alive(first["c"])  # untouched: started once
    assert sorted(x.split(" | ready ")[1].split()[0] for x in out.lines
                  if " | ready " in x) == ["a", "b", "b", "c"]
    out.proc.send_signal(signal.SIGTERM)
    assert out.finish(30) == 0
    assert _events(out, "run.stopped")[0].endswith(" exit=0 a=0 b=0 c=0")


def test_a_child_that_keeps_dying_makes_bot_run_give_up(tmp_path):
    out = supervise("a", f"b:die=0.1/3,go={tmp_path / 'go'}", "c", "--max-deaths", "3")
    pids = _ready(out, "ac")
    (tmp_path / "go").touch()  # b dies from now on, each time
    assert out.finish(60) == 1, out.text()
    assert len(_events(out, "run.restart")) == 2  # one line per restart
    [gave_up] = _events(out, "run.gave_up")
    assert "child=b " in gave_up and "deaths=3" in gave_up and " ERROR " in gave_up
    [stopping] = _events(out, "run.stopping")
    assert 'reason="b died 3 times"' in stopping
    # the others are stopped cleanly
    assert {"a         | stopped a", "c         | stopped c"} <= set(out.lines)
    assert _events(out, "run.stopped")[0].endswith(" exit=1 a=0 b=3 c=0")
    assert not any(map(_alive, pids.values()))


def test_a_child_that_exits_2_is_not_restarted_and_bot_run_exits_2(tmp_path):
    out = supervise("a", f"b:die=0.1/2,go={tmp_path / 'go'}", "c")
    pids = _ready(out, "ac")
    (tmp_path / "go").touch()  # b exits 2: what a bad key or setting does
    assert out.finish(30) == 2, out.text()
    assert _events(out, "run.restart") == []
    [gave_up] = _events(out, "run.gave_up")
    assert "child=b " in gave_up and "code=2" in gave_up and "exited 2" in gave_up
    assert _events(out, "run.stopped")[0].endswith(" exit=2 a=0 b=2 c=0")
    assert not any(map(_alive, pids.values()))


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period():
    out = supervise("a", "c:ignore-term", "--grace", "1")
    pids = _ready(out, "ac")
    out.proc.send_signal(signal.SIGTERM)
    assert out.finish(30) == 0
    assert _events(out, "run.stopped")[0].endswith(" exit=0 a=0 c=killed")
    assert not _alive(pids["c"])


def test_a_second_signal_kills_what_is_left_at_once():
    out = supervise("a", "c:ignore-term", "--grace", "600")
    pids = _ready(out, "ac")
    out.proc.send_signal(signal.SIGINT)
    out.wait_line(lambda x: " run.stopping " in x, "run.stopping")
    out.wait_line(lambda x: x == "a         | stopped a", "a to stop")
    out.proc.send_signal(signal.SIGINT)
    assert out.finish(30) == 0
    assert _events(out, "run.stopped")[0].endswith(" exit=0 a=0 c=killed")
    assert not _alive(pids["c"])


def test_children_stop_when_the_supervisor_is_killed():
    out = supervise("a", "b", "c")
    pids = _ready(out)
    out.proc.kill()
    assert out.finish(30) == -signal.SIGKILL
    wait_for(lambda: not any(map(_alive, pids.values())), 20,
             "the children to stop after SIGKILL of their supervisor")


# --- `bot run` with real Celery workers -------------------------------------------------------


class BotRun:
    """``python -m bot run`` against a private Redis, the fake Upbit server
    (a 30 times faster clock: a candle closes every 2 s) and a database."""

    def __init__(self, tmp_path: Path, database_url: str):
        import time
        self.redis = RedisServer(tmp_path)
        self.redis.start()
        epoch = time.time()
        self.upbit = FakeUpbit(speedup=30, epoch=epoch, history_minutes=400)
        self.upbit.start()
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
               "DATABASE_URL": database_url, "UPBIT_API_BASE": self.upbit.url,
               "CELERY_BROKER_URL": f"{self.redis.url}/0",
               "CELERY_BACKEND_URL": f"{self.redis.url}/1",
               # the exporter has tests of its own (tests/report/test_metrics.py)
               "METRICS_PORT": "0",
               "BOT_CLOCK_SPEEDUP": "30", "BOT_CLOCK_EPOCH": repr(epoch),
               "COLLECT_SCHEDULE": "2", "TRADE_SCHEDULE": "2", "RECONCILE_SCHEDULE": "2",
               "BACKFILL_MAX_CANDLES": "300"}
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--schedule-file",
                                 str(tmp_path / "beat-state")], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.out = Output(proc)

    def of(self, child: str, event: str) -> list[str]:
        """The lines of ``event`` that ``child`` printed."""
        return [x for x in list(self.out.lines)
                if (m := PREFIXED.match(x)) and m.group(1) == child
                and (line := LINE.match(m.group(2))) and line.group(4) == event]

    def wait_working(self) -> None:
        self.wait_event("beat", "beat.started")
        for name in ("collector", "trader", "optimizer"):
            self.wait_event(name, "worker.started")
        self.wait_event("collector", "candles.stored")
        self.wait_event("trader", "decision")

    def wait_event(self, child: str, event: str, count: int = 1, timeout: float = 60) -> None:
        wait_for(lambda: len(self.of(child, event)) >= count, timeout,
                 f"{child} to log {event} ({count})")

    def close(self) -> None:
        if self.out.proc.poll() is None:
            self.out.proc.kill()
        self.out.finish(10)
        self.upbit.stop()
        self.redis.stop()


@pytest.fixture
def bot_run(db, database_url, tmp_path):
    run = BotRun(tmp_path, database_url)
    yield run
    run.close()


@pytest.mark.e2e
def test_bot_run_prints_only_log_lines_and_stops_everything(bot_run):
    bot_run.wait_working()
    bot_run.out.proc.send_signal(signal.SIGTERM)
    assert bot_run.out.finish(40) == 0
    lines = bot_run.out.lines
    assert {m.group(1) for x in lines if (m := PREFIXED.match(x))} == {
        "beat", "collector", "trader", "optimizer"}
    # every line in the log format (a child's behind its name): no banner, no
    # raw warning, no Celery shutdown line
    strays = [x for x in lines if not LINE.match(m.group(2) if (m := PREFIXED.match(x)) else x)]
    assert strays == []
    text = bot_run.out.text()
    assert "Sending due task" not in text
    assert "not confirmed closed yet" not in text
    assert not re.search(r" reconcile .*checked=0 fills=0 cancelled=0 adopted=0 sent=0 errors=0",
                         text)
    if os.geteuid() == 0:
        assert len([x for x in lines if " worker.root " in x]) == 3
    assert len(_events_of(lines, "run.stopping")) == 1
    [stopped] = _events_of(lines, "run.stopped")
    assert stopped.endswith(" exit=0 beat=0 collector=0 trader=0 optimizer=0")
    for name in ("collector", "trader", "optimizer"):
        assert len(bot_run.of(name, "worker.stopped")) == 1
    assert "lock=released" in bot_run.of("beat", "beat.stopped")[0]
    client = redis.Redis.from_url(bot_run.redis.url)
    assert client.exists("bot:beat:lock") == 0  # a Beat started now starts at once
    # every child is gone: none of them is connected to Redis any more
    wait_for(lambda: len(client.client_list()) == 1, 20, "the children to disconnect")


def _events_of(lines: list[str], name: str) -> list[str]:
    return [x for x in lines if (m := LINE.match(x)) and m.group(4) == name]


@pytest.mark.e2e
def test_bot_run_restarts_a_killed_worker_while_the_others_keep_working(bot_run):
    bot_run.wait_working()
    before = _children_of(bot_run.out.proc.pid)
    assert set(before) == {"beat", "collector", "trader", "optimizer"}
    os.kill(before["trader"], signal.SIGKILL)  # the worker's main process only
    restart = bot_run.out.wait_line(lambda x: " run.restart " in x, "run.restart")[0]
    assert f"child=trader pid={before['trader']} code=-9 signal=SIGKILL" in restart
    stored = len(bot_run.of("collector", "candles.stored"))
    decided = len(bot_run.of("trader", "decision"))
    # the trader comes back and decides again; meanwhile the collector stores
    bot_run.wait_event("trader", "worker.started", count=2)
    bot_run.wait_event("trader", "decision", count=decided + 1)
    bot_run.wait_event("collector", "candles.stored", count=stored + 2)
    after = _children_of(bot_run.out.proc.pid)
    assert after["trader"] != before["trader"]
    assert {k: after[k] for k in ("beat", "collector", "optimizer")} == {
        k: before[k] for k in ("beat", "collector", "optimizer")}
    assert not _group_alive(before["trader"])  # its pool processes went with it
    for name, started in (("beat", "beat.started"), ("collector", "worker.started"),
                          ("optimizer", "worker.started")):
        assert len(bot_run.of(name, started)) == 1, name
    bot_run.out.proc.send_signal(signal.SIGINT)  # Ctrl-C still stops everything
    assert bot_run.out.finish(40) == 0
    [stopped] = _events_of(bot_run.out.lines, "run.stopped")
    assert stopped.endswith(" exit=0 beat=0 collector=0 trader=0 optimizer=0")


@pytest.mark.e2e
def test_no_child_outlives_bot_run_killed_with_sigkill(bot_run):
    bot_run.wait_working()
    children = _children_of(bot_run.out.proc.pid)
    assert len(children) == 4
    bot_run.out.proc.kill()
    assert bot_run.out.finish(10) == -signal.SIGKILL
    # each child (and its pool processes, in its process group) stops
    wait_for(lambda: not any(map(_group_alive, children.values())), 30,
             "the children of a killed bot run to stop")
    client = redis.Redis.from_url(bot_run.redis.url)
    wait_for(lambda: len(client.client_list()) == 1, 20, "the children to disconnect")
