"""What Upbit says about the markets (bot.data.markets): the stored listing with
warnings and cautions, logged once per change; ticks; the account's fees; and
the trader refusing new buys on a warned market while it still sells."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest

from bot.data import markets as job
from bot.errors import ExchangeTemporaryError
from bot.exchange.paper import PaperExchange
from bot.models import Balance, MarketInfo, OrderChance, Ticker
from bot.storage import markets as market_store
from bot.storage import paper as paper_store
from bot.trading.lifecycle import TradeContext
from bot.trading.terms import terms_of
from bot.trading.trader import trade_market
from testkit.candles import T0, store_closes
from testkit.clock import FakeClock
from testkit.settings import make_settings

D = Decimal
M, OTHER = "KRW-BTC", "KRW-XRP"
RISING = [100_000 + 300 * i for i in range(200)]  # every signal +1: a buy
FALLING = list(reversed(RISING))  # every signal -1: a sell
AFTER = T0 + timedelta(minutes=200, seconds=1)


class Source:
    """Upbit's answers, as the client parses them."""

    def __init__(self) -> None:
        self.infos = {m: MarketInfo(m, m, m) for m in (M, OTHER, "KRW-ETH", "BTC-ETH")}
        self.ticks: dict[str, Decimal] = {M: D(1000), OTHER: D("0.1")}
        self.fail_ticks = False
        self.chance = {M: OrderChance(M, D("0.0005"), D("0.0005"), D("0.0002"), D("0.0002"),
                                      D(5000), D(5000))}
        self.asked_ticks: list[list[str]] = []

    def markets(self, details: bool = True) -> list[MarketInfo]:
        return list(self.infos.values())

    def tickers_all(self, quote: str = "KRW") -> list[Ticker]:
        return [Ticker(m, D(1), D(1_000_000) * (k + 1), T0)
                for k, m in enumerate(self.infos) if m.startswith(quote + "-")]

    def tick_sizes(self, markets):
        self.asked_ticks.append(list(markets))
        if self.fail_ticks:
            raise ExchangeTemporaryError("timed out", status=0)
        return {m: self.ticks.get(m, D(1)) for m in markets}

    def order_chance(self, market: str) -> OrderChance:
        return self.chance[market]

    def warn(self, market: str, *, warning: bool = False, cautions: tuple[str, ...] = ()) -> None:
        self.infos[market] = MarketInfo(market, market, market, warning, frozenset(cautions))


@pytest.fixture
def source():
    return Source()


