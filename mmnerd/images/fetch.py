"""Image downloader: concurrent, polite, size-capped, validated, content-addressed, SSRF-guarded.

Every image ends with ``ImageRef.status`` set to ``ok``, ``http_<code>`` or one of
:data:`STATUSES`, and a human-readable ``reason``.  Good images are stored once under
``<root>/<sha256[:2]>/<sha256>.<ext>``, where the sha256 is that of the *stored*
bytes (see :mod:`mmnerd.images.validate` for what is stored).

Network side (this module, over the guarded transport of :mod:`mmnerd.http`):

* a thread pool (``workers``) with at most ``per_host`` downloads per host at once;
* SSRF guard: each new connection resolves its host once, every address is checked
  (loopback, private, link-local, multicast, reserved are refused unless
  allow-listed), and the connection goes to a checked address (no second DNS
  lookup, so DNS rebinding cannot swap it); every redirect hop is checked the same way;
* IDN hosts are IDNA-encoded, percent-encoded hosts decoded, raw paths quoted;
* retries after 429/5xx and connection errors (:func:`mmnerd.http.polite_retry`),
  honouring ``Retry-After`` (or a 429's rate-limit reset) up to ``max_retry_after``,
  giving up beyond it; no retry after a timeout; the per-host slot is free while waiting;
* a per-socket-operation ``timeout`` plus a ``total_timeout`` per image (slow
  trickling bodies end there), and a ``max_bytes`` cut-off while streaming.

Decoding, validation and re-encoding run in the download threads (Pillow releases
the GIL) or, with ``processes`` > 0, in a process pool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from mmnerd.config import ImagesConfig, PipelineConfig, split_allow_entry
from mmnerd.http import (
    Allow,
    GiveUp,
    Guard,
    GuardedPoolManager,
    Refused,
    Resolver,
    discard,
    polite_retry,
    resolve_checked,
)
from mmnerd.images.stored import StoredImages
from mmnerd.images.validate import ImageOptions, Processed, process, sniff, validate
from mmnerd.io import atomic_write, remove_stale_temps
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import ImageRef, Post

__all__ = [
    "STATUSES",
    "Fetcher",
    "FetchResult",
    "FetchStage",
    "address_allowed",
    "fetch_image",
    "fetch_many",
    "parse_target",
    "sniff",
    "store",
    "validate",
]

STATUSES = (
    "ok",
    "bad_url",
    "blocked_address",
    "dns_error",
    "connection_error",
    "timeout",
    "too_many_redirects",
    "too_large",
    "truncated",
    "not_image",
    "corrupt_image",
    "decompression_bomb",
    "worker_error",
    "blocked_path",
    "missing_file",
    "read_error",
)
"""Fetch outcomes besides ``http_<code>`` (the final HTTP status when it is not 200); the
last three are a source's local files (:func:`read_local`)."""

BACKOFF = 0.25
"""Seconds before the first retry without Retry-After (jitter [0.5, 1)); doubles each time."""

_SAFE_PATH = "/%:@!$&'()*+,;=~"
_SAFE_QUERY = _SAFE_PATH + "?"


class BadUrl(ValueError):
    """The URL cannot be fetched as given (scheme, host, port or characters)."""


@dataclass(frozen=True)
class Target:
    """One request's destination, normalised: ASCII host, port, quoted request path."""

    scheme: str
    host: str  # ASCII (IDNA) name or IP literal, no brackets
    port: int
    path: str  # path + query, percent-encoded
    host_header: str


