"""The fetcher against the fault-injecting server: every item gets the right status and
reason, the run finishes, good items are kept and normalised, and no traffic leaves
the loopback interface (see the ``loopback_only`` guard in conftest.py)."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import faultserver as fs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmnerd.config import ImagesConfig
from mmnerd.http import is_public
from mmnerd.http import retry_after as _retry_after
from mmnerd.images.fetch import (
    Fetcher,
    FetchStage,
    _interleave_hosts,
    fetch_many,
    parse_target,
)
from mmnerd.images.validate import strip_jpeg_metadata
from mmnerd.pipeline import Runner, StageContext, StageStats, seed_stage
from mmnerd.records import ImageRef, Post

EXT = {"image/jpeg": "jpg", "image/png": "png"}
NAMES = {
    "localhost": ["127.0.0.1"],
    "xn--bcher-kva.test": ["127.0.0.1"],  # bücher.test
    "pinned.test": ["127.0.0.1"],
    "mixed.test": ["93.184.216.34", "10.0.0.1"],
    "private.test": ["192.168.1.1"],
}


def resolver(host: str, port: int) -> list[str]:
    """Names from NAMES, IP literals in any inet_aton form; never asks real DNS."""
    if host in NAMES:
        return NAMES[host]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [i[4][0] for i in infos]


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cfg(**kw: object) -> ImagesConfig:
    base: dict[str, object] = dict(
        timeout=0.5,
        total_timeout=2.5,
        max_bytes=2_000_000,
        max_pixels=1_000_000,
        workers=48,
        per_host=48,
        retries=2,
        max_retry_after=5,
        allow_hosts=["localhost", "bücher.test", "pinned.test"],
    )
    base.update(kw)
    return ImagesConfig(**base)


def run(urls: list[str], tmp_path: Path, **kw: object) -> list[ImageRef]:
    refs = [ImageRef(url=u) for u in urls]
    return list(fetch_many(refs, make_cfg(**kw), tmp_path, resolver=resolver))


def open_stored(tmp_path: Path, ref: ImageRef) -> Image.Image:
    return Image.open(io.BytesIO((tmp_path / ref.path).read_bytes()))


def test_every_fault_gets_its_status(faultserver, tmp_path, loopback_only):
    port = faultserver.port
    u = faultserver.url
    cases: list[tuple[str, str, str]] = [
        # good items, however they are served
        (u("/img/ok.jpg"), "ok", ""),
        (u("/ct/wrong"), "ok", ""),
        (u("/ct/none"), "ok", ""),
        (u("/429/a?after=1&times=1"), "ok", ""),
        (u("/5xx/b?code=503&times=2"), "ok", ""),
        (u("/chain/3"), "ok", ""),
        (u("/caf%C3%A9.jpg"), "ok", ""),
        (u("/café 1.jpg"), "ok", ""),
        (f"http://bücher.test:{port}/img/ok.jpg", "ok", ""),
        (f"http://%6cocalhost:{port}/img/ok.png", "ok", ""),
        *[(u(f"/img/{n}"), "ok", "") for n in ("cmyk.jpg", "gray16.png", "palette.png")],
        *[(u(f"/img/{n}"), "ok", "") for n in ("palette-alpha.png", "anim.gif", "anim.webp")],
        *[(u(f"/img/{n}"), "ok", "") for n in ("exif6.jpg", "gps.jpg", "rgba.png", "bmp.bmp")],
        # HTTP trouble
        (u("/html"), "not_image", "magic bytes"),
        (u("/status/404"), "http_404", "Not Found"),
        (u("/status/410"), "http_410", "Gone"),
        (u("/5xx/c?code=500&times=9"), "http_500", ""),
        (u("/429/d?after=3600&times=1"), "http_429", "Retry-After 3600 s > max_retry_after"),
        (u("/hang"), "timeout", "no answer within 0.5 s"),
        (u("/trickle"), "timeout", "body not complete within 2.5 s"),
        (u("/stall-body"), "timeout", "body stalled"),
        (f"http://localhost:{closed_port()}/x.jpg", "connection_error", "ConnectionRefused"),
        (u("/reset"), "connection_error", "ConnectionResetError"),
        (u("/reset-body"), "connection_error", "body"),
        (u("/truncated"), "truncated", "body ended after"),
        (u("/huge"), "too_large", "Content-Length 52428800"),
        (u("/huge-chunked"), "too_large", "body exceeds 2000000"),
        # bad images
        (u("/img/bomb.png"), "decompression_bomb", "400000000 pixels"),
        (u("/img/corrupt.jpg"), "corrupt_image", ""),
        # redirects and the SSRF guard (refused before any connection)
        (u("/loop"), "too_many_redirects", "more than 5"),
        (u("/chain/9"), "too_many_redirects", ""),
        (u(f"/redirect?to=http://127.0.0.1:{port}/img/ok.jpg"), "blocked_address", "127.0.0.1"),
        (u("/redirect?to=http://169.254.169.254/latest/meta-data/"), "blocked_address", "169.254"),
        (u("/redirect?to=http://10.0.0.1/a.jpg"), "blocked_address", "10.0.0.1"),
        (u("/redirect?to=http://192.168.1.1/a.jpg"), "blocked_address", "192.168.1.1"),
        (u(f"/redirect?to=http://[::1]:{port}/img/ok.jpg"), "blocked_address", "::1"),
        (u(f"/redirect?to=http://0.0.0.0:{port}/img/ok.jpg"), "blocked_address", "0.0.0.0"),
        (u(f"/redirect?to=http://2130706433:{port}/img/ok.jpg"), "blocked_address", "127.0.0.1"),
        (u("/redirect?to=http://[::ffff:a9fe:a9fe]/"), "blocked_address", "a9fe"),
        (u("/redirect?to=ftp://example.org/a.jpg"), "bad_url", "unsupported URL"),
        (f"http://127.0.0.%31:{port}/img/ok.jpg", "blocked_address", "127.0.0.1"),
        (f"http://0x7f.1:{port}/img/ok.jpg", "blocked_address", "127.0.0.1"),
        (f"http://private.test:{port}/img/ok.jpg", "blocked_address", "192.168.1.1"),
        (f"http://mixed.test:{port}/img/ok.jpg", "blocked_address", "10.0.0.1"),
        (f"http://nowhere.test:{port}/img/ok.jpg", "dns_error", "nowhere.test"),
        (f"http://user:pw@localhost:{port}/img/ok.jpg", "bad_url", "credentials"),
        ("http://a b.test/x.jpg", "bad_url", "bad host name"),
        ("http://xn--a.test/x.jpg", "dns_error", ""),
        ("javascript:alert(1)", "bad_url", "unsupported URL"),
    ]
    start = time.monotonic()
    refs = run([c[0] for c in cases], tmp_path)
    took = time.monotonic() - start
    wrong = [
        (url, status, reason, ref.status, ref.reason)
        for (url, status, reason), ref in zip(cases, refs, strict=True)
        if ref.status != status or reason not in ref.reason
    ]
    assert wrong == []
    for (_, status, _), ref in zip(cases, refs, strict=True):
        if status == "ok":
            data = (tmp_path / ref.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == ref.sha256
            assert ref.path == f"{ref.sha256[:2]}/{ref.sha256}.{EXT[ref.mime]}"
            with Image.open(io.BytesIO(data)) as img:
                assert img.size == (ref.width, ref.height)
                assert Image.MIME[img.format] == ref.mime
        else:
            assert not ref.path and not ref.sha256
    assert took < 15
    assert loopback_only == []  # the guard refused before connecting, every time


def test_normalised_images(faultserver, tmp_path):
    names = ["exif6.jpg", "gps.jpg", "cmyk.jpg", "gray16.png", "palette.png", "palette-alpha.png"]
    names += ["anim.gif", "anim.webp", "rgba.png", "bmp.bmp"]
    fetched = run([faultserver.url(f"/img/{n}") for n in names], tmp_path)
    refs = dict(zip(names, fetched, strict=True))
    assert all(r.status == "ok" for r in refs.values()), refs
    img = {n: open_stored(tmp_path, r) for n, r in refs.items()}

    # EXIF orientation 6 applied (40x20 red|blue -> 20x40 red over blue), metadata gone
    assert img["exif6.jpg"].size == (20, 40)
    top, bottom = img["exif6.jpg"].getpixel((10, 5)), img["exif6.jpg"].getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    for n in ("exif6.jpg", "gps.jpg"):
        assert not img[n].getexif() and "comment" not in img[n].info
        assert b"SecretCam" not in (tmp_path / refs[n].path).read_bytes()
    # orientation 1: metadata stripped losslessly, pixels identical
    original = Image.open(io.BytesIO(fs.IMAGES["gps.jpg"]()[0]))
    assert np.array_equal(np.asarray(original), np.asarray(img["gps.jpg"]))
    # modes
    assert (img["cmyk.jpg"].mode, img["cmyk.jpg"].format) == ("RGB", "JPEG")
    r, g, b = img["cmyk.jpg"].getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60
    assert img["gray16.png"].mode == "L" and abs(img["gray16.png"].getpixel((1, 1)) - 128) <= 1
    assert (img["palette.png"].mode, img["palette.png"].format) == ("RGB", "PNG")
    assert img["palette-alpha.png"].mode == "RGBA"
    assert img["rgba.png"].mode == "RGBA" and img["rgba.png"].getpixel((0, 0))[3] == 100
    assert (img["bmp.bmp"].format, refs["bmp.bmp"].mime) == ("PNG", "image/png")
    # animations keep their first (red) frame only
    for n in ("anim.gif", "anim.webp"):
        assert getattr(img[n], "n_frames", 1) == 1
        r, g, b = img[n].convert("RGB").getpixel((3, 3))
        assert r > 200 and g < 60 and b < 60, n


def test_store_original_keeps_the_bytes(faultserver, tmp_path):
    (ref,) = run([faultserver.url("/img/gps.jpg")], tmp_path, store="original")
    assert ref.status == "ok"
    assert (tmp_path / ref.path).read_bytes() == fs.IMAGES["gps.jpg"]()[0]
    assert (ref.width, ref.height, ref.mime) == (40, 20, "image/jpeg")


def test_max_side_resizes_after_orientation(faultserver, tmp_path):
    big, rotated = run(
        [faultserver.url("/img/big.jpg"), faultserver.url("/img/exif6.jpg")], tmp_path, max_side=30
    )
    assert (big.width, big.height, big.mime) == (30, 22, "image/jpeg")
    assert (rotated.width, rotated.height) == (15, 30)
    assert open_stored(tmp_path, big).size == (30, 22)


def test_process_pool_gives_the_same_files(faultserver, tmp_path):
    urls = [faultserver.url(f"/img/{n}") for n in ("big.jpg", "exif6.jpg", "bomb.png")]
    threads = run(urls, tmp_path / "t", max_side=64)
    procs = run(urls, tmp_path / "p", max_side=64, processes=1)
    assert [(r.status, r.sha256) for r in threads] == [(r.status, r.sha256) for r in procs]
    assert [r.status for r in procs] == ["ok", "ok", "decompression_bomb"]


def test_per_host_limit_and_one_download_per_url(faultserver, tmp_path):
    faultserver.reset_counters()
    urls = [faultserver.url(f"/slow/200?i={i}") for i in range(6)]
    start = time.monotonic()
    refs = run(urls + urls, tmp_path, per_host=2, workers=8)
    assert all(r.status == "ok" for r in refs)
    assert faultserver.max_active(f"localhost:{faultserver.port}") == 2
    assert time.monotonic() - start >= 0.55  # 6 downloads, 2 at a time, 0.2 s each
    assert len(faultserver.requests) == 6  # each distinct URL fetched once


def test_connects_to_the_checked_address(faultserver, tmp_path, loopback_only):
    calls: list[str] = []

    def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return resolver(host, port)

    faultserver.reset_counters()
    cfg = make_cfg()
    res = Fetcher(cfg, counting).fetch(f"http://pinned.test:{faultserver.port}/img/ok.jpg")
    assert res.status == "ok"
    assert calls == ["pinned.test"]  # resolved once; the system resolver never asked
    assert faultserver.requests[-1][1] == f"pinned.test:{faultserver.port}"  # Host header kept


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_is_pinned_and_verified_by_name(tmp_path):
    """TLS goes to the checked address, with SNI and the certificate check on the name."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
        + ["-subj", "/CN=pinned.test", "-addext", "subjectAltName=DNS:pinned.test"],
        check=True,
        capture_output=True,
    )
    with fs.FaultServer(tls=(str(cert), str(key))) as srv:
        fetcher = Fetcher(make_cfg(), resolver, ca_certs=str(cert))
        good = fetcher.fetch(srv.url("/img/ok.jpg", host="pinned.test"))
        wrong_name = fetcher.fetch(srv.url("/img/ok.jpg", host="localhost"))
        plain = Fetcher(make_cfg(), resolver).fetch(srv.url("/img/ok.jpg", host="pinned.test"))
    assert good.status == "ok"
    assert (wrong_name.status, plain.status) == ("connection_error", "connection_error")
    assert wrong_name.reason.startswith("TLS: ")  # checked against the name:
    assert "Hostname mismatch" in wrong_name.reason
    assert plain.reason.startswith("TLS: ")  # self-signed: not in the system trust store
    assert "self-signed" in plain.reason


