"""Replay recorded API answers ("cassettes", ``tests/sources/cassettes/*.json``) from a local
server, so the sources meet responses shaped like the real ones.

A cassette is ``{"about": "...", "interactions": [{"request": ..., "response": ...}]}``.
``request`` has ``method``, ``path``, optionally ``query`` (parameters that must have these
values) and ``absent`` (parameters that must not be sent).  ``response`` has ``status``,
``headers`` and a JSON ``body``.  Each interaction answers once, in order among those that
match; a request nothing matches gets a 599 that names it (and the test fails).

Strings in headers and bodies may hold placeholders, filled when the answer is sent:
``{base}`` (the server's base URL), ``{iso:+N}`` (UTC ISO 8601 with microseconds, now + N
seconds, as Mastodon's ``X-RateLimit-Reset``), ``{epoch:+N}`` (epoch seconds, as Bluesky's
``RateLimit-Reset``) and ``{http_date:+N}`` (an HTTP date, as ``Date``).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

HERE = Path(__file__).parent / "cassettes"
_SLOT = re.compile(r"\{(base|iso|epoch|http_date)(?::([+-]\d+))?\}")


class Cassette:
    """The interactions of one cassette file, served by a pytest-httpserver."""

    def __init__(self, name: str):
        data = json.loads((HERE / name).read_text(encoding="utf-8"))
        self.about: str = data["about"]
        self.interactions: list[dict[str, Any]] = data["interactions"]
        self.used: list[bool] = [False] * len(self.interactions)
        self.requests: list[Request] = []
        self.base = ""
        self._lock = threading.Lock()

    def mount(self, server: HTTPServer) -> Cassette:
        """Answer this cassette's paths on ``server``; returns self."""
        self.base = server.url_for("").rstrip("/")
        for method, path in dict.fromkeys(
            (i["request"]["method"], i["request"]["path"]) for i in self.interactions
        ):
            server.expect_request(path, method=method).respond_with_handler(self.handle)
        return self

    @property
    def unused(self) -> list[int]:
        return [k for k, used in enumerate(self.used) if not used]

    def fill(self, value: Any) -> Any:
        """``value`` with its placeholders filled (now = this call)."""
        now = datetime.now(UTC)

        def slot(m: re.Match[str]) -> str:
            kind, delta = m.group(1), timedelta(seconds=int(m.group(2) or 0))
            if kind == "base":
                return self.base
            when = now + delta
            if kind == "iso":
                return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if kind == "epoch":
                return str(int(when.timestamp()))
            return format_datetime(when, usegmt=True)

        if isinstance(value, str):
            return _SLOT.sub(slot, value)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value

    def response(self, k: int) -> Response:
        """The answer of interaction ``k`` (placeholders filled now)."""
        r = self.interactions[k]["response"]
        return Response(
            json.dumps(self.fill(r["body"])), r["status"], headers=self.fill(r["headers"])
        )

    def _matches(self, want: dict[str, Any], request: Request) -> bool:
        if want["method"] != request.method or want["path"] != request.path:
            return False
        if any(request.args.get(k) != str(v) for k, v in want.get("query", {}).items()):
            return False
        return not any(k in request.args for k in want.get("absent", []))

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            for k, inter in enumerate(self.interactions):
                if not self.used[k] and self._matches(inter["request"], request):
                    self.used[k] = True
                    return self.response(k)
        return Response(f"no recorded answer for {request.method} {request.full_path}", 599)
