"""Post serialisation: the fast to_dict equals dataclasses.asdict and round-trips."""

from __future__ import annotations

import dataclasses
import json

from mmnerd.records import Annotation, ImageRef, Post, Span


def full_post() -> Post:
    return Post(
        id="s:1",
        source="s",
        source_id="1",
        text="Merci @Macron 🇫🇷 pour Paris",
        lang="fr",
        image=ImageRef(
            url="http://x/a.jpg",
            status="ok",
            sha256="ab",
            path="ab/ab.jpg",
            width=3,
            height=2,
            phash="00ff00ff00ff00ff",
        ),
        tokens=["Merci", "@Macron", "🇫🇷", "pour", "Paris"],
        token_offsets=[(0, 5), (6, 13), (14, 16), (17, 21), (22, 27)],
        gold_spans=[Span(22, 27, "LOC", "Paris")],
        annotations=[Annotation("a1", [Span(6, 13, "PER", "@Macron")], 7, flags=["snapped"])],
        spans=[Span(22, 27, "LOC", "Paris")],
        ner_tags=["O", "O", "O", "O", "B-LOC"],
        agreement=0.5,
        extra={"k": [1, 2]},
    )


def test_to_json_equals_asdict_and_round_trips():
    post = full_post()
    assert post.to_json() == json.dumps(
        dataclasses.asdict(post), ensure_ascii=False, sort_keys=True
    )
    assert Post.from_json(post.to_json()) == post


def test_to_dict_does_not_alias_the_record():
    post = full_post()
    d = post.to_dict()
    d["tokens"].append("x")
    d["gold_spans"][0]["label"] = "PER"
    d["annotations"][0]["spans"].clear()
    assert post.tokens[-1] == "Paris" and post.gold_spans[0].label == "LOC"
    assert post.annotations[0].spans
