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

    With ``trust_hint`` a post whose declared language (``lang_hint``) is a target takes
    it (score 1.0, flagged ``lang_from_hint``) instead of being detected; when the detector
    confidently says otherwise (>= :data:`HINT_DISPUTE`) the post is kept and counted as
    ``lang_hint_disputed``, so a platform whose hints are often wrong shows up.

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
            if cfg.trust_hint and post.lang_hint in cfg.targets:
                post.lang, post.lang_score = post.lang_hint, 1.0
                ctx.flag("lang_from_hint")
                if len(candidates) > 1 and _disputed(post, candidates):
                    ctx.flag("lang_hint_disputed")
            else:
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


HINT_DISPUTE = 0.9
"""A trusted hint is counted as disputed when the detector gives another language at least
this probability (the post is kept with its hint)."""


def _disputed(post: Post, candidates: tuple[str, ...]) -> bool:
    found, prob = detect(post.text, candidates)
    return bool(found) and found != post.lang_hint and prob >= HINT_DISPUTE


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
    (``normalize.max_chars``) and posts left without text (``empty_text``).

    Pre-tokenised posts (a published corpus's own tokens) are kept exactly: scores must
    stay comparable with the literature; their control characters are only counted
    (``control_chars_kept``)."""

    name = "normalize"
    input = "language"
    config_sections = ("normalize",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.normalize
        for post in records:
            post.raw_text = post.raw_text or post.text
            if post.pretokenized:
                if CONTROL_RE.search(post.text):
                    ctx.flag("control_chars_kept")
            else:
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
    """spaCy blank tokenizer per language; social-media units stay whole.  Pre-tokenised
    posts keep their own tokens (flagged ``pretokenized``)."""

    name = "tokenize"
    input = "normalize"

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        for post in records:
            if post.pretokenized and post.tokens:
                ctx.flag("pretokenized")
                yield post
                continue
            post.tokens, post.token_offsets = tokenize(post.text, post.lang)
            if not post.tokens:
                yield post.drop("no_tokens")
                continue
            yield post