@pytest.mark.parametrize(
    ("url", "host", "path", "header"),
    [
        ("http://Bücher.test/a b.jpg", "xn--bcher-kva.test", "/a%20b.jpg", "xn--bcher-kva.test"),
        ("https://x.org:8443/caf%C3%A9?q=é", "x.org", "/caf%C3%A9?q=%C3%A9", "x.org:8443"),
        ("http://[::1]:81/", "::1", "/", "[::1]:81"),
        ("http://%31%30.0.0.1/", "10.0.0.1", "/", "10.0.0.1"),
    ],
)
def test_parse_target(url, host, path, header):
    t = parse_target(url)
    assert (t.host, t.path, t.host_header) == (host, path, header)


def test_fetch_stage_drops_with_reason(faultserver, config):
    config.images.timeout = 0.5
    config.images.allow_hosts = ["localhost"]
    posts = [
        Post(id=f"t:{i}", source="t", source_id=str(i), text="x", image=img)
        for i, img in enumerate(
            [
                ImageRef(url=faultserver.url("/img/ok.jpg")),
                ImageRef(url=faultserver.url("/status/404")),
                ImageRef(url=faultserver.url("/html")),
                None,
            ]
        )
    ]
    out = list(FetchStage().run(posts, StageContext(config, StageStats("fetch"))))
    assert [p.status for p in out] == ["ok", "dropped", "dropped", "dropped"]
    assert out[1].reason == "image:http_404: Not Found"
    assert out[2].reason.startswith("image:not_image: magic bytes")
    assert out[3].reason == "no_image"
    assert (config.root / "images" / out[0].image.path).exists()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("ff02::1", False),
    ],
)
def test_is_public(address, public):
    assert is_public(address) is public


