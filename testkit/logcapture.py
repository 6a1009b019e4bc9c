"""Capture what the daemon's own logging setup writes (text or JSON), and put
the test run's logging back afterwards."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from bot import logs


@contextmanager
def captured_logs(fmt: str = "text", level: str = "DEBUG",
                  role: str = "test") -> Iterator[io.StringIO]:
    """Route every logger through :func:`bot.logs.setup_logging` into a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_role = root.handlers[:], root.level, logs._role
    stream = io.StringIO()
    logs.setup_logging(level, fmt, role=role, stream=stream)
    try:
        yield stream
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        logs.set_role(saved_role)
        logging.captureWarnings(False)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def text_lines(text: str, event: str) -> list[str]:
    """Text lines whose event (the 4th column) is ``event``."""
    return [line for line in text.splitlines()
            if len(line.split(" ")) > 3 and [p for p in line.split(" ") if p][3] == event]


# One line of the text log format: time, level, logger, event, fields.
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO |WARNING|ERROR|CRITICAL)"
                  r" +(\S+) (\S+)( .*)?$")
