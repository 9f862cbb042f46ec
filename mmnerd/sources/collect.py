"""The collect stage: pull posts from the configured source."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post
from mmnerd.sources import get_source


class CollectStage(Stage):
    """Stream posts from ``config.source``; posts with an id seen before are dropped."""

    name = "collect"
    input = None
    config_sections = ("source",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        seen: set[str] = set()
        for post in get_source(ctx.config).posts():
            if post.id in seen:
                yield post.drop("duplicate_id")
                continue
            seen.add(post.id)
            yield post
