"""What the API sources (Mastodon, Bluesky) share around their HTTP paging: the
persisted state, the private id mapping, skipped streams and published URLs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mmnerd.errors import InputError
from mmnerd.privacy import PSEUDONYM_HEX, PrivateIds
from mmnerd.records import Post
from mmnerd.sources import Source
from mmnerd.sources.http import HttpError
from mmnerd.sources.state import SourceState


class ApiSource(Source):
    """Base of the API sources.  Subclasses implement :meth:`streams` and
    :meth:`stream_key`; their options have ``publish_urls``.

    Posts are journaled with pseudonymised ids and no ``url``; the real URI and URL of
    each new public post go to :class:`~mmnerd.privacy.PrivateIds` *before* the post is
    journaled, so every collected post can be traced for a takedown.  With
    ``publish_urls`` the yielded posts get their public URL back from that mapping.
    """

    def streams(self) -> list[Any]:
        raise NotImplementedError

    def stream_key(self, *stream: Any) -> str:
        raise NotImplementedError

    def stream_keys(self) -> list[str]:
        return [self.stream_key(*s) for s in self.streams()]

    def unfinished(self) -> list[str]:
        skipped = SourceState.skipped_streams(self.config.root, self.kind)
        return [k for k in self.stream_keys() if k in skipped]

    # --- one run ----------------------------------------------------------------
    def _open_state(self) -> SourceState:
        """Start a run: fresh flags, the state, the private mapping (and URLs if published)."""
        self.flags.clear()
        self._private = PrivateIds(self.config.root, self.kind)
        self._publish_urls = bool(getattr(self.options, "publish_urls", False))
        self._urls: dict[str, str] = {}
        if self._publish_urls:
            self._urls = {k: str(v.get("url", "")) for k, v in self._private.load().items()}
        return SourceState(self.config.root, self.kind)

    def _replay(self, state: SourceState) -> Iterator[Post]:
        pseudonymous = re.compile(rf"{re.escape(self.kind)}:[0-9a-f]{{{PSEUDONYM_HEX}}}")
        for post in state.replay(self.stream_keys()):
            if not pseudonymous.fullmatch(post.id):
                raise InputError(
                    f"{state.journal}: holds real post ids ({post.id[:40]}...) from an mmnerd "
                    f"before pseudonymised ids; move {state.path.name} and "
                    f"{state.journal.name} away to collect afresh"
                )
            yield self._publish(post)

    def _commit(
        self,
        state: SourceState,
        key: str,
        posts: list[Post],
        real: dict[str, tuple[str, str]],
        cursor: dict[str, Any],
    ) -> list[Post]:
        """Record the real ids of the page's new posts privately, then journal the page."""
        rows: dict[str, dict[str, str]] = {}
        for p in posts:
            if p.id in real and p.id not in state.seen:
                uri, url = real[p.id]
                rows[p.id] = {"id": p.id, "uri": uri, "url": url}
        self._private.add(rows.values())
        if self._publish_urls:
            self._urls.update({i: r["url"] for i, r in rows.items()})
        return [self._publish(p) for p in state.commit(key, posts, cursor)]

    def _publish(self, post: Post) -> Post:
        if self._publish_urls:
            post.url = self._urls.get(post.id, "")
        return post

    def _skipped(self, state: SourceState, stream: Any, error: HttpError) -> None:
        state.mark_skipped(self.stream_key(*stream), str(error))
        self.flags["stream_skipped"] += 1

    def _done(self, state: SourceState, stream: Any) -> None:
        state.clear_skipped(self.stream_key(*stream))
