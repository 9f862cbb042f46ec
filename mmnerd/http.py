"""mmnerd's one HTTP layer: the retry policy, sessions, and the guarded transport for downloads.

* :data:`RETRY_STATUSES` and :class:`PoliteRetry`, a urllib3 ``Retry`` used by every
  request mmnerd makes: ``Retry-After`` (seconds or HTTP date) is honoured, a 429
  without it waits for the rate-limit reset (``X-RateLimit-Reset`` / ``RateLimit-Reset``,
  read against the server's ``Date``), otherwise exponential backoff with jitter; every
  wait is capped (``max_wait``: wait the cap, or give up with :class:`GiveUp`).  Only
  ``methods`` are retried after the request was sent (never a non-idempotent POST);
  connection failures (nothing was sent) are retried for any method.
* :func:`session`: a ``requests.Session`` with mmnerd's User-Agent, a default timeout
  and that policy (API sources, the Label Studio client and its logins).
* :class:`GuardedPoolManager`: a urllib3 pool manager for the image downloader whose
  connections go only to addresses the SSRF guard checked: each new connection
  resolves its host once (:class:`Guard`), refuses non-public addresses unless
  allow-listed and connects to a checked address, so DNS rebinding cannot swap it;
  TLS keeps SNI and the certificate check on the host name.
* The body of an answer that is retried is closed, never read (urllib3 would read it
  to reuse the connection; a hostile server's may never end).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import connection as u3connection
from urllib3.util.retry import Retry

from mmnerd import USER_AGENT

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers worth asking again (rate limited, server trouble); the same for every client."""

READS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods safe to send twice; a client that writes passes its own idempotent ones."""

RESET_MARGIN = 1.0
"""Seconds added to a rate-limit reset before asking again (``Date`` has 1 s resolution)."""


# --- reading the server's timing headers ----------------------------------------------


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent or
    unreadable (then the caller backs off instead of failing)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


def _server_time(date: str | None) -> float | None:
    """Epoch seconds of an HTTP ``Date`` header (None if absent or unparsable).  Repeated
    ``Date`` headers (a proxy adding its own) arrive joined: the earliest counts, so the
    wait for a reset is never cut short."""
    if not date:
        return None
    times = []
    for text in _HTTP_DATE.findall(date) or [date]:
        try:
            times.append(parsedate_to_datetime(text).timestamp())
        except (TypeError, ValueError):
            continue
    return min(times, default=None)


def reset_delay(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a rate-limit reset given as epoch seconds, seconds, or a date.

    Mastodon sends an ISO 8601 timestamp, Bluesky and GitHub epoch seconds, some
    servers a delta in seconds (values below 10**9 are read as a delta).
    """
    if not value:
        return None
    now = time.time() if now is None else now
    num = _number(value)
    if num is not None:
        return max(0.0, num - now if num > 1e9 else num)
    for parse in (
        lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
        parsedate_to_datetime,
    ):
        try:
            return max(0.0, parse(value).timestamp() - now)
        except (ValueError, TypeError):
            continue
    return None


