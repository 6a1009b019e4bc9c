"""upbit-bot: a trading daemon for Upbit KRW markets.

The map (docs/architecture.md has it with what each layer may import; CI
checks the layers with ``lint-imports``), top to bottom:

- ``cli``: the ``bot`` command.
- ``worker/``: the Celery app, tasks, signals and Beat schedule, the runtime,
  the ``bot run`` supervisor. The only package that imports Celery.
- ``report/``: ``bot status``, the daily report, notifications.
- ``trading/``: signals, the trader, the order life cycle, guards, the
  parameters in force, accounting. Never imports ``optimize``.
- ``optimize/``: backtest, batch evaluator, search, walk-forward, plots, and
  the optimizer job (the only one of them that touches storage).
- ``data/``: the candle collector, CSV files.
- ``exchange/``: the Exchange protocol, Upbit's client, the rate limiter, the
  paper exchange.
- ``storage/``: PostgreSQL and the Redis key names.
- cross-cutting: ``config``, ``errors``, ``models``, ``money``, ``clock``,
  ``logs``, ``jsonout``, ``rules`` (the trading semantics, docs/semantics.md).
"""

__version__ = "0.1.0"
