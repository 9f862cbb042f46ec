"""Text stages: language identification, normalisation, tokenisation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post
from mmnerd.text.langid import detect
from mmnerd.text.normalize import normalize
from mmnerd.text.tokenize import tokenize


class LanguageStage(Stage):
    """Detect each post's language; keep target languages above the confidence threshold.

    Drop reasons: ``empty_text``, ``lang:<code>`` (not a target), ``lang_low_confidence``.
    """

    name = "language"
    input = "collect"
    config_sections = ("language",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.language
        candidates = tuple(cfg.candidates)
        for post in records:
            if not post.text.strip():
                yield post.drop("empty_text")
                continue
            post.lang, post.lang_score = detect(post.text, candidates)
            if not post.lang:
                yield post.drop("no_language_evidence")
            elif post.lang not in cfg.targets:
                yield post.drop(f"lang:{post.lang}")
            elif post.lang_score < cfg.min_confidence:
                yield post.drop(f"lang_low_confidence: {post.lang_score:.2f}")
            else:
                if post.lang_hint and post.lang_hint != post.lang:
                    ctx.flag("lang_differs_from_hint")
                yield post


class NormalizeStage(Stage):
    """URL / mention placeholders and CRLF -> LF, carrying gold spans along."""

    name = "normalize"
    input = "language"
    config_sections = ("normalize",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        cfg = ctx.config.normalize
        for post in records:
            post.raw_text = post.raw_text or post.text
            post.text, post.gold_spans = normalize(
                post.text, post.gold_spans, cfg.url_placeholder, cfg.mention_placeholder
            )
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
