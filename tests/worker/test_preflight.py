"""The live preflight at a worker's start (bot/exchange/preflight.py, run by
bot/worker/signals.py): each problem with the key, its permissions or MARKETS
gives one line and its level, against the fake Upbit server; a fatal one ends
a real worker with exit code 2 and that line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import Settings
from bot.exchange import preflight as pf
from bot.exchange.upbit import UpbitClient
from bot.worker import signals
from testkit import ROOT
from testkit.fakeupbit import KEY_SCOPES, FakeUpbit, ManualClock
from testkit.logcapture import LINE, captured_logs
from testkit.settings import make_settings

ACCESS = "preflight-access-key-0123"
SECRET = "preflight-secret-key-" * 4
NOW = "2025-01-01T00:10:30Z"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeUpbit]:
    with FakeUpbit(markets=("KRW-BTC", "KRW-ETH"), clock=clock, history_minutes=30,
                   start_price={"KRW-BTC": 50_000_000, "KRW-ETH": 3_000_000},
                   access_key=ACCESS, secret_key=SECRET) as server:
        yield server
        assert server.errors == []


@pytest.fixture(autouse=True)
def daemon_clock(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's "now" is the fake's, as with BOT_CLOCK_* in the end-to-end runs."""
    monkeypatch.setattr(signals.clock, "now", clock)


def live(fake: FakeUpbit, **overrides: str) -> Settings:
    values = {"TRADING_MODE": "live", "UPBIT_ACCESS_KEY": ACCESS, "UPBIT_SECRET_KEY": SECRET,
              "UPBIT_API_BASE": fake.url, "MARKETS": "KRW-BTC,KRW-ETH", **overrides}
    return make_settings(**values)


def client_for(settings: Settings, *, access: str | None = None,
               secret: str | None = None) -> UpbitClient:
    # No retries: a test of a temporary failure must not wait through the backoff.
    return UpbitClient(settings.upbit_api_base, access or settings.upbit_access_key,
                       secret or settings.upbit_secret_key, max_retries=0, timeout=5.0)


def check(fake: FakeUpbit, clock: ManualClock, settings: Settings | None = None,
          **keys: str) -> pf.Preflight:
    settings = settings or live(fake)
    with client_for(settings, **keys) as client:
        return pf.preflight(client, settings, clock())


def only(result: pf.Preflight) -> pf.Finding:
    assert len(result.findings) == 1, result.findings
    return result.findings[0]


def no_secret_in(result: pf.Preflight) -> None:
    for finding in result.findings:
        assert ACCESS not in finding.line and SECRET not in finding.line
        assert ACCESS not in repr(finding)


# --- each check --------------------------------------------------------------------------


def test_all_well_runs_every_check_and_places_nothing(fake: FakeUpbit, clock: ManualClock):
    result = check(fake, clock)
    assert result.findings == () and result.fatal is None
    assert result.checked == pf.CHECKS
    assert fake.stats["/v1/orders/test"].statuses == {201: 1}
    assert fake.orders == []  # a test order is never placed
    krw = fake.balances()["KRW"]
    assert (krw.balance, krw.locked) == (1_000_000, 0)


def test_paper_mode_checks_nothing(fake: FakeUpbit, clock: ManualClock):
    result = check(fake, clock, live(fake, TRADING_MODE="paper"))
    assert result == pf.Preflight()
    assert fake.requests == []


@pytest.mark.parametrize(("keys", "name"), [
    ({"access": "someone-elses-access-key"}, "invalid_access_key"),
    ({"secret": "a-secret-that-signs-nothing-" * 3}, "jwt_verification"),
])
def test_a_wrong_key_pair_is_fatal(fake: FakeUpbit, clock: ManualClock,
                                   keys: dict[str, str], name: str):
    result = check(fake, clock, **keys)
    finding = only(result)
    assert (finding.check, finding.level, finding.name) == ("keys", pf.FATAL, name)
    assert finding.line == ("UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY are not a valid Upbit key "
                            "pair: copy both from Upbit's Open API page")
    assert result.fatal is finding and result.checked == ("keys",)
    no_secret_in(result)


def test_an_ip_not_on_the_allow_list_is_fatal(fake: FakeUpbit, clock: ManualClock):
    fake.allowed_ips = {"203.0.113.7"}
    finding = only(check(fake, clock))
    assert (finding.check, finding.level, finding.name) == (
        "keys", pf.FATAL, "no_authorization_i_p")
    assert finding.line == ("no_authorization_i_p: add this server's IP to the key's allow "
                            "list on Upbit's Open API page")


def test_an_expired_key_is_fatal(fake: FakeUpbit, clock: ManualClock):
    fake.expire_key()
    finding = only(check(fake, clock))
    assert (finding.check, finding.level, finding.name) == ("keys", pf.FATAL,
                                                            "expired_access_key")
    assert finding.line == ("the Upbit API key has expired (keys last one year): issue a new "
                            "one and set UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY")


