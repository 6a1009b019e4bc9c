"""Reporting: ``bot status`` and ``bot health``, the daily report and the
notifications. Reads everything below it; nothing below imports it.

``status`` gathers (and ``render`` writes its screen), ``daily`` sums the last
hours, both on ``account``; ``messages`` words an event, ``notify`` sends it,
``failures`` counts a job's failure streaks; ``text`` writes every number.
"""
