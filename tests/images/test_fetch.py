"""The image fetcher against a real HTTP server on 127.0.0.1 (pytest-httpserver)."""

from __future__ import annotations

import contextlib
import io
import threading
import time

import pytest
from PIL import Image
from werkzeug import Response

from mmnerd.config import ImagesConfig
from mmnerd.images.fetch import Fetcher, fetch_image, sniff
from mmnerd.records import ImageRef


def jpeg(w: int = 64, h: int = 48, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def cfg() -> ImagesConfig:
    return ImagesConfig(
        timeout=0.5, max_bytes=200_000, max_pixels=1_000_000, workers=2, allow_hosts=["localhost"]
    )


def fetch(httpserver, cfg, path, tmp_path, host="localhost") -> ImageRef:
    url = httpserver.url_for(path).replace("127.0.0.1", host).replace("localhost", host)
    return fetch_image(Fetcher(cfg), ImageRef(url=url), tmp_path, cfg.max_pixels)


def test_ok_image_is_stored_by_content(httpserver, cfg, tmp_path):
    data = jpeg()
    httpserver.expect_request("/a.jpg").respond_with_data(data, content_type="image/jpeg")
    httpserver.expect_request("/b").respond_with_data(data, content_type="text/plain")
    a = fetch(httpserver, cfg, "/a.jpg", tmp_path)
    b = fetch(httpserver, cfg, "/b", tmp_path)  # wrong content-type: bytes decide
    assert (a.status, b.status) == ("ok", "ok")
    assert a.path == b.path and (tmp_path / a.path).read_bytes() == data
    assert (a.width, a.height, a.mime) == (64, 48, "image/jpeg")


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (b"<html>not found</html>", 404, "http_404"),
        (b"<html><body>hello</body></html>", 200, "not_image"),
        (jpeg()[:300], 200, "corrupt_image"),
        (b"\x00" * 300_000, 200, "too_large"),
    ],
)
def test_bad_answers_get_a_status(httpserver, cfg, tmp_path, body, status, expected):
    httpserver.expect_request("/x").respond_with_data(body, status=status)
    ref = fetch(httpserver, cfg, "/x", tmp_path)
    assert ref.status == expected
    assert not ref.path


def test_decompression_bomb_is_refused(httpserver, cfg, tmp_path):
    httpserver.expect_request("/big.jpg").respond_with_data(jpeg(1200, 1000))
    assert fetch(httpserver, cfg, "/big.jpg", tmp_path).status == "decompression_bomb"


def test_timeout(httpserver, cfg, tmp_path):
    done = threading.Event()

    def slow(_request):
        time.sleep(1.5)
        done.set()
        return Response(jpeg(), content_type="image/jpeg")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    assert fetch(httpserver, cfg, "/slow", tmp_path).status == "timeout"
    done.wait(5)  # timeouts are not retried; let the single-threaded server finish


def test_loopback_refused_unless_allow_listed(httpserver, cfg, tmp_path):
    httpserver.expect_request("/a.jpg").respond_with_data(jpeg())
    ref = fetch(httpserver, cfg, "/a.jpg", tmp_path, host="127.0.0.1")
    assert ref.status == "blocked_address"


def test_redirects_are_rechecked(httpserver, cfg, tmp_path):
    target = httpserver.url_for("/a.jpg").replace("localhost", "127.0.0.1")
    httpserver.expect_request("/a.jpg").respond_with_data(jpeg())
    httpserver.expect_request("/r").respond_with_response(
        Response(status=302, headers={"Location": target})
    )
    assert fetch(httpserver, cfg, "/r", tmp_path).status == "blocked_address"


def test_redirect_loop(httpserver, cfg, tmp_path):
    httpserver.expect_request("/loop").respond_with_response(
        Response(status=301, headers={"Location": "/loop"})
    )
    assert fetch(httpserver, cfg, "/loop", tmp_path).status == "too_many_redirects"


@pytest.mark.parametrize("url", ["ftp://example.org/a.jpg", "file:///etc/passwd", "not a url"])
def test_bad_urls(cfg, tmp_path, url):
    ref = fetch_image(Fetcher(cfg), ImageRef(url=url), tmp_path, cfg.max_pixels)
    assert ref.status == "bad_url"


def test_sniff_magic_bytes():
    assert sniff(jpeg()[:16]) == ("image/jpeg", "jpg")
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("image/webp", "webp")
    assert sniff(b"<!doctype html>") is None


def test_429_without_retry_after_waits_for_the_rate_limit_reset(httpserver, cfg, tmp_path):
    """The shared retry policy (mmnerd.http): a 429 with only a rate-limit reset waits for
    that reset (+1 s margin) when it is within max_retry_after, and gives up beyond it."""
    answers = [Response("", 429, headers={"RateLimit-Reset": "1"}), Response(jpeg(), 200)]
    httpserver.expect_request("/limited").respond_with_handler(lambda _: answers.pop(0))
    cfg.retries, cfg.max_retry_after, cfg.total_timeout = 1, 5, 30
    start = time.monotonic()
    ok = fetch(httpserver, cfg, "/limited", tmp_path)
    assert ok.status == "ok" and time.monotonic() - start >= 2.0
    httpserver.expect_request("/later").respond_with_data(
        "", status=429, headers={"X-RateLimit-Reset": "3600"}
    )
    later = fetch(httpserver, cfg, "/later", tmp_path)
    assert later.status == "http_429"
    assert later.reason == "rate-limit reset 3601 s > max_retry_after 5 s"


def test_a_retried_answer_is_closed_not_read(cfg, tmp_path):
    """A 503 whose body never ends must not hold the download: the retry closes that
    connection (urllib3 alone would drain the body first) and the second try succeeds."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    image = jpeg()
    seen: list[int] = []

    class Endless503(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            seen.append(len(seen))
            if len(seen) == 1:
                self.send_response(503)
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                with contextlib.suppress(OSError):
                    for _ in range(400):  # 20 s of trickle unless the client hangs up
                        self.wfile.write(b"x" * 1024)
                        self.wfile.flush()
                        time.sleep(0.05)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endless503)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cfg.retries, cfg.total_timeout = 1, 5
    try:
        url = f"http://localhost:{httpd.server_address[1]}/a.jpg"
        ref = fetch_image(Fetcher(cfg), ImageRef(url=url), tmp_path, cfg.max_pixels)
    finally:
        httpd.shutdown()
    assert (ref.status, len(seen)) == ("ok", 2), ref.reason