def rate_limit(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(requests remaining, seconds until the window resets) from rate-limit headers.

    Mastodon sends ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (ISO 8601), Bluesky
    ``RateLimit-Remaining`` / ``RateLimit-Reset`` (epoch seconds).  The reset is read
    against the server's ``Date`` when there is one, so a skewed local clock does not
    shorten the wait.  Either value is None when absent or unreadable.
    """
    remaining = _number(headers.get("X-RateLimit-Remaining") or headers.get("RateLimit-Remaining"))
    reset = headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset")
    return remaining, reset_delay(reset, _server_time(headers.get("Date")))


# --- the retry policy -------------------------------------------------------------------


def discard(response: Any) -> None:
    """Give a response's connection back: reusable when its body was read, else closed
    (an unread body is never read just to reuse the connection)."""
    if not (response.isclosed() or response.length_remaining == 0):
        response.close()
    response.release_conn()


class GiveUp(Exception):  # noqa: N818 (not an error of ours: a decision)
    """A retry was not attempted: its wait (``what``: "Retry-After", "rate-limit reset" or
    "backoff", ``wait`` seconds) exceeded the cap, or ``what == "deadline"``: it would end
    after the caller's deadline.  ``status`` is the HTTP status retried (None: an error)."""

    def __init__(self, what: str, wait: float, cap: float, status: int | None):
        super().__init__(f"{what} {wait:g} s > {cap:g} s")
        self.what, self.wait, self.cap, self.status = what, wait, cap, status


class PoliteRetry(Retry):
    """urllib3 ``Retry`` with mmnerd's waits (see the module docstring).

    Extra settings: ``max_wait`` (cap in seconds on one wait), ``give_up_over_cap`` (raise
    :class:`GiveUp` instead of waiting the cap), ``retry_timeouts`` (False: a timeout is
    raised at once), ``deadline`` (``time.monotonic()`` value no wait may pass: GiveUp),
    ``sleeper`` (called with each wait; tests record, the downloader frees its host slot)
    and ``waits`` (a list every wait is appended to).
    """

    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})  # only RETRY_STATUSES are retried
    _EXTRA = ("max_wait", "give_up_over_cap", "retry_timeouts", "deadline", "sleeper", "waits")

    def __init__(
        self,
        *args: Any,
        max_wait: float = 300.0,
        give_up_over_cap: bool = False,
        retry_timeouts: bool = True,
        deadline: float | None = None,
        sleeper: Callable[[float], None] = time.sleep,
        waits: list[float] | None = None,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.max_wait = max_wait
        self.give_up_over_cap = give_up_over_cap
        self.retry_timeouts = retry_timeouts
        self.deadline = deadline
        self.sleeper = sleeper
        self.waits = waits if waits is not None else []

    def new(self, **kw: Any) -> PoliteRetry:
        return super().new(**{k: getattr(self, k) for k in self._EXTRA}, **kw)

    def increment(self, method: Any = None, url: Any = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> PoliteRetry:  # fmt: skip
        timed_out = isinstance(error, Urllib3Timeout) and not isinstance(
            error,
            NewConnectionError,  # a refused connection, not a timeout
        )
        if timed_out and not self.retry_timeouts:
            raise error  # type: ignore[misc]
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:  # it will be asked again: never read this answer's body
            discard(response)  # (urllib3 would drain it; a hostile one may never end)
        return new

    def planned_wait(self, response: Any = None) -> tuple[float, str]:
        """(seconds, why) before the next try: Retry-After, else the rate-limit reset of a
        429, else ``backoff_factor * 2**(n-1)`` with jitter in [0.5, 1) (n: tries so far)."""
        if response is not None:
            wait = retry_after(response.headers.get("Retry-After"))
            if wait is not None and self.respect_retry_after_header:
                return wait, "Retry-After"
            if response.status == 429:  # Mastodon's rack-attack sends no Retry-After
                _, reset = rate_limit(response.headers)
                if reset is not None:
                    return reset + RESET_MARGIN, "rate-limit reset"
        n = max(1, len(self.history))
        wait = min(self.backoff_max, self.backoff_factor * 2 ** (n - 1))
        return wait * (0.5 + random.random() / 2), "backoff"

    def sleep(self, response: Any = None) -> None:
        wait, what = self.planned_wait(response)
        status = getattr(response, "status", None)
        if wait > self.max_wait:
            if self.give_up_over_cap:
                raise GiveUp(what, wait, self.max_wait, status)
            wait = self.max_wait
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise GiveUp("deadline", wait, self.deadline - time.monotonic(), status)
        last = self.history[-1] if self.history else None
        log.info(
            "retrying %s (%s) in %.2fs",
            last.url if last else "request",
            (last.status or last.error) if last else "",
            wait,
        )
        self.waits.append(wait)
        if wait > 0:
            self.sleeper(wait)


def polite_retry(
    retries: int,
    *,
    backoff: float,
    max_wait: float,
    methods: Collection[str] = READS,
    **extra: Any,
) -> PoliteRetry:
    """The policy: ``retries`` tries more after connection errors, read errors (``methods``
    only) and :data:`RETRY_STATUSES` answers (``methods`` only); TLS and other errors are
    not retried; after the last try the answer itself is returned (no exception)."""
    return PoliteRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset(methods),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_max=max(max_wait, 0.0),
        raise_on_status=False,
        respect_retry_after_header=True,
        max_wait=max_wait,
        **extra,
    )


# --- sessions ---------------------------------------------------------------------------


class _QuickAck:
    """Acknowledge an answer's first packet at once (Linux ``TCP_QUICKACK``).

    Label Studio's server (Django's WSGIServer) sends headers and body in two writes;
    on a reused connection Linux delays the ACK of the first (40 ms) and the server's
    Nagle holds the second until then: every call but a connection's first took 40 ms
    more.  Set while waiting for each answer (the kernel drops it again)."""

    sock: Any

    def getresponse(self, *args: Any, **kw: Any) -> Any:
        if self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return super().getresponse(*args, **kw)  # type: ignore[misc]


class _QuickAckHTTPConnection(_QuickAck, HTTPConnection):
    pass


class _QuickAckHTTPSConnection(_QuickAck, HTTPSConnection):
    pass


class _QuickAckPool(HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class Adapter(HTTPAdapter):
    """``requests`` adapter with a default timeout (seconds) and, with ``quick_ack`` on
    Linux, connections that ACK answers at once (see :class:`_QuickAck`)."""

    def __init__(self, *, timeout: float | None = None, quick_ack: bool = False, **kw: Any):
        self.timeout = timeout
        self.quick_ack = quick_ack and hasattr(socket, "TCP_QUICKACK")
        super().__init__(**kw)

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        super().init_poolmanager(*args, **kw)
        if getattr(self, "quick_ack", False):
            self.poolmanager.pool_classes_by_scheme = {
                "http": _QuickAckPool,
                "https": _QuickAckHTTPSPool,
            }

    def send(self, request: Any, stream: bool = False, timeout: Any = None, **kw: Any) -> Any:
        timeout = self.timeout if timeout is None else timeout
        return super().send(request, stream=stream, timeout=timeout, **kw)


def session(
    retry: Retry | int = 0,
    *,
    timeout: float | None = None,
    user_agent: str = USER_AGENT,
    headers: Mapping[str, str] | None = None,
    quick_ack: bool = False,
) -> requests.Session:
    """A ``requests.Session``: ``retry`` (a :func:`polite_retry`, or 0: none), a default
    ``timeout`` in seconds, mmnerd's User-Agent and ``headers`` on every request."""
    s = requests.Session()
    s.headers["User-Agent"] = user_agent
    s.headers.update(headers or {})
    adapter = Adapter(max_retries=retry, timeout=timeout, quick_ack=quick_ack)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


# --- the guarded transport (SSRF) -------------------------------------------------------

Resolver = Callable[[str, int], list[str]]
"""(ascii host, port) -> IP addresses as strings; raises OSError when the name does not resolve."""

Allow = frozenset[tuple[str, int]]
"""Normalised allow-list: (host or address, port); port 0 = any port."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of ``host`` from the system resolver, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """True for globally routable unicast addresses (IPv4-mapped and NAT64 unwrapped)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def _allowed(allow: Allow, host: str, port: int) -> bool:
    return (host, 0) in allow or (host, port) in allow


def resolve_checked(
    host: str, port: int, allow: Allow, resolver: Resolver = system_resolver
) -> tuple[list[str], str, str]:
    """(addresses to connect to, status, reason): status is "" when allowed, else
    ``dns_error`` or ``blocked_address``.

    A name is refused if *any* of its addresses is non-public and not allow-listed;
    an allow-listed name may resolve to anything.  An entry with a port allows only
    that port (so an allow-listed image server cannot redirect to another local service).
    """
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as e:
        return [], "dns_error", f"{host}: {e}"
    if not addresses:
        return [], "dns_error", f"{host}: no address"
    if _allowed(allow, host, port):
        return addresses, "", ""
    for a in addresses:
        ip = str(ipaddress.ip_address(a.split("%", 1)[0]))
        if not _allowed(allow, ip, port) and not is_public(a):
            return [], "blocked_address", f"{host}:{port} resolves to non-public {a}"
    return addresses, "", ""


class Refused(Exception):  # noqa: N818 (a decision of the guard, not a fault)
    """The guard refused a connection: ``status`` is ``dns_error`` or ``blocked_address``.
    Not an ``OSError``, so urllib3 neither retries nor wraps it."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Guard:
    """Which addresses a connection may go to (``allow``: see :func:`resolve_checked`)."""

    allow: Allow = frozenset()
    resolver: Resolver = field(default=system_resolver)

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host``; raise :class:`Refused` if there are none."""
        addresses, status, reason = resolve_checked(host, port, self.allow, self.resolver)
        if status:
            raise Refused(status, reason)
        return addresses


class _Guarded:
    """Connection mixin: resolve the host once through the guard and connect to the
    checked addresses in turn (SNI and the certificate check stay on ``self.host``)."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def __init__(self, *args: Any, guard: Guard, **kw: Any):
        self.guard = guard
        super().__init__(*args, **kw)

    def _new_conn(self) -> socket.socket:
        error: Exception | None = None
        for address in self.guard.addresses(self.host, self.port):
            try:
                return u3connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as e:
                raise ConnectTimeoutError(
                    self, f"connection to {self.host} ({address}) timed out"
                ) from e
            except OSError as e:  # refused: try the next checked address
                error = NewConnectionError(self, f"Failed to establish a new connection: {e}")
                error.__cause__ = e
        assert error is not None
        raise error


class _GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _GuardedPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedPoolManager(PoolManager):
    """urllib3 ``PoolManager`` whose every connection passes ``guard`` (see the module
    docstring); pools are keyed by host name as usual."""

    def __init__(self, guard: Guard, **kw: Any):
        super().__init__(**kw)
        self.guard = guard
        self.pool_classes_by_scheme = {"http": _GuardedPool, "https": _GuardedHTTPSPool}

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None) -> HTTPConnectionPool:  # fmt: skip
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.conn_kw["guard"] = self.guard
        return pool
