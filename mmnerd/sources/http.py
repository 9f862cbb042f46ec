"""A polite HTTP client shared by the API sources (Mastodon, Bluesky).

* A session of mmnerd's HTTP layer (:mod:`mmnerd.http`) with its retry policy:
  429 and 5xx answers, connection errors and read timeouts are retried with
  exponential backoff and jitter; ``Retry-After`` (seconds or HTTP date) is
  honoured, and a 429 without it waits for the rate-limit reset.  Every wait is
  capped by ``max_wait`` so a hostile or confused server cannot park the pipeline
  for hours.
* Rate-limit headers (``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` as sent
  by Mastodon, ``RateLimit-Remaining`` / ``RateLimit-Reset`` as sent by Bluesky)
  are read after every answer and the next requests to that host are spread over
  the time left (``reset / remaining`` apart), so the budget is not spent before
  the window resets; a 429 without ``Retry-After`` (Mastodon's rack-attack sends
  none) waits until ``X-RateLimit-Reset`` instead of backing off blindly.  Reset
  times are read against the server's ``Date`` header, so a skewed clock does not
  shorten the wait.
* A per-host request budget (:class:`BudgetExhausted` when spent) and a
  minimum interval between requests to one host.
* A descriptive User-Agent.  Secrets travel only in headers and never appear
  in errors or logs (errors name the method and URL, never headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, Field

from mmnerd import USER_AGENT
from mmnerd.errors import InputError, MmnerdError
from mmnerd.http import RESET_MARGIN, RETRY_STATUSES, polite_retry, rate_limit, session
from mmnerd.http import reset_delay as reset_delay
from mmnerd.safejson import loads_json

if TYPE_CHECKING:
    from mmnerd.records import Post

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = USER_AGENT


class HttpError(MmnerdError):
    """A request failed for good (after retries, or with a non-retryable status).

    ``status`` is the HTTP status (0 for network errors); ``error`` the API's own
    error code when the body says one (e.g. Bluesky's ``ExpiredToken``).
    """

    def __init__(
        self, message: str, status: int = 0, error: str = "", url: str = "", detail: str = ""
    ):
        super().__init__(message)
        self.status = status
        self.error = error
        self.url = url
        self.detail = detail  # the API's own message (e.g. "Invalid cursor format")


def is_unavailable(error: HttpError) -> bool:
    """True for errors a later run may not see: network failures, timeouts, 429 and 5xx."""
    return error.status == 0 or error.status == 429 or error.status >= 500


class BudgetExhausted(MmnerdError):
    """The per-host request budget of this run is spent; sources stop and keep their cursor."""


class HttpOptions(BaseModel):
    """Politeness settings; each API source's options model inherits these fields."""

    user_agent: str = Field(DEFAULT_USER_AGENT, description="User-Agent sent with every request")
    timeout: float = Field(20.0, gt=0, description="seconds to connect / to wait for a response")
    max_retries: int = Field(5, ge=0, le=20, description="retries on 429, 5xx and network errors")
    backoff: float = Field(1.0, ge=0, description="first backoff in seconds; doubles per retry")
    max_wait: float = Field(
        300.0, ge=0, description="cap in seconds on any single wait (backoff, Retry-After, reset)"
    )
    min_interval: float = Field(
        1.0, ge=0, description="minimum seconds between two requests to the same host"
    )
    host_budget: int = Field(
        10_000, ge=1, description="maximum requests per host in one run; then collection stops"
    )
    skip_unavailable: bool = Field(
        True,
        description="a stream whose server stays unreachable or answers 5xx/429 after all "
        "retries is skipped for this run (cursor kept); if every stream fails, the error is raised",
    )


@dataclass
class _Host:
    requests: int = 0
    last: float = -1e18  # monotonic time of the last request
    # rate-limit bucket (the policy a response named) -> (monotonic time before which we
    # must not ask again, why); and which bucket each path's last answer counted against
    buckets: dict[str, tuple[float, str]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class HttpClient:
    """Polite JSON-over-HTTP client.  One per source run; thread-safe per host.

    ``sleep`` is injectable (tests pass a recorder); ``waits`` lists every wait
    taken (backoff, Retry-After, rate-limit reset, politeness interval).
    """

    def __init__(
        self, opts: HttpOptions | None = None, sleep: Callable[[float], None] = time.sleep
    ):
        self.opts = opts or HttpOptions()
        self._sleep = sleep
        self.waits: list[float] = []
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        retry = polite_retry(
            self.opts.max_retries,
            backoff=self.opts.backoff,
            max_wait=self.opts.max_wait,
            sleeper=self._wait_raw,
            waits=self.waits,
        )
        self.session = session(
            retry,
            timeout=self.opts.timeout,
            user_agent=self.opts.user_agent,
            headers={"Accept": "application/json"},
        )

    # --- waiting ---------------------------------------------------------------
    def _wait_raw(self, seconds: float) -> None:
        self._sleep(seconds)

    def _wait(self, seconds: float, why: str, host: str) -> None:
        seconds = min(seconds, self.opts.max_wait)
        if seconds <= 0:
            return
        if seconds >= 1:
            log.info("waiting %.1fs before the next request to %s (%s)", seconds, host, why)
        self.waits.append(seconds)
        self._sleep(seconds)

    def _host(self, host: str) -> _Host:
        with self._hosts_lock:
            return self._hosts.setdefault(host, _Host())

    def requests_made(self, host: str) -> int:
        """How many requests this client sent to ``host`` (``netloc`` of the URL)."""
        return self._host(host).requests

    def _before(self, host: str, path: str) -> None:
        h = self._host(host)
        with h.lock:
            if h.requests >= self.opts.host_budget:
                raise BudgetExhausted(
                    f"{host}: request budget of {self.opts.host_budget} for this run is spent "
                    f"(raise source.host_budget to collect more)"
                )
            now = time.monotonic()
            gap = h.last + self.opts.min_interval - now
            not_before, why = h.buckets.get(h.routes.get(path, ""), (0.0, ""))
            if not_before - now > max(gap, 0):
                self._wait(not_before - now, why, host)
            elif gap > 0:
                self._wait(gap, "politeness interval", host)
            h.requests += 1
            h.last = time.monotonic()

    def _after(self, host: str, path: str, resp: requests.Response) -> None:
        """Pace the next requests counted against the same rate limit by its headers: none
        left -> wait for the reset; some left -> spread them evenly until the reset.

        The limit is told apart by ``RateLimit-Policy`` (Bluesky: ``30;w=300`` for
        createSession, ``3000;w=300`` for reads) or else the limit itself (Mastodon: one
        IP-wide bucket), so a tight login limit does not slow the searches.
        """
        remaining, reset = rate_limit(resp.headers)
        if remaining is None:
            return
        hdr = resp.headers
        bucket = (
            hdr.get("RateLimit-Policy")
            or hdr.get("X-RateLimit-Limit")
            or hdr.get("RateLimit-Limit")
            or "?"
        )
        h = self._host(host)
        h.routes[path] = bucket
        now = time.monotonic()
        if remaining <= 0:
            delay = self.opts.backoff if reset is None else reset + RESET_MARGIN
            log.warning("%s: rate limit used up; next request in %.0fs", host, delay)
            wait, why = delay, "rate limit reset"
        elif reset is not None and reset / remaining > self.opts.min_interval:
            wait = reset / remaining
            why = f"pacing: {remaining:g} requests left for {reset:.0f}s"
        else:
            return
        until = now + min(wait, self.opts.max_wait)
        if until > h.buckets.get(bucket, (0.0, ""))[0]:
            h.buckets[bucket] = (until, why)

    # --- requests --------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> requests.Response:
        """Send one request (retried per the policy); raise :class:`HttpError` unless 2xx."""
        parts = urlsplit(url)
        host, path = parts.netloc, parts.path
        self._before(host, path)
        where = f"{method} {url}"
        try:
            resp = self.session.request(
                method,
                url,
                params=params,
                headers=dict(headers or {}),
                json=json_body,
                timeout=self.opts.timeout,
            )
        except requests.exceptions.RetryError as e:
            raise HttpError(
                f"{where}: gave up after {self.opts.max_retries} retries ({e})", url=url
            ) from None
        except requests.exceptions.Timeout:
            raise HttpError(
                f"{where}: timed out after {self.opts.timeout:g}s "
                f"({self.opts.max_retries} retries)",
                url=url,
            ) from None
        except requests.exceptions.RequestException as e:
            reason = type(getattr(e.args[0], "reason", e) if e.args else e).__name__
            raise HttpError(
                f"{where}: network error after {self.opts.max_retries} retries ({reason})",
                url=url,
            ) from None
        self._after(host, path, resp)
        if 200 <= resp.status_code < 300:
            return resp
        error, message = _api_error(resp)
        retried = " after retries" if resp.status_code in RETRY_STATUSES else ""
        detail = f": {error}" if error else ""
        detail += f" {message}" if message else ""
        raise HttpError(
            f"{where}: HTTP {resp.status_code}{retried}{detail}"[:500],
            status=resp.status_code,
            error=error,
            url=url,
            detail=message,
        )

    def get_json(
        self,
        url: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, requests.Response]:
        """GET ``url`` and decode its JSON body; returns (data, response)."""
        resp = self.request("GET", url, params=params, headers=headers)
        return decode_json(resp), resp

    def post_json(
        self, url: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, requests.Response]:
        """POST a JSON body to ``url`` and decode the JSON answer; returns (data, response)."""
        resp = self.request("POST", url, json_body=body, headers=headers)
        return decode_json(resp), resp

    def close(self) -> None:
        self.session.close()


def decode_json(resp: requests.Response) -> Any:
    """The JSON body of ``resp``; :class:`InputError` naming the URL if it is not JSON."""
    try:
        return loads_json(resp.content.decode(resp.encoding or "utf-8"))
    except (ValueError, UnicodeDecodeError, LookupError) as e:
        # LookupError: an unknown charset in the header; JsonTooDeep: nested too deeply
        raise InputError(
            f"{resp.request.method} {resp.url}: response is not valid JSON "
            f"({type(e).__name__}: {str(e)[:120]})"
        ) from None


def _api_error(resp: requests.Response) -> tuple[str, str]:
    """(error code, message) of a JSON error body (Mastodon ``error``, XRPC ``error``)."""
    try:
        body = loads_json(resp.text)
    except ValueError:
        return "", resp.reason or ""
    if not isinstance(body, dict):
        return "", ""
    error = str(body.get("error") or "")
    message = str(body.get("message") or body.get("error_description") or "")
    return error, message


def collect_streams(
    streams: Iterable[T],
    pages: Callable[[T, float], Iterable[list[Post]]],
    budget: float,
    skip_unavailable: bool,
    on_skip: Callable[[T, HttpError], None] | None = None,
    on_done: Callable[[T], None] | None = None,
    label: Callable[[T], str] = str,
) -> Iterator[Post]:
    """Yield the posts of each stream's pages until ``budget`` new posts are collected.

    ``pages(stream, room)`` yields pages already committed to the source state.  A
    stream whose budget runs out stops (its cursor resumes next run); with
    ``skip_unavailable`` a stream whose server stays unavailable (network errors, 429
    or 5xx after every retry and rate-limit wait) is skipped with a warning and
    ``on_skip(stream, error)``, so the source can record it and the next run resume it;
    a stream that ran without error calls ``on_done(stream)``.  If every stream failed,
    the last error is raised.
    """
    new = 0
    failed: list[HttpError] = []
    attempted = 0
    for stream in streams:
        if new >= budget:
            break
        try:
            for page in pages(stream, budget - new):
                new += sum(p.ok for p in page)
                yield from page
        except BudgetExhausted as e:
            log.warning("%s; the saved cursor resumes next run", e)
            if on_done is not None:
                on_done(stream)
        except HttpError as e:
            if on_skip is not None and is_unavailable(e):
                on_skip(stream, e)
            if not (skip_unavailable and is_unavailable(e)):
                raise
            log.warning(
                "SKIPPED %s this run: %s; its cursor is kept and the next `mmnerd collect` "
                "resumes it",
                label(stream),
                e,
            )
            failed.append(e)
        else:
            if on_done is not None:
                on_done(stream)
        attempted += 1
    if failed and len(failed) == attempted:
        raise failed[-1]
    if failed:
        log.warning(
            "%d of %d streams were skipped this run (server unavailable or rate-limited); "
            "the collect stage stays unfinished so the next run resumes them",
            len(failed),
            attempted,
        )