def test_a_key_expiring_within_30_days_is_a_warning(fake: FakeUpbit, clock: ManualClock):
    fake.key_expires_at(clock() + timedelta(days=12, hours=5))
    result = check(fake, clock)
    finding = only(result)
    assert (finding.check, finding.level, finding.days_left) == ("key_expiry", pf.WARNING, 12)
    assert finding.line == ("the Upbit API key expires on 2025-01-13 (12 days): issue a new "
                            "one before then")
    assert result.expiring is finding and result.fatal is None
    assert result.checked == pf.CHECKS  # a warning does not stop the checks
    no_secret_in(result)


def test_a_key_expiring_in_more_than_30_days_is_fine(fake: FakeUpbit, clock: ManualClock):
    fake.key_expires_at(clock() + timedelta(days=30, minutes=1))
    assert check(fake, clock).findings == ()


def test_a_key_without_the_order_permission_is_fatal(fake: FakeUpbit, clock: ManualClock):
    fake.key_scopes = set(KEY_SCOPES) - {"make_orders"}
    result = check(fake, clock)
    finding = only(result)
    assert (finding.check, finding.level, finding.name) == ("permission", pf.FATAL,
                                                            "out_of_scope")
    assert finding.line == ("the key lacks the order permission (주문하기): enable it for this "
                            "key on Upbit's Open API page")
    assert result.checked == ("keys", "key_expiry", "permission")


@pytest.mark.parametrize(("scope", "check_name", "permission"), [
    ("view_account", "keys", "account view permission (자산조회)"),
    ("view_orders", "permission", "order view permission (주문조회)"),
])
def test_a_key_without_a_view_permission_is_fatal(fake: FakeUpbit, clock: ManualClock,
                                                  scope: str, check_name: str,
                                                  permission: str):
    fake.key_scopes = set(KEY_SCOPES) - {scope}
    finding = only(check(fake, clock))
    assert (finding.check, finding.level) == (check_name, pf.FATAL)
    assert finding.line == (f"the key lacks the {permission}: enable it for this key on "
                            "Upbit's Open API page")


def test_a_test_order_refused_for_funds_is_no_finding(clock: ManualClock):
    # The permission is proven by the refusal coming after the key's checks;
    # having no KRW is the trader's business, not a reason to stop a start.
    with FakeUpbit(clock=clock, history_minutes=30, krw=0, access_key=ACCESS,
                   secret_key=SECRET) as server:
        result = check(server, clock, live(server, MARKETS="KRW-BTC"))
        refused = server.stats["/v1/orders/test"].statuses
    assert result.findings == () and result.checked == pf.CHECKS
    assert refused == {400: 1}


def test_the_test_order_is_on_the_tick_far_below_the_market_and_worth_the_minimum(
        fake: FakeUpbit, clock: ManualClock):
    fake.set_min_total(20_000)
    settings = live(fake)
    assert check(fake, clock, settings).findings == ()
    sent = [r for r in fake.private_requests if r.path == "/v1/orders/test"]
    assert len(sent) == 1
    params = dict(sent[0].params)
    price, volume = (Decimal(params[k]) for k in ("price", "volume"))
    with client_for(settings) as client:
        last = Decimal(str(client.ticker(["KRW-BTC"])[0]["trade_price"]))
    assert params["market"] == "KRW-BTC" and params["side"] == "bid"
    assert price <= last * pf.TEST_PRICE_RATIO and price % fake.tick("KRW-BTC", price) == 0
    assert 20_000 <= price * volume < 20_000 + price * Decimal("0.00000001")


def test_a_configured_market_upbit_does_not_list_is_fatal(fake: FakeUpbit, clock: ManualClock):
    fake.delist_market("KRW-ETH")
    result = check(fake, clock)
    finding = only(result)
    assert (finding.check, finding.level, finding.name) == ("markets", pf.FATAL, "")
    assert finding.line == ("MARKETS names KRW-ETH, which Upbit does not list: remove it or "
                            "fix the name")
    assert result.checked == pf.CHECKS


def test_unknown_markets_are_named_together_and_the_permission_is_still_checked(
        fake: FakeUpbit, clock: ManualClock):
    fake.key_scopes = set(KEY_SCOPES) - {"make_orders"}
    settings = live(fake, MARKETS="KRW-XXX,KRW-YYY")
    result = check(fake, clock, settings)
    # No configured market is listed: the permission is tested on KRW-BTC.
    assert only(result).line.startswith("the key lacks the order permission")
    fake.key_scopes = set(KEY_SCOPES)
    finding = only(check(fake, clock, settings))
    assert finding.line == ("MARKETS names KRW-XXX, KRW-YYY, which Upbit does not list: "
                            "remove them or fix the names")


def test_markets_top_n_skips_the_market_check(fake: FakeUpbit, clock: ManualClock):
    result = check(fake, clock, live(fake, MARKETS="top:3"))
    assert result.findings == ()
    assert result.checked == ("keys", "key_expiry", "permission")


