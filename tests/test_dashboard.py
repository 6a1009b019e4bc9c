"""The Grafana dashboard (bin/monitoring): every SQL query run against a
stored installation after Grafana's macros are expanded (and its numbers
checked against bot/trading/accounting.py), the names the dashboard, the
datasource provisioning, prometheus.yml, the README's Metrics table and the
exporter must share, and the compose services of the monitoring profile."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import yaml

from bot.models import Fill, FillRow, MarketInfo
from bot.report.metrics import BotCollector
from bot.storage import decisions
from bot.storage import equity as equity_store
from bot.storage import markets as market_store
from bot.storage import orders as order_store
from bot.trading import accounting
from testkit import ROOT
from testkit.candles import store_closes
from testkit.settings import make_settings, redis_db

D = Decimal
MONITORING = ROOT / "bin" / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana" / "dashboards" / "upbit-bot.json").read_text())
DATASOURCES = yaml.safe_load(
    (MONITORING / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text())
PROMETHEUS = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
COMPOSE = yaml.safe_load((ROOT / "bin" / "docker-compose.yaml").read_text())

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
BTC, ETH = "KRW-BTC", "KRW-ETH"
# The graph's range: 00:00 to 03:00 on 5 January; fills on the 5th and the 6th
# (the second day is outside: its PnL is not shown, its cost is still walked).
FROM, TO = T0, T0 + timedelta(hours=3)


def _panels(panels: list[dict] | None = None) -> Iterator[dict]:
    for panel in DASHBOARD["panels"] if panels is None else panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def _targets(kind: str) -> list[tuple[dict, dict]]:
    """(panel, target) for every target whose datasource is of ``kind``."""
    out = []
    for panel in _panels():
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel["datasource"]
            if _ds_type(ds["uid"]) == kind:
                out.append((panel, target))
    return out


def _ds_type(uid: str) -> str:
    types = {ds["uid"]: ds["type"] for ds in DATASOURCES["datasources"]}
    return {"grafana-postgresql-datasource": "sql", "postgres": "sql",
            "prometheus": "prometheus"}[types[uid]]


# --- Grafana's macros, expanded as Grafana expands them ------------------------------
# Template variables first (the frontend: a single-value variable is put in raw,
# its single quotes doubled; the query quotes it), then the PostgreSQL
# datasource's macros (the backend), with times as RFC 3339 in UTC.


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(sql: str, variables: dict[str, str], *, start: datetime = FROM, end: datetime = TO,
           interval: timedelta = timedelta(minutes=1)) -> str:
    ms = int(interval.total_seconds() * 1000)
    builtins = {"__interval_ms": str(ms), "__interval": _grafana_interval(interval),
                "__range_s": str(int((end - start).total_seconds()))}
    values = {**builtins, **{k: v.replace("'", "''") for k, v in variables.items()}}

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name.startswith("__") and name not in builtins:
            return m.group(0)  # a macro: the backend's
        return values[name]

    sql = re.sub(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)(?!\w|\()", var, sql)
    lo, hi = _rfc3339(start), _rfc3339(end)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1).strip()} BETWEEN '{lo}' AND '{hi}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{lo}'").replace("$__timeTo()", f"'{hi}'")
    assert "$" not in sql, f"a macro this test does not expand: {sql}"
    return sql


def _grafana_interval(interval: timedelta) -> str:
    s = int(interval.total_seconds())
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


def test_expand_follows_grafana():
    sql = ("SELECT 1 WHERE $__timeFilter(ts) AND m = '$market' AND t = '${timeframe}'"
           " AND x = $__interval_ms AND y = '$__interval' AND a < $__timeTo()")
    assert expand(sql, {"market": "KRW-B'TC", "timeframe": "1m"}) == (
        "SELECT 1 WHERE ts BETWEEN '2026-01-05T00:00:00Z' AND '2026-01-05T03:00:00Z'"
        " AND m = 'KRW-B''TC' AND t = '1m' AND x = 60000 AND y = '1m'"
        " AND a < '2026-01-05T03:00:00Z'")


# --- a stored installation -----------------------------------------------------------


def _decide(db, market: str, at: datetime, action: str, trigger: str) -> int:
    with db.cursor() as cur:
        return decisions.insert(
            cur, market=market, candle_ts=at, mode="paper", close=D(100_000), signals={},
            weights={}, weights_version=None, score=0.5, action=action, reason="test",
            trigger=trigger)


def _trade(db, market: str, at: datetime, side: str, price: int, volume: str, fee: str,
           n: int, mode: str = "paper") -> None:
    decision_id = _decide(db, market, at, "buy" if side == "bid" else "sell", "signal") \
        if mode == "paper" else None
    with db.cursor() as cur:
        order_id = order_store.insert_new(
            cur, identifier=f"dash-{n}", mode=mode, market=market, side=side, price=D(price),
            volume=D(volume), decision_id=decision_id, created_at=at)
    order_store.mark(db, order_id, "done")
    row = order_store.by_id(db, order_id)
    fill = Fill(f"dash-trade-{n}", market, side, D(price), D(volume), D(price) * D(volume), at)
    assert order_store.insert_fill(db, row, fill, D(fee))


# BTC: one candle a minute from 00:00 for 4 hours, rising 100 KRW a minute from 100,000
BTC_CLOSES = [100_000 + 100 * i for i in range(240)]
ETH_CLOSES = [5_000 + i for i in range(240)]
TRADES = [  # market, minute, side, price, volume, fee
    (BTC, 10, "bid", 101_000, "2", "101"),
    (BTC, 70, "ask", 107_000, "1", "53.5"),
    (ETH, 20, "bid", 5_020, "10", "25.1"),
    (ETH, 100, "ask", 5_100, "20", "51"),  # 10 more than bought: unmatched
    (BTC, 30 * 60, "ask", 110_000, "1", "55"),  # 6 January, 06:00: after the range
]


@pytest.fixture
def installation(db):
    market_store.store_listing(db, [MarketInfo(m, m, m) for m in (BTC, ETH, "KRW-XRP")],
                               T0, ())
    store_closes(db, BTC, BTC_CLOSES, start=T0)
    store_closes(db, ETH, ETH_CLOSES, start=T0)
    _decide(db, BTC, T0 + timedelta(minutes=5), "hold", "cooldown")
    for n, (market, minute, side, price, volume, fee) in enumerate(TRADES):
        _trade(db, market, T0 + timedelta(minutes=minute), side, price, volume, fee, n)
    # another mode's fill: never in paper's numbers
    _trade(db, BTC, T0 + timedelta(minutes=15), "bid", 100_000, "5", "250", 99, mode="live")
    equity_store.start_of_day(db, "paper", T0.date(), D(1_000_000))
    return db


VARIABLES = {"market": BTC, "timeframe": "1m", "mode": "paper", "start_krw": "1000000"}


def _run(db, sql: str, **kw) -> tuple[list[str], list[tuple]]:
    with db.cursor() as cur:
        cur.execute(expand(sql, VARIABLES, **kw))
        return [c.name for c in cur.description], cur.fetchall()


# The columns each SQL target returns: (panel title, refId) -> names.
COLUMNS = {
    ("Equity vs buy-and-hold ($market)", "A"): ["time", "equity", "buy_and_hold"],
    ("$market close and fills", "A"): ["time", "close"],
    ("$market close and fills", "B"): ["time", "buy"],
    ("$market close and fills", "C"): ["time", "sell"],
    ("Realised PnL and fees per day", "A"): ["time", "realised_pnl", "fees"],
}


def test_every_sql_query_runs_and_returns_the_columns_its_panel_expects(installation):
    targets = _targets("sql")
    assert {(p["title"], t["refId"]) for p, t in targets} == set(COLUMNS)
    for panel, target in targets:
        assert target["rawQuery"] and target["format"] == "time_series"
        columns, rows = _run(installation, target["rawSql"])
        assert columns == COLUMNS[(panel["title"], target["refId"])], panel["title"]
        assert rows, panel["title"]
        times = [r[0] for r in rows]
        assert times == sorted(times) and all(FROM <= t <= TO for t in times), panel["title"]
        assert all(isinstance(v, float) for r in rows for v in r[1:] if v is not None)


def _sql(title: str, ref: str = "A") -> str:
    return next(t["rawSql"] for p, t in _targets("sql")
                if p["title"] == title and t["refId"] == ref)


def test_template_variables_come_from_the_database(installation):
    by_name = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert set(by_name) == {"market", "timeframe", "mode", "start_krw"}
    _, rows = _run(installation, by_name["market"]["query"])
    assert [r[0] for r in rows] == [BTC, ETH]  # XRP: listed, no candles
    _, rows = _run(installation, by_name["timeframe"]["query"])
    assert [r[0] for r in rows] == ["1m"]
    assert [o["value"] for o in by_name["mode"]["options"]] == ["paper", "live"]
    for v in (by_name["market"], by_name["timeframe"]):
        assert v["datasource"]["uid"] in {d["uid"] for d in DATASOURCES["datasources"]}


def test_closes_and_fills_of_the_market(installation):
    _, rows = _run(installation, _sql("$market close and fills"), interval=timedelta(minutes=30))
    # the last close of each half hour, 00:00 to 02:30 (03:00 is the range's end)
    assert rows == [(T0 + timedelta(minutes=30 * k), float(BTC_CLOSES[30 * k + 29]))
                    for k in range(6)] + [(TO, float(BTC_CLOSES[180]))]
    _, buys = _run(installation, _sql("$market close and fills", "B"))
    _, sells = _run(installation, _sql("$market close and fills", "C"))
    assert buys == [(T0 + timedelta(minutes=10), 101_000.0)]  # not the live buy
    assert sells == [(T0 + timedelta(minutes=70), 107_000.0)]  # not 6 January's


def _ledgers(until: datetime) -> dict[str, accounting.Ledger]:
    rows: dict[str, list[FillRow]] = {}
    for n, (market, minute, side, price, volume, fee) in enumerate(TRADES):
        at = T0 + timedelta(minutes=minute)
        if at <= until:
            rows.setdefault(market, []).append(FillRow(
                order_id=n + 1, market=market, side=side, price=D(price), volume=D(volume),
                funds=D(price) * D(volume), fee=D(fee), traded_at=at))
    return {m: accounting.ledger(m, f) for m, f in rows.items()}


def test_pnl_per_day_is_realised_as_bot_status_reckons_it(installation):
    _, rows = _run(installation, _sql("Realised PnL and fees per day"))
    ledgers = _ledgers(TO)
    assert len(rows) == 1 and rows[0][0] == T0
    assert rows[0][1] == pytest.approx(float(sum(x.realised for x in ledgers.values())))
    assert rows[0][2] == pytest.approx(float(sum(x.fees for x in ledgers.values())))
    # 6 January: its sell realised against the cost carried from the 5th
    _, rows = _run(installation, _sql("Realised PnL and fees per day"),
                   start=T0, end=T0 + timedelta(days=2))
    later = _ledgers(T0 + timedelta(days=2))
    assert [r[0] for r in rows] == [T0, T0 + timedelta(days=1)]
    assert rows[1][1] == pytest.approx(float(later[BTC].realised - ledgers[BTC].realised))
    assert rows[1][1] == pytest.approx(110_000 - 55 - (202_000 + 101) / 2)


def test_equity_moves_with_fills_and_closes_and_buy_and_hold_with_the_market(installation):
    _, rows = _run(installation, _sql("Equity vs buy-and-hold ($market)"),
                   interval=timedelta(minutes=60))
    by_time = {t: (e, b) for t, e, b in rows}
    assert list(by_time) == [T0 + timedelta(hours=h) for h in range(4)]
    # 00:00: the day's stored equity, all cash; buy-and-hold starts from it
    assert by_time[T0] == (1_000_000.0, 1_000_000.0)
    # 01:00: BTC 2 bought at 101,000 (+101 fee), ETH 10 at 5,020 (+25.1); closes of 01:00
    btc, eth = BTC_CLOSES[60], ETH_CLOSES[60]
    cash = 1_000_000 - 202_101 - 50_225.1
    assert by_time[T0 + timedelta(hours=1)][0] == pytest.approx(cash + 2 * btc + 10 * eth)
    assert by_time[T0 + timedelta(hours=1)][1] == pytest.approx(1_000_000 * btc / BTC_CLOSES[0])
    # 03:00: BTC 1 sold at 107,000 (-53.5), ETH 20 sold at 5,100 (-51): -10 ETH held
    cash += 107_000 - 53.5 + 102_000 - 51
    btc, eth = BTC_CLOSES[180], ETH_CLOSES[180]
    assert by_time[TO][0] == pytest.approx(cash + btc - 10 * eth)


def test_equity_without_a_stored_day_starts_from_start_krw(installation):
    with installation.cursor() as cur:
        cur.execute("DELETE FROM equity_days")
    sql = _sql("Equity vs buy-and-hold ($market)")
    with installation.cursor() as cur:
        cur.execute(expand(sql, {**VARIABLES, "start_krw": "500000"}, start=T0 + timedelta(hours=1),
                           end=T0 + timedelta(hours=1), interval=timedelta(hours=1)))
        [(_, equity, hold)] = cur.fetchall()
    assert equity == pytest.approx(500_000 - 202_101 - 50_225.1 + 2 * BTC_CLOSES[60]
                                   + 10 * ETH_CLOSES[60])
    assert hold == pytest.approx(equity)  # its first point


def test_sql_queries_run_on_an_empty_database(db):
    for _, target in _targets("sql"):
        with db.cursor() as cur:
            cur.execute(expand(target["rawSql"], VARIABLES))
            cur.fetchall()


# --- names shared by the dashboard, the provisioning, Prometheus and the README ---


def test_every_panel_names_a_provisioned_datasource():
    uids = {ds["uid"] for ds in DATASOURCES["datasources"]}
    assert len(uids) == len(DATASOURCES["datasources"]) == 2
    for panel in _panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
            assert target["datasource"]["type"] == panel["datasource"]["type"]


def test_datasources_point_at_the_compose_services():
    by_type = {ds["type"]: ds for ds in DATASOURCES["datasources"]}
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    pg = by_type["grafana-postgresql-datasource"]
    env = COMPOSE["services"]["database"]["environment"]
    assert pg["url"] == "database:5432"
    assert pg["user"] == env["POSTGRES_USER"]
    assert pg["secureJsonData"]["password"] == env["POSTGRES_PASSWORD"]
    assert pg["jsonData"]["database"] == env["POSTGRES_DB"]


def test_prometheus_scrapes_the_metrics_service():
    targets = [t for job in PROMETHEUS["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["metrics:9108"]
    assert COMPOSE["services"]["metrics"]["environment"]["METRICS_PORT"] == "9108"


def _readme_metrics() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Metrics"):]
    section = section[:section.index("\n#", 1)]
    names = re.findall(r"^\| `(upbit_bot_\w+)` \|", section, re.M)
    assert len(names) >= 10
    return set(names)


@pytest.fixture
def exporter_metrics(db) -> set[str]:
    """Every sample name the exporter serves (a counter's _total, a histogram's
    _bucket, _sum and _count), from its collector over an empty installation."""
    client = redis.Redis.from_url(redis_db(3))
    try:
        settings = make_settings(db.dsn, celery_backend_url=redis_db(3))
        families = list(BotCollector(settings, db, client, None).collect())
    finally:
        client.close()
    names = set()
    for family in families:
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
            names.add(family.name)
        else:
            names.add(family.name)
    assert "upbit_bot_decisions_total" in names and "upbit_bot_heartbeat_age_seconds" in names
    return names


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                 "offset", "and", "or", "unless"}


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = [m.group(0) for m in re.finditer(r"(?<![\w:$])[A-Za-z_:][\w:]*", expr)
             if not expr[m.end():].lstrip().startswith("(")]  # a function
    return {w for w in words if w not in _PROMQL_WORDS}


def test_metric_names_parser():
    assert _metric_names('sum by (group) (rate(upbit_bot_x_total{a="b"}[$__rate_interval]))'
                         ' / on (group) upbit_bot_y') == {"upbit_bot_x_total", "upbit_bot_y"}


def test_prometheus_expressions_name_only_served_and_documented_metrics(exporter_metrics):
    documented = _readme_metrics()
    targets = _targets("prometheus")
    assert len(targets) >= 6
    used = set()
    for panel, target in targets:
        names = _metric_names(target["expr"])
        assert names, panel["title"]
        assert names <= documented, (panel["title"], names - documented)
        assert names <= exporter_metrics, (panel["title"], names - exporter_metrics)
        used |= names
    assert used >= {"upbit_bot_decisions_total", "upbit_bot_upbit_requests_total",
                    "upbit_bot_upbit_rate_limited_total", "upbit_bot_upbit_banned_total",
                    "upbit_bot_heartbeat_age_seconds", "upbit_bot_candle_age_seconds"}


def test_panels_that_read_the_database_query_it_directly():
    kinds = {p["title"]: {_ds_type(t["datasource"]["uid"]) for t in p["targets"]}
             for p in _panels()}
    for title, kind in kinds.items():
        assert len(kind) == 1, title
    for panel, target in _targets("sql"):
        assert re.search(r"\b(candles|fills|equity_days)\b", target["rawSql"]), panel["title"]
    titles = set(kinds)
    assert {"Decisions by reason class", "Upbit requests per second", "Heartbeat age",
            "Candle age"} <= {t for t, k in kinds.items() if k == {"prometheus"}} <= titles


# --- compose ----------------------------------------------------------------------


def test_compose_runs_prometheus_and_grafana_under_the_monitoring_profile():
    services = COMPOSE["services"]
    expected_ports = {"prometheus": "127.0.0.1:9090:9090", "grafana": "127.0.0.1:3000:3000"}
    for name, port in expected_ports.items():
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), image
        assert service["ports"] == [port], name
        for volume in service["volumes"]:
            source, target, mode = volume.split(":")
            path = (ROOT / "bin" / source).resolve()
            assert path.is_file() and MONITORING in path.parents, volume
            assert mode == "ro", volume
    mounts = {v.split(":")[1]: Path(v.split(":")[0]).name
              for s in ("prometheus", "grafana") for v in services[s]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    # the dashboards provider reads the folder the dashboard is mounted in
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards"
                               / "dashboards.yml").read_text())["providers"][0]
    folder = provider["options"]["path"]
    assert any(t.startswith(folder + "/") and n.endswith(".json") for t, n in mounts.items())
    assert any(t.startswith("/etc/grafana/provisioning/datasources/") for t in mounts)
    assert any(t.startswith("/etc/grafana/provisioning/dashboards/") for t in mounts)
    for port in (p for s in services.values() for p in s.get("ports", [])):
        assert str(port).startswith("127.0.0.1:")
