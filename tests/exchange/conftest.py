"""The fake Upbit server both of its test modules run against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.fakeupbit import FakeUpbit, ManualClock
from testkit.upbit_json import FAKE_SECRET


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock("2025-01-01T00:10:30Z")


@pytest.fixture
def upbit(clock: ManualClock) -> Iterator[FakeUpbit]:
    with FakeUpbit(clock=clock, history_minutes=450, secret_key=FAKE_SECRET) as server:
        yield server
        assert server.errors == []
