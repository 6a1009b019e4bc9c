"""Tuning and judging parameter sets: the exact backtest engine, the compiled batch evaluator, the search, the walk-forward, plots, and the optimizer job."""