def parse_target(url: str) -> Target:
    """Normalise ``url`` for a request; raise :class:`BadUrl` if it cannot be fetched."""
    url = url.strip()
    if not url or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise BadUrl(f"unsupported URL {url[:200]!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as e:
        raise BadUrl(f"{e}: {url[:200]!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not hostname:
        raise BadUrl(f"unsupported URL {url[:200]!r}")
    if parts.username is not None or parts.password is not None:
        raise BadUrl("credentials in URL")
    host = unquote(hostname).rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
        host = str(ip)
    except ValueError:
        host = _idna(host)
    port = port or (443 if scheme == "https" else 80)
    path = quote(parts.path or "/", safe=_SAFE_PATH)
    if parts.query:
        path += "?" + quote(parts.query, safe=_SAFE_QUERY)
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    header = shown if port == default else f"{shown}:{port}"
    return Target(scheme, host, port, path, header)


def _idna(host: str) -> str:
    """ASCII form of a host name (IDNA 2008 with UTS 46 mapping for Unicode names)."""
    if host.isascii():
        if not host or any(not (c.isalnum() or c in "-._") for c in host):
            raise BadUrl(f"bad host name {host[:100]!r}")
        return host
    import idna

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise BadUrl(f"bad international host name {host[:100]!r}: {e}") from None


def _normalise_allow(entries: Iterable[str]) -> Allow:
    out = set()
    for entry in entries:
        host, port = split_allow_entry(entry)
        e = host.strip("[]").rstrip(".").lower()
        try:
            out.add((str(ipaddress.ip_address(e)), port))
        except ValueError:
            try:
                out.add((_idna(e), port))
            except BadUrl:
                out.add((e, port))
    return frozenset(out)


def address_allowed(host: str, allow_hosts: list[str], port: int = 0) -> tuple[bool, str]:
    """Whether ``host`` (on ``port``; 0 = unknown) may be fetched (system resolver);
    returns (allowed, reason)."""
    _, status, reason = resolve_checked(host, port, _normalise_allow(allow_hosts))
    return not status, f"{status}: {reason}" if status else ""


@dataclass
class FetchResult:
    """A download's outcome; ``data`` holds the body when ``status == "ok"``."""

    status: str
    reason: str = ""
    data: bytes = b""
    mime: str = ""
    ext: str = ""


@dataclass
class _Redirect:
    location: str


class Fetcher:
    """Downloads URLs (thread-safe) through the guarded transport of :mod:`mmnerd.http`:
    pinned to checked addresses, retried by its policy, capped in bytes and time."""

    def __init__(
        self, cfg: ImagesConfig, resolver: Resolver | None = None, ca_certs: str | None = None
    ):
        """``resolver`` defaults to the system's; ``ca_certs`` (a PEM bundle) to the system
        trust store."""
        self.cfg = cfg
        self.allow = _normalise_allow(cfg.allow_hosts)
        guard = Guard(self.allow, resolver) if resolver else Guard(self.allow)
        self._pm = GuardedPoolManager(
            guard,
            num_pools=max(64, cfg.workers),
            maxsize=cfg.workers,
            block=False,
            retries=False,
            ca_certs=ca_certs,
        )
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._headers = {
            "User-Agent": cfg.user_agent,
            "Accept": "image/*",
            "Accept-Encoding": "identity",
        }

    @contextlib.contextmanager
    def _slot(self, host: str) -> Iterator[Callable[[float], None]]:
        """Hold one of the ``per_host`` download slots of ``host``; yields a sleep that
        gives the slot back while it waits (others may use it meanwhile)."""
        with self._lock:
            sem = self._slots.get(host)
            if sem is None:
                sem = self._slots[host] = threading.BoundedSemaphore(self.cfg.per_host)

        def sleep_outside(seconds: float) -> None:
            sem.release()
            try:
                time.sleep(seconds)
            finally:
                sem.acquire()

        with sem:
            yield sleep_outside

    def fetch(self, url: str) -> FetchResult:
        """Download ``url`` following up to ``max_redirects`` redirects (each hop guarded)."""
        deadline = time.monotonic() + self.cfg.total_timeout
        for _ in range(self.cfg.max_redirects + 1):
            try:
                target = parse_target(url)
            except BadUrl as e:
                return FetchResult("bad_url", str(e))
            res = self._get(target, deadline)
            if isinstance(res, FetchResult):
                return res
            url = urljoin(url, res.location)
        return FetchResult("too_many_redirects", f"more than {self.cfg.max_redirects} redirects")

    def _get(self, target: Target, deadline: float) -> FetchResult | _Redirect:
        """One hop: GET with the retry policy; returns the result or the redirect to follow."""
        cfg = self.cfg
        left = deadline - time.monotonic()
        if left <= 0:
            return FetchResult("timeout", f"not done within {cfg.total_timeout:g} s")
        timeout = min(cfg.timeout, left)
        with self._slot(target.host) as sleep_outside:
            retry = polite_retry(
                cfg.retries,
                backoff=BACKOFF,
                max_wait=cfg.max_retry_after,
                methods=("GET",),
                give_up_over_cap=True,  # a long Retry-After ends the download
                retry_timeouts=False,
                deadline=deadline,
                sleeper=sleep_outside,
            )
            pool = self._pm.connection_from_host(target.host, target.port, target.scheme)
            try:
                resp = pool.urlopen(
                    "GET",
                    target.path,
                    headers={**self._headers, "Host": target.host_header},
                    redirect=False,
                    retries=retry,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                )
            except Refused as e:
                return FetchResult(e.status, e.reason)
            except GiveUp as e:
                if e.what == "deadline":
                    why = f"retry would end after total_timeout {cfg.total_timeout:g} s"
                    return FetchResult("timeout", why)
                why = f"{e.what} {e.wait:g} s > max_retry_after {e.cap:g} s"
                return FetchResult(f"http_{e.status}" if e.status else "connection_error", why)
            except (Urllib3Timeout, TimeoutError) as e:
                if isinstance(e, NewConnectionError):  # refused (a ConnectTimeoutError subclass)
                    return FetchResult("connection_error", _describe(e))
                return FetchResult("timeout", f"no answer within {cfg.timeout:g} s")
            except (HTTPError, OSError) as e:  # retries spent (MaxRetryError), TLS, protocol
                tls = isinstance(getattr(e, "reason", e), SSLError)
                return FetchResult("connection_error", ("TLS: " if tls else "") + _describe(e))
            try:
                if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    return _Redirect(resp.headers["Location"])
                if resp.status == 200:
                    return self._read(resp, deadline)
                return FetchResult(f"http_{resp.status}", resp.reason or "")
            finally:
                discard(resp)

    def _read(self, resp: urllib3.BaseHTTPResponse, deadline: float) -> FetchResult:
        """Stream the body up to ``max_bytes`` and the deadline; sniff it as soon as possible."""
        limit = self.cfg.max_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            return FetchResult("too_large", f"Content-Length {declared} > {limit} bytes")
        buf = bytearray()
        sniffed = False
        try:
            while True:
                if time.monotonic() > deadline:
                    return FetchResult(
                        "timeout",
                        f"body not complete within {self.cfg.total_timeout:g} s ({len(buf)} bytes)",
                    )
                chunk = resp.read1(64 * 1024)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > limit:
                    return FetchResult("too_large", f"body exceeds {limit} bytes")
                if not sniffed and len(buf) >= 16:
                    if sniff(bytes(buf[:16])) is None:
                        return FetchResult("not_image", f"magic bytes {bytes(buf[:8])!r}")
                    sniffed = True
        except (Urllib3Timeout, TimeoutError):
            return FetchResult("timeout", f"body stalled for {self.cfg.timeout:g} s")
        except ProtocolError as e:
            if _incomplete(e):
                return FetchResult("truncated", f"body ended after {len(buf)} of {declared} bytes")
            return FetchResult("connection_error", f"body: {_describe(e)}")
        except (HTTPError, OSError) as e:
            return FetchResult("connection_error", f"body: {_describe(e)}")
        kind = sniff(bytes(buf[:16]))
        if kind is None:
            return FetchResult("not_image", f"magic bytes {bytes(buf[:8])!r}")
        return FetchResult("ok", data=bytes(buf), mime=kind[0], ext=kind[1])


def _incomplete(e: BaseException) -> bool:
    import http.client

    from urllib3.exceptions import IncompleteRead

    seen: BaseException | None = e
    for _ in range(4):
        if isinstance(seen, IncompleteRead | http.client.IncompleteRead):
            return True
        if seen is None:
            return False
        seen = (
            seen.args[1]
            if len(seen.args) > 1 and isinstance(seen.args[1], BaseException)
            else seen.__context__
        )
    return False


def _describe(e: BaseException) -> str:
    """A short, stable description of a network error (innermost cause first; a TLS
    verification failure says why, e.g. a host name mismatch)."""
    inner: BaseException = e
    for _ in range(5):
        reason = inner.reason if isinstance(inner, MaxRetryError) else None
        nxt = reason or next(
            (a for a in getattr(inner, "args", ()) if isinstance(a, BaseException)), None
        )
        if nxt is None:
            break
        inner = nxt
    if isinstance(inner, NewConnectionError) or "refused" in str(inner).lower():
        return "ConnectionRefusedError"
    why = getattr(inner, "verify_message", "")
    return f"{type(inner).__name__}: {why}" if why else type(inner).__name__


def store(data: bytes, ext: str, root: Path) -> tuple[str, str]:
    """Write ``data`` content-addressed under ``root``; returns (sha256, relative path)."""
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{sha[:2]}/{sha}.{ext}"
    path = root / rel
    if not path.exists():
        with atomic_write(path, "wb") as f:
            f.write(data)
    return sha, rel


@dataclass
class Outcome:
    """What one image's processing left behind (small: crosses process boundaries)."""

    status: str
    reason: str = ""
    sha256: str = ""
    path: str = ""
    width: int = 0
    height: int = 0
    mime: str = ""


def process_and_store(data: bytes, opts: ImageOptions, root: str | Path) -> Outcome:
    """Validate/normalise ``data`` and store the result (runs in a thread or a worker process)."""
    res: Processed = process(data, opts)
    if res.status != "ok":
        return Outcome(res.status, res.reason)
    sha, rel = store(res.data, res.ext, Path(root))
    return Outcome("ok", "", sha, rel, res.width, res.height, res.mime)


def image_options(cfg: ImagesConfig, max_pixels: int | None = None) -> ImageOptions:
    return ImageOptions(
        max_pixels=max_pixels or cfg.max_pixels,
        max_side=cfg.max_side,
        jpeg_quality=cfg.jpeg_quality,
        store=cfg.store,
    )


def _apply(ref: ImageRef, out: Outcome) -> ImageRef:
    ref.status, ref.reason = out.status, out.reason
    ref.sha256, ref.path, ref.mime = out.sha256, out.path, out.mime
    ref.width, ref.height = out.width, out.height
    return ref


def read_local(images_dir: Path | None, rel: str, cfg: ImagesConfig) -> FetchResult:
    """Read the local image ``rel`` of a source, confined to ``images_dir`` (no ``..``, no
    absolute path, no symlink leading out), capped at ``max_bytes`` and sniffed like a
    download.  Statuses: ``ok``, ``blocked_path``, ``missing_file``, ``too_large``,
    ``not_image``, ``read_error``."""
    from mmnerd.errors import InputError
    from mmnerd.io import inside

    if images_dir is None:
        return FetchResult("missing_file", "the source has no image folder")
    try:
        path = inside(images_dir, rel)
    except InputError as e:
        return FetchResult("blocked_path", str(e))
    try:
        size = path.stat().st_size
        if not path.is_file():
            return FetchResult("missing_file", f"{rel!r} is not a file")
        if size > cfg.max_bytes:
            return FetchResult("too_large", f"{size} bytes > {cfg.max_bytes}")
        with open(path, "rb") as f:
            data = f.read(cfg.max_bytes + 1)
    except FileNotFoundError:
        return FetchResult("missing_file", f"{rel!r} not found in the image folder")
    except OSError as e:
        return FetchResult("read_error", f"{rel!r}: {e.strerror or type(e).__name__}")
    if len(data) > cfg.max_bytes:
        return FetchResult("too_large", f"more than {cfg.max_bytes} bytes")
    kind = sniff(data[:16])
    if kind is None:
        return FetchResult("not_image", f"magic bytes {data[:8]!r}")
    return FetchResult("ok", data=data, mime=kind[0], ext=kind[1])


Source = tuple[str, str]
"""("file", path relative to the source's image folder) or ("url", an http(s) URL): kept
apart, so no URL string (``file:///etc/passwd``) can ever name a local file."""


def _source_of(ref: ImageRef) -> Source:
    """One read per distinct source: a local file or a URL."""
    return ("file", ref.file) if ref.file else ("url", ref.url)


def _fetch_one(
    fetcher: Fetcher,
    source: Source,
    opts: ImageOptions,
    root: Path,
    procs: Executor | None,
    images_dir: Path | None = None,
) -> Outcome:
    kind, where = source
    res = read_local(images_dir, where, fetcher.cfg) if kind == "file" else fetcher.fetch(where)
    if res.status != "ok":
        return Outcome(res.status, res.reason)
    if procs is None:
        return process_and_store(res.data, opts, root)
    try:
        return procs.submit(process_and_store, res.data, opts, str(root)).result()
    except BrokenProcessPool as e:
        return Outcome("worker_error", f"image worker died: {e}"[:200])


def fetch_image(
    fetcher: Fetcher, ref: ImageRef, root: Path, max_pixels: int | None = None
) -> ImageRef:
    """Fetch, validate and store one image; fills status/reason and the image facts."""
    opts = image_options(fetcher.cfg, max_pixels)
    return _apply(ref, _fetch_one(fetcher, ("url", ref.url), opts, root, None))


def fetch_many(
    refs: Iterable[ImageRef],
    cfg: ImagesConfig,
    root: Path,
    resolver: Resolver | None = None,
    images_dir: Path | None = None,
    stored: StoredImages | None = None,
) -> Iterator[ImageRef]:
    """Fetch every ref concurrently (each distinct URL or local file once); yields the refs
    in input order.  Refs with ``file`` are read from ``images_dir`` (:func:`read_local`),
    the others downloaded.

    ``cfg.workers`` download threads, ``cfg.per_host`` per host; with
    ``cfg.processes`` > 0 the decode/resize step runs in that many processes.  With
    ``stored`` (:mod:`mmnerd.images.stored`), URLs stored by earlier runs are not
    downloaded again (unless ``cfg.refetch``), and a failed download keeps the stored
    copy.
    """
    fetcher = Fetcher(cfg, resolver)
    opts = image_options(cfg)
    with contextlib.ExitStack() as stack:
        procs: Executor | None = None
        if cfg.processes > 0:
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["mmnerd.images.validate"])
            procs = stack.enter_context(ProcessPoolExecutor(cfg.processes, mp_context=ctx))
        threads = stack.enter_context(ThreadPoolExecutor(cfg.workers, "fetch"))
        refs = list(refs)
        sources = list(dict.fromkeys(map(_source_of, refs)))
        urls = [where for kind, where in sources if kind == "url"]
        known = stored.lookup(urls) if stored is not None else {}
        futures: dict[Source, Future[Outcome]] = {}
        for src in sources:
            if src[0] == "file":  # local files: read again, cheap and never purged
                futures[src] = threads.submit(
                    _fetch_one, fetcher, src, opts, root, procs, images_dir
                )
        for url in _interleave_hosts(urls):
            src = ("url", url)
            if stored is not None and stored.reusable(known.get(url)):
                futures[src] = Future()
                futures[src].set_result(known[url][0])
                stored.flags["image_reused"] += 1
            else:
                futures[src] = threads.submit(_fetch_one, fetcher, src, opts, root, procs)
        settled: dict[Source, Outcome] = {}
        for ref in refs:
            src = _source_of(ref)
            out = settled.get(src)
            if out is None:
                out = futures[src].result()
                if src[0] == "url":
                    out = _settle(ref.url, out, known, stored)
                settled[src] = out
            yield _apply(ref, out)


def _settle(
    url: str, out: Outcome, known: dict[str, tuple[Outcome, bool]], stored: StoredImages | None
) -> Outcome:
    """Record a fresh download; keep the stored copy when a download failed."""
    if stored is None:
        return out
    prev = known.get(url)
    if out.status == "ok":
        if not stored.reusable(prev):
            stored.record(url, out)
        return out
    if prev is None:
        return out
    stored.flags["image_kept"] += 1
    kept = dataclasses.replace(prev[0])
    kept.reason = f"stored copy kept; the origin answered {out.status}: {out.reason}"[:300]
    return kept


def _interleave_hosts(urls: Iterable[str]) -> list[str]:
    """URLs round-robin over their hosts, so threads waiting for one busy host's
    ``per_host`` slots do not hold up the other hosts (head-of-line blocking)."""
    by_host: dict[str, list[str]] = {}
    for url in urls:
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            host = ""
        by_host.setdefault(host, []).append(url)
    queues = list(by_host.values())
    out: list[str] = []
    for i in range(max(map(len, queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


class FetchStage(Stage):
    """Download (or read, for a source's local files) each post's image.

    With ``images.required`` (the default) a post without an image is dropped as
    ``no_image`` and one whose image fails as ``image:<status>``; without it such posts
    continue text-only, flagged ``text_only`` (and ``image:<status>`` for a failure),
    their ``ImageRef`` keeping the failure's status and reason.
    """

    name = "fetch"
    input = "tokenize"
    config_sections = ("images",)

    def prepare(self, config: PipelineConfig) -> None:
        """Delete image temp files a killed fetch left in the store (no writer runs yet)."""
        images = config.root / "images"
        if images.is_dir():
            for folder in images.iterdir():
                remove_stale_temps(folder)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.images
        posts = list(records)
        refs = [p.image for p in posts if p.image is not None and (p.image.url or p.image.file)]
        images_dir = None
        if any(r.file for r in refs):
            from mmnerd.sources import get_source

            images_dir = get_source(ctx.config).local_images()
        with StoredImages(ctx.root, cfg) as stored:
            for _ in fetch_many(refs, cfg, ctx.root / "images", images_dir=images_dir,
                                stored=stored):  # fmt: skip
                pass  # fills each ref in place
        ctx.stats.flagged.update(stored.flags)
        for post in posts:
            if post.image is None or not (post.image.url or post.image.file):
                why = "no_image"
            elif post.image.status != "ok":
                why = f"image:{post.image.status}: {post.image.reason}"
            else:
                yield post
                continue
            if cfg.required:
                yield post.drop(why)
            else:
                ctx.flag("text_only")
                if why != "no_image":
                    ctx.flag(why.split(": ", 1)[0])
                yield post
