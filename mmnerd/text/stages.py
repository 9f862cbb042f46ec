"""Text stages: language identification, normalisation, tokenisation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache

from mmnerd.config import PipelineConfig
from mmnerd.io import read_posts
from mmnerd.pipeline import Stage, StageContext, stage_dir
from mmnerd.records import Post
from mmnerd.text.langid import detect
from mmnerd.text.normalize import CONTROL_RE, normalize
from mmnerd.text.tokenize import tokenize


class LanguageStage(Stage):
    """Detect each post's language; keep target languages above the confidence threshold.

    Drop reasons: ``empty_text``, ``too_long`` (checked first, as normalize would: a
    huge post is not worth identifying, and its low score must not hide the real reason),
    ``lang:<code>`` (not a target), ``lang_low_confidence``, ``lang_quota:<code>``
    (``[language] quotas``: the language already has its share).

    Quotas count kept posts in input order: this shard's own plus those kept by the
    finished shards before it.  Exact and deterministic with the local executor (shards
    in order); with a parallel executor a shard cannot see earlier shards still running,
    so a language may overshoot by up to the shards in flight.
    """

    name = "language"
    input = "collect"
    config_sections = ("language", "normalize")

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.language
        ncfg = ctx.config.normalize
        candidates = tuple(cfg.candidates)
        kept = _kept_before(ctx.config, ctx.shard) if cfg.quotas else Counter()
        for post in records:
            if not post.text.strip():
                yield post.drop("empty_text")
                continue
            if ncfg.max_chars and len(post.text) > ncfg.max_chars:  # only then measure
                text, _ = normalize(post.text, [], ncfg.url_placeholder, ncfg.mention_placeholder)
                if len(text) > ncfg.max_chars:
                    yield post.drop(f"too_long: {len(text)} chars > {ncfg.max_chars}")
                    continue
            post.lang, post.lang_score = detect(post.text, candidates)
            if not post.lang:
                yield post.drop("no_language_evidence")
            elif post.lang not in cfg.targets:
                yield post.drop(f"lang:{post.lang}")
            elif post.lang_score < cfg.min_confidence:
                yield post.drop(f"lang_low_confidence: {post.lang_score:.2f}")
            elif post.lang in cfg.quotas and kept[post.lang] >= cfg.quotas[post.lang]:
                yield post.drop(f"lang_quota:{post.lang}")
            else:
                kept[post.lang] += 1
                if post.lang_hint and post.lang_hint != post.lang:
                    ctx.flag("lang_differs_from_hint")
                yield post


def _kept_before(config: PipelineConfig, shard: str) -> Counter:
    """Posts per language kept by the language stage's finished shards before ``shard``."""
    total: Counter = Counter()
    for path in sorted(stage_dir(config, LanguageStage.name).glob("shard-*.jsonl")):
        if shard and path.stem.split("-", 1)[1] < shard:
            total.update(dict(_langs_in(str(path), path.stat().st_mtime_ns)))
    return total


@lru_cache(maxsize=65536)
def _langs_in(path: str, mtime_ns: int) -> tuple[tuple[str, int], ...]:
    """(language, count) of one finished shard file (immutable once written: cached)."""
    return tuple(Counter(p.lang for p in read_posts(path)).items())


class NormalizeStage(Stage):
    """URL / mention placeholders, CRLF -> LF, control characters removed (flagged
    ``control_chars``), gold spans carried along.  Drops ``too_long`` posts
    (``normalize.max_chars``) and posts left without text (``empty_text``)."""

    name = "normalize"
    input = "language"
    config_sections = ("normalize",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.normalize
        for post in records:
            post.raw_text = post.raw_text or post.text
            if CONTROL_RE.search(post.text):
                ctx.flag("control_chars")
            post.text, post.gold_spans = normalize(
                post.text, post.gold_spans, cfg.url_placeholder, cfg.mention_placeholder
            )
            if cfg.max_chars and len(post.text) > cfg.max_chars:
                yield post.drop(f"too_long: {len(post.text)} chars > {cfg.max_chars}")
            elif not post.text.strip():
                yield post.drop("empty_text")
            else:
                yield post


class TokenizeStage(Stage):
    """spaCy blank tokenizer per language; social-media units stay whole."""

    name = "tokenize"
    input = "normalize"

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        for post in records:
            post.tokens, post.token_offsets = tokenize(post.text, post.lang)
            if not post.tokens:
                yield post.drop("no_tokens")
                continue
            yield post
