"""Reporting: `bot status` and `bot health`, the daily report and the notifications."""
