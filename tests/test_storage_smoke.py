from datetime import UTC, datetime
from decimal import Decimal

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
