"""upbit-bot: a trading daemon for Upbit KRW markets.

Modules, one concern each: ``config`` (settings), ``storage`` (SQL), ``upbit``
(REST client), ``paper`` (simulated exchange), ``strategies`` (signals),
``backtest`` (vectorised engine), ``collector``/``trader``/``optimizer`` (the
jobs), ``tasks``/``scheduler`` (Celery wiring), ``cli`` (commands).
"""

__version__ = "0.1.0"
