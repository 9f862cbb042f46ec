"""Spans <-> strict IOB2 tags, and the one place where offsets change units.

Offsets in mmnerd are Python ``str`` indices (Unicode code points), half-open
``[start, end)``.  Other tools count differently:

* browsers (and Label Studio before 1.23) count **UTF-16 code units**: every
  character outside the Basic Multilingual Plane (most emoji, flags) counts 2;
* Bluesky facets count **UTF-8 bytes**.

Convert at the boundary with :class:`OffsetIndex` (or the one-shot helpers
:func:`cp_to_utf16`, :func:`utf16_to_cp`, :func:`cp_to_utf8`, :func:`utf8_to_cp`)
and check every span that came from outside with :func:`check_span`.

Tagging policy (:func:`spans_to_bio`)
-------------------------------------
Tags are strict IOB2 over PER/LOC/ORG/MISC: every entity starts with ``B-``;
``I-X`` only follows ``B-X`` or ``I-X``.  A span is mapped to the tokens it
overlaps:

* a token fully inside the span is part of the entity;
* a token the span covers only partly (the span starts or ends inside it) is
  **snapped outward** (the whole token joins the entity) when the span covers
  at least half of that token's characters, or when it is the only token the
  span touches; otherwise it is **snapped inward** (left out).  Either way the
  span gets an :class:`AlignIssue` with reason ``snapped_outward`` /
  ``snapped_inward``, so a caller can count it;
* a span that touches no token (only whitespace, or out of range) is dropped
  with reason ``no_token``;
* a span whose tokens are already taken by an earlier span (spans are
  processed longest first, then left to right) is dropped with reason
  ``overlap``: IOB2 cannot express nested or crossing entities;
* a span with a label outside PER/LOC/ORG/MISC is dropped with ``bad_label``.

Decoding policy (:func:`bio_to_spans`)
--------------------------------------
Strict IOB2 input decodes one-to-one.  An ``I-X`` that does not continue an
entity of type ``X`` (after ``O``, at the start, or after another type) is
invalid IOB2.  We follow conlleval: it **starts a new entity** of type ``X``
(the annotator marked a mention, only the prefix is wrong), and the repair is
reported as an :class:`AlignIssue` with reason ``orphan_inside``.  With
``strict=True`` such input raises :class:`ValueError` instead.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from mmnerd.records import ENTITY_TYPES, Span

# --- offsets: code points <-> UTF-16 code units <-> UTF-8 bytes ------------------


class OffsetIndex:
    """Converts offsets into one text between code points, UTF-16 units and UTF-8 bytes.

    Build it once per text (O(n)); each conversion is then O(log n).  Conversions
    *to* code points raise :class:`ValueError` when the offset falls inside one
    character (between the two halves of a surrogate pair, or inside a
    multi-byte UTF-8 sequence) or outside the text.
    """

    def __init__(self, text: str):
        self.text = text
        self.n = len(text)
        # code point positions of characters that are not 1 unit wide
        self._astral = [i for i, ch in enumerate(text) if ord(ch) > 0xFFFF]
        self._u8_extra: list[int] = []  # cumulative extra UTF-8 bytes before code point i
        extra = 0
        self._u8_start = [0] * (self.n + 1)  # byte offset of code point i
        for i, ch in enumerate(text):
            self._u8_start[i] = i + extra
            o = ord(ch)
            extra += 0 if o < 0x80 else 1 if o < 0x800 else 2 if o < 0x10000 else 3
        self._u8_start[self.n] = self.n + extra
        self.utf16_len = self.n + len(self._astral)
        self.utf8_len = self._u8_start[self.n]
        # UTF-16 offset of the start of each astral character (sorted)
        self._astral_u16 = [p + k for k, p in enumerate(self._astral)]

    def _check_cp(self, cp: int) -> None:
        if not 0 <= cp <= self.n:
            raise ValueError(f"code point offset {cp} outside text of length {self.n}")

    def cp_to_utf16(self, cp: int) -> int:
        self._check_cp(cp)
        return cp + bisect.bisect_left(self._astral, cp)

    def utf16_to_cp(self, u: int) -> int:
        if not 0 <= u <= self.utf16_len:
            raise ValueError(f"UTF-16 offset {u} outside text of {self.utf16_len} units")
        k = bisect.bisect_left(self._astral_u16, u)  # astral chars starting before u
        if k > 0 and self._astral_u16[k - 1] + 1 == u:
            raise ValueError(f"UTF-16 offset {u} splits a surrogate pair")
        return u - k

    def cp_to_utf8(self, cp: int) -> int:
        self._check_cp(cp)
        return self._u8_start[cp]

    def utf8_to_cp(self, b: int) -> int:
        if not 0 <= b <= self.utf8_len:
            raise ValueError(f"UTF-8 offset {b} outside text of {self.utf8_len} bytes")
        i = bisect.bisect_left(self._u8_start, b)
        if self._u8_start[i] != b:
            raise ValueError(f"UTF-8 offset {b} falls inside a multi-byte character")
        return i


def cp_to_utf16(text: str, cp: int) -> int:
    return OffsetIndex(text).cp_to_utf16(cp)


def utf16_to_cp(text: str, u: int) -> int:
    return OffsetIndex(text).utf16_to_cp(u)


def cp_to_utf8(text: str, cp: int) -> int:
    return OffsetIndex(text).cp_to_utf8(cp)


def utf8_to_cp(text: str, b: int) -> int:
    return OffsetIndex(text).utf8_to_cp(b)


# --- checking spans that come from outside ---------------------------------------


@dataclass(frozen=True)
class SpanCheck:
    """Result of :func:`check_span`.

    ``ok`` spans are safe to use at ``[start, end)`` (code points).  ``reason`` is
    ``""`` when the offsets were right as given, ``"utf16"`` / ``"utf8"`` when
    they were read in that unit and converted, ``"trimmed"`` when surrounding
    whitespace was cut off; a flagged span (``ok=False``) has reason
    ``"mismatch"``, ``"out_of_range"`` or ``"empty"`` and must not be used.
    """

    start: int
    end: int
    ok: bool
    reason: str = ""


def check_span(text: str, start: int, end: int, surface: str | None) -> SpanCheck:
    """Check that ``text[start:end] == surface``; recover other offset units or flag.

    Tries, in order: code points as given; the offsets read as UTF-16 code units
    (what browsers and Label Studio < 1.23 send); as UTF-8 bytes; when the text
    has CRLF line breaks, code points and UTF-16 units counted in the text with
    CRLF folded to LF (what a page whose DOM normalised line breaks counts:
    reasons ``"lf"`` / ``"lf+utf16"``); then the same readings with surrounding
    whitespace trimmed from both sides.  When
    ``surface`` is empty or ``None`` nothing can be verified: the span is
    accepted only if it is in range and non-empty (reason ``"unchecked"``).
    Never guesses by searching the text for the surface: a span that matches
    none of the readings is flagged ``"mismatch"``.
    """
    if start >= end:
        return SpanCheck(start, end, False, "empty")
    if not surface:
        if 0 <= start < end <= len(text):
            return SpanCheck(start, end, True, "unchecked")
        return SpanCheck(start, end, False, "out_of_range")
    if 0 <= start < end <= len(text) and text[start:end] == surface:
        return SpanCheck(start, end, True, "")
    idx = OffsetIndex(text)
    readings: list[tuple[str, int, int]] = []
    if 0 <= start < end <= len(text):
        readings.append(("", start, end))
    for unit, conv in (("utf16", idx.utf16_to_cp), ("utf8", idx.utf8_to_cp)):
        try:
            s, e = conv(start), conv(end)
        except ValueError:
            continue
        if s < e:
            if text[s:e] == surface:
                return SpanCheck(s, e, True, unit)
            readings.append((unit, s, e))
    if "\r\n" in text:
        for unit, s, e in _lf_readings(text, start, end):
            if text[s:e] == surface or text[s:e].replace("\r\n", "\n") == surface:
                return SpanCheck(s, e, True, unit)
            readings.append((unit, s, e))
    stripped = surface.strip()
    if stripped:
        for unit, s, e in readings:
            piece = text[s:e]
            if piece.strip() == stripped:
                lead = len(piece) - len(piece.lstrip())
                trail = len(piece) - len(piece.rstrip())
                return SpanCheck(
                    s + lead, e - trail, True, f"{unit}+trimmed" if unit else "trimmed"
                )
    if not readings:
        return SpanCheck(start, end, False, "out_of_range")
    return SpanCheck(start, end, False, "mismatch")


def _lf_readings(text: str, start: int, end: int) -> list[tuple[str, int, int]]:
    """Offsets counted in ``text`` with CRLF folded to LF, mapped back to ``text``."""
    back: list[int] = []  # index in the folded text -> index in text
    i = 0
    while i < len(text):
        back.append(i)
        i += 2 if text.startswith("\r\n", i) else 1
    back.append(len(text))
    folded = text.replace("\r\n", "\n")
    out = []
    fidx = OffsetIndex(folded)
    for unit, conv in (("lf", lambda x: x), ("lf+utf16", fidx.utf16_to_cp)):
        try:
            s, e = conv(start), conv(end)
        except ValueError:
            continue
        if 0 <= s < e <= len(folded):
            out.append((unit, back[s], back[e]))
    return out


# --- spans -> IOB2 ------------------------------------------------------------------


@dataclass(frozen=True)
class AlignIssue:
    """Something that happened to one span while converting: snapped, dropped, repaired."""

    span: Span
    reason: str  # snapped_outward | snapped_inward | no_token | overlap | bad_label | orphan_inside
    detail: str = ""


@dataclass
class Alignment:
    """Output of :func:`spans_to_bio`: the tags, the spans they encode, and what changed."""

    tags: list[str]
    spans: list[Span]  # token-aligned spans actually encoded in ``tags``, sorted
    issues: list[AlignIssue] = field(default_factory=list)

    @property
    def dropped(self) -> list[AlignIssue]:
        return [i for i in self.issues if i.reason in ("no_token", "overlap", "bad_label")]


def _token_range(
    span: Span, offsets: Sequence[tuple[int, int]]
) -> tuple[int, int, list[str]] | None:
    """Indices [first, last] of the tokens a span maps to, plus snap reasons; None if none."""
    if span.end <= span.start:
        return None
    hit = [
        (i, s, e)
        for i, (s, e) in enumerate(offsets)
        if s < span.end and span.start < e and e > s  # overlaps (non-empty tokens only)
    ]
    if not hit:
        return None
    reasons: list[str] = []
    keep = []
    for i, s, e in hit:
        covered = min(e, span.end) - max(s, span.start)
        if covered == e - s:
            keep.append(i)
        elif len(hit) == 1 or 2 * covered >= e - s:
            keep.append(i)
            reasons.append("snapped_outward")
        else:
            reasons.append("snapped_inward")
    if not keep:  # every touched token was only grazed: keep the most covered one
        best = max(hit, key=lambda t: (min(t[2], span.end) - max(t[1], span.start), -t[0]))
        keep = [best[0]]
        reasons = ["snapped_outward"]
    return keep[0], keep[-1], reasons


def spans_to_bio(
    spans: Sequence[Span],
    token_offsets: Sequence[tuple[int, int]],
    text: str | None = None,
) -> Alignment:
    """Encode spans as strict IOB2 tags over tokens (see the module docstring for the policy).

    ``token_offsets`` are code-point ``(start, end)`` pairs, in text order.  When
    ``text`` is given, the returned spans carry their surface text.
    """
    tags = ["O"] * len(token_offsets)
    owner: list[int] = [-1] * len(token_offsets)
    issues: list[AlignIssue] = []
    placed: list[tuple[int, int, str]] = []
    order = sorted(range(len(spans)), key=lambda k: (-(spans[k].end - spans[k].start), k))
    for k in order:
        sp = spans[k]
        if sp.label not in ENTITY_TYPES:
            issues.append(AlignIssue(sp, "bad_label", sp.label))
            continue
        rng = _token_range(sp, token_offsets)
        if rng is None:
            issues.append(AlignIssue(sp, "no_token"))
            continue
        first, last, reasons = rng
        clash = [owner[i] for i in range(first, last + 1) if owner[i] >= 0]
        if clash:
            other = spans[clash[0]]
            issues.append(
                AlignIssue(sp, "overlap", f"with {other.label} [{other.start},{other.end})")
            )
            continue
        for r in dict.fromkeys(reasons):
            issues.append(AlignIssue(sp, r))
        for i in range(first, last + 1):
            owner[i] = k
            tags[i] = ("B-" if i == first else "I-") + sp.label
        placed.append((first, last, sp.label))
    out = []
    for first, last, label in sorted(placed):
        s, e = token_offsets[first][0], token_offsets[last][1]
        out.append(Span(s, e, label, text[s:e] if text is not None else ""))
    return Alignment(tags, out, issues)


# --- IOB2 -> spans ------------------------------------------------------------------


def iob2_chunks(tags: Sequence[str]) -> Iterator[tuple[int, int, str, bool]]:
    """The entities of IOB2 ``tags``: ``(first token, last token, type, orphan)``, in order.

    The one IOB2 decoder in mmnerd (see "Decoding policy"): ``orphan`` marks an entity
    that starts with an ``I-X`` continuing nothing of type ``X``, read as ``B-X``.
    Raises :class:`ValueError` on a tag outside B-/I- over PER/LOC/ORG/MISC and O.
    """
    cur: tuple[int, int, str, bool] | None = None
    for i, tag in enumerate(tags):
        if tag == "O":
            if cur is not None:
                yield cur
            cur = None
            continue
        prefix, _, typ = tag.partition("-")
        if prefix not in ("B", "I") or typ not in ENTITY_TYPES:
            raise ValueError(f"token {i}: unknown tag {tag!r}")
        if prefix == "I" and cur is not None and cur[2] == typ:
            cur = (cur[0], i, typ, cur[3])
            continue
        if cur is not None:
            yield cur
        cur = (i, i, typ, prefix == "I")
    if cur is not None:
        yield cur


def iob2_problems(tags: Sequence[str]) -> list[tuple[int, str]]:
    """(token index, problem) for every tag that breaks strict IOB2 over our label set."""
    try:
        return [
            (first, f"{tags[first]} does not continue an entity of type {typ}")
            for first, _, typ, orphan in iob2_chunks(tags)
            if orphan
        ]
    except ValueError:  # an unknown tag: report each one
        known = {"O"} | {f"{p}-{t}" for p in "BI" for t in ENTITY_TYPES}
        return [(i, f"unknown tag {tag!r}") for i, tag in enumerate(tags) if tag not in known]


def bio_to_spans(
    tags: Sequence[str],
    token_offsets: Sequence[tuple[int, int]],
    text: str | None = None,
    strict: bool = False,
) -> tuple[list[Span], list[AlignIssue]]:
    """Decode IOB2 tags into spans (code-point offsets from ``token_offsets``).

    Returns ``(spans, issues)``; ``issues`` lists repaired orphan ``I-`` tags
    (see the module docstring).  ``strict=True`` raises :class:`ValueError` on
    any IOB2 violation instead.  Unknown tags always raise.
    """
    if len(tags) != len(token_offsets):
        raise ValueError(f"{len(tags)} tags for {len(token_offsets)} tokens")
    spans: list[Span] = []
    issues: list[AlignIssue] = []
    for first, last, typ, orphan in iob2_chunks(tags):
        s, e = token_offsets[first][0], token_offsets[last][1]
        if orphan:
            if strict:
                why = f"{tags[first]} does not continue an entity of type {typ}"
                raise ValueError(f"token {first}: {why}")
            fs, fe = token_offsets[first]
            issues.append(AlignIssue(Span(fs, fe, typ), "orphan_inside", f"token {first}"))
        spans.append(Span(s, e, typ, text[s:e] if text is not None else ""))
    return spans, issues


def repair_iob2(tags: Sequence[str]) -> list[str]:
    """Rewrite orphan ``I-X`` tags as ``B-X`` (same policy as :func:`bio_to_spans`; an
    unknown tag raises :class:`ValueError`)."""
    out = list(tags)
    for first, _, typ, orphan in iob2_chunks(tags):
        if orphan:
            out[first] = f"B-{typ}"
    return out
