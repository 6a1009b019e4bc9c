from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg2.errors
import pytest

from bot.models import Candle
from bot.storage import candles


def _c(minute: int, close: str = "100") -> Candle:
    return Candle("KRW-BTC", datetime(2026, 1, 1, 0, minute, tzinfo=UTC), Decimal("100"),
                  Decimal("101"), Decimal("99"), Decimal(close), Decimal("1.5"), Decimal("150"))


def test_upsert_counts_inserts_updates_and_skips_unchanged(db):
    assert candles.upsert_candles(db, [_c(0), _c(1)], "1m") == candles.UpsertResult(2, 0)
    assert candles.upsert_candles(db, [_c(1, "100.5"), _c(2)], "1m") == candles.UpsertResult(1, 1)
    assert candles.upsert_candles(db, [_c(0), _c(1, "100.5")], "1m") == candles.UpsertResult(0, 0)
    assert candles.newest_ts(db, "KRW-BTC", "1m") == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    stored = candles.load_candles(db, "KRW-BTC", "1m")
    assert [c.close for c in stored] == [Decimal("100"), Decimal("100.5"), Decimal("100")]


@pytest.mark.parametrize("copy", [False, True])
def test_a_final_candle_is_never_replaced_by_a_view_in_progress(db, monkeypatch, copy):
    if copy:
        monkeypatch.setattr(candles, "COPY_THRESHOLD", 1)
    final = replace(_c(5, "100.7"), meta={"final": True})
    assert candles.upsert_candles(db, [final], "1m") == candles.UpsertResult(1, 0)
    stale = replace(_c(5, "100.2"), meta={"final": False})
    assert candles.upsert_candles(db, [stale], "1m") == candles.UpsertResult(0, 0)
    (stored,) = candles.load_candles(db, "KRW-BTC", "1m")
    assert stored.close == Decimal("100.7") and stored.meta == {"final": True}
    corrected = replace(_c(5, "100.9"), meta={"final": True})  # a final correction wins
    assert candles.upsert_candles(db, [corrected], "1m") == candles.UpsertResult(0, 1)


def _big(minute: int, close: str = "50123000.0", meta: dict | None = None) -> Candle:
    ts = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return Candle("KRW-BTC", ts, Decimal("50000000.0"), Decimal("50200000.0"),
                  Decimal("49900000.0"), Decimal(close), Decimal("0.00012345"),
                  Decimal("6187.68435000"), 1,
                  {"kst": "2026-01-01T09:00:00", "trade_timestamp": 1767225659123 + minute,
                   "final": True} if meta is None else meta)


def _rows(db, market: str) -> list[tuple]:
    """Every stored column as PostgreSQL's text (the exact numeric scale included)."""
    with db.cursor() as cur:
        cur.execute("SELECT ts, open::text, high::text, low::text, close::text, volume::text,"
                    " quote_volume::text, meta::text FROM candles WHERE market = %s"
                    " ORDER BY ts", (market,))
        return cur.fetchall()


def test_large_batch_takes_the_copy_path_with_the_same_semantics(db, monkeypatch):
    n = candles.COPY_THRESHOLD + 50
    copies = []
    real_copy = candles._upsert_copy
    monkeypatch.setattr(candles, "_upsert_copy", lambda *a: copies.append(1) or real_copy(*a))
    tricky = {"kst": "2026-01-01T09:00:00", "note": 'tab\there "quoted" back\\slash\nline',
              "korean": "비트코인", "nested": {"a": [1, 2.5, None]}, "final": False}
    batch = [_big(i) for i in range(n)]
    batch[3] = _big(3, meta=tricky)
    batch[4] = replace(batch[4], open=Decimal("5.0E+7"), volume=Decimal("1E-8"))

    assert candles.upsert_candles(db, batch, "1m") == candles.UpsertResult(n, 0)
    assert candles.upsert_candles(db, batch, "1m") == candles.UpsertResult(0, 0)
    # changed values, a changed meta alone, new minutes and a key given twice (last wins)
    again = list(batch)
    for i in range(0, n, 7):
        again[i] = _big(i, close="50124000.0")
    again[5] = _big(5, meta={**batch[5].meta, "trades": 7})
    again += [_big(n + i) for i in range(10)] + [_big(n + 9, close="1")]
    changed = len(range(0, n, 7)) + 1
    assert candles.upsert_candles(db, again, "1m") == candles.UpsertResult(10, changed)
    assert len(copies) == 3

    # The small path (below the threshold) stores exactly the same rows.
    expected = list({c.ts: replace(c, market="KRW-ETH") for c in again}.values())
    for start in range(0, len(expected), candles.COPY_THRESHOLD // 2):
        candles.upsert_candles(db, expected[start:start + candles.COPY_THRESHOLD // 2], "1m")
    assert len(copies) == 3
    assert _rows(db, "KRW-BTC") == _rows(db, "KRW-ETH")
    stored = {c.ts: c for c in candles.load_candles(db, "KRW-BTC", "1m")}
    assert len(stored) == n + 10
    for candle in expected:
        got = stored[candle.ts]
        assert (got.open, got.high, got.low, got.close, got.volume, got.quote_volume) == (
            candle.open, candle.high, candle.low, candle.close, candle.volume,
            candle.quote_volume)
        assert got.meta == candle.meta
    assert stored[batch[3].ts].meta == tricky
    assert stored[batch[n - 1].ts + timedelta(minutes=10)].close == Decimal("1")


def test_a_failed_copy_batch_stores_nothing_and_the_next_one_works(db):
    n = candles.COPY_THRESHOLD + 1
    bad = [_big(i) for i in range(n)]
    bad[-1] = replace(bad[-1], low=Decimal("60000000"))  # low above high: CHECK fails
    with pytest.raises(psycopg2.errors.CheckViolation):
        candles.upsert_candles(db, bad, "1m")
    assert candles.count(db, "KRW-BTC", "1m") == 0
    good = [_big(i) for i in range(n)]
    assert candles.upsert_candles(db, good, "1m") == candles.UpsertResult(n, 0)


def test_connections_are_kept_between_uses_and_a_dead_one_is_replaced(database_url,
                                                                     monkeypatch):
    from bot.errors import DatabaseUnavailable
    from bot.storage import Database
    from bot.storage import db as db_module
    from testkit.settings import admin

    db = Database(database_url)

    def backend() -> int:
        with db.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    pids = {backend() for _ in range(5)}
    assert len(pids) == 1  # one connection, reused (not a connect per cursor)
    (pid,) = pids
    admin(f"SELECT pg_terminate_backend({pid})")
    # used at once, the dropped connection fails as a retryable error, and is replaced
    with pytest.raises(DatabaseUnavailable):
        backend()
    second = backend()
    assert second != pid
    # idle for a while, a dropped connection is found out before use: no error at all
    admin(f"SELECT pg_terminate_backend({second})")
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 0.0)
    assert backend() not in (pid, second)
    db.close()
