"""CSV candles: what loads, and one sentence naming file, line and column for
what does not."""

from datetime import UTC, datetime

import numpy as np
import pytest

from bot.data.csvdata import load_csv, write_csv
from bot.models import CandleArrays

DAY0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
HEADER = "ts,open,high,low,close,volume\n"
GOOD = "2024-03-01T00:00:00Z,100,110,90,100,1\n"


def test_load_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(HEADER
                    + "2024-03-01T00:00:00Z,100,110,90,105,1.5\n"
                    + "2024-03-01T00:01:00+00:00,105,106,100,101,2\n"
                    + "\n"
                    + "2024-03-01T00:02:00,101,101,99,100,0\n")
    data = load_csv(path)
    assert data.ts.tolist() == [DAY0, DAY0 + 60, DAY0 + 120]
    assert data.close.tolist() == [105.0, 101.0, 100.0] and data.volume[0] == 1.5


def test_columns_in_any_order_with_extras_and_epoch_seconds(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("volume,close,note,low,high,open,ts\n"
                    f"3,105,x,90,110,100,{DAY0}\n")
    data = load_csv(path)
    assert data.ts.tolist() == [DAY0] and data.open.tolist() == [100.0]
    assert data.volume.tolist() == [3.0]


@pytest.mark.parametrize("row, message", [
    ("2024-03-01T00:01:00Z,100,110,90,abc,1", "line 3: column close: 'abc' is not a number"),
    ("2024-03-01T00:01:00Z,100,110", "line 3: has 3 fields, expected at least 6: no value "
     "for low, close, volume"),
    ("not-a-date,100,110,90,100,1", "line 3: column ts: 'not-a-date' is not a time"),
    ("2024-03-01T00:00:00Z,100,110,90,100,1", "line 3: ts 2024-03-01T00:00:00Z does not come "
     "after the row before"),
    ("2024-03-01T00:01:00Z,100,95,90,100,1", "line 3: low 90 / high 95 do not contain open "
     "and close"),
    ("2024-03-01T00:01:00Z,100,110,-1,100,1", "line 3: column low: '-1' is not a positive "
     "price"),
    ("2024-03-01T00:01:00Z,100,110,90,100,nan", "line 3: column volume: 'nan' must be a "
     "number >= 0"),
])
def test_a_bad_row_is_named_with_its_line_and_column(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + GOOD + row + "\n")
    with pytest.raises(ValueError) as info:
        load_csv(path)
    assert str(info.value) == f"{path}: {message}" or str(info.value).startswith(
        f"{path}: {message}")
    assert "float()" not in str(info.value) and "convert" not in str(info.value)


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ts,open,high,low,close\n2024-03-01T00:00:00Z,1,1,1,1\n")
    with pytest.raises(ValueError, match=r"line 1: the header lacks volume"):
        load_csv(path)


def test_a_binary_file_is_named_not_decoded(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ValueError) as info:
        load_csv(path)
    assert str(info.value).startswith(f"{path}: not a text CSV")
    assert "codec" not in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="is a folder"):
        load_csv(tmp_path)


def test_only_a_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(HEADER)
    with pytest.raises(ValueError, match="no candles after the header"):
        load_csv(path)


def test_write_then_load_is_exact(tmp_path):
    rng = np.random.default_rng(3)
    close = 50_000_000 * np.exp(np.cumsum(rng.normal(0, 0.001, 500)))
    series = CandleArrays(DAY0 + 60 * np.arange(500, dtype=np.int64), close * 0.999,
                          close * 1.002, close * 0.998, close, rng.random(500))
    write_csv(series, tmp_path / "x.csv")
    back = load_csv(tmp_path / "x.csv")
    for name in ("ts", "open", "high", "low", "close", "volume"):
        assert getattr(back, name).tolist() == getattr(series, name).tolist(), name