def test_retry_after_forms():
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_strip_jpeg_metadata_is_lossless():
    data = fs.exif_jpeg(orientation=1)
    stripped = strip_jpeg_metadata(data)
    assert b"SecretCam" in data and b"SecretCam" not in stripped
    assert b"private comment" not in stripped
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(stripped)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not b.getexif()
    assert strip_jpeg_metadata(stripped) == stripped  # idempotent
    plain = fs.jpeg()
    assert strip_jpeg_metadata(plain) == plain  # nothing to strip: same bytes
    with pytest.raises(ValueError):
        strip_jpeg_metadata(b"\x89PNG")


def test_hosts_are_interleaved():
    urls = [f"http://a.test/{i}" for i in range(3)] + ["http://b.test/0", "http://c.test/0"]
    assert _interleave_hosts(urls) == [
        "http://a.test/0",
        "http://b.test/0",
        "http://c.test/0",
        "http://a.test/1",
        "http://a.test/2",
    ]


def _spell(ip: ipaddress.IPv4Address, form: str) -> str:
    """The same IPv4 address written the ways URL parsers and inet_aton accept."""
    octets = ip.packed
    if form == "int":
        return str(int(ip))
    if form == "hex":
        return ".".join(f"0x{o:x}" for o in octets)
    if form == "octal":
        return ".".join(f"0{o:o}" for o in octets)
    if form == "short":  # a.b.c with the last part 16 bits wide
        return f"{octets[0]}.{octets[1]}.{int.from_bytes(octets[2:], 'big')}"
    if form == "pct":
        return "".join(f"%{b:02x}" for b in str(ip).encode())
    return str(ip)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ip=st.ip_addresses(v=4).filter(lambda a: not a.is_global or a.is_multicast),
    form=st.sampled_from(["dotted", "int", "hex", "octal", "short", "pct"]),
    redirect=st.booleans(),
)
def test_no_spelling_of_a_private_ipv4_gets_through(faultserver, loopback_only, ip, form, redirect):
    url = f"http://{_spell(ip, form)}:{faultserver.port}/img/ok.jpg"
    if redirect:
        url = faultserver.url(f"/redirect?to={quote(url, safe='')}")
    res = Fetcher(make_cfg(allow_hosts=["localhost"]), resolver).fetch(url)
    assert res.status in ("blocked_address", "bad_url", "dns_error"), (url, res)
    assert loopback_only == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ip=st.ip_addresses(v=6).filter(lambda a: not is_public(str(a))))
