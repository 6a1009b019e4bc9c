"""Persistence: every SQL statement and every schema migration of the daemon.

The jobs call functions here and never write SQL themselves. Submodules hold
one table family each (``candles``, ``orders``, ...); ``migrate`` applies the
numbered files in ``migrations/``.
"""

from bot.storage.db import Database

__all__ = ["Database"]
