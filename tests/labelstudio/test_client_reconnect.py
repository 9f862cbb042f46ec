"""LSClient against a server that is away: reads wait for it, writes never resend."""

from __future__ import annotations

import threading
import time
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


def test_write_is_never_resent_to_an_absent_server():
    client = LSClient(f"http://127.0.0.1:{free_port()}", "t" * 40, reconnect=60)
    t0 = time.monotonic()
    with pytest.raises(LabelStudioError, match="cannot reach"):
        client.import_tasks(1, [{"data": {"post_id": "x"}}])
    assert time.monotonic() - t0 < 10  # no waiting loop for a non-idempotent call