def test_no_private_ipv6_gets_through(loopback_only, ip):
    res = Fetcher(make_cfg(allow_hosts=[]), resolver).fetch(f"http://[{ip}]:81/x.jpg")
    assert res.status in ("blocked_address", "bad_url"), (ip, res)
    assert loopback_only == []


def test_fetch_removes_temps_a_killed_fetch_left(faultserver, config):
    """kill -9 mid-write leaves ``.<name>.tmp`` files in the image store; the next fetch
    run deletes them before any shard starts, and keeps the finished images."""
    config.images.allow_hosts = ["localhost"]
    post = Post(id="t:1", source="t", source_id="1", text="x")
    post.image = ImageRef(url=faultserver.url("/img/ok.jpg"))
    store = config.root / "images"
    kept = store / "ab" / ("ab" + "0" * 62 + ".jpg")
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"a finished image")
    stale = [kept.parent / f".{kept.name}.x1y2.tmp", store / "cd" / ".cd00.jpg.q9.tmp"]
    stale[1].parent.mkdir()
    for p in stale:
        p.write_bytes(b"half an image")
    seed_stage(config, "tokenize", [post])
    stats = Runner(config).run_stage(FetchStage())
    assert stats.items_out == 1
    assert not any(p.exists() for p in stale) and not list(store.rglob("*.tmp"))
    assert kept.read_bytes() == b"a finished image"


