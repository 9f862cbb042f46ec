"""The collect stage: pull posts from the configured source."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post
from mmnerd.sources import Source, get_source


class CollectStage(Stage):
    """Stream posts from ``config.source``; posts with an id seen before are dropped.

    Pass the ``source`` whose ``serving()`` is active, so URLs and server agree.
    """

    name = "collect"
    input = None
    config_sections = ("source",)

    def __init__(self, source: Source | None = None):
        self.source = source

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        seen: set[str] = set()
        source = self.source or get_source(ctx.config)
        for post in source.posts():
            if post.id in seen:
                yield post.drop("duplicate_id")
                continue
            seen.add(post.id)
            yield post
        for what, n in sorted(source.counts.items()):
            ctx.flag(what, n)
