"""A fault-injecting HTTP server on 127.0.0.1 for downloader tests (tests only).

Each path answers with one kind of trouble a real image host can cause.  The server
is a threaded ``http.server`` speaking HTTP/1.1 (keep-alive), records every request
(path, Host header, concurrency per Host), and stops its slow handlers on
:meth:`FaultServer.stop`.  Every loop in it is bounded in count and time.

Paths (``<key>`` makes a counter per test; query strings tune the fault)::

    /img/<name>                  a canned image (see IMAGES), Content-Type image/*
    /ct/wrong  /ct/none          a JPEG served as text/html / without Content-Type
    /html                        an HTML page with status 200
    /status/<code>               that status with an HTML body
    /hang                        reads the request, never answers (until stop or 10 s)
    /trickle                     a JPEG's headers, then 1 byte every 50 ms (at most 10 s)
    /stall-body                  half the body, then silence
    /429/<key>?after=S&times=K   429 + Retry-After S for the first K hits, then a JPEG
    /5xx/<key>?code=C&times=K    status C for the first K hits, then a JPEG
    /reset                       TCP reset before any answer
    /reset-body                  headers and part of the body, then a TCP reset
    /truncated                   Content-Length larger than the body, then close
    /huge  /huge-chunked         a 50 MB JPEG, with / without Content-Length, streamed lazily
    /redirect?to=URL             302 to URL (relative or absolute)
    /loop                        302 to itself
    /chain/<n>                   n redirects, then a JPEG
    /slow/<ms>                   a JPEG after <ms> milliseconds (for per-host limits)
    /café.jpg  /café 1.jpg       JPEGs at non-ASCII paths (request them percent-encoded)
"""

from __future__ import annotations

import functools
import io
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

