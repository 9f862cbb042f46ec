"""LSClient's connection handling: reads wait for a server that is away, writes never
resend, and reused connections do not stall on delayed ACKs."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mmnerd.errors import LabelStudioError
from mmnerd.labelstudio.client import LSClient

from ..conftest import free_port


class _Tasks(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b'{"tasks": [{"id": 1}], "total": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_read_waits_for_a_server_that_comes_back(capsys):
    port = free_port()
    client = LSClient(f"http://127.0.0.1:{port}", "t" * 40, reconnect=30)
    httpd: list[ThreadingHTTPServer] = []

    def come_back() -> None:
        time.sleep(5)  # longer than urllib3's own quick retries (~3.5 s)
        httpd.append(ThreadingHTTPServer(("127.0.0.1", port), _Tasks))
        httpd[0].serve_forever()

    threading.Thread(target=come_back, daemon=True).start()
    try:
        assert [t["id"] for t in client.iter_tasks(1)] == [1]
    finally:
        if httpd:
            httpd[0].shutdown()
    assert "unreachable" in capsys.readouterr().err


def test_read_gives_up_after_reconnect_timeout_with_one_line():
    client = LSClient(f"http://127.0.0.1:{free_port()}", "t" * 40, reconnect=2)
    t0 = time.monotonic()
    with pytest.raises(LabelStudioError, match=r"unreachable for 2 s") as e:
        client.get("/api/projects")
    assert time.monotonic() - t0 >= 2 and "\n" not in str(e.value)
    assert "t" * 40 not in str(e.value)


def test_write_is_never_resent_to_an_absent_server(monkeypatch):
    client = LSClient(f"http://127.0.0.1:{free_port()}", "t" * 40, reconnect=60)
    waits: list[str] = []

    def wait(method: str, *args: object) -> float:
        waits.append(method)
        raise LabelStudioError("the client waited to resend")

    monkeypatch.setattr(client, "_wait_for_server", wait)
    with pytest.raises(LabelStudioError, match="cannot reach"):
        client.import_tasks(1, [{"data": {"post_id": "x"}}])
    assert waits == []  # no waiting loop for a non-idempotent call: one line at once


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first request of each method, then 200; counts the requests."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        first = self.command not in self.seen
        self.seen.append(self.command)
        body = b"{}" if not first else b"busy"
        self.send_response(503 if first else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def test_reads_are_retried_after_a_5xx_and_posts_are_not():
    _Flaky.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client = LSClient(f"http://127.0.0.1:{httpd.server_address[1]}", "t" * 40)
    try:
        assert client.get("/api/projects") == {}
        with pytest.raises(LabelStudioError, match="HTTP 503"):
            client.post("/api/projects/1/import", [{"data": {}}])
    finally:
        httpd.shutdown()
    assert _Flaky.seen == ["GET", "GET", "POST"]


class _KeepAlive(_Tasks):
    """Like Label Studio's WSGIServer: HTTP/1.1 keep-alive, headers and body in two writes."""

    protocol_version = "HTTP/1.1"


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's delayed ACK")
def test_reused_connection_answers_without_the_delayed_ack_stall():
    """On a reused connection a plain client ACKs the headers late (40 ms on Linux) and
    the server's Nagle holds the body until then; LSClient must not wait for that."""
    import requests

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"

    def median_call(get: Callable[[], object]) -> float:
        get()  # a new connection starts in quick-ACK mode: time the reused ones
        times = []
        for _ in range(9):
            t0 = time.perf_counter()
            get()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    try:
        plain = requests.Session()
        stalled = median_call(lambda: plain.get(f"{url}/api/tasks").json())
        client = LSClient(url, "t" * 40)
        ours = median_call(lambda: client.get("/api/tasks"))
    finally:
        httpd.shutdown()
    assert stalled >= 0.035, f"the test server did not reproduce the stall ({stalled:.3f} s)"
    assert ours < stalled / 2, f"LSClient {ours:.3f} s per call, plain requests {stalled:.3f} s"
