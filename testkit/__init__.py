"""What the tests and the benches share: the fake Upbit server
(``testkit.fakeupbit``, also ``python -m testkit.fakeupbit``), the end-to-end
helpers that start real worker processes (``testkit.e2e``), the fake clock,
candle and settings builders, Upbit-shaped JSON and log capture. Not part of
the installed package: importable from a checkout (the repository's root is
on ``sys.path`` under pytest and in the benches)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout
