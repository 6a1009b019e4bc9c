"""``bot status --watch``: the screen redrawn in place until Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

from bot.report.watch import CLEAR, watch
from testkit import ROOT
from testkit.settings import make_settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _screens():
    n = {"k": 0}

    def screen(settings, out, markets=None):
        n["k"] += 1
        out.write(f"screen {n['k']} of {','.join(markets or ['all'])}\n")
        return 0 if n["k"] < 3 else 1

    return screen


def test_each_screen_is_drawn_over_the_last_on_a_terminal():
    out, slept = Terminal(), []
    code = watch(make_settings(), out, 1.5, markets=["KRW-BTC"], screen=_screens(),
                 sleep=slept.append, rounds=3)
    assert code == 1  # the last screen's
    assert slept == [1.5, 1.5]
    assert out.getvalue().count(CLEAR) == 3
    last = out.getvalue().rsplit(CLEAR, 1)[1]
    assert last == "screen 3 of KRW-BTC\n(every 1.5 s; Ctrl-C to stop)\n"


def test_ctrl_c_ends_it_cleanly():
    out = io.StringIO()

    def interrupted(seconds):
        raise KeyboardInterrupt

    code = watch(make_settings(), out, 2, screen=_screens(), sleep=interrupted)
    assert code == 0 and CLEAR not in out.getvalue()  # not a terminal: no escape codes
    assert out.getvalue() == "screen 1 of all\n(every 2 s; Ctrl-C to stop)\n\n"


def test_the_command_redraws_until_interrupted(db, database_url, tmp_path):
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database_url,
           "CELERY_BACKEND_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "status", "--watch", "0.2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.monotonic() + 20
    while sum("upbit-bot  " in line for line in seen) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=20)
    out = "".join(seen) + rest
    assert out.count("upbit-bot  ") >= 2, (out, err)  # more than one screen
    assert "Traceback" not in err
    assert proc.returncode == 1  # the screen had problems (no heartbeats)
    bad = subprocess.run([sys.executable, "-m", "bot", "status", "--watch", "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--watch draws the screen" in bad.stderr
