"""The exchange: the interface the trader talks to (``protocol``), the choice
of implementation (``factory``), Upbit's REST client (``upbit``, on
``transport``, ``parsing``, ``upbit_errors`` and ``ratelimit``), and the paper
exchange (``paper``). Imports storage (the paper account) and the
cross-cutting modules only.
"""
