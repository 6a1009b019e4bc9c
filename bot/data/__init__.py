"""Market data in and out: the candle collector (backfill, gap repair, the
in-progress candle) and CSV files. Imports storage and the cross-cutting
modules only.
"""