HUGE_BYTES = 50 * 1024 * 1024


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(w: int = 64, h: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    return _save(Image.new("RGB", (w, h), color), "JPEG", quality=90)


def exif_jpeg(orientation: int = 6, gps: bool = True) -> bytes:
    """A 40x20 JPEG, left half red, right half blue, with EXIF orientation (and GPS)."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # Make
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    return _save(img, "JPEG", quality=95, exif=exif.tobytes(), comment=b"private comment")


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    kw: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": 100}
    if fmt == "WEBP":
        kw["lossless"] = True
    return _save(frames[0], fmt, loop=0, **kw)


def _palette(alpha: bool) -> bytes:
    """30x20 palette PNG: left half index 0 (transparent if ``alpha``), right half green."""
    img = Image.new("P", (30, 20), 1)
    img.putpalette([0, 0, 0, 10, 200, 30])
    img.paste(0, (0, 0, 15, 20))
    if alpha:
        return _save(img, "PNG", transparency=0)
    return _save(img, "PNG")


@functools.cache
def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG declaring side x side pixels (400 M by default) in ~50 kB."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    block = row * 64
    chunks = [comp.compress(block) for _ in range(side // 64)]
    chunks.append(comp.compress(row * (side % 64)))
    chunks.append(comp.flush())
    idat = b"".join(chunks)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _images() -> dict[str, Callable[[], tuple[bytes, str]]]:
    return {
        "ok.jpg": lambda: (jpeg(), "image/jpeg"),
        "ok.png": lambda: (_save(Image.new("RGB", (20, 10), (1, 2, 3)), "PNG"), "image/png"),
        "rgba.png": lambda: (
            _save(Image.new("RGBA", (20, 10), (1, 2, 3, 100)), "PNG"),
            "image/png",
        ),
        "cmyk.jpg": lambda: (
            _save(Image.new("CMYK", (24, 16), (0, 255, 255, 0)), "JPEG", quality=95),
            "image/jpeg",
        ),
        "gray16.png": lambda: (_save(Image.new("I;16", (16, 8), 32768), "PNG"), "image/png"),
        "palette.png": lambda: (_palette(False), "image/png"),
        "palette-alpha.png": lambda: (_palette(True), "image/png"),
        "anim.gif": lambda: (_animated("GIF"), "image/gif"),
        "anim.webp": lambda: (_animated("WEBP"), "image/webp"),
        "exif6.jpg": lambda: (exif_jpeg(6), "image/jpeg"),
        "gps.jpg": lambda: (exif_jpeg(1), "image/jpeg"),
        "bmp.bmp": lambda: (_save(Image.new("RGB", (12, 6), (9, 9, 9)), "BMP"), "image/bmp"),
        "corrupt.jpg": lambda: (jpeg(400, 300)[:600], "image/jpeg"),
        "bomb.png": lambda: (bomb_png(), "image/png"),
        "big.jpg": lambda: (jpeg(800, 600), "image/jpeg"),
    }


IMAGES = _images()
"""Canned images by name: () -> (bytes, content type)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    # -- helpers ---------------------------------------------------------
    def _send(
        self,
        body: bytes,
        status: int = 200,
        ctype: str | None = "image/jpeg",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the server is stopping."""
        return not self.server.stopping.wait(seconds)

    # -- dispatch ----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Host", "")))
        try:
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _route(self, path: str, q: dict[str, str]) -> None:
        seg = path.strip("/").split("/")
        head = seg[0]
        ok = jpeg()
        if head == "img" and len(seg) == 2 and seg[1] in IMAGES:
            body, ctype = IMAGES[seg[1]]()
            self._send(body, ctype=ctype)
        elif path == "/ct/wrong":
            self._send(ok, ctype="text/html; charset=utf-8")
        elif path == "/ct/none":
            self._send(ok, ctype=None)
        elif path == "/html":
            self._send(b"<!doctype html><html><body>not an image</body></html>", ctype="text/html")
        elif head == "status":
            self._send(b"<html>error</html>", status=int(seg[1]), ctype="text/html")
        elif path == "/hang":
            self._wait(10)
            self.close_connection = True
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(ok) + 200))
            self.end_headers()
            for b in (ok + b"\0" * 200)[:200]:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                if not self._wait(0.05):
                    break
            self.close_connection = True
        elif path == "/stall-body":
            self.send_response(200)
            self.send_header("Content-Length", str(len(ok)))
            self.end_headers()
            self.wfile.write(ok[: len(ok) // 2])
            self.wfile.flush()
            self._wait(10)
            self.close_connection = True
        elif head in ("429", "5xx") and len(seg) == 2:
            times = int(q.get("times", "1"))
            with self.server.lock:
                self.server.hits[path] += 1
                n = self.server.hits[path]
            if n <= times and head == "429":
                after = q.get("after", "1")
                self._send(b"slow down", 429, "text/plain", {"Retry-After": after})
            elif n <= times:
                self._send(b"oops", int(q.get("code", "503")), "text/plain")
            else:
                self._send(ok)
        elif path == "/reset":
            self._reset()
        elif path == "/reset-body":
            self.send_response(200)
            self.send_header("Content-Length", str(len(ok)))
            self.end_headers()
            self.wfile.write(ok[:100])
            self._reset()
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(ok) + 5000))
            self.end_headers()
            self.wfile.write(ok)
            self.wfile.flush()
            self.close_connection = True
        elif path in ("/huge", "/huge-chunked"):
            self._huge(with_length=path == "/huge")
        elif path == "/redirect":
            self._redirect(q["to"])
        elif path == "/loop":
            self._redirect("/loop")
        elif head == "chain":
            n = int(seg[1])
            if n > 0:
                self._redirect(f"/chain/{n - 1}")
            else:
                self._send(ok)
        elif head == "slow":
            self._slow(int(seg[1]) / 1000, ok)
        elif path in ("/café.jpg", "/café 1.jpg"):
            self._send(jpeg(color=(0, 128, 0)))
        else:
            self._send(b"<html>not found</html>", 404, "text/html")

    def _slow(self, seconds: float, body: bytes) -> None:
        """Answer after ``seconds``, counting requests in flight per Host header.

        The count drops *before* the answer is sent, so a client that starts its next
        request as soon as it has an answer is never counted twice."""
        host, srv = self.headers.get("Host", ""), self.server
        with srv.lock:
            srv.active[host] += 1
            srv.max_active[host] = max(srv.max_active[host], srv.active[host])
        try:
            self._wait(seconds)
        finally:
            with srv.lock:
                srv.active[host] -= 1
        self._send(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _huge(self, with_length: bool) -> None:
        """50 MB: a JPEG's first segments then zeros, generated chunk by chunk."""
        head = jpeg()[:-2]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if with_length:
            self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        self.wfile.write(head)
        block = b"\0" * 65536
        sent = len(head)
        deadline = time.monotonic() + 20
        while (
            sent < HUGE_BYTES and time.monotonic() < deadline and not self.server.stopping.is_set()
        ):
            n = min(len(block), HUGE_BYTES - sent)
            self.wfile.write(block[:n])
            sent += n
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # many clients connect at once; the default 5 drops SYNs

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.hits: Counter[str] = Counter()
        self.active: defaultdict[str, int] = defaultdict(int)
        self.max_active: defaultdict[str, int] = defaultdict(int)


class FaultServer:
    """Start/stop the fault server and build URLs to it (host name of your choice)."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """``tls`` = (certificate file, key file) serves HTTPS instead of HTTP."""
        self._srv = _Server()
        self.scheme = "https" if tls else "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._srv.socket = ctx.wrap_socket(self._srv.socket, server_side=True)
        self.port: int = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    def start(self) -> FaultServer:
        bomb_png()  # built (and cached) now: built on the first request, it can outlast the
        # clients' 0.5 s timeout on a loaded machine and turn a bomb into a timeout
        self._thread.start()
        return self

    def stop(self) -> None:
        self._srv.stopping.set()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str, host: str = "localhost") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(raw request path, Host header) of every request so far."""
        with self._srv.lock:
            return list(self._srv.requests)

    def max_active(self, host: str) -> int:
        """The most ``/slow`` requests with this Host header that were in flight at once."""
        with self._srv.lock:
            return self._srv.max_active[host]

    def reset_counters(self) -> None:
        with self._srv.lock:
            self._srv.requests.clear()
            self._srv.hits.clear()
            self._srv.max_active.clear()
