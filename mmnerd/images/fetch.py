"""Image downloader: concurrent, size-capped, validated, content-addressed, SSRF-guarded.

Every post ends with ``post.image.status`` set to one of :data:`STATUSES` and a
human-readable ``reason``; good images are stored once under
``<data_dir>/images/<sha256[:2]>/<sha256>.<ext>`` whatever their URL.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from mmnerd.config import ImagesConfig
from mmnerd.io import atomic_write
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import ImageRef, Post

STATUSES = (
    "ok",
    "bad_url",
    "blocked_address",
    "dns_error",
    "connection_error",
    "timeout",
    "too_many_redirects",
    "too_large",
    "not_image",
    "corrupt_image",
    "decompression_bomb",
)
"""Fetch outcomes besides ``http_<code>``."""

MAX_REDIRECTS = 5

_MAGIC: list[tuple[bytes, int, str, str]] = [
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"WEBP", 8, "image/webp", "webp"),
    (b"BM", 0, "image/bmp", "bmp"),
]


def sniff(head: bytes) -> tuple[str, str] | None:
    """(mime, extension) from magic bytes, or None if this is not an image we accept."""
    for magic, offset, mime, ext in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if ext == "webp" and head[:4] != b"RIFF":
                continue
            return mime, ext
    return None


@dataclass
class FetchResult:
    status: str
    reason: str = ""
    data: bytes = b""
    mime: str = ""
    ext: str = ""


def address_allowed(host: str, allow_hosts: list[str]) -> tuple[bool, str]:
    """Refuse hosts resolving to loopback, private, link-local, multicast or reserved
    addresses unless allow-listed by name or address.  Returns (allowed, reason)."""
    if host in allow_hosts:
        return True, ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as e:
        return False, f"dns_error: {host}: {e}"
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if str(addr) in allow_hosts:
            continue
        if not addr.is_global or addr.is_multicast:
            return False, f"blocked_address: {host} resolves to non-public {addr}"
    return True, ""


def _is_timeout(e: BaseException) -> bool:
    """True for timeouts, including those urllib3 wraps in MaxRetryError after retrying."""
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    if isinstance(e, requests.Timeout):
        return True
    reason = getattr(e.args[0], "reason", None) if e.args else None
    return isinstance(reason, Urllib3Timeout)


class Fetcher:
    """Downloads one URL at a time per call; thread-safe; one requests session per thread."""

    def __init__(self, cfg: ImagesConfig):
        self.cfg = cfg
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            s = requests.Session()
            retry = Retry(
                total=3,
                connect=2,
                read=2,
                status=3,
                backoff_factor=0.3,
                backoff_jitter=0.2,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=("GET",),
                respect_retry_after_header=True,
                redirect=0,
                raise_on_status=False,
            )
            adapter = HTTPAdapter(max_retries=retry, pool_maxsize=self.cfg.workers)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = self.cfg.user_agent
            self._local.session = s
        return s

    def fetch(self, url: str) -> FetchResult:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return FetchResult("bad_url", f"unsupported URL {url[:200]!r}")
            ok, why = address_allowed(parts.hostname, self.cfg.allow_hosts)
            if not ok:
                return FetchResult(why.split(": ", 1)[0], why)
            try:
                resp = self._session().get(
                    url, stream=True, timeout=self.cfg.timeout, allow_redirects=False
                )
            except requests.RequestException as e:
                if _is_timeout(e):
                    return FetchResult("timeout", f"no answer within {self.cfg.timeout:g} s")
                return FetchResult("connection_error", type(e).__name__)
            with resp:
                if resp.is_redirect:
                    url = urljoin(url, resp.headers.get("Location", ""))
                    continue
                if resp.status_code != 200:
                    return FetchResult(f"http_{resp.status_code}", resp.reason or "")
                return self._read(resp)
        return FetchResult("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")

    def _read(self, resp: requests.Response) -> FetchResult:
        limit = self.cfg.max_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            return FetchResult("too_large", f"Content-Length {declared} > {limit} bytes")
        buf = bytearray()
        try:
            for chunk in resp.iter_content(64 * 1024):
                buf += chunk
                if len(buf) > limit:
                    return FetchResult("too_large", f"body exceeds {limit} bytes")
        except requests.Timeout:
            return FetchResult("timeout", "body too slow")
        except requests.RequestException as e:
            return FetchResult("connection_error", f"body: {type(e).__name__}")
        kind = sniff(bytes(buf[:16]))
        if kind is None:
            return FetchResult("not_image", f"magic bytes {bytes(buf[:8])!r}")
        return FetchResult("ok", data=bytes(buf), mime=kind[0], ext=kind[1])


def validate(data: bytes, max_pixels: int) -> tuple[str, str, int, int]:
    """Open with PIL: returns (status, reason, width, height)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                return "decompression_bomb", f"{w}x{h} > {max_pixels} pixels", w, h
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # verify() misses truncated data; a full decode does not
    except Image.DecompressionBombError as e:
        return "decompression_bomb", str(e)[:200], 0, 0
    except Exception as e:  # PIL raises many types for bad data
        return "corrupt_image", f"{type(e).__name__}: {str(e)[:150]}", 0, 0
    return "ok", "", w, h


def store(data: bytes, ext: str, root: Path) -> tuple[str, str]:
    """Write ``data`` content-addressed under ``root``; returns (sha256, relative path)."""
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{sha[:2]}/{sha}.{ext}"
    path = root / rel
    if not path.exists():
        with atomic_write(path, "wb") as f:
            f.write(data)
    return sha, rel


def fetch_image(fetcher: Fetcher, ref: ImageRef, root: Path, max_pixels: int) -> ImageRef:
    """Fetch, validate and store one image; fills status/reason and the image facts."""
    res = fetcher.fetch(ref.url)
    if res.status == "ok":
        status, reason, w, h = validate(res.data, max_pixels)
        if status == "ok":
            ref.sha256, ref.path = store(res.data, res.ext, root)
            ref.width, ref.height, ref.mime = w, h, res.mime
        res.status, res.reason = status, reason
    ref.status, ref.reason = res.status, res.reason
    return ref


class FetchStage(Stage):
    """Download each post's image; posts whose image fails are dropped as ``image:<status>``."""

    name = "fetch"
    input = "tokenize"
    config_sections = ("images",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.images
        root = ctx.root / "images"
        fetcher = Fetcher(cfg)
        posts = list(records)

        def one(post: Post) -> Post:
            if post.image is None or not post.image.url:
                return post.drop("no_image")
            fetch_image(fetcher, post.image, root, cfg.max_pixels)
            if post.image.status != "ok":
                post.drop(f"image:{post.image.status}: {post.image.reason}")
            return post

        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            yield from pool.map(one, posts)
