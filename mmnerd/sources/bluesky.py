"""Bluesky source: full-text post search (``app.bsky.feed.searchPosts``), incrementally.

API (AT Protocol XRPC): ``GET <service>/xrpc/app.bsky.feed.searchPosts`` with
``q``, ``sort``, ``lang``, ``since`` / ``until``, ``tag``, ``limit`` (<= 100) and
an opaque ``cursor``; the answer is ``{"posts": [PostView], "cursor"?}``.  A cursor
the server no longer accepts (400 ``Invalid cursor format``: an older format, an
expired one) restarts the pass from the top with a warning; seen posts are skipped.

Authentication (recommended: Bluesky often refuses unauthenticated search,
and never pages it with ``cursor``): an app password from the environment,
``com.atproto.server.createSession`` at ``login_service``; calls then go to the
account's PDS (from the session's DID document) with ``Bearer accessJwt``.  An
``ExpiredToken`` / ``InvalidToken`` answer (400/401) triggers
``com.atproto.server.refreshSession`` (``Bearer refreshJwt``) and one retry; if
the refresh token is dead too, a new session is created.

Mapping: ``record.text`` is the text, with link stubs the app shortened
(``example.fr/galerie...``) restored to the link facet's full ``uri``;
``record.langs[0]`` the ``lang_hint``; the first image of an
``app.bsky.embed.images#view`` or ``app.bsky.embed.gallery#view`` (alone or as
the media of an ``app.bsky.embed.recordWithMedia#view``) becomes the image
(``fullsize`` URL, ``alt``); rich-text facets (mentions, links, tags) are
converted from UTF-8 byte offsets to code points, checked against their surface
text and kept in ``extra["facets"]`` (hints, not gold; mentions without their
DID).  Privacy: the post id is a keyed pseudonym of the ``at://`` URI, the author
a keyed pseudonym of the DID; the URI and URL go only to the private mapping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mmnerd.errors import ConfigError, InputError
from mmnerd.records import ImageRef, Post
from mmnerd.sources import SourceOptions
from mmnerd.sources.api import ApiSource
from mmnerd.sources.http import (
    HttpClient,
    HttpError,
    HttpOptions,
    collect_streams,
)
from mmnerd.sources.mastodon import Pseudonym, utc_iso
from mmnerd.sources.state import SourceState
from mmnerd.text.bio import OffsetIndex

log = logging.getLogger(__name__)

DEFAULT_LICENCE = (
    "© the author; public Bluesky post, collected under Bluesky's terms and developer "
    "guidelines for non-commercial research; redistribute at:// URIs only"
)
SENSITIVE_LABELS = frozenset({"porn", "sexual", "nudity", "graphic-media", "gore"})
EXPIRED = frozenset({"ExpiredToken", "InvalidToken"})
ELLIPSES = ("...", "\u2026")


class BlueskyOptions(SourceOptions, HttpOptions):
    """The ``[source]`` table with ``kind = "bluesky"``."""

    queries: list[str] = Field(..., min_length=1, description="search queries (Lucene-like syntax)")
    langs: list[str] = Field(
        default_factory=list,
        description="one search per language code (server-side lang filter); [] = any language",
    )
    sort: Literal["latest", "top"] = Field("latest", description="result order")
    since: str = Field("", description="ISO date/datetime: only posts at or after it")
    until: str = Field("", description="ISO date/datetime: only posts before it")
    tags: list[str] = Field(default_factory=list, description="only posts with all these hashtags")
    limit: int = Field(100, ge=1, le=100, description="posts per page (maximum 100)")
    max_posts: int = Field(
        1000, ge=0, description="stop after this many new posts in one run (0 = no limit)"
    )
    require_image: bool = Field(True, description="posts without an image are dropped (no_image)")
    exclude_sensitive: bool = Field(
        False, description="drop posts with adult / graphic labels (reason sensitive)"
    )
    service: str = Field(
        "https://public.api.bsky.app", description="AppView for unauthenticated searches"
    )
    login_service: str = Field("https://bsky.social", description="where createSession is called")
    identifier_env: str = Field(
        "", description="env var with the handle or e-mail to log in with (app password login)"
    )
    password_env: str = Field("", description="env var with an app password (never your password)")
    licence: str = Field(DEFAULT_LICENCE, description="licence note stored on every post")
    publish_urls: bool = Field(
        False,
        description="store each post's bsky.app URL in `url` (it names the author's DID); "
        "default: `url` empty, real URIs/URLs only in the private mapping",
    )

    @field_validator("since", "until")
    @classmethod
    def _when(cls, v: str) -> str:
        if not v:
            return v
        out = _iso_or_empty(v)
        try:
            datetime.fromisoformat(out.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{v!r} is not an ISO date or datetime like 2024-06-01T12:00:00Z"
            ) from None
        return out

    @field_validator("service", "login_service")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _both_or_none(self) -> BlueskyOptions:
        if bool(self.identifier_env) != bool(self.password_env):
            raise ValueError("set both identifier_env and password_env, or neither")
        return self


# ---------------------------------------------------------------------------
# offsets, images, mapping
# ---------------------------------------------------------------------------


def byte_span_to_chars(
    text: str, byte_start: int, byte_end: int, index: OffsetIndex | None = None
) -> tuple[int, int] | None:
    """Code-point span of the UTF-8 byte span ``[byte_start, byte_end)`` of ``text``.

    Uses :class:`mmnerd.text.bio.OffsetIndex` (the one place offsets are converted);
    None if the span is out of range, reversed or not on character boundaries.
    """
    index = index or OffsetIndex(text)
    if byte_start > byte_end:
        return None
    try:
        return index.utf8_to_cp(byte_start), index.utf8_to_cp(byte_end)
    except ValueError:
        return None


def _facet_fits(kind: str, value: str, shown: str) -> bool:
    """Whether a facet's surface text is what its feature says (wrong offsets that still
    land on character boundaries show up here)."""
    if not shown or shown != shown.strip():
        return False
    if kind == "mention":
        return shown[0] in "@\uff20"
    if kind == "tag":
        return shown[0] in "#\uff03" and shown[1:].casefold() == value.casefold()
    return True


def convert_facets(text: str, facets: list[dict[str, Any]] | None) -> tuple[list[dict], int]:
    """Facets as ``{"type", "value", "start", "end", "text"}`` in code points; and error count.

    A facet is an error (and left out) when its byte span is out of range, reversed,
    not on character boundaries, or when its surface text does not fit its feature (a
    mention not starting with ``@``, a tag that is not ``#<tag>``).  Mentions keep no
    ``value``: the DID names the account.
    """
    out: list[dict[str, Any]] = []
    errors = 0
    index = OffsetIndex(text) if facets else None
    for facet in facets or []:
        raw = facet.get("index") or {}
        start, end = int(raw.get("byteStart", -1)), int(raw.get("byteEnd", -1))
        span = byte_span_to_chars(text, start, end, index)
        if span is None or span[0] == span[1]:
            errors += 1
            continue
        shown = text[span[0] : span[1]]
        for feature in facet.get("features") or []:
            kind = str(feature.get("$type", "")).rsplit("#", 1)[-1]
            field = {"link": "uri", "tag": "tag"}.get(kind, "")  # a mention's DID is not kept
            value = str(feature.get(field, "")) if field else ""
            if not _facet_fits(kind, value, shown):
                errors += 1
                continue
            out.append(
                {"type": kind, "value": value, "start": span[0], "end": span[1], "text": shown}
            )
    return out, errors


def link_stub(shown: str, uri: str) -> bool:
    """Whether ``shown`` is ``uri`` as the app displays it: without the scheme (and
    ``www.``), cut short with an ellipsis."""
    if not uri.startswith(("http://", "https://")) or shown == uri:
        return False
    stem = shown
    for mark in ELLIPSES:
        stem = stem.removesuffix(mark)
    if not stem or any(c.isspace() for c in stem):
        return False
    bare = uri.split("://", 1)[1]
    return any(full.startswith(stem) for full in (uri, bare, bare.removeprefix("www.")))


def restore_links(text: str, facets: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Replace link stubs by their facet's full ``uri``; other facets move with the text."""
    stubs = [f for f in facets if f["type"] == "link" and link_stub(f["text"], f["value"])]
    if not stubs:
        return text, facets
    spans = sorted({(f["start"], f["end"], f["value"]) for f in stubs})
    edits: list[tuple[int, int, str]] = []
    for start, end, uri in spans:
        if not edits or start >= edits[-1][1]:  # overlapping stubs: keep the first
            edits.append((start, end, uri))
    pieces, pos = [], 0
    for start, end, uri in edits:
        pieces += [text[pos:start], uri]
        pos = end
    new_text = "".join(pieces) + text[pos:]

    def move(offset: int, inside_to_end: bool) -> int:
        shift = 0
        for start, end, uri in edits:
            if offset <= start:
                break
            if offset < end:  # inside a replaced stub
                return start + shift + (len(uri) if inside_to_end else 0)
            shift += len(uri) - (end - start)
        return offset + shift

    moved = []
    for f in facets:
        start, end = move(f["start"], False), move(f["end"], True)
        moved.append({**f, "start": start, "end": end, "text": new_text[start:end]})
    return new_text, moved


def embed_images(embed: dict[str, Any] | None) -> list[dict[str, str]]:
    """``{"fullsize", "thumb", "alt"}`` of each image of a post's embed view.

    ``app.bsky.embed.images#view`` lists ``images`` (``thumb``);
    ``app.bsky.embed.gallery#view`` lists ``items`` (``thumbnail``; an early draft of
    the lexicon called the list ``media``), each a union member of which only
    ``#viewImage`` is an image; ``recordWithMedia#view`` holds either in ``media``.
    """
    if not isinstance(embed, dict):
        return []
    kind = embed.get("$type", "")
    if kind == "app.bsky.embed.recordWithMedia#view":
        return embed_images(embed.get("media"))
    if kind == "app.bsky.embed.images#view":
        items = embed.get("images")
    elif kind == "app.bsky.embed.gallery#view":
        items = embed.get("items") or embed.get("media")
    else:
        return []
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not item.get("fullsize"):
            continue
        member = str(item.get("$type", ""))
        if member and not member.endswith("#viewImage"):
            continue  # a media type of the gallery union we do not know (video, ...)
        out.append(
            {
                "fullsize": str(item["fullsize"]),
                "thumb": str(item.get("thumb") or item.get("thumbnail") or ""),
                "alt": str(item.get("alt") or ""),
            }
        )
    return out


def post_labels(view: dict[str, Any]) -> list[str]:
    """Moderation label values of a post, once each: the view's ``labels`` (which the
    AppView fills with the record's self-labels too) plus any self-label it left out;
    a negation (``neg: true``) removes an earlier label of that value."""
    record = view.get("record") or {}
    raw = list(view.get("labels") or [])
    raw += list((record.get("labels") or {}).get("values") or [])
    labels: dict[str, None] = {}
    for lab in raw:
        if not isinstance(lab, dict) or not lab.get("val"):
            continue
        if lab.get("neg"):
            labels.pop(str(lab["val"]), None)
        else:
            labels[str(lab["val"])] = None
    return list(labels)


def _sort_at(view: dict[str, Any]) -> str:
    """Bluesky's sortAt: the earlier of createdAt and indexedAt (clients set the first)."""
    times = [t for t in (view.get("record", {}).get("createdAt"), view.get("indexedAt")) if t]
    return min((utc_iso(t) for t in times), default="")


def post_ids(view: dict[str, Any]) -> tuple[str, str]:
    """(``at://`` URI, bsky.app URL) of a post view: both name the author's DID."""
    uri = str(view.get("uri", ""))
    did = (view.get("author") or {}).get("did") or uri[5:].split("/", 1)[0]
    return uri, f"https://bsky.app/profile/{did}/post/{uri.rsplit('/', 1)[-1]}"


def post_view_to_post(view: dict[str, Any], licence: str, pseudonym: Pseudonym) -> Post:
    """Map one ``app.bsky.feed.defs#postView`` to a :class:`Post`.

    The id is ``bluesky:<pseudonym of the at:// URI>``, ``url`` is left empty and the
    author is ``pseudonym(DID)``; mentioned DIDs, the CID and thumbnail URLs (which hold
    the DID) are not kept.
    """
    uri = view.get("uri", "")
    if not uri.startswith("at://"):
        raise InputError(f"searchPosts: a post without an at:// uri ({str(view)[:80]})")
    record = view.get("record") or {}
    author = view.get("author") or {}
    did = author.get("did") or uri[5:].split("/", 1)[0]
    text = record.get("text", "")
    facets, bad = convert_facets(text, record.get("facets"))
    text, facets = restore_links(text, facets)
    images = embed_images(view.get("embed"))
    langs = [str(x) for x in record.get("langs") or []]
    labels = post_labels(view)
    extra: dict[str, Any] = {
        "langs": langs,
        "facets": facets,
        "facet_errors": bad,
        "labels": labels,
        "sensitive": bool(SENSITIVE_LABELS & set(labels)),
        "image_count": len(images),
    }
    image = None
    if images:
        image = ImageRef(url=images[0]["fullsize"], alt=images[0]["alt"])
    sid = pseudonym(uri, "post")
    return Post(
        id=f"bluesky:{sid}",
        source="bluesky",
        source_id=sid,
        text=text,
        author_hash=pseudonym(did, "author"),
        created_at=utc_iso(record.get("createdAt", "")),
        licence=licence,
        lang_hint=langs[0].split("-")[0].lower() if langs else "",
        image=image,
        extra=extra,
    )


# ---------------------------------------------------------------------------
# session
# ---------------------------------------------------------------------------


class Session:
    """An app-password session: createSession, refreshSession, auth headers."""

    def __init__(self, client: HttpClient, login_service: str, identifier: str, password: str):
        self.client = client
        self.login_service = login_service
        self._identifier = identifier
        self._password = password
        self.access = ""
        self.refresh_jwt = ""
        self.service = login_service

    def login(self) -> None:
        data, _ = self.client.post_json(
            f"{self.login_service}/xrpc/com.atproto.server.createSession",
            {"identifier": self._identifier, "password": self._password},
        )
        self._take(data)
        for svc in (data.get("didDoc") or {}).get("service", []):
            if svc.get("id", "").endswith("#atproto_pds") and svc.get("serviceEndpoint"):
                self.service = str(svc["serviceEndpoint"]).rstrip("/")

    def refresh(self) -> None:
        try:
            data, _ = self.client.post_json(
                f"{self.login_service}/xrpc/com.atproto.server.refreshSession",
                headers={"Authorization": f"Bearer {self.refresh_jwt}"},
            )
        except HttpError as e:
            if e.status in (400, 401):
                log.info("refresh token rejected (%s); logging in again", e.error or e.status)
                self.login()
                return
            raise
        self._take(data)

    def _take(self, data: Any) -> None:
        if not isinstance(data, dict) or not data.get("accessJwt"):
            raise InputError(f"{self.login_service}: session answer without accessJwt")
        self.access = data["accessJwt"]
        self.refresh_jwt = data.get("refreshJwt", "")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


# ---------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------


class BlueskySource(ApiSource):
    """Search posts per (query, language), resuming from saved cursors."""

    kind: ClassVar[str] = "bluesky"
    Options: ClassVar[type[SourceOptions]] = BlueskyOptions
    options: BlueskyOptions

    def streams(self) -> list[tuple[str, str]]:
        """(query, lang) pairs; lang "" = no language filter."""
        return [(q, lang) for q in self.options.queries for lang in (self.options.langs or [""])]

    @staticmethod
    def stream_key(query: str, lang: str) -> str:
        return f"search|{query}|{lang}"

    def _session(self, client: HttpClient) -> Session | None:
        o = self.options
        if not o.identifier_env:
            return None
        ident, pw = os.environ.get(o.identifier_env, ""), os.environ.get(o.password_env, "")
        if not ident or not pw:
            missing = o.identifier_env if not ident else o.password_env
            raise ConfigError(
                f"field 'source.{'identifier_env' if not ident else 'password_env'}': "
                f"environment variable {missing} is not set or empty"
            )
        session = Session(client, o.login_service, ident, pw)
        session.login()
        return session

    def posts(self) -> Iterator[Post]:
        """Replay posts collected earlier, then search for new ones, stream by stream."""
        state = self._open_state()
        yield from self._replay(state)
        client = HttpClient(self.options)
        budget = self.options.max_posts or float("inf")
        try:
            session = self._session(client)
            yield from collect_streams(
                self.streams(),
                lambda stream, room: self._pages(client, session, state, *stream, room),
                budget,
                self.options.skip_unavailable,
                on_skip=lambda stream, e: self._skipped(state, stream, e),
                on_done=lambda stream: self._done(state, stream),
                label=lambda stream: self.stream_key(*stream),
            )
        finally:
            client.close()

    def _search(
        self, client: HttpClient, session: Session | None, params: list[tuple[str, Any]]
    ) -> tuple[Any, str]:
        service = session.service if session else self.options.service
        url = f"{service}/xrpc/app.bsky.feed.searchPosts"
        for attempt in (1, 2):
            try:
                data, resp = client.get_json(url, params, session.headers() if session else None)
                return data, resp.url
            except HttpError as e:
                if session and attempt == 1 and e.status in (400, 401) and e.error in EXPIRED:
                    log.info("access token expired; refreshing the session")
                    session.refresh()
                    continue
                if e.status in (401, 403) and session is None:
                    raise HttpError(
                        f"{e} — Bluesky refuses unauthenticated search here; log in with an "
                        f"app password (source.identifier_env / source.password_env)",
                        status=e.status,
                        url=e.url,
                    ) from None
                raise
        raise AssertionError("unreachable")

    def _pages(
        self,
        client: HttpClient,
        session: Session | None,
        state: SourceState,
        query: str,
        lang: str,
        room: float,
    ) -> Iterator[list[Post]]:
        """Pages of new posts of one stream, each committed to the state before it is yielded."""
        o = self.options
        key = self.stream_key(query, lang)
        cur = state.cursor(key)
        newest = cur.get("newest", "")
        if cur.get("cursor") or cur.get("top"):
            cursor, floor, top = cur.get("cursor", ""), cur.get("floor", ""), cur.get("top", "")
        else:
            cursor, floor, top = "", max(newest, o.since), ""
        got = 0
        while True:
            params: list[tuple[str, Any]] = [("q", query), ("sort", o.sort), ("limit", o.limit)]
            params += [("lang", lang)] if lang else []
            params += [("since", floor)] if floor else []
            params += [("until", o.until)] if o.until else []
            params += [("tag", t.lstrip("#")) for t in o.tags]
            params += [("cursor", cursor)] if cursor else []
            try:
                data, url = self._search(client, session, params)
            except HttpError as e:
                if not (cursor and rejected_cursor(e)):
                    raise
                log.warning(
                    "%s: the server no longer accepts the saved cursor (%s); restarting this "
                    "pass from the newest posts (posts seen before are skipped)",
                    key,
                    e.detail or e.error or e.status,
                )
                self.flags["cursor_reset"] += 1
                cursor = ""
                state.set_cursor(key, {"newest": newest, "floor": floor, "top": top})
                continue
            if not isinstance(data, dict) or not isinstance(data.get("posts"), list):
                raise InputError(f"GET {url}: expected {{'posts': [...]}}")
            posts, real = [], {}
            for view in data["posts"]:
                top = max(top, _sort_at(view))
                post = post_view_to_post(view, o.licence, self.pseudonym)
                if post.image is None and o.require_image:
                    post.drop("no_image")
                elif o.exclude_sensitive and post.extra["sensitive"]:
                    post.drop("sensitive")
                posts.append(post)
                real[post.id] = post_ids(view)
            nxt = str(data.get("cursor") or "")
            done = not data["posts"] or not nxt or nxt == cursor
            if done:
                state_cursor = {"newest": max(newest, top)}
            else:
                state_cursor = {"newest": newest, "cursor": nxt, "floor": floor, "top": top}
            fresh = self._commit(state, key, posts, real, state_cursor)
            got += sum(p.ok for p in fresh)
            yield fresh
            if done or got >= room:
                return
            cursor = nxt


def rejected_cursor(error: HttpError) -> bool:
    """A 400 answer that refuses the ``cursor`` parameter (``Invalid cursor format``,
    ``InvalidCursor``, ...): the cursor is from an older format or has expired."""
    said = f"{error.error} {error.detail}".lower()
    return error.status == 400 and "cursor" in said and error.error not in EXPIRED


def _iso_or_empty(value: str) -> str:
    """A ``since`` option as a UTC ISO timestamp comparable with sortAt ("" stays "")."""
    if not value:
        return ""
    if len(value) == 10:  # a date
        value += "T00:00:00Z"
    return utc_iso(value) if "T" in value else value
