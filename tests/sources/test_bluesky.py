"""Bluesky source against a local server speaking XRPC searchPosts + app-password sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mmnerd.config import PipelineConfig
from mmnerd.errors import ConfigError
from mmnerd.privacy import Pseudonymizer
from mmnerd.sources import get_source
from mmnerd.sources.bluesky import byte_span_to_chars, convert_facets, post_view_to_post
from mmnerd.sources.http import HttpError
from mmnerd.sources.state import SourceState
from mmnerd.text.normalize import normalize
from tests.sources.cassette import Cassette

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PN = Pseudonymizer(b"k" * 32)
TEXT = "Merci @macron.bsky.social 🇫🇷 pour #Paris 😀 https://x.org/é"


def facet(text: str, sub: str, feature: dict[str, Any]) -> dict[str, Any]:
    """A richtext facet for the first ``sub`` in ``text``, with UTF-8 byte offsets."""
    start = text.index(sub)
    b0 = len(text[:start].encode())
    return {
        "$type": "app.bsky.richtext.facet",
        "index": {"byteStart": b0, "byteEnd": b0 + len(sub.encode())},
        "features": [feature],
    }


def feat(kind: str, **value: str) -> dict[str, Any]:
    return {"$type": f"app.bsky.richtext.facet#{kind}", **value}


def image_view(n: int) -> dict[str, Any]:
    return {
        "$type": "app.bsky.embed.images#view",
        "images": [
            {"thumb": f"https://cdn.test/thumb/{n}@jpeg", "fullsize": f"https://cdn.test/full/{n}@jpeg",
             "alt": f"alt {n}", "aspectRatio": {"width": 4, "height": 3}},
        ],
    }  # fmt: skip


def post_view(n: int, *, embed: str = "images", text: str = "", lang: str = "fr") -> dict[str, Any]:
    """An ``app.bsky.feed.defs#postView`` as searchPosts returns it."""
    did = f"did:plc:user{n % 3}"
    created = (T0 - timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
    text = text or f"Post {n} à Lyon avec @ami.bsky.social 🎉 #Lyon"
    facets = [
        facet(text, "@ami.bsky.social", feat("mention", did="did:plc:ami"))
        if "@ami" in text else None,
        facet(text, "#Lyon", feat("tag", tag="Lyon")) if "#Lyon" in text else None,
    ]  # fmt: skip
    view: dict[str, Any] = {
        "uri": f"at://{did}/app.bsky.feed.post/3k{n:06d}",
        "cid": f"bafy{n}",
        "author": {"did": did, "handle": f"user{n % 3}.bsky.social", "displayName": "U"},
        "record": {
            "$type": "app.bsky.feed.post",
            "text": text,
            "createdAt": created,
            "langs": [lang],
            "facets": [f for f in facets if f],
        },
        "replyCount": 0,
        "repostCount": 0,
        "likeCount": 1,
        "indexedAt": created,
        "labels": [],
    }
    if embed == "images":
        view["embed"] = image_view(n)
    elif embed == "recordWithMedia":
        view["embed"] = {
            "$type": "app.bsky.embed.recordWithMedia#view",
            "record": {"$type": "app.bsky.embed.record#view", "record": {"uri": "at://x/y/z"}},
            "media": image_view(n),
        }
    elif embed == "external":
        view["embed"] = {"$type": "app.bsky.embed.external#view", "external": {"uri": "https://x"}}
    return view


class FakeBluesky:
    """searchPosts over a list of post views (newest first), cursor = offset; sessions."""

    def __init__(self, server: HTTPServer, views: list[dict[str, Any]], require_auth: bool = False):
        self.server = server
        self.views = views
        self.require_auth = require_auth
        self.searches: list[Request] = []
        self.valid_tokens = {"acc-1"}
        self.expire_after = 0  # searches answered before acc-1 expires (0 = never)
        self.logins = 0
        self.refreshes = 0
        server.expect_request("/xrpc/app.bsky.feed.searchPosts").respond_with_handler(self.search)
        server.expect_request(
            "/xrpc/com.atproto.server.createSession", method="POST"
        ).respond_with_handler(self.create_session)
        server.expect_request(
            "/xrpc/com.atproto.server.refreshSession", method="POST"
        ).respond_with_handler(self.refresh_session)

    @staticmethod
    def _json(obj: Any, status: int = 200) -> Response:
        return Response(json.dumps(obj), status, content_type="application/json")

    def create_session(self, request: Request) -> Response:
        body = request.get_json()
        if body != {"identifier": "me.bsky.social", "password": "app-pass-1234"}:
            return self._json({"error": "AuthenticationRequired", "message": "Invalid"}, 401)
        self.logins += 1
        return self._json(
            {
                "accessJwt": "acc-1",
                "refreshJwt": "ref-1",
                "handle": "me.bsky.social",
                "did": "did:plc:me",
                "didDoc": {
                    "id": "did:plc:me",
                    "service": [
                        {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": self.server.url_for("").rstrip("/")},
                    ],
                },
            }
        )  # fmt: skip

    def refresh_session(self, request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer ref-1":
            return self._json({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        self.refreshes += 1
        self.valid_tokens.add("acc-2")
        return self._json({"accessJwt": "acc-2", "refreshJwt": "ref-2", "did": "did:plc:me"})

    def search(self, request: Request) -> Response:
        self.searches.append(request)
        auth = request.headers.get("Authorization", "")
        if self.expire_after and len(self.searches) > self.expire_after:
            self.valid_tokens.discard("acc-1")
        if auth:
            if auth.removeprefix("Bearer ") not in self.valid_tokens:
                return self._json({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        elif self.require_auth:
            return Response("Forbidden", 403)
        a = request.args
        views = [
            v
            for v in self.views
            if (not a.get("since") or v["indexedAt"] >= a["since"])
            and (not a.get("lang") or a["lang"] in v["record"]["langs"])
        ]
        start = int(a.get("cursor", 0))
        limit = int(a.get("limit", 25))
        page = views[start : start + limit]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(views)}
        if start + limit < len(views):
            body["cursor"] = str(start + limit)
        return self._json(body)


def make_config(tmp_path, **source: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "t",
            "data_dir": str(tmp_path / "data"),
            "source": {"kind": "bluesky", "min_interval": 0, "backoff": 0.01, **source},
        }
    )


# --- offsets and mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, sub",
    [
        (TEXT, "#Paris"),
        (TEXT, "https://x.org/é"),
        ("👩‍👩‍👧 family @a.bsky.social", "@a.bsky.social"),  # ZWJ sequence first
        ("Cafe\u0301 #Zu\u0308rich ok", "#Zu\u0308rich"),  # combining accents
        ("line one\r\nsee #Berlin", "#Berlin"),  # CRLF
    ],
)
def test_byte_offsets_become_code_points(text: str, sub: str) -> None:
    f = facet(text, sub, {})
    span = byte_span_to_chars(text, f["index"]["byteStart"], f["index"]["byteEnd"])
    assert span is not None and text[span[0] : span[1]] == sub


def test_bad_byte_offsets_are_rejected() -> None:
    assert byte_span_to_chars("😀 x", 1, 4) is None  # inside the emoji
    assert byte_span_to_chars("abc", 2, 9) is None
    facets, errors = convert_facets("😀 x", [{"index": {"byteStart": 1, "byteEnd": 3}}])
    assert facets == [] and errors == 1


def test_convert_facets_kinds_and_values() -> None:
    raw = [
        facet(TEXT, "@macron.bsky.social", feat("mention", did="did:plc:m")),
        facet(TEXT, "#Paris", feat("tag", tag="Paris")),
        facet(TEXT, "https://x.org/é", feat("link", uri="https://x.org/é")),
    ]  # fmt: skip
    facets, errors = convert_facets(TEXT, raw)
    assert errors == 0
    assert [(f["type"], f["value"], f["text"]) for f in facets] == [
        ("mention", "", "@macron.bsky.social"),  # the DID names the account: not kept
        ("tag", "Paris", "#Paris"),
        ("link", "https://x.org/é", "https://x.org/é"),
    ]
    assert TEXT[facets[1]["start"] : facets[1]["end"]] == "#Paris"


def test_post_view_mapping_images_record_with_media_and_labels() -> None:
    p = post_view_to_post(post_view(5), "lic", PN)
    assert p.id == "bluesky:" + PN("at://did:plc:user2/app.bsky.feed.post/3k000005", "post")
    assert p.url == "" and "did:plc" not in p.to_json().replace(p.image.url, "")
    assert p.image is not None and p.image.url == "https://cdn.test/full/5@jpeg"
    assert p.image.alt == "alt 5" and "thumb" not in p.extra and "cid" not in p.extra
    assert p.lang_hint == "fr" and p.author_hash == PN("did:plc:user2", "author")
    assert p.created_at == "2024-06-01T11:55:00.000Z"
    assert {f["text"] for f in p.extra["facets"]} == {"@ami.bsky.social", "#Lyon"}
    rwm = post_view_to_post(post_view(6, embed="recordWithMedia"), "lic", PN)
    assert rwm.image is not None and rwm.image.url.endswith("full/6@jpeg")
    assert post_view_to_post(post_view(7, embed="external"), "lic", PN).image is None
    view = post_view(8, lang="en-US")
    view["labels"] = [{"src": "did:plc:mod", "uri": view["uri"], "val": "nudity"}]
    labelled = post_view_to_post(view, "lic", PN)
    assert labelled.extra["sensitive"] is True and labelled.lang_hint == "en"


# --- collection -------------------------------------------------------------------------------


def test_unauthenticated_search_paginates_with_cursor(httpserver: HTTPServer, tmp_path) -> None:
    views = [post_view(n, embed="images" if n % 4 else "external") for n in range(1, 231)]
    fake = FakeBluesky(httpserver, views)
    cfg = make_config(
        tmp_path, service=httpserver.url_for("").rstrip("/"), queries=["Lyon"], max_posts=0
    )
    posts = list(get_source(cfg).posts())
    assert len(posts) == 230 and len({p.id for p in posts}) == 230
    assert [r.args.get("cursor") for r in fake.searches] == [None, "100", "200"]
    first = fake.searches[0].args
    assert (first["q"], first["sort"], first["limit"]) == ("Lyon", "latest", "100")
    dropped = [p for p in posts if not p.ok]
    assert len(dropped) == 57 and {p.reason for p in dropped} == {"no_image"}


def test_login_refresh_on_expired_token_and_incremental_since(
    httpserver: HTTPServer, tmp_path, monkeypatch
) -> None:
    fake = FakeBluesky(httpserver, [post_view(n) for n in range(10, 60)], require_auth=True)
    fake.expire_after = 1
    monkeypatch.setenv("BSKY_ID", "me.bsky.social")
    monkeypatch.setenv("BSKY_PW", "app-pass-1234")
    base = httpserver.url_for("").rstrip("/")
    cfg = make_config(
        tmp_path,
        login_service=base,
        service="https://unused.invalid",
        queries=["Lyon"],
        langs=["fr"],
        limit=20,
        identifier_env="BSKY_ID",
        password_env="BSKY_PW",
    )
    posts = list(get_source(cfg).posts())
    assert len(posts) == 50 and fake.logins == 1 and fake.refreshes == 1
    auths = [r.headers["Authorization"] for r in fake.searches]
    assert auths == ["Bearer acc-1", "Bearer acc-1", "Bearer acc-2", "Bearer acc-2"]
    assert fake.searches[0].args["lang"] == "fr"

    fake.views = [post_view(n) for n in range(0, 10)] + fake.views  # ten newer posts
    fake.searches.clear()
    again = list(get_source(cfg).posts())
    assert fake.searches[0].args["since"] == "2024-06-01T11:50:00.000Z"  # newest of run 1
    assert len(again) == 60 and len({p.id for p in again}) == 60


def test_unauthenticated_403_explains_login(httpserver: HTTPServer, tmp_path) -> None:
    FakeBluesky(httpserver, [post_view(1)], require_auth=True)
    cfg = make_config(tmp_path, service=httpserver.url_for("").rstrip("/"), queries=["x"])
    with pytest.raises(HttpError, match="identifier_env"):
        list(get_source(cfg).posts())


def test_wrong_password_fails_without_leaking_it(
    httpserver: HTTPServer, tmp_path, monkeypatch
) -> None:
    FakeBluesky(httpserver, [post_view(1)])
    monkeypatch.setenv("BSKY_ID", "me.bsky.social")
    monkeypatch.setenv("BSKY_PW", "wrong-secret")
    cfg = make_config(
        tmp_path,
        login_service=httpserver.url_for("").rstrip("/"),
        queries=["x"],
        identifier_env="BSKY_ID",
        password_env="BSKY_PW",
    )
    with pytest.raises(HttpError) as e:
        list(get_source(cfg).posts())
    assert e.value.status == 401 and "wrong-secret" not in str(e.value)


def test_options_are_validated(tmp_path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="password_env"):
        get_source(make_config(tmp_path, queries=["x"], identifier_env="A"))
    with pytest.raises(ConfigError, match="source.queries"):
        get_source(make_config(tmp_path, queries=[]))
    monkeypatch.delenv("NOPE_ID", raising=False)
    src = get_source(
        make_config(tmp_path, queries=["x"], identifier_env="NOPE_ID", password_env="P")
    )
    with pytest.raises(ConfigError, match="NOPE_ID"):
        list(src.posts())


PIECES = ["a", "é", "e\u0301", "😀", "👩‍👩‍👧", "🇫🇷", "\r\n", " ", "#tag", "中", "👍🏽"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.data())
def test_byte_offsets_round_trip_any_text(parts: list[str], data: st.DataObject) -> None:
    text = "".join(parts)
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, len(text)))
    b0, b1 = len(text[:i].encode()), len(text[:j].encode())
    assert byte_span_to_chars(text, b0, b1) == (i, j)


def test_exclude_sensitive_drops_labelled_posts(httpserver: HTTPServer, tmp_path) -> None:
    views = [post_view(n) for n in range(1, 5)]
    views[1]["labels"] = [{"val": "porn"}]
    FakeBluesky(httpserver, views)
    base = httpserver.url_for("").rstrip("/")
    cfg = make_config(tmp_path, service=base, queries=["x"], exclude_sensitive=True)
    posts = list(get_source(cfg).posts())
    assert [p.reason for p in posts] == ["", "sensitive", "", ""]


# --- recorded real-shaped answers (tests/sources/cassettes) -----------------------------------


def test_galleries_link_stubs_labels_and_bad_facets(httpserver: HTTPServer, tmp_path) -> None:
    """Issue 21 #3 (gallery alone and in recordWithMedia), #6 (link stub restored from the
    facet's uri), #9 (labels once, facets with wrong offsets on character boundaries)."""
    tape = Cassette("bluesky_search_shapes.json").mount(httpserver)
    cfg = make_config(tmp_path, service=tape.base, queries=["photo"])
    gallery, quote, linked, labelled, miscounted = list(get_source(cfg).posts())
    items = tape.interactions[0]["response"]["body"]["posts"][0]["embed"]["items"]
    assert gallery.ok and gallery.image is not None and gallery.extra["image_count"] == 5
    assert (gallery.image.url, gallery.image.alt) == (items[0]["fullsize"], "Photo 1 du post 1")
    assert quote.ok and quote.image is not None and quote.extra["image_count"] == 6

    url = "https://www.example.fr/galerie-photos/2026/madrid?album=1"
    assert linked.text == f"Avec @marie.bsky.social à Madrid 🇪🇸 : {url} #Madrid"
    for f in linked.extra["facets"]:  # every facet moved with the text
        assert linked.text[f["start"] : f["end"]] == f["text"]
    assert [f["text"] for f in linked.extra["facets"]] == ["@marie.bsky.social", url, "#Madrid"]
    assert normalize(linked.text, [])[0] == "Avec @marie.bsky.social à Madrid 🇪🇸 : URL #Madrid"

    assert labelled.extra["labels"] == ["nudity"] and labelled.extra["sensitive"] is True
    assert miscounted.extra["facet_errors"] == 1  # UTF-16 offsets: "öln " is no #Köln
    assert [f["text"] for f in miscounted.extra["facets"]] == ["#Karneval"]


def test_an_expired_cursor_restarts_the_pass_with_a_warning(
    httpserver: HTTPServer, tmp_path, monkeypatch, caplog
) -> None:
    """Issue 21 #5: 400 "Invalid cursor format" for a saved cursor no longer exits 2."""
    tape = Cassette("bluesky_invalid_cursor.json").mount(httpserver)
    monkeypatch.setenv("BSKY_ID", "collector.bsky.social")
    monkeypatch.setenv("BSKY_PW", "app-pass-1234")
    cfg = make_config(
        tmp_path,
        login_service=tape.base,
        queries=["Nice"],
        identifier_env="BSKY_ID",
        password_env="BSKY_PW",
    )
    key = "search|Nice|"
    old = {"newest": "", "cursor": "1718900000000::bafyreiold", "floor": "", "top": "2026-06-20"}
    SourceState(cfg.root, "bluesky").set_cursor(key, old)
    source = get_source(cfg)
    posts = list(source.posts())
    assert len(posts) == 3 and all(p.ok for p in posts) and tape.unused == []
    assert "no longer accepts the saved cursor (Invalid cursor format)" in caplog.text
    assert source.flags["cursor_reset"] == 1
    assert "cursor" not in SourceState(cfg.root, "bluesky").cursor(key)  # the next run is clean


def test_until_is_normalised_and_checked(httpserver: HTTPServer, tmp_path) -> None:
    """Issue 21 #9: ``until`` is sent as the same UTC form as ``since``; a bad one is a config
    error naming the field."""
    fake = FakeBluesky(httpserver, [post_view(n) for n in range(1, 4)])
    base = httpserver.url_for("").rstrip("/")
    cfg = make_config(
        tmp_path, service=base, queries=["x"], since="2024-05-01", until="2024-06-30T14:00+02:00"
    )
    list(get_source(cfg).posts())
    args = fake.searches[0].args
    assert (args["since"], args["until"]) == (
        "2024-05-01T00:00:00.000Z",
        "2024-06-30T12:00:00.000Z",
    )
    with pytest.raises(ConfigError, match="source.until"):
        get_source(make_config(tmp_path, queries=["x"], until="2024-13-01"))
