"""Candles in CSV files: the ``ts,open,high,low,close,volume`` format that
``bot backtest --csv`` and ``bot optimize --csv`` read.

The header names the columns (any order, extra columns ignored); ``ts`` is
ISO-8601 in UTC (``2026-01-05T00:00:00Z``; a time without offset is UTC) or
epoch seconds; rows are oldest first. A bad file raises ``ValueError`` with
one sentence naming the file, the line and the column, never a parser's raw
message.

Speed: rows are split by the C ``csv`` reader and each column is converted by
numpy in one call; a row is looked at on its own only to name the first bad
one. A year of minutes (525,600 rows) loads in well under a second.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bot.models import CandleArrays

CSV_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV (it is not UTF-8; is it an image or a "
                         "spreadsheet?)") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not a CSV file") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _parse_ts(text: str) -> int:
    text = text.strip()
    if text.isdigit():  # epoch seconds are unambiguous too
        return int(text)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:  # the CSV contract says UTC
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _ts_column(values: list[str] | np.ndarray) -> np.ndarray:
    try:
        return _iso_column(np.char.strip(np.asarray(values)))
    except ValueError:
        pass
    try:
        return np.array([_parse_ts(str(v)) for v in values], dtype=np.int64)
    except ValueError:
        return np.empty(0, dtype=np.int64)  # the row check names the bad one


def _iso_column(text: np.ndarray) -> np.ndarray:
    """The common case in C: every ts in UTC written with ``Z`` or without an
    offset. Anything else (epoch seconds, ``+00:00``) raises ValueError and
    takes the per-row path."""
    if text.dtype.kind != "U" or np.char.str_len(text).min() < 16:
        raise ValueError("not ISO-8601 times")
    zulu = np.char.endswith(text, "Z")
    if zulu.any():
        if not zulu.all():
            raise ValueError("mixed offsets")
        text = np.char.rstrip(text, "Z")
    if np.char.find(text, "+").max() >= 0 or np.char.count(text, "-").max() > 2:
        raise ValueError("an explicit offset")
    return text.astype("datetime64[s]").astype(np.int64)


def _float_column(values: list[str]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        return np.empty(0)


def _row_problem(row: list[str], index: dict[str, int]) -> str | None:
    """The first thing wrong with one row, as a sentence (None: nothing)."""
    need = max(index.values()) + 1
    if len(row) < need:
        missing = [name for name in CSV_COLUMNS if index[name] >= len(row)]
        return (f"has {len(row)} fields, expected at least {need}: no value for "
                + ", ".join(missing))
    text = {name: row[index[name]].strip() for name in CSV_COLUMNS}
    try:
        _parse_ts(text["ts"])
    except ValueError:
        return (f"column ts: {text['ts']!r} is not a time (expected ISO-8601 UTC such as "
                "2026-01-05T00:00:00Z, or epoch seconds)")
    numbers = {}
    for name in CSV_COLUMNS[1:]:
        try:
            numbers[name] = float(text[name])
        except ValueError:
            return f"column {name}: {text[name]!r} is not a number"
    for name in PRICE_COLUMNS:
        if not (math.isfinite(numbers[name]) and numbers[name] > 0):
            return f"column {name}: {text[name]!r} is not a positive price"
    if not (math.isfinite(numbers["volume"]) and numbers["volume"] >= 0):
        return f"column volume: {text['volume']!r} must be a number >= 0"
    o, h, lo, c = (numbers[name] for name in PRICE_COLUMNS)
    if not lo <= min(o, c) <= max(o, c) <= h:
        return f"low {text['low']} / high {text['high']} do not contain open and close"
    return None


def load_csv(path: str | os.PathLike[str]) -> CandleArrays:
    """Candles from a CSV file (see the module docstring); ``ValueError``
    names the file, the line and the column of the first problem."""
    text = _read_text(path)
    header_line, _, body = text.partition("\n")
    header = [name.strip().lower() for name in next(csv.reader([header_line]), [])]
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise ValueError(f"{path}: line 1: the header lacks {', '.join(missing)} (expected "
                         f"the columns {','.join(CSV_COLUMNS)})")
    index = {name: header.index(name) for name in CSV_COLUMNS}
    candles = _load_fast(body, index)
    if candles is not None and _valid(candles):
        return candles
    return _load_rows(path, text, index)  # slow, to name the first problem


def _load_fast(body: str, index: dict[str, int]) -> CandleArrays | None:
    """Every column parsed by numpy's C reader; None at the first thing it
    cannot read (the row-by-row path then names it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": handled below
            numbers = np.loadtxt(io.StringIO(body), delimiter=",", quotechar='"', ndmin=2,
                                 usecols=[index[name] for name in CSV_COLUMNS[1:]])
            stamps = np.loadtxt(io.StringIO(body), delimiter=",", quotechar='"', ndmin=1,
                                usecols=[index["ts"]], dtype=str)
    except ValueError:
        return None
    if len(stamps) == 0 or numbers.shape != (len(stamps), 5):
        return None
    ts = _ts_column(stamps)
    if len(ts) != len(stamps):
        return None
    o, h, lo, c, v = (numbers[:, k].copy() for k in range(5))
    return CandleArrays(ts, o, h, lo, c, v)


def _bad_rows(c: CandleArrays) -> np.ndarray:
    """Per row: a price not finite and positive, low/high not containing open
    and close, or a volume not finite and >= 0."""
    finite = np.isfinite(c.open) & np.isfinite(c.high) & np.isfinite(c.low) & np.isfinite(
        c.close)
    return ~(finite & (c.low > 0) & (c.low <= np.minimum(c.open, c.close))
             & (np.maximum(c.open, c.close) <= c.high) & np.isfinite(c.volume)
             & (c.volume >= 0))


def _valid(c: CandleArrays) -> bool:
    return not _bad_rows(c).any() and bool(np.all(c.ts[1:] > c.ts[:-1]))


def _load_rows(path: str | os.PathLike[str], text: str, index: dict[str, int]) -> CandleArrays:
    """The row-by-row reading of :func:`load_csv`, naming what is wrong."""
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    need = max(index.values()) + 1
    # One row per line (the format has no quoted newlines), so a row's line is
    # its position; blank lines are skipped.
    every = list(reader)
    lines = [i + 2 for i, row in enumerate(every) if row]
    rows = every if len(lines) == len(every) else [row for row in every if row]
    if not rows:
        raise ValueError(f"{path}: no candles after the header")
    if any(len(row) < need for row in rows):
        _raise_first_problem(path, rows, lines, index)
    ts = _ts_column([row[index["ts"]] for row in rows])
    cols = {name: _float_column([row[index[name]] for row in rows]) for name in CSV_COLUMNS[1:]}
    if len(ts) != len(rows) or any(len(col) != len(rows) for col in cols.values()):
        _raise_first_problem(path, rows, lines, index)
    candles = CandleArrays(ts, *(cols[name] for name in CSV_COLUMNS[1:]))
    bad = _bad_rows(candles)
    if bad.any():
        _raise_first_problem(path, rows, lines, index, start=int(np.flatnonzero(bad)[0]))
    if len(ts) > 1 and not np.all(ts[1:] > ts[:-1]):
        bad = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
        raise ValueError(f"{path}: line {lines[bad]}: ts {rows[bad][index['ts']].strip()} "
                         "does not come after the row before (rows must be oldest first, "
                         "one per candle)")
    return candles  # pragma: no cover - the fast path took it


def _raise_first_problem(path: str | os.PathLike[str], rows: list[list[str]], lines: list[int],
                         index: dict[str, int], start: int = 0) -> None:
    for row, line in zip(rows[start:], lines[start:], strict=True):
        problem = _row_problem(row, index)
        if problem:
            raise ValueError(f"{path}: line {line}: {problem}")
    raise ValueError(f"{path}: cannot be read as candles")  # pragma: no cover


def write_csv(candles: CandleArrays, path: str | os.PathLike[str]) -> None:
    """Write candles in the format :func:`load_csv` reads (``repr`` floats, so
    a round trip is exact)."""
    iso = np.datetime_as_string(np.asarray(candles.ts, dtype="datetime64[s]"), unit="s")
    columns = [np.asarray(getattr(candles, name), dtype=np.float64).tolist()
               for name in CSV_COLUMNS[1:]]
    body = "".join(f"{t}Z,{o!r},{h!r},{lo!r},{c!r},{v!r}\n"
                   for t, o, h, lo, c, v in zip(iso.tolist(), *columns, strict=True))
    Path(path).write_text(",".join(CSV_COLUMNS) + "\n" + body, encoding="utf-8")
