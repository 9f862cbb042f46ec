"""Mastodon source: public, local and hashtag timelines of one or more instances.

API (Mastodon 4.x): ``GET /api/v1/timelines/public`` (``local=true`` for the
local timeline) and ``GET /api/v1/timelines/tag/:hashtag``, ``limit`` <= 40,
newest first.  Older pages are reached through the ``Link`` header
(``rel="next"`` carries ``max_id``); ``since_id`` bounds a run below by the
newest status of the previous run, so reruns fetch only what is new.

Per stream (instance x timeline) the state file keeps ``newest`` (highest id of
the last finished pass) and, while a pass is unfinished (killed, ``max_posts``
reached, budget spent), ``max_id`` / ``floor`` / ``top`` to resume it.

Rate limits: paging requests (``max_id`` / ``since_id``) are limited by Mastodon's
rack-attack to 300 per 15 minutes per IP (or per account with a token), so
``min_interval`` defaults to 3 s; the ``X-RateLimit-*`` headers pace the client
further (:mod:`mmnerd.sources.http`).  An empty first page of a new stream is
explained from ``/api/v2/instance`` (Mastodon 4.5 answers ``[]`` for a feed the
instance disabled).

Mapping: a reblog becomes its original status; only ``public`` visibility is
kept (others are yielded as dropped ``not_public`` with no text stored); the
HTML ``content`` becomes plain text through :class:`ContentParser` (mentions
from ``mentions[]``, custom emoji of ``emojis[]`` removed, a quote post's
``quote-inline`` fallback removed); the first image attachment (``image``, or
``unknown`` remote media whose ``remote_url`` is an image) becomes the
:class:`~mmnerd.records.ImageRef`; ``language`` becomes ``lang_hint``;
``sensitive`` and ``spoiler_text`` go to ``extra``.  Privacy: the post id is a
keyed pseudonym of the status URI, the author a keyed pseudonym of the account;
the real URI and URL go only to the private mapping
(:class:`~mmnerd.privacy.PrivateIds`); ``url`` is filled only with
``publish_urls = true``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import Field, field_validator

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
from mmnerd.sources.state import SourceState

log = logging.getLogger(__name__)

DEFAULT_LICENCE = (
    "© the author; public Mastodon post, collected under the instance's terms for "
    "non-commercial research; redistribute ids/URLs only"
)
_TIMELINE = re.compile(r"^(public|local|tag:#?[^\s/#?]+)$")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
"""Remote media of type ``unknown`` is taken as an image when its URL path ends so."""

Pseudonym = Callable[[str, str], str]
"""``(value, kind) -> pseudonym`` (:class:`mmnerd.privacy.Pseudonymizer`)."""


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
    min_interval: float = Field(
        3.0,
        ge=0,
        description="minimum seconds between two requests to one instance (Mastodon allows "
        "300 paging requests per 15 minutes: one per 3 s)",
    )
    publish_urls: bool = Field(
        False,
        description="store each post's public URL in `url` (it names the author's account); "
        "default: `url` empty, real URIs/URLs only in the private mapping",
    )
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
    * an ``<a>`` whose ``href`` is the URL of one of the status' ``mentions[]`` is a
      mention even without the ``mention`` class (other servers' HTML), and is never
      replaced by its ``href``;
    * ``:shortcode:`` of the status' custom ``emojis`` are removed (they are pictures,
      not words), with the spaces around them collapsed;
    * with ``drop_quote_inline`` (the status has a ``quote``) elements of class
      ``quote-inline`` (the ``RE: <link>`` fallback) are removed, as the Mastodon
      client docs ask;
    * ``<br>`` is a line break, paragraphs are separated by a blank line;
    * entities (``&amp;``, ``&#39;``) are decoded by the parser.

    ``entities`` lists ``{"type": "mention"|"tag"|"link", "start", "end", "href"}``
    with code-point offsets into :attr:`text` (mentions carry no ``href``: a profile
    URL names the account).
    """

    def __init__(
        self,
        mention_urls: Collection[str] = (),
        emojis: Collection[str] = (),
        drop_quote_inline: bool = False,
    ) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._len = 0
        self._skip = 0  # depth inside hidden elements (invisible spans, quote-inline)
        self._stack: list[tuple[str, bool]] = []  # (tag, hidden)
        self._link: dict[str, Any] | None = None
        self._shortened = False
        self._mention_urls = frozenset(u for u in mention_urls if u)
        codes = "|".join(map(re.escape, sorted({c for c in emojis if c}, key=len, reverse=True)))
        self._emoji = re.compile(rf"[ \t]*(?::(?:{codes}):[ \t]*)+") if codes else None
        self._drop_quote = drop_quote_inline
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
        invisible = "invisible" in classes
        hidden = invisible or (self._drop_quote and "quote-inline" in classes)
        if tag in _BLOCKS and not self._skip and not hidden:
            self._break(2 if tag == "p" else 1)
        if hidden:
            self._skip += 1
        if invisible or "ellipsis" in classes:
            self._shortened = True
        self._stack.append((tag, hidden))
        if tag == "a" and self._link is None and not self._skip:
            href = a.get("href", "")
            kind = "link"
            if "hashtag" in classes or a.get("rel", "") == "tag":
                kind = "tag"
            elif "mention" in classes or href in self._mention_urls:
                kind = "mention"
            self._link = {"type": kind, "start": self._len, "href": href}
            self._shortened = False

    def handle_endtag(self, tag: str) -> None:
        # pop to the matching open tag (tolerates unclosed inner tags)
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                closed_hidden = self._stack[i][1]
                for _, hidden in self._stack[i:]:
                    if hidden:
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
            if link["type"] == "mention":
                del link["href"]
            if link["end"] > link["start"]:
                self.entities.append(link)
        elif tag in _BLOCKS and not self._skip and not closed_hidden:
            self._break(2 if tag == "p" else 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._emoji is not None:
            data = self._emoji.sub(lambda m: self._emoji_gap(m, len(data)), data)
        self._emit(data)

    def _emoji_gap(self, m: re.Match[str], size: int) -> str:
        """What replaces a run of custom emoji: one space if it separated words."""
        run = m.group()
        lead, trail = run[:1] in " \t", run[-1:] in " \t"
        at_start, at_end = m.start() == 0, m.end() == size
        if at_start and at_end:
            keep = lead or trail
        elif at_start:
            keep = lead
        elif at_end:
            keep = trail
        else:
            keep = lead or trail
        return " " if keep else ""

    @property
    def text(self) -> str:
        return "".join(self._out).strip("\n")


def html_to_text(
    html: str,
    mention_urls: Collection[str] = (),
    emojis: Collection[str] = (),
    drop_quote_inline: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """Plain text of a status' HTML ``content`` and its mention / tag / link entities
    (see :class:`ContentParser` for the options)."""
    parser = ContentParser(mention_urls, emojis, drop_quote_inline)
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


def attachment_image_url(media: dict[str, Any]) -> str:
    """The URL to fetch for an attachment that is an image, else "".

    ``image``: the instance's copy (``url``), else ``remote_url``.  ``unknown`` is what
    Mastodon reports for remote media it has not cached (its ``url`` then points to the
    instance's rate-limited media proxy): taken from ``remote_url`` when that path ends
    in an image extension (:data:`IMAGE_EXTENSIONS`); the fetcher checks the bytes.
    """
    kind = media.get("type")
    if kind == "image":
        return str(media.get("url") or media.get("remote_url") or "")
    if kind == "unknown":
        remote = str(media.get("remote_url") or "")
        try:
            path = urlsplit(remote).path.lower()
        except ValueError:
            return ""
        if remote.startswith(("http://", "https://")) and path.endswith(IMAGE_EXTENSIONS):
            return remote
    return ""


def first_image(media: list[dict[str, Any]]) -> tuple[ImageRef | None, int]:
    """The first image attachment as an ImageRef, and how many images there were."""
    images = [(m, url) for m in media or [] if (url := attachment_image_url(m))]
    if not images:
        return None, 0
    m, url = images[0]
    return ImageRef(url=url, alt=m.get("description") or ""), len(images)


def status_ids(status: dict[str, Any], instance: str) -> tuple[str, str]:
    """(URI, public URL) of a status (its original if it is a reblog): both name the author."""
    status = status.get("reblog") or status
    uri = status.get("uri") or f"{instance}/statuses/{status.get('id', '')}"
    return uri, status.get("url") or uri


def status_to_post(
    status: dict[str, Any], instance: str, licence: str, pseudonym: Pseudonym
) -> Post:
    """Map one Mastodon Status (its original if it is a reblog) to a :class:`Post`.

    The id is ``mastodon:<pseudonym of the URI>``, ``url`` is left empty and the author
    is ``pseudonym(account URL)``: nothing in the post names an account, except the
    text's own @mentions.
    """
    reblog = bool(status.get("reblog"))
    uri, _ = status_ids(status, instance)
    status = status.get("reblog") or status
    sid = pseudonym(uri, "post")
    post_id = f"mastodon:{sid}"
    if status.get("visibility", "public") != "public":
        return Post(id=post_id, source="mastodon", source_id=sid, text="").drop(
            f"not_public: {status.get('visibility')}"
        )
    quote = status.get("quote")
    mention_urls = [m.get("url", "") for m in status.get("mentions") or [] if isinstance(m, dict)]
    emojis = [e.get("shortcode", "") for e in status.get("emojis") or [] if isinstance(e, dict)]
    text, entities = html_to_text(
        status.get("content", ""), mention_urls, emojis, drop_quote_inline=bool(quote)
    )
    image, n_images = first_image(status.get("media_attachments", []))
    account = status.get("account") or {}
    extra: dict[str, Any] = {
        "instance": instance,
        "sensitive": bool(status.get("sensitive", False)),
        "spoiler_text": status.get("spoiler_text", ""),
        "entities": entities,
        "image_count": n_images,
    }
    if reblog:
        extra["reblog"] = True
    if isinstance(quote, dict):
        extra["quote_state"] = str(quote.get("state") or "")
    return Post(
        id=post_id,
        source="mastodon",
        source_id=sid,
        text=text,
        author_hash=pseudonym(account.get("url") or account.get("acct", ""), "author"),
        created_at=utc_iso(status.get("created_at", "")),
        licence=licence,
        lang_hint=(status.get("language") or "").split("-")[0].lower(),
        image=image,
        extra=extra,
    )


# ---------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------


class MastodonSource(ApiSource):
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
        state = self._open_state()
        yield from self._replay(state)
        client = HttpClient(self.options)
        budget = self.options.max_posts or float("inf")
        try:
            yield from collect_streams(
                self.streams(),
                lambda stream, room: self._pages(client, state, *stream, room),
                budget,
                self.options.skip_unavailable,
                on_skip=lambda stream, e: self._skipped(state, stream, e),
                on_done=lambda stream: self._done(state, stream),
                label=lambda stream: self.stream_key(*stream),
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
            if not data and not max_id and not newest and not state.count(key):
                self._explain_empty(client, instance, timeline, headers)
            posts, real = [], {}
            for status in data:
                if not isinstance(status, dict) or "id" not in status:
                    raise InputError(f"GET {resp.url}: a status without an id")
                top = newer(top, str(status["id"]))
                post = self._post(status, instance)
                posts.append(post)
                if not post.reason.startswith("not_public"):
                    real[post.id] = status_ids(status, instance)
            nxt = next_max_id(resp.links) if data else ""
            lowest = min((str(s["id"]) for s in data), key=id_key, default="")
            done = not data or not nxt or (floor and id_key(lowest) <= id_key(floor))
            if done:
                cursor = {"newest": newer(newest, top)}
            else:
                cursor = {"newest": newest, "max_id": nxt, "floor": floor, "top": top}
            fresh = self._commit(state, key, posts, real, cursor)
            got += sum(p.ok for p in fresh)
            yield fresh
            if done or got >= room:
                return
            max_id = nxt

    def _explain_empty(
        self, client: HttpClient, instance: str, timeline: str, headers: dict[str, str]
    ) -> None:
        """Warn about a stream whose very first page is empty, with the instance's own
        feed settings (Mastodon 4.5 answers ``[]`` for a disabled feed)."""
        self.flags["empty_feed"] += 1
        feed = "hashtag_feeds" if timeline.startswith("tag:") else "live_feeds"
        access: dict[str, Any] = {}
        try:
            info, _ = client.get_json(f"{instance}/api/v2/instance", headers=headers)
            cfg = info.get("configuration") if isinstance(info, dict) else None
            got = (cfg or {}).get("timelines_access", {}).get(feed)
            access = got if isinstance(got, dict) else {}
        except (HttpError, InputError, AttributeError):
            pass
        local = timeline == "local" or (timeline.startswith("tag:") and self.options.tag_local_only)
        scopes = ["local"] if local else ["local", "remote"]
        values = {str(access.get(k, "")) for k in scopes} - {""}
        said = ", ".join(f"{k}={access[k]}" for k in scopes if k in access)
        if "disabled" in values:
            why = f"the instance has disabled this feed ({feed}: {said})"
        elif "authenticated" in values and not headers:
            why = f"the instance serves this feed to logged-in users only ({feed}: {said}); "
            why += "set source.token_env"
        elif said:
            why = f"nothing matched yet ({feed}: {said})"
        else:
            why = "nothing matched, or the instance disabled it (Mastodon 4.5 answers [] then)"
        log.warning("%s %s: the first page is empty: %s", instance, timeline, why)

    def _post(self, status: dict[str, Any], instance: str) -> Post:
        post = status_to_post(status, instance, self.options.licence, self.pseudonym)
        if post.ok and post.image is None and self.options.require_image:
            post.drop("no_image")
        elif post.ok and self.options.exclude_sensitive and post.extra.get("sensitive"):
            post.drop("sensitive")
        return post
