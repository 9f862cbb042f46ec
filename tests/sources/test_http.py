"""The polite HTTP client against a local server: retries, rate limits, budget, errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mmnerd.errors import InputError
from mmnerd.sources.http import BudgetExhausted, HttpClient, HttpError, HttpOptions, reset_delay


def client(**kw) -> tuple[HttpClient, list[float]]:
    slept: list[float] = []
    opts = HttpOptions(**{"min_interval": 0, "backoff": 0.5, "max_wait": 30, "timeout": 2, **kw})
    return HttpClient(opts, sleep=slept.append), slept


def sequence(*responses: Response):
    """A handler answering with ``responses`` in turn (the last one repeats)."""
    calls: list[Request] = []

    def handler(request: Request) -> Response:
        calls.append(request)
        return responses[min(len(calls), len(responses)) - 1]

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


def ok(body: str = '{"ok": true}', **headers: str) -> Response:
    return Response(body, 200, headers={"Content-Type": "application/json", **headers})


def test_429_retry_after_is_honoured(httpserver: HTTPServer) -> None:
    h = sequence(Response("slow down", 429, headers={"Retry-After": "7"}), ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client()
    data, _ = c.get_json(httpserver.url_for("/api"))
    assert data == {"ok": True}
    assert slept == [7.0]
    assert len(h.calls) == 2


def test_retry_after_is_capped_by_max_wait(httpserver: HTTPServer) -> None:
    h = sequence(Response("", 503, headers={"Retry-After": "3600"}), ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client(max_wait=2)
    c.get_json(httpserver.url_for("/api"))
    assert slept == [2.0]


@pytest.mark.parametrize("style", ["mastodon", "bluesky"])
def test_rate_limit_remaining_zero_waits_for_reset(httpserver: HTTPServer, style: str) -> None:
    reset = datetime.now(UTC) + timedelta(seconds=20)
    if style == "mastodon":  # ISO 8601 timestamp
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset.isoformat()}
    else:  # epoch seconds
        headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(reset.timestamp()))}
    h = sequence(ok(**headers), ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client()
    c.get_json(httpserver.url_for("/api"))
    assert slept == []  # the first answer itself is fine
    c.get_json(httpserver.url_for("/api"))
    assert len(slept) == 1 and 15 < slept[0] <= 22  # + 1 s margin, Date has 1 s resolution


def test_unreadable_retry_after_falls_back_to_backoff(httpserver: HTTPServer) -> None:
    h = sequence(Response("", 503, headers={"Retry-After": "soon"}), ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client(backoff=1.0)
    data, _ = c.get_json(httpserver.url_for("/api"))
    assert data == {"ok": True} and len(h.calls) == 2
    assert len(slept) == 1 and 0.5 <= slept[0] < 1  # the first backoff, with jitter


def test_5xx_burst_is_retried_with_growing_backoff(httpserver: HTTPServer) -> None:
    h = sequence(Response("", 502), Response("", 503), Response("", 500), Response("", 504), ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client(backoff=1.0)
    data, _ = c.get_json(httpserver.url_for("/api"))
    assert data == {"ok": True} and len(h.calls) == 5
    assert len(slept) == 4
    # base * 2^(n-1) with jitter in [0.5, 1): 1, 2, 4, 8 -> [0.5,1), [1,2), [2,4), [4,8)
    for n, wait in enumerate(slept):
        assert 2**n * 0.5 <= wait < 2**n


def test_persistent_5xx_gives_up_naming_the_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/x").respond_with_data("down", status=500)
    c, slept = client(max_retries=2)
    with pytest.raises(HttpError) as e:
        c.get_json(httpserver.url_for("/api/v1/x"), params={"q": "a"})
    assert "/api/v1/x" in str(e.value) and "HTTP 500" in str(e.value)
    assert e.value.status == 500
    assert len(slept) == 2


def test_timeout_is_retried_then_reported(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.6)
        return ok()

    httpserver.expect_request("/slow").respond_with_handler(slow)
    c, slept = client(timeout=0.2, max_retries=1)
    with pytest.raises(HttpError) as e:
        c.get_json(httpserver.url_for("/slow"))
    assert "/slow" in str(e.value)
    assert "timed out" in str(e.value) or "network error" in str(e.value)
    assert len(slept) == 1


def test_connection_refused_is_reported(tmp_path) -> None:
    from tests.conftest import free_port

    c, _ = client(max_retries=1)
    url = f"http://127.0.0.1:{free_port()}/nothing"
    with pytest.raises(HttpError, match="nothing"):
        c.get_json(url)


def test_malformed_json_is_an_input_error_naming_the_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/bad").respond_with_data("<html>oops", content_type="text/html")
    c, _ = client()
    with pytest.raises(InputError, match=r"/bad.*not valid JSON"):
        c.get_json(httpserver.url_for("/bad"))
    # nested 100,000 deep, a 5,000-digit number, an unknown charset (issue 20.6)
    for path, body, ctype in (
        ("/deep", "[" * 100_000 + "]" * 100_000, "application/json"),
        ("/bigint", "9" * 5000, "application/json"),
        ("/charset", "{}", "application/json; charset=bogus"),
    ):
        httpserver.expect_request(path).respond_with_data(body, content_type=ctype)
        with pytest.raises(InputError, match=rf"{path}.*not valid JSON"):
            c.get_json(httpserver.url_for(path))


def test_4xx_is_not_retried_and_carries_the_api_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/xrpc/x").respond_with_json(
        {"error": "ExpiredToken", "message": "Token has expired"}, status=400
    )
    c, slept = client()
    with pytest.raises(HttpError) as e:
        c.get_json(httpserver.url_for("/xrpc/x"), headers={"Authorization": "Bearer s3cret"})
    assert e.value.status == 400 and e.value.error == "ExpiredToken"
    assert "s3cret" not in str(e.value)
    assert slept == []


def test_budget_min_interval_and_user_agent(httpserver: HTTPServer) -> None:
    h = sequence(ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client(host_budget=2, min_interval=5)
    c.get_json(httpserver.url_for("/api"))
    c.get_json(httpserver.url_for("/api"))
    with pytest.raises(BudgetExhausted, match="budget of 2"):
        c.get_json(httpserver.url_for("/api"))
    assert len(h.calls) == 2
    assert len(slept) == 1 and 4 < slept[0] <= 5  # the second request waited the interval
    assert h.calls[0].headers["User-Agent"].startswith("mmnerd/")


def test_reset_delay_formats() -> None:
    now = 1_700_000_000.0
    assert reset_delay(str(int(now) + 30), now) == 30
    assert reset_delay("12", now) == 12
    iso = datetime.fromtimestamp(now + 60, UTC).isoformat().replace("+00:00", "Z")
    assert reset_delay(iso, now) == pytest.approx(60)
    assert reset_delay("Tue, 14 Nov 2023 22:14:20 GMT", now) == pytest.approx(60, abs=1)
    assert reset_delay(str(int(now) - 30), now) == 0
    assert reset_delay("garbage", now) is None
    assert reset_delay(None, now) is None


def _http_date(when: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(when, usegmt=True)


def test_429_without_retry_after_waits_for_the_rate_limit_reset(httpserver: HTTPServer) -> None:
    """Mastodon's rack-attack answers 429 with X-RateLimit-* and no Retry-After (issue 21 #1):
    the retry waits for X-RateLimit-Reset (+1 s), not a blind exponential backoff."""
    now = datetime.now(UTC)
    throttled = Response(
        '{"error": "Too many requests"}',
        429,
        headers={
            "Content-Type": "application/json",
            "Date": _http_date(now),
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": (now + timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    )
    h = sequence(throttled, ok())
    httpserver.expect_request("/api").respond_with_handler(h)
    c, slept = client(max_wait=300)
    assert c.get_json(httpserver.url_for("/api"))[0] == {"ok": True}
    assert len(h.calls) == 2 and len(slept) == 1 and 40 <= slept[0] <= 42.5


def test_remaining_requests_are_spread_until_the_reset(httpserver: HTTPServer) -> None:
    """Honoured before a 429 happens: 4 requests left for 40 s -> one every 10 s."""
    reset = str(int(datetime.now(UTC).timestamp()) + 40)
    h = sequence(ok(**{"RateLimit-Remaining": "4", "RateLimit-Reset": reset}), ok())
    httpserver.expect_request("/xrpc/x").respond_with_handler(h)
    c, slept = client(min_interval=1)
    c.get_json(httpserver.url_for("/xrpc/x"))
    c.get_json(httpserver.url_for("/xrpc/x"))
    assert len(slept) == 1 and 8 < slept[0] <= 10.5
    c2, slept2 = client(min_interval=1)  # plenty left: only the politeness interval
    h.calls.clear()
    httpserver.clear()
    reset = str(int(datetime.now(UTC).timestamp()) + 300)
    httpserver.expect_request("/xrpc/y").respond_with_handler(
        sequence(ok(**{"RateLimit-Remaining": "2999", "RateLimit-Reset": reset}))
    )
    c2.get_json(httpserver.url_for("/xrpc/y"))
    c2.get_json(httpserver.url_for("/xrpc/y"))
    assert len(slept2) == 1 and slept2[0] <= 1


def test_reset_is_read_against_the_servers_clock(httpserver: HTTPServer) -> None:
    """A server clock one hour behind ours: the reset (its time) still means 30 s from now."""
    server_now = datetime.now(UTC) - timedelta(hours=1)
    headers = {
        "Date": _http_date(server_now),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": (server_now + timedelta(seconds=30)).isoformat(),
    }
    httpserver.expect_request("/api").respond_with_handler(sequence(ok(**headers), ok()))
    c, slept = client()
    c.get_json(httpserver.url_for("/api"))
    c.get_json(httpserver.url_for("/api"))
    assert len(slept) == 1 and 29 <= slept[0] <= 32


def test_a_tight_limit_on_one_route_does_not_slow_the_others(httpserver: HTTPServer) -> None:
    """Bluesky: createSession is limited to 30 / 5 min, reads to 3000 / 5 min (RateLimit-Policy)."""
    reset = str(int(datetime.now(UTC).timestamp()) + 300)
    login = {"RateLimit-Remaining": "2", "RateLimit-Reset": reset, "RateLimit-Policy": "30;w=300"}
    read = {
        "RateLimit-Remaining": "2999",
        "RateLimit-Reset": reset,
        "RateLimit-Policy": "3000;w=300",
    }
    httpserver.expect_request("/xrpc/login").respond_with_handler(sequence(ok(**login)))
    httpserver.expect_request("/xrpc/search").respond_with_handler(sequence(ok(**read)))
    c, slept = client(max_wait=300)
    c.get_json(httpserver.url_for("/xrpc/login"))
    c.get_json(httpserver.url_for("/xrpc/search"))
    c.get_json(httpserver.url_for("/xrpc/search"))
    assert max(slept, default=0) < 0.2  # searches: 0.1 s pacing, not held back by logins
    c.get_json(httpserver.url_for("/xrpc/login"))
    assert 145 < slept[-1] <= 150  # 2 logins left for 300 s
