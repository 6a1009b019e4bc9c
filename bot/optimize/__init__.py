"""Tuning and judging parameter sets: the exact backtest engine, the compiled
batch evaluator, the search, the walk-forward, plots, and the optimizer job.
Only the job (:mod:`bot.optimize.job`) touches storage; the engines are pure
and import without the database driver.
"""
