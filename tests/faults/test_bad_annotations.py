"""Label Studio results that cannot be exported as they are: a label outside PER/LOC/ORG/MISC
and overlapping spans.  Both are flagged on pull and never reach the IOB2 tags; for overlaps
the choice is deterministic (longest span first, then leftmost), whatever the result order."""

from __future__ import annotations

import itertools

from mmnerd.labelstudio.pull import convert
from mmnerd.records import Post
from mmnerd.text.bio import spans_to_bio
from mmnerd.text.tokenize import tokenize

TEXT = "Merci @Macron pour le Tour de France à Paris 😀"


def region(text: str, surface: str, label: str, n: int = 0) -> dict:
    start = text.index(surface)
    return {
        "id": f"r{n}",
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + len(surface), "text": surface, "labels": [label]},
    }


def post() -> Post:
    tokens, offsets = tokenize(TEXT, "fr")
    return Post(id="t:1", source="t", source_id="1", text=TEXT, lang="fr", tokens=tokens,
                token_offsets=offsets)  # fmt: skip


def test_unknown_label_is_flagged_and_never_tagged():
    p = post()
    result = [region(TEXT, "@Macron", "PERSON"), region(TEXT, "Paris", "LOC", 1),
              region(TEXT, "Tour de France", "EVENT", 2)]  # fmt: skip
    ann = convert({"id": 1, "result": result}, p, p.token_offsets, "a")
    assert ann.flags.count("span_bad_label") == 2
    assert [(s.label, TEXT[s.start : s.end]) for s in ann.spans] == [("LOC", "Paris")]
    tags = spans_to_bio(ann.spans, p.token_offsets, TEXT).tags
    assert {t.split("-")[-1] for t in tags} <= {"O", "LOC"}


def test_overlapping_spans_are_flagged_and_resolved_deterministically():
    p = post()
    regions = [
        region(TEXT, "Tour de France", "MISC", 0),
        region(TEXT, "France", "LOC", 1),  # nested in the longer span
        region(TEXT, "de France à Paris", "ORG", 2),  # crossing: longest, wins
        region(TEXT, "Paris", "LOC", 3),
    ]
    outcomes = set()
    for order in itertools.permutations(regions):
        ann = convert({"id": 1, "result": list(order)}, p, p.token_offsets, "a")
        outcomes.add(tuple((s.label, TEXT[s.start : s.end]) for s in ann.spans))
        assert ann.flags.count("span_overlap") == 3
    assert outcomes == {(("ORG", "de France à Paris"),)}


def test_image_decided_choice_is_read_and_combined():
    from mmnerd.labelstudio.pull import combine_image_decided
    from mmnerd.labelstudio.push import image_decided_result

    p = post()
    ticked = [region(TEXT, "Paris", "LOC"), image_decided_result("c1")]
    a = convert({"id": 1, "result": ticked}, p, p.token_offsets, "a")
    b = convert({"id": 2, "result": [region(TEXT, "Paris", "LOC")]}, p, p.token_offsets, "b")
    assert a.image_decided and not b.image_decided
    assert a.flags == [] and [s.label for s in a.spans] == ["LOC"]  # the choice is no region
    other = {**image_decided_result("c2"), "from_name": "topic"}
    assert convert({"id": 3, "result": [other]}, p, p.token_offsets, "c").flags == [
        "ignored_choices"
    ]
    assert combine_image_decided([a], None) is True
    assert combine_image_decided([a, b], None) is True  # half of the annotators: ticked
    assert combine_image_decided([a, b, b], None) is False
    assert combine_image_decided([a, a], b) is False  # the adjudicator decides
    assert combine_image_decided([], None) is False
