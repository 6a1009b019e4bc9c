"""The live preflight: before a worker consumes, ask Upbit whether the keys,
their permissions and the configured markets will do, so that a bad key stops
the start with one clear line instead of failing every job afterwards.

The checks run in order (:data:`CHECKS`); each gives at most one
:class:`Finding`, ``fatal`` (the daemon cannot trade with these settings: the
worker exits 2, bot/worker/signals.py) or ``warning``. A temporary failure
(network, 5xx, 429, a ban) is no verdict about the key: it is a warning, and
the checks after it are skipped, since they would only wait on the same outage;
so is stopping after a fatal finding, which the operator fixes first. Paper
mode checks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

from bot.errors import AuthError, Banned, ExchangeError, ExchangeTemporaryError
from bot.money import VOLUME_QUANTUM, round_price

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.exchange.upbit import UpbitClient

log = logging.getLogger(__name__)

FATAL = "fatal"
WARNING = "warning"
CHECKS = ("keys", "key_expiry", "permission", "markets")
EXPIRY_NOTICE = timedelta(days=30)
# The test bid sits far below the market, so that it would not fill even if
# Upbit ever placed it.
TEST_PRICE_RATIO = Decimal("0.5")
# With MARKETS=top:N no market is configured; the order permission is
# checked on this one (when Upbit lists it).
FALLBACK_MARKET = "KRW-BTC"

KEY_PAIR = ("UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY are not a valid Upbit key pair: copy both "
            "from Upbit's Open API page")
EXPIRED = ("the Upbit API key has expired (keys last one year): issue a new one and set "
           "UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY")
IP_NOT_ALLOWED = ("no_authorization_i_p: add this server's IP to the key's allow list on "
                  "Upbit's Open API page")
# out_of_scope, by the permission the refused call needs (Upbit's Korean names
# as its Open API page shows them).
NO_ACCOUNT_VIEW = ("the key lacks the account view permission (자산조회): enable it for this "
                   "key on Upbit's Open API page")
NO_ORDER_VIEW = ("the key lacks the order view permission (주문조회): enable it for this key "
                 "on Upbit's Open API page")
NO_ORDERS = ("the key lacks the order permission (주문하기): enable it for this key on "
             "Upbit's Open API page")
_KEY_LINES = {"invalid_access_key": KEY_PAIR, "jwt_verification": KEY_PAIR,
              "expired_access_key": EXPIRED, "no_authorization_i_p": IP_NOT_ALLOWED}


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: ``line`` names the problem and what to do (never
    a key); ``name`` is Upbit's error name when Upbit gave one. A key-expiry
    warning carries when the key expires and the whole days left."""

    check: str
    level: str
    line: str
    name: str = ""
    expires_at: datetime | None = None
    days_left: int | None = None
    # No verdict: Upbit could not be asked (the checks after it are skipped).
    temporary: bool = False

    @property
    def fatal(self) -> bool:
        return self.level == FATAL


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the preflight found (nothing when all is well) and which checks ran."""

    findings: tuple[Finding, ...] = ()
    checked: tuple[str, ...] = ()

    @property
    def fatal(self) -> Finding | None:
        """The fatal finding, if any (the checks stop at the first)."""
        return next((f for f in self.findings if f.fatal), None)

    @property
    def expiring(self) -> Finding | None:
        """The key-expiry warning, if the key expires soon."""
        return next((f for f in self.findings if f.check == "key_expiry"), None)


def preflight(client: UpbitClient, settings: Settings, now: datetime) -> Preflight:
    """Run the live checks against Upbit (paper mode: none) and return the findings."""
    if not settings.live:
        return Preflight()
    run = _Run(client, settings, now)
    findings: list[Finding] = []
    checked: list[str] = []
    for name, check in run.checks():
        checked.append(name)
        finding = _guarded(name, check)
        if finding is None:
            continue
        findings.append(finding)
        if finding.fatal or finding.temporary:
            break
    return Preflight(tuple(findings), tuple(checked))


def _guarded(name: str, check: Callable[[], Finding | None]) -> Finding | None:
    """The check's finding; an answer that is no verdict (outage, ban, an
    error Upbit was not expected to give) becomes the one warning that says so."""
    try:
        return check()
    except AuthError as exc:
        return _auth_finding(name, exc)
    except ExchangeError as exc:  # temporary, a ban, or an answer out of Upbit's usual
        return _unreachable(name, exc)


def _unreachable(name: str, exc: ExchangeError) -> Finding:
    what = "the markets" if name == "markets" else "the key"
    return Finding(name, WARNING,
                   f"could not reach Upbit to check {what} ({_short(exc)}): the workers will "
                   "retry", name=exc.name, temporary=True)


def _short(exc: ExchangeError) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _auth_finding(check: str, exc: AuthError, no_scope: str = NO_ACCOUNT_VIEW) -> Finding:
    """Upbit refused the key: which of the fatal lines it is. A refusal that
    says nothing about the key itself (``nonce_used``, ...) is a warning."""
    if exc.name == "out_of_scope":
        return Finding(check, FATAL, no_scope, name=exc.name)
    line = _KEY_LINES.get(exc.name)
    if line is not None:
        return Finding(check, FATAL, line, name=exc.name)
    return Finding(check, WARNING,
                   f"Upbit refused the key check ({exc.name or exc.status}: "
                   f"{exc.error_message[:120]}): the workers will retry; if it lasts, check "
                   "UPBIT_ACCESS_KEY/UPBIT_SECRET_KEY on Upbit's Open API page", name=exc.name,
                   temporary=True)


class _Run:
    """One preflight's checks, sharing Upbit's market list between them."""

    def __init__(self, client: UpbitClient, settings: Settings, now: datetime):
        self.client = client
        self.settings = settings
        self.now = now
        self._listed: frozenset[str] | None = None

    def checks(self) -> list[tuple[str, Callable[[], Finding | None]]]:
        steps: list[tuple[str, Callable[[], Finding | None]]] = [
            ("keys", self.keys), ("key_expiry", self.key_expiry),
            ("permission", self.permission)]
        if self.settings.markets:  # MARKETS=top:N picks only markets Upbit lists
            steps.append(("markets", self.markets))
        return steps

    def listed(self) -> frozenset[str]:
        if self._listed is None:
            self._listed = frozenset(m.market for m in self.client.markets(details=False))
        return self._listed

    def keys(self) -> Finding | None:
        """The key pair answers from this IP and may read the account."""
        self.client.balances()
        return None

    def key_expiry(self) -> Finding | None:
        try:
            keys = self.client.api_keys()
        except AuthError as exc:
            if exc.name == "out_of_scope":
                return None  # trading does not need to list the keys
            raise
        ours = [k for k in keys if k.access_key == self.settings.upbit_access_key]
        if not ours:
            return None
        expire_at = min(k.expire_at for k in ours)
        left = expire_at - self.now
        if left > EXPIRY_NOTICE:
            return None
        days = max(0, left // timedelta(days=1))
        return Finding("key_expiry", WARNING,
                       f"the Upbit API key expires on {expire_at:%Y-%m-%d} ({days} "
                       f"day{'' if days == 1 else 's'}): issue a new one before then",
                       expires_at=expire_at, days_left=days)

    def permission(self) -> Finding | None:
        """The key may view and place orders: Upbit checks a test bid
        (``POST /v1/orders/test``), which places nothing."""
        market = self._test_market()
        if market is None:
            return None  # Upbit lists none of them: the markets check says so
        try:
            chance = self.client.order_chance(market)
        except AuthError as exc:
            return _auth_finding("permission", exc, NO_ORDER_VIEW)
        order = self._test_bid(market, chance.min_total_bid)
        if order is None:
            return None
        try:
            self.client.test_order(market, "bid", *order)
        except AuthError as exc:
            return _auth_finding("permission", exc, NO_ORDERS)
        except (ExchangeTemporaryError, Banned):
            raise
        except ExchangeError as exc:
            # Refused for the order itself (funds, tick, minimum): Upbit
            # checks the key's permissions before it reads the order
            # (testkit/fakeupbit.py does the same), so the permission is
            # there. Funds are the trader's business, not a start's.
            log.debug("test order refused: %s", exc.name)
        return None

    def _test_market(self) -> str | None:
        listed = self.listed()
        for market in (*self.settings.markets, FALLBACK_MARKET):
            if market in listed:
                return market
        return next((m for m in sorted(listed) if m.startswith("KRW-")), None)

    def _test_bid(self, market: str, min_total: Decimal) -> tuple[Decimal, Decimal] | None:
        """A price on the tick far below the last trade, and the volume that
        makes the order worth the minimum."""
        tickers = self.client.ticker([market])
        try:
            last = Decimal(str(tickers[0]["trade_price"]))
        except (IndexError, KeyError, TypeError, ArithmeticError):
            return None  # no price to test with: the trader's own checks will tell
        if not last > 0:
            return None
        price = round_price(last * TEST_PRICE_RATIO, "down")
        minimum = min_total if min_total > 0 else Decimal(self.settings.min_order_krw)
        volume = (minimum / price).quantize(VOLUME_QUANTUM, rounding=ROUND_CEILING)
        return price, volume

    def markets(self) -> Finding | None:
        unknown = [m for m in self.settings.markets if m not in self.listed()]
        if not unknown:
            return None
        if len(unknown) == 1:
            line = (f"MARKETS names {unknown[0]}, which Upbit does not list: remove it or fix "
                    "the name")
        else:
            line = (f"MARKETS names {', '.join(unknown)}, which Upbit does not list: remove "
                    "them or fix the names")
        return Finding("markets", FATAL, line)
