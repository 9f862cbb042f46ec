"""spans <-> strict IOB2 and offset units, with property tests over awkward Unicode."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmnerd.records import ENTITY_TYPES, Span
from mmnerd.text.bio import (
    OffsetIndex,
    bio_to_spans,
    check_span,
    cp_to_utf8,
    cp_to_utf16,
    iob2_problems,
    repair_iob2,
    spans_to_bio,
    utf8_to_cp,
    utf16_to_cp,
)

# awkward pieces: emoji, ZWJ family, flag, skin tone, keycap, combining accents, RTL, CRLF
PIECES = [
    "😀",
    "👨‍👩‍👧‍👦",
    "🇫🇷",
    "👍🏽",
    "1️⃣",
    "e\u0301",
    "Ame\u0301lie",
    "שלום",
    "مرحبا",
    "\u200f",
    "\r\n",
    "𝔘𝔫𝔦",
    "Zürich",
    "@Macron",
    "#Paris2024",
    "https://ex.am/p?q=1",
    "Straße",
    "日本",
    "\t",
]


def ws_tokenize(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


unicode_text = st.lists(
    st.one_of(st.characters(codec="utf-8"), st.sampled_from(PIECES)), max_size=40
).map("".join)
words = st.lists(
    st.one_of(st.sampled_from(PIECES).filter(lambda p: p.strip()), st.text(min_size=1, max_size=8))
    .map(lambda w: "".join(w.split()))
    .filter(bool),
    min_size=0,
    max_size=25,
)
separators = st.sampled_from([" ", "  ", "\r\n", "\n", "\t", " \u3000 "])


@st.composite
def tokenized_with_spans(draw):
    ws = draw(words)
    seps = [draw(separators) for _ in ws]
    text = draw(st.sampled_from(["", " ", "\r\n"]))
    offsets = []
    for w, sep in zip(ws, seps, strict=True):
        offsets.append((len(text), len(text) + len(w)))
        text += w + sep
    # non-overlapping token runs
    spans = []
    i = 0
    while i < len(offsets):
        if draw(st.booleans()):
            j = draw(st.integers(i, min(i + 3, len(offsets) - 1)))
            label = draw(st.sampled_from(ENTITY_TYPES))
            s, e = offsets[i][0], offsets[j][1]
            spans.append(Span(s, e, label, text[s:e]))
            i = j + 1
        else:
            i += 1
    return text, offsets, spans


@settings(max_examples=150, deadline=None)
@given(tokenized_with_spans())
def test_round_trip_token_aligned_spans(case):
    text, offsets, spans = case
    al = spans_to_bio(spans, offsets, text)
    assert al.issues == []
    assert iob2_problems(al.tags) == []
    back, issues = bio_to_spans(al.tags, offsets, text, strict=True)
    assert issues == []
    assert back == spans
    assert all(text[s.start : s.end] == s.text for s in back)


@settings(max_examples=150, deadline=None)
@given(unicode_text)
def test_utf16_and_utf8_round_trip(text):
    idx = OffsetIndex(text)
    assert idx.utf16_len == len(text.encode("utf-16-le")) // 2
    assert idx.utf8_len == len(text.encode("utf-8"))
    for cp in range(len(text) + 1):
        u = idx.cp_to_utf16(cp)
        assert u == len(text[:cp].encode("utf-16-le")) // 2
        assert idx.utf16_to_cp(u) == cp
        b = idx.cp_to_utf8(cp)
        assert b == len(text[:cp].encode("utf-8"))
        assert idx.utf8_to_cp(b) == cp


@settings(max_examples=150, deadline=None)
@given(unicode_text, st.data())
def test_check_span_recovers_utf16_or_flags(text, data):
    if not text:
        return
    s = data.draw(st.integers(0, len(text) - 1))
    e = data.draw(st.integers(s + 1, len(text)))
    surface = text[s:e]
    assert check_span(text, s, e, surface) == check_span(text, s, e, surface)
    ok = check_span(text, s, e, surface)
    assert ok.ok and (ok.start, ok.end) == (s, e) and ok.reason == ""
    idx = OffsetIndex(text)
    u = check_span(text, idx.cp_to_utf16(s), idx.cp_to_utf16(e), surface)
    # never silently wrong: either the exact surface, or flagged
    assert (not u.ok) or text[u.start : u.end].strip() == surface.strip()


def test_utf16_offsets_recovered():
    text = "Merci @Macron 🇫🇷 pour Paris 😀 !"
    s = text.index("Paris")
    assert (cp_to_utf16(text, s), cp_to_utf16(text, s + 5)) == (24, 29)
    c = check_span(text, 24, 29, "Paris")
    assert (c.start, c.end, c.ok, c.reason) == (s, s + 5, True, "utf16")
    assert utf16_to_cp(text, 24) == s
    b = cp_to_utf8(text, s)
    assert text.encode()[b : b + 5] == b"Paris" and utf8_to_cp(text, b) == s
    assert check_span(text, b, b + 5, "Paris").reason == "utf8"


def test_check_span_flags_mismatch_and_range():
    text = "Berlin und Paris"
    assert check_span(text, 0, 6, "Paris").reason == "mismatch"
    assert not check_span(text, 0, 6, "Paris").ok
    assert check_span(text, 10, 99, "Paris").reason == "out_of_range"
    assert check_span(text, 3, 3, "").reason == "empty"
    t = check_span(text, 10, 16, "Paris")  # " Paris" -> trimmed
    assert (t.start, t.end, t.reason) == (11, 16, "trimmed")
    assert check_span(text, 0, 6, None).reason == "unchecked"


def test_surrogate_split_and_bad_offsets_raise():
    text = "a😀b"
    with pytest.raises(ValueError):
        utf16_to_cp(text, 2)  # between the two halves of the emoji
    with pytest.raises(ValueError):
        utf8_to_cp(text, 2)  # inside the 4-byte sequence
    with pytest.raises(ValueError):
        cp_to_utf16(text, 9)


def test_snapping_and_overlap_are_reported():
    text = "I love #Paris and New York!"
    offs = ws_tokenize(text)  # "#Paris" and "York!" are single tokens
    spans = [
        Span(text.index("Paris"), text.index("Paris") + 5, "LOC"),  # inside "#Paris" -> outward
        Span(text.index("New"), text.index("York") + 4, "LOC"),  # "York" of "York!" -> outward
        Span(text.index("love"), text.index("love") + 6, "MISC"),  # "love #" grazes "#Paris"
        Span(0, 1, "PER"),
        Span(text.index("New"), text.index("New") + 3, "ORG"),  # overlaps the longer LOC
        Span(4, 4, "LOC"),
    ]
    al = spans_to_bio(spans, offs, text)
    assert al.tags == ["B-PER", "B-MISC", "B-LOC", "O", "B-LOC", "I-LOC"]
    reasons = sorted(i.reason for i in al.issues)
    assert reasons == [
        "no_token",
        "overlap",
        "snapped_inward",
        "snapped_outward",
        "snapped_outward",
    ]
    assert [s.text for s in al.spans] == ["I", "love", "#Paris", "New York!"]


def test_orphan_inside_repaired_or_strict():
    offs = [(0, 1), (2, 3), (4, 5), (6, 7)]
    tags = ["I-PER", "O", "B-LOC", "I-ORG"]
    spans, issues = bio_to_spans(tags, offs)
    assert [(s.start, s.end, s.label) for s in spans] == [
        (0, 1, "PER"),
        (4, 5, "LOC"),
        (6, 7, "ORG"),
    ]
    assert [i.reason for i in issues] == ["orphan_inside", "orphan_inside"]
    with pytest.raises(ValueError):
        bio_to_spans(tags, offs, strict=True)
    assert repair_iob2(tags) == ["B-PER", "O", "B-LOC", "B-ORG"]
    assert len(iob2_problems(tags)) == 2
    with pytest.raises(ValueError):
        bio_to_spans(["B-XYZ"], [(0, 1)])
    assert spans_to_bio([Span(0, 1, "XYZ")], offs).issues[0].reason == "bad_label"


def test_with_real_tokenizer_if_available():
    tok = pytest.importorskip("mmnerd.text.tokenize")
    text = "Merci @Macron 🇫🇷 pour #Paris2024 👨‍👩‍👧 à Zu\u0308rich\r\nhttps://ex.am/a"
    tokens, offs = tok.tokenize(text, "fr")
    spans = [Span(text.index("@Macron"), text.index("@Macron") + 7, "PER")]
    spans.append(Span(text.index("Zu"), text.index("rich") + 4, "LOC"))
    al = spans_to_bio(spans, offs, text)
    assert al.issues == []
    back, _ = bio_to_spans(al.tags, offs, text, strict=True)
    assert [(s.text, s.label) for s in back] == [("@Macron", "PER"), ("Zu\u0308rich", "LOC")]


def test_offsets_counted_with_crlf_folded_are_recovered():
    text = "Bonjour\r\nde 😀 Paris\r\net Lyon"
    folded = text.replace("\r\n", "\n")
    s = folded.index("Paris")
    c = check_span(text, s, s + 5, "Paris")
    assert (c.ok, c.reason, text[c.start : c.end]) == (True, "lf", "Paris")
    u = cp_to_utf16(folded, folded.index("Lyon"))
    c = check_span(text, u, u + 4, "Lyon")
    assert (c.ok, c.reason, text[c.start : c.end]) == (True, "lf+utf16", "Lyon")
    # a span across the line break, surface as the page saw it (LF)
    s2 = folded.index("Paris")
    c = check_span(text, s2, s2 + 8, "Paris\net")
    assert c.ok and text[c.start : c.end] == "Paris\r\net"


@settings(max_examples=100, deadline=None)
@given(unicode_text, st.data())
def test_check_span_never_returns_a_wrong_surface(text, data):
    """Whatever offsets and surface come in, an accepted span has that surface (modulo
    surrounding whitespace and CRLF folding)."""
    n = len(text) + 3
    s = data.draw(st.integers(0, n))
    e = data.draw(st.integers(0, n))
    surface = data.draw(st.one_of(st.just(text[s:e]), st.sampled_from(PIECES)))
    c = check_span(text, s, e, surface)
    if c.ok and surface:
        got = text[c.start : c.end]
        norm = got.replace("\r\n", "\n")
        assert (
            surface in (got, norm)
            or got.strip() == surface.strip()
            or (norm.strip() == surface.strip())
        )


@pytest.mark.parametrize(
    ("start", "end", "tags", "reason"),
    [
        (2, 9, ["B-LOC", "I-LOC"], "snapped_outward"),  # "cd" = exactly half of "abcd": joins
        (3, 9, ["O", "B-LOC"], "snapped_inward"),  # "d" = a quarter: left out
        (0, 7, ["B-LOC", "I-LOC"], "snapped_outward"),  # "ef" = half of "efgh": joins
        (0, 6, ["B-LOC", "O"], "snapped_inward"),  # "e" alone: left out
        (1, 3, ["B-LOC", "O"], "snapped_outward"),  # the only token touched always joins
    ],
)
def test_a_partly_covered_token_joins_at_half_its_characters(start, end, tags, reason) -> None:
    """The snapping rule at its boundary: a span covering at least half of a token's
    characters takes the whole token; less, and the token is left out (unless it is the
    only one the span touches)."""
    text = "abcd efgh"
    al = spans_to_bio([Span(start, end, "LOC")], [(0, 4), (5, 9)], text)
    assert al.tags == tags
    assert [i.reason for i in al.issues] == [reason]
