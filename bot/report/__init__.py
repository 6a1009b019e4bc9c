"""Reporting: ``bot status`` and ``bot health``, the daily report and the
notifications. Reads everything below it; nothing below imports it.
"""
