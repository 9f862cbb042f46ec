"""The collect stage: pull posts from the configured source."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post
from mmnerd.sources import Source, get_source


class CollectStage(Stage):
    """Stream posts from ``config.source``; posts with an id seen before are dropped.

    The source's flags (e.g. ``stream_skipped``) go into the stage stats; while the source
    has streams left unfinished (skipped because their server was unavailable), the
    stage is never marked done, so the next ``mmnerd collect`` resumes them.
    """

    name = "collect"
    input = None
    config_sections = ("source",)

    def __init__(self, source: Source | None = None):
        self.source = source

    def fingerprint(self, config: PipelineConfig) -> str:
        base = super().fingerprint(config)
        pending = (self.source or get_source(config)).unfinished()
        if pending:  # a fresh value every time: no marker can match it
            return f"{base}|unfinished:{len(pending)}:{uuid.uuid4().hex}"
        return base

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        seen: set[str] = set()
        source = self.source or get_source(ctx.config)
        for post in source.posts():
            if post.id in seen:
                yield post.drop("duplicate_id")
                continue
            seen.add(post.id)
            yield post
        for reason, n in sorted(source.flags.items()):
            ctx.flag(reason, n)
