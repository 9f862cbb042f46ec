"""Post sources.  One module per source; :func:`get_source` picks one by ``source.kind``.

A source turns its options (the ``[source]`` table of a pipeline file,
validated by the source's own pydantic ``Options`` model) into a stream of
:class:`~mmnerd.records.Post`.  Pictures are http(s) URLs (downloaded by the fetch stage)
or files on disk (``ImageRef.file``, relative to :meth:`Source.local_images`, read as
files): no source runs a server.
"""

from __future__ import annotations

import functools
import importlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mmnerd.config import PipelineConfig
from mmnerd.errors import ConfigError
from mmnerd.privacy import Pseudonymizer, pseudonymizer
from mmnerd.records import Post

SOURCES: dict[str, str] = {
    "sample": "mmnerd.sources.sample:SampleSource",
    "mastodon": "mmnerd.sources.mastodon:MastodonSource",
    "bluesky": "mmnerd.sources.bluesky:BlueskySource",
    "conll": "mmnerd.sources.conll:ConllSource",
    "jsonl": "mmnerd.sources.dumps:JsonlSource",
    "csv": "mmnerd.sources.dumps:CsvSource",
    "parquet": "mmnerd.sources.dumps:ParquetSource",
}
"""kind -> "module:class".  Add a source by adding a line here."""


class SourceOptions(BaseModel):
    """Base of each source's options model (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")


class Source:
    """Base class: subclasses set ``kind`` and ``Options`` and implement :meth:`posts`."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type[SourceOptions]] = SourceOptions

    def __init__(self, options: SourceOptions, config: PipelineConfig):
        self.options = options
        self.config = config

    @classmethod
    def from_config(cls, config: PipelineConfig) -> Source:
        try:
            options = cls.Options.model_validate(config.source.options())
        except ValidationError as e:
            from mmnerd.config_doc import explain_validation

            raise ConfigError(explain_validation(e, cls.Options, prefix="source")) from None
        return cls(options, config)

    @functools.cached_property
    def pseudonym(self) -> Pseudonymizer:
        """Keyed pseudonyms for authors (and anything else that names an account) with the
        corpus key of this pipeline (:mod:`mmnerd.privacy`): ``self.pseudonym(value, kind)``."""
        return pseudonymizer(self.config.root)

    @functools.cached_property
    def flags(self) -> Counter:
        """Notable events of this run that dropped nothing (``stream_skipped``, repaired tags,
        ...); the collect stage adds them to its stats."""
        return Counter()

    def unfinished(self) -> list[str]:
        """Streams an earlier run had to skip and the next run must resume (default: none);
        while any is left the collect stage is not marked done."""
        return []

    def posts(self) -> Iterator[Post]:
        """Yield posts with provenance filled in (id, source, source_id, url, ...)."""
        raise NotImplementedError

    def local_images(self) -> Path | None:
        """The folder that ``ImageRef.file`` paths of this source's posts are relative to
        (None: the source's images are URLs).  The fetch stage reads them as files,
        confined to this folder; on Dask it must be on a filesystem workers share."""
        return None


def source_class(kind: str) -> type[Source]:
    """The source class of ``kind`` (one line with "did you mean" when it is unknown)."""
    if kind not in SOURCES:
        from mmnerd.config_doc import did_you_mean

        raise ConfigError(
            f"field 'source.kind': unknown source {kind!r}{did_you_mean(kind, list(SOURCES))}"
        )
    module, _, cls_name = SOURCES[kind].partition(":")
    return getattr(importlib.import_module(module), cls_name)


def get_source(config: PipelineConfig) -> Source:
    return source_class(config.source.kind).from_config(config)