def test_allow_list_entries_with_a_port_allow_that_port_only(faultserver, loopback_only):
    """Issue 20.7: ``allow_hosts = ["127.0.0.1"]`` (the sample image server) let a redirect
    reach any other local port -- Label Studio's in the report.  An entry may now name a
    port: then only that port is allowed, under the name or the address."""
    with fs.FaultServer() as other:  # another local service, e.g. Label Studio
        other.reset_counters()
        to_other = quote(other.url("/img/ok.jpg", host="127.0.0.1"), safe="")
        for allow in ([f"127.0.0.1:{faultserver.port}"], [f"localhost:{faultserver.port}"]):
            fetcher = Fetcher(make_cfg(allow_hosts=allow), resolver)
            assert fetcher.fetch(faultserver.url("/img/ok.jpg")).status == "ok", allow
            res = fetcher.fetch(faultserver.url(f"/redirect?to={to_other}"))
            assert res.status == "blocked_address", (allow, res)
            assert f":{other.port}" in res.reason
        assert other.requests == []  # refused before connecting
        # a bare host still allows every port (what the sample pipeline relies on)
        res = Fetcher(make_cfg(allow_hosts=["127.0.0.1"]), resolver).fetch(
            faultserver.url(f"/redirect?to={to_other}")
        )
        assert res.status == "ok" and len(other.requests) == 1
    assert loopback_only == []


@pytest.mark.parametrize(
    ("entry", "ok"),
    [("127.0.0.1:8080", True), ("[::1]:81", True), ("::1", True), ("[::1]", True),
     ("localhost:65535", True), ("127.0.0.1:0", False), ("127.0.0.1:99999", False),
     ("host:http", False), (":80", False), ("[::1]x", False)],
)  # fmt: skip
def test_allow_list_entries_are_validated(entry, ok):
    from pydantic import ValidationError

    if ok:
        make_cfg(allow_hosts=[entry])
    else:
        with pytest.raises(ValidationError, match="allow_hosts"):
            make_cfg(allow_hosts=[entry])
