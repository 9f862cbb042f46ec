"""Mastodon source: public, local and hashtag timelines of one or more instances.

API (Mastodon 4.x): ``GET /api/v1/timelines/public`` (``local=true`` for the
local timeline) and ``GET /api/v1/timelines/tag/:hashtag``, ``limit`` <= 40,
newest first.  Older pages are reached through the ``Link`` header
(``rel="next"`` carries ``max_id``); ``since_id`` bounds a run below by the
newest status of the previous run, so reruns fetch only what is new.

Per stream (instance x timeline) the state file keeps ``newest`` (highest id of
the last finished pass) and, while a pass is unfinished (killed, ``max_posts``
reached, budget spent), ``max_id`` / ``floor`` / ``top`` to resume it.

Mapping: a reblog becomes its original status; only ``public`` visibility is
kept (others are yielded as dropped ``not_public`` with no text stored); the
HTML ``content`` becomes plain text through :class:`ContentParser`; the first
``image`` attachment becomes the :class:`~mmnerd.records.ImageRef` (its
``description`` is the alt text); ``language`` becomes ``lang_hint``;
``sensitive`` and ``spoiler_text`` go to ``extra``; the author is hashed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import Field, field_validator

from mmnerd.errors import ConfigError, InputError
from mmnerd.records import ImageRef, Post, hash_author
from mmnerd.sources import Source, SourceOptions
from mmnerd.sources.http import (
    HttpClient,
    HttpError,
    HttpOptions,
    collect_streams,
)
from mmnerd.sources.state import SourceState

log = logging.getLogger(__name__)

DEFAULT_LICENCE = (
    "© the author; public Mastodon post, collected under the instance's terms for "
    "non-commercial research; redistribute ids/URLs only"
)
_TIMELINE = re.compile(r"^(public|local|tag:#?[^\s/#?]+)$")


class MastodonOptions(SourceOptions, HttpOptions):
    """The ``[source]`` table with ``kind = "mastodon"``."""

    instances: list[str] = Field(
        ..., min_length=1, description='instance base URLs, e.g. ["https://mastodon.social"]'
    )
    timelines: list[str] = Field(
        default_factory=lambda: ["public"],
        description='"public" (federated), "local" (public local=true) or "tag:<hashtag>"',
    )
    tag_local_only: bool = Field(False, description="hashtag timelines: only the instance's posts")
    token_env: dict[str, str] = Field(
        default_factory=dict,
        description="instance URL -> name of the env var holding its access token (optional)",
    )
    require_image: bool = Field(
        True, description="posts without an image attachment are dropped (reason no_image)"
    )
    exclude_sensitive: bool = Field(
        False, description="drop posts marked sensitive (reason sensitive); else kept, flagged"
    )
    only_media: bool | None = Field(
        None, description="ask the server for posts with media only (default: = require_image)"
    )
    limit: int = Field(40, ge=1, le=40, description="statuses per page (Mastodon's maximum is 40)")
    max_posts: int = Field(
        1000, ge=0, description="stop after this many new posts in one run (0 = no limit)"
    )
    licence: str = Field(DEFAULT_LICENCE, description="licence note stored on every post")

    @field_validator("instances")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        out = []
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url!r} is not an instance URL like https://mastodon.social")
            out.append(url.rstrip("/"))
        return out

    @field_validator("timelines")
    @classmethod
    def _timelines(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _TIMELINE.match(t):
                raise ValueError(f'{t!r}: expected "public", "local" or "tag:<hashtag>"')
        return [t if not t.startswith("tag:") else "tag:" + t[4:].lstrip("#") for t in v]

    @field_validator("token_env")
    @classmethod
    def _token_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.rstrip("/"): name for k, name in v.items()}


# ---------------------------------------------------------------------------
# HTML content -> text
# ---------------------------------------------------------------------------

_BLOCKS = {"p", "div", "blockquote", "pre", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}


class ContentParser(HTMLParser):
    """Mastodon status HTML to plain text, recording mentions, hashtags and links.

    * ``<span class="invisible">`` parts of links are dropped, ``<span class="ellipsis">``
      kept (as Mastodon shows them); a plain link becomes its ``href`` when the visible
      text was shortened, so URLs stay whole;
    * ``<br>`` is a line break, paragraphs are separated by a blank line;
    * entities (``&amp;``, ``&#39;``) are decoded by the parser.

    ``entities`` lists ``{"type": "mention"|"tag"|"link", "start", "end", "href"}``
    with code-point offsets into :attr:`text`.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._len = 0
        self._skip = 0  # depth inside invisible spans
        self._stack: list[tuple[str, bool]] = []  # (tag, counts toward skip)
        self._link: dict[str, Any] | None = None
        self._shortened = False
        self.entities: list[dict[str, Any]] = []

    def _emit(self, s: str) -> None:
        self._out.append(s)
        self._len += len(s)

    def _break(self, n: int) -> None:
        """Ensure the text ends with ``n`` newlines (not at the very start)."""
        text = "".join(self._out)
        if not text.strip():
            return
        have = len(text) - len(text.rstrip("\n"))
        if have < n:
            self._emit("\n" * (n - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = set(a.get("class", "").split())
        if tag == "br":
            if not self._skip:
                self._emit("\n")
            return
        if tag in _BLOCKS:
            self._break(2 if tag == "p" else 1)
        invisible = "invisible" in classes
        if invisible:
            self._skip += 1
            self._shortened = True
        if "ellipsis" in classes:
            self._shortened = True
        self._stack.append((tag, invisible))
        if tag == "a" and self._link is None:
            kind = "link"
            if "hashtag" in classes or a.get("rel", "") == "tag":
                kind = "tag"
            elif "mention" in classes:
                kind = "mention"
            self._link = {"type": kind, "start": self._len, "href": a.get("href", "")}
            self._shortened = False

    def handle_endtag(self, tag: str) -> None:
        # pop to the matching open tag (tolerates unclosed inner tags)
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                for _, invisible in self._stack[i:]:
                    if invisible:
                        self._skip -= 1
                del self._stack[i:]
                break
        else:
            return
        if tag == "a" and self._link is not None:
            link, self._link = self._link, None
            shown = "".join(self._out)[link["start"] :]
            is_url = link["type"] == "link" and link["href"].startswith(("http://", "https://"))
            cut = self._shortened or not shown.strip() or shown.strip() in link["href"]
            if is_url and cut:
                # the visible text is the URL cut down (invisible scheme, ellipsis): use href
                self._out = ["".join(self._out)[: link["start"]]]
                self._len = link["start"]
                self._emit(link["href"])
            link["end"] = self._len
            if link["end"] > link["start"]:
                self.entities.append(link)
        elif tag in _BLOCKS:
            self._break(2 if tag == "p" else 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._emit(data)

    @property
    def text(self) -> str:
        return "".join(self._out).strip("\n")


def html_to_text(html: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text of a status' HTML ``content`` and its mention / tag / link entities."""
    parser = ContentParser()
    parser.feed(html or "")
    parser.close()
    raw = "".join(parser._out)
    lead = len(raw) - len(raw.lstrip("\n"))
    text = parser.text
    ents = []
    for e in parser.entities:
        start, end = e["start"] - lead, e["end"] - lead
        if 0 <= start < end <= len(text):
            ents.append({**e, "start": start, "end": end, "text": text[start:end]})
    return text, ents


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def id_key(status_id: str) -> tuple[int, str]:
    """Sort key of Mastodon ids (numeric strings of varying length; fall back to text)."""
    return (int(status_id), "") if str(status_id).isdigit() else (-1, str(status_id))


def newer(a: str, b: str) -> str:
    """The newer of two status ids ("" counts as oldest)."""
    if not a:
        return b
    if not b:
        return a
    return a if id_key(a) >= id_key(b) else b


def next_max_id(links: dict[str, dict[str, str]]) -> str:
    """``max_id`` of the ``rel="next"`` Link (older page); "" when there is none."""
    nxt = links.get("next", {}).get("url", "")
    return parse_qs(urlsplit(nxt).query).get("max_id", [""])[0] if nxt else ""


def utc_iso(value: str) -> str:
    """ISO 8601 in UTC, fixed width with milliseconds (``2024-05-01T10:00:00.000Z``), so that
    timestamps compare as strings; unparsable input is returned as is, "" stays ""."""
    if not value:
        return ""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def first_image(media: list[dict[str, Any]]) -> tuple[ImageRef | None, int]:
    """The first ``image`` attachment as an ImageRef, and how many images there were."""
    images = [
        m for m in media or [] if m.get("type") == "image" and (m.get("url") or m.get("remote_url"))
    ]
    if not images:
        return None, 0
    m = images[0]
    ref = ImageRef(url=m.get("url") or m.get("remote_url"), alt=m.get("description") or "")
    return ref, len(images)


def status_to_post(status: dict[str, Any], instance: str, licence: str) -> Post:
    """Map one Mastodon Status (its original if it is a reblog) to a :class:`Post`."""
    reblogged_by = ""
    if status.get("reblog"):
        reblogged_by = status.get("id", "")
        status = status["reblog"]
    sid = str(status.get("id", ""))
    uri = status.get("uri") or f"{instance}/statuses/{sid}"
    post_id = f"mastodon:{uri}"
    if status.get("visibility", "public") != "public":
        return Post(id=post_id, source="mastodon", source_id=uri, text="").drop(
            f"not_public: {status.get('visibility')}"
        )
    text, entities = html_to_text(status.get("content", ""))
    image, n_images = first_image(status.get("media_attachments", []))
    account = status.get("account") or {}
    extra: dict[str, Any] = {
        "instance": instance,
        "status_id": sid,
        "sensitive": bool(status.get("sensitive", False)),
        "spoiler_text": status.get("spoiler_text", ""),
        "entities": entities,
        "image_count": n_images,
    }
    if reblogged_by:
        extra["reblog_id"] = reblogged_by
    if image is not None:
        media = status["media_attachments"]
        preview = next((m.get("preview_url") for m in media if m.get("type") == "image"), "")
        extra["preview_url"] = preview or ""
    return Post(
        id=post_id,
        source="mastodon",
        source_id=uri,
        text=text,
        url=status.get("url") or uri,
        author_hash=hash_author(account.get("url") or account.get("acct", "")),
        created_at=utc_iso(status.get("created_at", "")),
        licence=licence,
        lang_hint=(status.get("language") or "").split("-")[0].lower(),
        image=image,
        extra=extra,
    )


# ---------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------


class MastodonSource(Source):
    """Public / local / hashtag timelines of several instances, incrementally."""

    kind: ClassVar[str] = "mastodon"
    Options: ClassVar[type[SourceOptions]] = MastodonOptions
    options: MastodonOptions

    def streams(self) -> list[tuple[str, str]]:
        """(instance, timeline) pairs, in config order."""
        return [(i, t) for i in self.options.instances for t in self.options.timelines]

    @staticmethod
    def stream_key(instance: str, timeline: str) -> str:
        return f"{instance}|{timeline}"

    def _headers(self, instance: str) -> dict[str, str]:
        name = self.options.token_env.get(instance)
        if not name:
            return {}
        token = os.environ.get(name, "")
        if not token:
            raise ConfigError(
                f"field 'source.token_env': environment variable {name} (token for {instance}) "
                f"is not set or empty"
            )
        return {"Authorization": f"Bearer {token}"}

    def _request(self, instance: str, timeline: str) -> tuple[str, dict[str, Any]]:
        o = self.options
        params: dict[str, Any] = {"limit": o.limit}
        only_media = o.require_image if o.only_media is None else o.only_media
        if only_media:
            params["only_media"] = "true"
        if timeline.startswith("tag:"):
            url = f"{instance}/api/v1/timelines/tag/{quote(timeline[4:], safe='')}"
            if o.tag_local_only:
                params["local"] = "true"
        else:
            url = f"{instance}/api/v1/timelines/public"
            if timeline == "local":
                params["local"] = "true"
        return url, params

    def posts(self) -> Iterator[Post]:
        """Replay posts collected earlier, then fetch new pages of every stream."""
        state = SourceState(self.config.root, self.kind)
        keys = [self.stream_key(i, t) for i, t in self.streams()]
        yield from state.replay(keys)
        client = HttpClient(self.options)
        budget = self.options.max_posts or float("inf")
        try:
            yield from collect_streams(
                self.streams(),
                lambda stream, room: self._pages(client, state, *stream, room),
                budget,
                self.options.skip_unavailable,
            )
        finally:
            client.close()

    def _pages(
        self, client: HttpClient, state: SourceState, instance: str, timeline: str, room: float
    ) -> Iterator[list[Post]]:
        """Pages of new posts of one stream, each committed to the state before it is yielded."""
        key = self.stream_key(instance, timeline)
        cur = state.cursor(key)
        newest = cur.get("newest", "")
        if cur.get("max_id") or cur.get("top"):  # an unfinished pass: resume it
            max_id, floor, top = cur.get("max_id", ""), cur.get("floor", ""), cur.get("top", "")
        else:
            max_id, floor, top = "", newest, ""
        url, base = self._request(instance, timeline)
        headers = self._headers(instance)
        got = 0
        while True:
            params = dict(base)
            if max_id:
                params["max_id"] = max_id
            if floor:
                params["since_id"] = floor
            try:
                data, resp = client.get_json(url, params=params, headers=headers)
            except HttpError as e:
                if e.status in (401, 403, 422):
                    raise HttpError(
                        f"{e} — this timeline needs an access token on {instance} "
                        f"(set source.token_env)",
                        status=e.status,
                        url=e.url,
                    ) from None
                raise
            if not isinstance(data, list):
                raise InputError(f"GET {resp.url}: expected a JSON list of statuses")
            posts = []
            for status in data:
                if not isinstance(status, dict) or "id" not in status:
                    raise InputError(f"GET {resp.url}: a status without an id")
                top = newer(top, str(status["id"]))
                posts.append(self._post(status, instance))
            nxt = next_max_id(resp.links) if data else ""
            lowest = min((str(s["id"]) for s in data), key=id_key, default="")
            done = not data or not nxt or (floor and id_key(lowest) <= id_key(floor))
            if done:
                cursor = {"newest": newer(newest, top)}
            else:
                cursor = {"newest": newest, "max_id": nxt, "floor": floor, "top": top}
            fresh = state.commit(key, posts, cursor)
            got += sum(p.ok for p in fresh)
            yield fresh
            if done or got >= room:
                return
            max_id = nxt

    def _post(self, status: dict[str, Any], instance: str) -> Post:
        post = status_to_post(status, instance, self.options.licence)
        if post.ok and post.image is None and self.options.require_image:
            post.drop("no_image")
        elif post.ok and self.options.exclude_sensitive and post.extra.get("sensitive"):
            post.drop("sensitive")
        return post
