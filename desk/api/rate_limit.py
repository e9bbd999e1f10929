"""Rate limits of the anonymous endpoints: token buckets per client address and overall.

``@limited(APPEALS)`` or ``@limited(PAGES)`` on a view; beyond its budget a request is
answered 429 with ``Retry-After`` (JSON for the API, a page otherwise) and does nothing.
Customers writing from Telegram, VK or email never pass here. The client is the TCP peer, or
what ``X-Forwarded-For`` says when the peer is one of ``http.trusted_proxies``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from aiohttp import web

from desk.api.errors import ApiError, error_response
from desk.api.operation import API_PREFIX, route_of
from desk.api.rendering import error_page
from desk.config.settings import HttpSettings, RouteLimits

log = logging.getLogger(__name__)

Group = Literal["appeals", "pages"]
APPEALS: Group = "appeals"
PAGES: Group = "pages"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
View = Callable[[web.Request], Awaitable[web.StreamResponse]]
Refusal = Callable[[web.Request, int], Awaitable[web.StreamResponse]]
LOG_EVERY_S = 60.0


class TokenBuckets:
    """Token buckets by key, each ``burst`` deep and refilled at ``per_minute``; beyond
    ``size`` keys the least recently seen is forgotten (it comes back with a full bucket), so
    memory stays bounded whatever the number of addresses."""

    def __init__(self, per_minute: float, burst: int, size: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._size = size
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may pass (0: now)."""
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def take(self, key: str, now: float) -> None:
        """Spend one token of ``key``."""
        self._buckets[key] = (self._tokens(key, now) - 1.0, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._size:
            self._buckets.popitem(last=False)

    def _tokens(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return self._burst
        tokens, at = found
        return min(self._burst, tokens + (now - at) * self._rate)


class RateLimiter:
    """The budgets of the anonymous endpoints, per group of routes."""

    def __init__(self, settings: HttpSettings, clock: Callable[[], float] = time.monotonic) -> None:
        limits = settings.rate_limits
        self.enabled = limits.enabled
        self.trusted: tuple[IPNetwork, ...] = tuple(settings.trusted_proxies)
        self._clock = clock
        self._refused: dict[Group, int] = {}
        self._logged_at: dict[Group, float] = {}
        self._groups = {
            APPEALS: self._buckets(limits.appeals, limits.addresses),
            PAGES: self._buckets(limits.pages, limits.addresses),
        }

    @staticmethod
    def _buckets(limits: RouteLimits, size: int) -> tuple[TokenBuckets, TokenBuckets]:
        return (
            TokenBuckets(limits.per_address_per_minute, limits.per_address_burst, size),
            TokenBuckets(limits.overall_per_minute, limits.overall_burst, 1),
        )

    def refusals_to_log(self, group: Group) -> int:
        """How many requests of ``group`` were refused since the last time this said so, at
        most once a minute (0 meanwhile): a flood makes one log line a minute, not one each."""
        now = self._clock()
        if now - self._logged_at.get(group, -LOG_EVERY_S) < LOG_EVERY_S:
            return 0
        self._logged_at[group] = now
        return self._refused.pop(group, 0)

    def admit(self, group: Group, address: str) -> int:
        """0 when a request of ``group`` from ``address`` may pass (it is counted), else the
        whole seconds to wait."""
        if not self.enabled:
            return 0
        per_address, overall = self._groups[group]
        now = self._clock()
        wait = max(per_address.wait(address, now), overall.wait("", now))
        if wait > 0:
            self._refused[group] = self._refused.get(group, 0) + 1
            return max(1, math.ceil(wait))
        per_address.take(address, now)
        overall.take("", now)
        return 0


LIMITER = web.AppKey("limiter", RateLimiter)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[IPNetwork]
) -> bool:
    return any(address in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[IPNetwork]) -> str:
    """Who is asking, as a key: the peer, or, when the peer is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not one. IPv6 clients count by their /64 network
    (one household or server has a whole one)."""
    peer = _ip(request.remote or "")
    if peer is None:
        return request.remote or "unknown"
    client = peer
    if _trusted(peer, proxies):
        hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:
                break  # a forged or broken entry: believe no further
            client = address
            if not _trusted(address, proxies):
                break
    if client.version == 6:
        return str(ipaddress.ip_network(f"{client}/64", strict=False))
    return str(client)


def retry_after(seconds: int) -> dict[str, str]:
    """The ``Retry-After`` header of a 429."""
    return {"Retry-After": str(seconds)}


async def _refuse(request: web.Request, seconds: int) -> web.StreamResponse:
    if request.path.startswith(API_PREFIX):
        response = error_response(
            ApiError(
                429,
                "too_many_requests",
                f"too many requests from your address; try again in {seconds} s",
            )
        )
    else:
        response = error_page(request, 429)
    response.headers.update(retry_after(seconds))
    return response


def limited(group: Group, refuse: Refusal = _refuse) -> Callable[[View], View]:
    """A view counted against ``group``'s budgets; beyond them ``refuse`` answers (429 with
    ``Retry-After``: the default says so as JSON or a page) and the view does not run."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            limiter = request.app[LIMITER]
            address = client_address(request, limiter.trusted)
            seconds = limiter.admit(group, address)
            if seconds:
                if refused := limiter.refusals_to_log(group):
                    log.warning(  # no address: it is personal data
                        "rate limited",
                        extra={"group": group, "route": route_of(request), "refused": refused},
                    )
                return await refuse(request, seconds)
            return await view(request)

        return wrapped

    return wrap