def _events(caplog, name):
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def test_the_listing_is_stored_and_each_change_of_a_traded_market_told_once(db, source, caplog):
    told = []
    notify = lambda name, **f: told.append((name, f))  # noqa: E731
    with caplog.at_level(logging.INFO, logger="bot.data.markets"):
        first = job.refresh_listing(db, source, T0, [M], notify=notify)
    assert {c.market for c in first} == {M, OTHER, "KRW-ETH"}  # first sight; BTC-ETH is not KRW
    assert not _events(caplog, "market.warning") and not told  # clean on first sight: quiet
    rows = market_store.all_rows(db)
    assert set(rows) == {M, OTHER, "KRW-ETH"} and rows[M].listed and not rows[M].warning
    assert rows["KRW-ETH"].traded_value_24h == D(3_000_000)

    source.warn(M, warning=True)
    source.warn(OTHER, cautions=("PRICE_FLUCTUATIONS",))  # not traded: stored, not told
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bot.data.markets"):
        job.refresh_listing(db, source, T0 + timedelta(hours=1), [M], notify=notify)
        again = job.refresh_listing(db, source, T0 + timedelta(hours=2), [M], notify=notify)
    assert again == []  # nothing new: nothing told twice
    (line,) = _events(caplog, "market.warning")
    assert line.fields["market"] == M and line.levelno == logging.WARNING
    assert "investment warning" in line.fields["detail"]
    assert told == [("market.warning", {"market": M, "detail": line.fields["detail"]})]
    rows = market_store.all_rows(db)
    assert rows[M].warning and rows[M].changed_at == T0 + timedelta(hours=1)
    assert rows[OTHER].cautions == ("PRICE_FLUCTUATIONS",)

    source.warn(M)
    del source.infos["KRW-ETH"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bot.data.markets"):
        job.refresh_listing(db, source, T0 + timedelta(hours=3), [M, "KRW-ETH"], notify=notify)
    assert [r.fields["market"] for r in _events(caplog, "market.cleared")] == [M]
    (gone,) = _events(caplog, "market.warning")
    assert gone.fields["market"] == "KRW-ETH"
    assert gone.fields["detail"] == "Upbit no longer lists it"
    assert not market_store.get(db, "KRW-ETH").listed


def test_terms_refuse_buys_on_warned_cautioned_and_delisted_markets(db, database_url, source):
    settings = make_settings(database_url)
    assert terms_of(settings, db, M).blocked is None  # never read: nothing blocks
    job.refresh_listing(db, source, T0, [M])
    assert terms_of(settings, db, M).blocked is None
    source.warn(M, cautions=("TRADING_VOLUME_SOARING",))
    job.refresh_listing(db, source, T0, [M])
    trigger, reason = terms_of(settings, db, M).blocked
    assert trigger == "market_caution" and "BUY_ON_CAUTION=false" in reason
    assert terms_of(make_settings(database_url, BUY_ON_CAUTION="true"), db, M).blocked is None
    source.warn(M, warning=True, cautions=("TRADING_VOLUME_SOARING",))
    job.refresh_listing(db, source, T0, [M])
    assert terms_of(make_settings(database_url, BUY_ON_CAUTION="true"), db,
                    M).blocked[0] == "market_warning"
    del source.infos[M]
    job.refresh_listing(db, source, T0, [M])
    assert terms_of(settings, db, M).blocked[0] == "delisted"


def test_ticks_are_read_daily_and_kept_when_upbit_cannot_be_read(db, database_url, source,
                                                                caplog):
    settings = make_settings(database_url, MARKETS=f"{M},{OTHER}")
    job.refresh(db, source, settings, T0)
    assert source.asked_ticks == [[M, OTHER]]
    assert terms_of(settings, db, M).tick == D(1000)
    job.refresh(db, source, settings, T0 + timedelta(hours=23))
    assert len(source.asked_ticks) == 1  # less than a day old: not asked again
    source.ticks[M] = D(500)
    source.fail_ticks = True
    with caplog.at_level(logging.WARNING, logger="bot.data.markets"):
        job.refresh(db, source, settings, T0 + timedelta(days=1))
    assert _events(caplog, "market.ticks_unavailable")
    assert terms_of(settings, db, M).tick == D(1000)  # the stored tick stays in use
    source.fail_ticks = False
    job.refresh(db, source, settings, T0 + timedelta(days=1, minutes=1))
    assert terms_of(settings, db, M).tick == D(500)


def test_live_fees_come_from_the_exchange_and_a_mismatch_is_told_once(db, database_url, source,
                                                                     caplog):
    settings = make_settings(database_url, TRADING_MODE="live", UPBIT_ACCESS_KEY="a",
                             UPBIT_SECRET_KEY="b", FEE_RATE="0.0025")
    with caplog.at_level(logging.WARNING, logger="bot.data.markets"):
        job.refresh(db, source, settings, T0)
        job.refresh(db, source, settings, T0 + timedelta(days=1))  # the same values again
    (line,) = _events(caplog, "market.fees_differ")
    assert "fee bid 0.0005 / ask 0.0005 (FEE_RATE=0.0025)" in line.fields["detail"]
    terms = terms_of(settings, db, M)
    assert (terms.bid_fee, terms.min_order_krw) == (D("0.0005"), D(5000))
    # paper trading keeps the settings' values
    assert terms_of(make_settings(database_url, FEE_RATE="0.0025"), db, M).bid_fee == D("0.0025")


def _ctx(db, database_url, clock):
    settings = make_settings(database_url)
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    return TradeContext(settings, db, exchange, now=clock, notify=lambda *a, **k: None)


def test_a_warned_market_buys_nothing_while_its_position_is_still_sold(db, database_url,
                                                                      source):
    clock = FakeClock(AFTER)
    ctx = _ctx(db, database_url, clock)
    source.warn(M, warning=True)
    job.refresh_listing(db, source, T0, [M])
    store_closes(db, M, RISING)
    refused = trade_market(ctx, M)
    assert (refused.action, refused.trigger) == ("hold", "market_warning")
    assert "investment warning" in refused.reason and refused.order is None

    # Held before the warning: the sell signal still sells.
    with db.cursor() as cur:
        paper_store.ensure_account(cur, D(1_000_000))
        paper_store.lock_balance(cur, "BTC")
        paper_store.save_balance(cur, Balance("BTC", D("0.1"), D(0), D(150_000)))
    later = T0 + timedelta(minutes=200)
    store_closes(db, M, FALLING, start=later)
    clock.current = later + timedelta(minutes=200, seconds=1)
    sold = trade_market(ctx, M)
    assert (sold.action, sold.trigger) == ("sell", "signal")
    assert sold.order is not None and sold.order.side == "ask" and sold.order_state == "wait"


def test_orders_follow_the_markets_own_tick(db, database_url, source):
    clock = FakeClock(AFTER)
    ctx = _ctx(db, database_url, clock)
    source.ticks[M] = D(1000)  # the KRW table says 100 at this price
    job.refresh(db, source, ctx.settings, T0)
    store_closes(db, M, [c + 1234 for c in RISING])
    out = trade_market(ctx, M)
    # 160,934 * 1.0015 = 161,175.40: up to 162,000 on the market's tick (the table: 161,200)
    assert out.order.price == D(162_000)
    assert ctx.exchange.get_order(identifier=out.identifier).price == D(162_000)


def test_bot_status_shows_a_warned_market_as_a_problem(db, database_url, source):
    from bot.exchange.factory import make_exchange
    from bot.report import status
    from bot.report.render import render
    settings = make_settings(database_url)
    store_closes(db, M, RISING)
    source.warn(M, warning=True)
    job.refresh_listing(db, source, T0 + timedelta(minutes=30), [M])
    got = status.collect(settings, db, make_exchange(settings, db, view=True), {},
                         now=AFTER, wall=AFTER.timestamp())
    (entry,) = got["markets"]
    assert entry["upbit"]["warning"] and entry["upbit"]["listed"]
    assert f"{M}: under investment warning (유의 종목) since 01-05 00:30Z: no new buys" in \
        got["problems"]
    assert [g["name"] for g in entry["guards"]] == ["market_warning"]
    text = render(got)
    assert "upbit    INVESTMENT WARNING (유의 종목) since 01-05 00:30Z" in text
    assert "guard    market_warning until it changes: no buys" in text


def test_top_n_takes_the_most_traded_unwarned_markets_and_follows_changes(db, database_url,
                                                                       source, caplog):
    # traded values: KRW-BTC 1M, KRW-XRP 2M, KRW-ETH 3M (Source.tickers_all)
    settings = make_settings(database_url, MARKETS="top:2", MARKETS_EXCLUDE="")
    assert settings.markets == () and settings.markets_top == 2
    first = job.refresh(db, source, settings, T0)
    assert market_store.traded(settings, db) == ("KRW-ETH", OTHER)
    assert set(first.joined) == {"KRW-ETH", OTHER}
    # a warned market leaves, the next most traded joins
    source.warn("KRW-ETH", warning=True)
    with caplog.at_level(logging.INFO, logger="bot.data.markets"):
        second = job.refresh(db, source, settings, T0 + timedelta(hours=1))
    assert market_store.traded(settings, db) == (OTHER, M) and second.joined == (M,)
    (line,) = _events(caplog, "markets.selected")
    assert line.fields["joined"] == M and line.fields["left"] == "KRW-ETH"
    # excluded and cautioned markets are never chosen (unless BUY_ON_CAUTION)
    source.warn("KRW-ETH")
    source.warn(OTHER, cautions=("PRICE_FLUCTUATIONS",))
    excluding = make_settings(database_url, MARKETS="top:2", MARKETS_EXCLUDE="KRW-ETH")
    job.refresh(db, source, excluding, T0 + timedelta(hours=2))
    assert market_store.traded(excluding, db) == (M,)
    caution_ok = make_settings(database_url, MARKETS="top:2", BUY_ON_CAUTION="true")
    job.refresh(db, source, caution_ok, T0 + timedelta(hours=3))
    assert market_store.traded(caution_ok, db) == ("KRW-ETH", OTHER)


def test_a_market_that_left_top_n_is_still_sold_but_never_bought(db, database_url, source):
    settings = make_settings(database_url, MARKETS="top:1")
    clock = FakeClock(AFTER)
    exchange = PaperExchange(db, start_krw=settings.paper_start_krw, fee_rate=settings.fee_rate,
                             min_order_krw=settings.min_order_krw, now=clock)
    ctx = TradeContext(settings, db, exchange, now=clock, notify=lambda *a, **k: None)
    source.infos = {m: MarketInfo(m, m, m) for m in (M, "KRW-ETH")}  # ETH trades more
    job.refresh(db, source, settings, T0)
    assert market_store.traded(settings, db) == ("KRW-ETH",)
    store_closes(db, M, RISING)
    refused = trade_market(ctx, M)
    assert (refused.action, refused.trigger) == ("hold", "deselected")
    # a position in it is still looked after, and sold on a sell signal
    with db.cursor() as cur:
        paper_store.ensure_account(cur, D(1_000_000))
    from bot.storage import orders as order_store
    with db.cursor() as cur:
        order_id = order_store.insert_new(cur, identifier="held-before", mode="paper", market=M,
                                          side="bid", price=D(100_000), volume=D("0.1"),
                                          decision_id=None, created_at=T0)
    order_store.insert_fill(db, order_store.by_id(db, order_id),
                            _fill(D(100_000), D("0.1")), D(5))
    with db.cursor() as cur:
        cur.execute("UPDATE orders SET state = 'done' WHERE id = %s", (order_id,))
        paper_store.lock_balance(cur, "BTC")
        paper_store.save_balance(cur, Balance("BTC", D("0.1"), D(0), D(100_000)))
    assert market_store.managed(settings, db) == ("KRW-ETH", M)
    later = T0 + timedelta(minutes=200)
    store_closes(db, M, FALLING, start=later)
    clock.current = later + timedelta(minutes=200, seconds=1)
    sold = trade_market(ctx, M)
    assert sold.action == "sell" and sold.order is not None and sold.order.side == "ask"


def _fill(price, volume):
    from bot.models import Fill
    return Fill("fill-held-before", M, "bid", price, volume, price * volume, T0)