@pytest.mark.parametrize(("path", "check_name"), [
    (None, "keys"),
    ("/v1/orders/test", "permission"),
])
def test_a_temporary_failure_is_a_warning_and_no_verdict(fake: FakeUpbit, clock: ManualClock,
                                                         path: str | None, check_name: str):
    fake.fail_next(3, status=500, path_prefix=path)
    result = check(fake, clock)
    finding = only(result)
    assert (finding.check, finding.level, finding.temporary) == (check_name, pf.WARNING, True)
    assert finding.line.startswith("could not reach Upbit to check the key (upbit ")
    assert finding.line.endswith("): the workers will retry")
    assert result.fatal is None and result.checked[-1] == check_name
    no_secret_in(result)


# --- at the worker's start -----------------------------------------------------------------


def start(settings: Settings, role: str = "trader") -> tuple[str, BaseException | None]:
    runtime: Any = SimpleNamespace(upbit=client_for(settings))
    with captured_logs() as stream:
        try:
            signals.run_preflight(settings, runtime, role)
        except SystemExit as exc:
            return stream.getvalue(), exc
    return stream.getvalue(), None


def events(text: str) -> list[tuple[str, str]]:
    return [(m.group(2).strip(), m.group(4)) for m in map(LINE.match, text.splitlines()) if m]


def test_the_start_logs_passed_when_all_is_well(fake: FakeUpbit):
    text, stopped = start(live(fake))
    assert stopped is None
    assert events(text) == [("INFO", "preflight.passed")]
    assert "checks=keys,key_expiry,permission,markets" in text


def test_a_fatal_finding_ends_the_start_with_exit_2_and_one_line(
        fake: FakeUpbit, capsys: pytest.CaptureFixture[str]):
    fake.allowed_ips = {"203.0.113.7"}
    text, stopped = start(live(fake))
    assert isinstance(stopped, SystemExit) and stopped.code == 2
    assert events(text) == [("ERROR", "preflight.failed")]
    assert "check=keys error=no_authorization_i_p" in text
    assert capsys.readouterr().err == (
        "bot: no_authorization_i_p: add this server's IP to the key's allow list on Upbit's "
        "Open API page\n")


def test_a_warning_is_logged_and_the_start_goes_on(fake: FakeUpbit):
    fake.fail_next(3, status=503)
    text, stopped = start(live(fake))
    assert stopped is None
    assert events(text) == [("WARNING", "preflight.warning")]
    assert "could not reach Upbit to check the key" in text


@pytest.mark.parametrize(("role", "known", "sent"), [
    ("trader", True, True), ("collector", True, False), ("trader", False, False)])
def test_the_trader_notifies_a_key_about_to_expire(
        fake: FakeUpbit, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        role: str, known: bool, sent: bool):
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr("bot.report.notify.notifier",
                        lambda _settings: lambda name, **fields: calls.append((name, fields)))
    names = tuple(n for n in signals.NOTIFY_EVENT_NAMES if n != signals.KEY_EXPIRING)
    monkeypatch.setattr(signals, "NOTIFY_EVENT_NAMES",
                        (*names, signals.KEY_EXPIRING) if known else names)
    fake.key_expires_at(clock() + timedelta(days=3))
    text, stopped = start(live(fake), role)
    assert stopped is None
    assert events(text) == [("WARNING", "preflight.warning")]
    assert "the Upbit API key expires on 2025-01-04 (3 days)" in text
    assert calls == ([("key.expiring", {
        "days": 3, "expires": "2025-01-04",
        "detail": "the Upbit API key expires on 2025-01-04 (3 days): issue a new one before "
                  "then"})] if sent else [])


# --- a real worker ---------------------------------------------------------------------------


def test_a_live_worker_with_a_bad_key_exits_2_before_consuming(tmp_path, database_url: str):
    with FakeUpbit(history_minutes=10, access_key=ACCESS, secret_key=SECRET) as server:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "TRADING_MODE": "live",
               "UPBIT_ACCESS_KEY": "not-the-fakes-access-key", "UPBIT_SECRET_KEY": SECRET,
               "UPBIT_API_BASE": server.url, "DATABASE_URL": database_url,
               # Nothing listens there: the worker must stop before it consumes.
               "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
               "CELERY_BACKEND_URL": "redis://127.0.0.1:1/1"}
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "celery", "-A", "bot.worker.app", "worker",
                               "-Q", "trader_queue"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
    assert done.returncode == 2, done.stderr
    line = ("bot: UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY are not a valid Upbit key pair: copy both "
            "from Upbit's Open API page")
    assert [x for x in done.stderr.splitlines() if x.startswith("bot: ")] == [line]
    assert "preflight.failed" in done.stderr and "worker.started" not in done.stderr
    assert "Traceback" not in done.stderr
    assert "not-the-fakes-access-key" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
    assert took < 15
