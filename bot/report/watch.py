"""``bot status --watch``: the status screen redrawn in place, like ``top``,
until Ctrl-C."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from bot.config import Settings
from bot.report import status

# Home, then clear the screen: the next screen is drawn over the last one.
CLEAR = "\x1b[H\x1b[2J"
Screen = Callable[..., int]


def watch(settings: Settings, out: TextIO, every: float, *,
          markets: Sequence[str] | None = None, screen: Screen = status.run,
          sleep: Callable[[float], None] = time.sleep, rounds: int | None = None) -> int:
    """Draw ``screen`` every ``every`` seconds (``rounds`` times, None: until
    Ctrl-C); the exit code of the last screen (0, or 1 with a problem). Each
    screen is gathered in full before it is drawn, so it never flickers half
    drawn. Not on a terminal, the screens follow one another."""
    code, drawn = 0, 0
    try:
        while rounds is None or drawn < rounds:
            buffer = io.StringIO()
            code = screen(settings, buffer, markets=markets)
            clear = CLEAR if out.isatty() else ("\n" if drawn else "")
            out.write(f"{clear}{buffer.getvalue()}(every {every:g} s; Ctrl-C to stop)\n")
            out.flush()
            drawn += 1
            if rounds is None or drawn < rounds:
                sleep(every)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
    return code
