"""One fake clock for every test: the trader, the paper exchange and the
reports ask it for the time (call it: a UTC ``datetime``); Upbit's client
asks it for ``monotonic()`` seconds and ``sleep()``s on it, and each sleep
is recorded and moves the clock on. Both faces show the same time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FakeClock:
    """Starts at ``start`` (a datetime, or monotonic seconds since the epoch:
    the Upbit client's tests start at 1000.0)."""

    def __init__(self, start: datetime | float = 1000.0):
        if isinstance(start, datetime):
            # Seconds counted from the start keep the datetime face exact.
            self._origin, self.now = start, 0.0
        else:
            self._origin, self.now = EPOCH + timedelta(seconds=start), float(start)
        self._origin_s = self.now
        self.sleeps: list[float] = []

    @property
    def current(self) -> datetime:
        return self._origin + timedelta(seconds=self.now - self._origin_s)

    @current.setter
    def current(self, moment: datetime) -> None:
        self.now = self._origin_s + (moment - self._origin).total_seconds()

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw).total_seconds()
        return self.current

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the client must never sleep for nothing"
        self.sleeps.append(seconds)
        self.now += seconds
