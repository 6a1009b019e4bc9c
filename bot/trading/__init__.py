"""Trading: the six signals, the trader's decision pass, the order life
cycle, the buy guards, the parameters in force and the accounting. Imports
exchange, storage and the cross-cutting modules; never the optimizer.
"""
