"""Issue 21 #8: what an export publishes cannot name an account unless asked for.

Post URLs and ids (``/@user/...``, ``/users/user/...``, DIDs) are pseudonymised with the
corpus key; the real ones are kept only in the private mapping (0600 file, 0700 folder);
mentioned accounts' profile URLs and DIDs are not stored; ``publish_urls`` puts the public
URL back on request; the dataset card says exactly that.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from mmnerd.errors import InputError
from mmnerd.export.parquet import post_row
from mmnerd.pipeline import Runner, iter_stage
from mmnerd.privacy import PrivateIds, card_privacy_lines, pseudonymizer
from mmnerd.records import Post
from mmnerd.sources import get_source
from mmnerd.sources.collect import CollectStage
from mmnerd.sources.state import SourceState
from tests.sources import test_bluesky as bsky
from tests.sources import test_mastodon as masto
from tests.sources.cassette import Cassette

ACCOUNT_MARKS = ("/@", "/users/", "did:plc:", "other.example")  # @mentions in text are kept


def exported(posts) -> str:
    """Every value the Parquet export would publish for ``posts``, as one string."""
    rows = [post_row(p, Path("/nonexistent"), True, Path("/nonexistent")) for p in posts]
    return json.dumps(rows, ensure_ascii=False, default=str)


def working_files(root: Path) -> dict[str, str]:
    """The data dir's files outside the private folders (stage outputs, journal, state)."""
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8", errors="replace")
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] not in ("private", "secrets")
        and p.suffix != ".sqlite"
    }  # fmt: skip


def test_mastodon_ids_urls_and_mentions_name_no_account(httpserver: HTTPServer, tmp_path) -> None:
    tape = Cassette("mastodon_status_shapes.json").mount(httpserver)
    cfg = masto.make_config(tmp_path, instances=[tape.base])
    Runner(cfg).run([CollectStage()])
    posts = list(iter_stage(cfg, "collect"))
    assert len(posts) == 5  # the video-only status is dropped (no_image)
    published = exported(posts)
    assert not [m for m in ACCOUNT_MARKS if m in published]
    assert all(p.url == "" and p.id == f"mastodon:{p.source_id}" for p in posts)
    for name, text in working_files(cfg.root).items():  # nor in the working data
        assert not [m for m in ACCOUNT_MARKS if m in text], name

    mapping = PrivateIds(cfg.root, "mastodon")
    rows = mapping.load()
    statuses = {s["uri"]: s for s in tape.interactions[0]["response"]["body"]}
    pn = pseudonymizer(cfg.root)
    assert {r["uri"] for r in rows.values()} == {tape.fill(u) for u in statuses}
    for pid, row in rows.items():
        assert pid == f"mastodon:{pn(row['uri'], 'post')}" and "/@" in row["url"]
    assert stat.S_IMODE(mapping.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(mapping.path.parent.stat().st_mode) == 0o700


def test_publish_urls_puts_the_public_url_back_on_request(httpserver: HTTPServer, tmp_path) -> None:
    masto.FakeMastodon(httpserver, [masto.status(n) for n in range(20, 15, -1)])
    cfg = masto.make_config(tmp_path, instances=[httpserver.url_for("")], publish_urls=True)
    first = list(get_source(cfg).posts())
    again = list(get_source(cfg).posts())  # replayed from the journal, which has no URLs
    expected = {f"http://instance.test/@u{n % 5}/{n}" for n in range(16, 21)}
    assert {p.url for p in first} == {p.url for p in again} == expected
    journal = (cfg.root / "state" / "mastodon.posts.jsonl").read_text()
    assert "/@u" not in journal
    assert any("`url` holds each post's public URL" in line for line in card_privacy_lines(cfg))


def test_bluesky_ids_urls_and_mentions_name_no_account(httpserver: HTTPServer, tmp_path) -> None:
    tape = Cassette("bluesky_search_shapes.json").mount(httpserver)
    cfg = bsky.make_config(tmp_path, service=tape.base, queries=["photo"])
    posts = list(get_source(cfg).posts())
    assert len(posts) == 5
    assert not [m for m in ACCOUNT_MARKS if m in exported(posts)]
    for p in posts:  # the image URL is the only thing that names the DID (CDN path)
        assert p.image is not None and "did:plc:" in p.image.url
        assert "did:plc:" not in p.to_json().replace(p.image.url, "")
    rows = PrivateIds(cfg.root, "bluesky").load()
    assert sorted(r["uri"] for r in rows.values()) == sorted(
        v["uri"] for v in tape.interactions[0]["response"]["body"]["posts"]
    )
    assert all(r["url"].startswith("https://bsky.app/profile/did:plc:") for r in rows.values())


def test_card_says_what_is_kept(tmp_path) -> None:
    cfg = masto.make_config(tmp_path, instances=["https://mastodon.social"])
    lines = "\n".join(card_privacy_lines(cfg))
    assert "keyed pseudonyms of each post's status URI" in lines
    assert "`url` is empty" in lines and "`author_hash` is a keyed pseudonym" in lines
    assert "mentioned accounts' profile URLs and DIDs" in lines
    assert "URLs in the text are replaced by `URL`" in lines
    assert "@mentions stay in the text" in lines


def test_a_journal_with_real_ids_is_refused_in_one_line(httpserver: HTTPServer, tmp_path) -> None:
    """A journal written before pseudonymisation holds real URIs: never replayed into exports."""
    cfg = masto.make_config(tmp_path, instances=[httpserver.url_for("")])
    uri = "http://instance.test/users/u1/statuses/1"
    old = Post(id=f"mastodon:{uri}", source="mastodon", source_id=uri, text="x", url=uri)
    stream = f"{httpserver.url_for('').rstrip('/')}|public"
    SourceState(cfg.root, "mastodon").commit(stream, [old], {})
    with pytest.raises(InputError, match="move mastodon.json and mastodon.posts.jsonl away"):
        list(get_source(cfg).posts())
