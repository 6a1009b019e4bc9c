"""The exchange: the interface the trader talks to, Upbit's REST client and
its rate limiter, and the paper exchange. Imports storage (the paper account)
and the cross-cutting modules only.
"""
