"""The Celery wiring and the process life cycle; the only package that
imports Celery. ``app`` (the app, configured lazily: ``celery -A
bot.worker.app worker|beat``), ``tasks`` (thin: a lock and one job function
each), ``signals`` (a worker's life cycle), ``scheduler`` (Beat's schedule
and its single-Beat lock), ``timing`` (expiries and time limits),
``runtime`` and ``resources`` (what a process's jobs share) and ``runner``
(the ``bot run`` supervisor).
"""
