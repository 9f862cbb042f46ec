"""Post serialisation: the fast to_dict equals dataclasses.asdict and round-trips."""

from __future__ import annotations

import dataclasses
import json

from mmnerd.records import Annotation, ImageRef, LSRef, Post, Span


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
        cluster_id="img-s:0",
        duplicate_of="s:0",
        duplicate_reason="duplicate_image",
        ls=LSRef(project=3, task=41, overlap=2, adjudication_project=4),
        adjudication="needed",
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


def test_outputs_written_before_issue_17_load_into_the_typed_fields():
    """Stage outputs of the previous version kept the Label Studio ids, the dedup reason and
    the adjudication flags in ``extra``: they load into the typed fields, and ``extra`` keeps
    only what nobody else reads."""
    old = full_post().to_dict()
    for key in ("duplicate_reason", "ls", "adjudication"):
        del old[key]
    old["extra"] = {
        **{"k": [1, 2], "ls_project_id": 3, "ls_task_id": 41, "ls_overlap": 2},
        **{"ls_adjudication_project_id": 4, "dedup": {"reason": "duplicate_image"}},
        **{"needs_adjudication": True, "annotator_count": 1, "duplicate_of": "s:0"},
    }
    post = Post.from_json(json.dumps(old))
    assert post == full_post()
    assert post.extra == {"k": [1, 2]}
    assert post.ls == LSRef(project=3, task=41, overlap=2, adjudication_project=4)
    old["extra"] = {"ls_project_id": 3, "ls_task_id": 9, "adjudicated": True}
    post = Post.from_dict(old)
    assert post.ls == LSRef(project=3, task=9) and post.adjudication == "done"
    assert post.duplicate_reason == "" and post.extra == {}
    assert old["extra"] == {"ls_project_id": 3, "ls_task_id": 9, "adjudicated": True}  # unchanged


def test_annotator_count_counts_annotators_with_a_completed_annotation():
    post = full_post()
    post.annotations += [Annotation("a1", annotation_id=8), Annotation("a2", cancelled=True)]
    assert post.annotator_count == 1
    post.annotations.append(Annotation("a3"))
    assert post.annotator_count == 2
    assert "annotator_count" not in post.to_dict()
