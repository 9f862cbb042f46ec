"""The source's own labels as the final labels (``[export] labels = "source"``).

Published corpora (MMNERD, Twitter-2015/2017) arrive labelled: their gold spans are the
annotation, so ``collect -> dedup -> export`` needs no Label Studio.  This stage stands
where ``pull`` stands for new data: it reads the dedup stage's output and fills
``spans`` and strict IOB2 ``ner_tags`` from ``gold_spans`` over the post's tokens.
Posts are kept whole, duplicates included (they carry their cluster id, so splits and
the audit still see them); Label Studio remains the way to review imported gold.
``Post.image_decided`` stays as the source set it (the sample marks its posts whose
ambiguous mention only the picture resolves; published corpora record nothing: null).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post
from mmnerd.text.bio import spans_to_bio


class GoldStage(Stage):
    """Gold spans -> final spans and IOB2 tags; flags spans that did not align exactly."""

    name = "gold"
    input = "dedup"

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        for post in records:
            al = spans_to_bio(post.gold_spans, post.token_offsets, post.text)
            for issue in al.issues:
                ctx.flag(f"gold_{issue.reason}")
            post.spans, post.ner_tags = al.spans, al.tags
            post.annotations, post.agreement = [], None
            yield post
