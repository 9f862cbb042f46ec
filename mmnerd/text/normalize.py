"""Normalisation that keeps offsets: placeholders for URLs and (optionally) mentions,
CRLF (and a lone CR) -> LF, control characters removed.  Spans given in the original
text are carried over to the new text.

Removed (:data:`CONTROL_RE`): C0 controls except TAB and LF, DEL, C1 controls
(U+0080-U+009F), the bidirectional controls (U+061C, U+200E/F, U+202A-U+202E,
U+2066-U+2069) and U+FEFF.  They are invisible, can reorder what annotators see
(bidi overrides) and break tokens; the text keeps every other character, ZWJ and
variation selectors included (emoji sequences need them).

The text is not Unicode-normalised (no NFC): annotators and Label Studio see
exactly the characters of the source, combining accents included.
"""

from __future__ import annotations

import regex

from mmnerd.records import Span
from mmnerd.text.tokenize import _MENTION, _URL

_URL_RE = regex.compile(_URL)
_MENTION_RE = regex.compile(_MENTION)
CONTROL_RE = regex.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
"""Characters :func:`normalize` removes (CR is handled apart: CRLF and lone CR -> LF)."""


def rewrite(
    text: str, edits: list[tuple[int, int, str]]
) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Apply non-overlapping edits (start, end, replacement), sorted by start.

    Returns the new text and the edited regions as (old_start, old_end, new_start, new_end).
    """
    out: list[str] = []
    regions: list[tuple[int, int, int, int]] = []
    pos = new_pos = 0
    for start, end, repl in edits:
        out.append(text[pos:start])
        new_pos += start - pos
        out.append(repl)
        regions.append((start, end, new_pos, new_pos + len(repl)))
        new_pos += len(repl)
        pos = end
    out.append(text[pos:])
    return "".join(out), regions


def map_offset(offset: int, regions: list[tuple[int, int, int, int]], side: str) -> int:
    """Map an old offset to the new text.  Inside an edited region a start maps to the
    region's new start and an end to its new end (``side`` is "start" or "end")."""
    shift = 0
    for o_s, o_e, n_s, n_e in regions:
        if offset <= o_s:
            break
        if offset < o_e:
            return n_s if side == "start" else n_e
        shift = n_e - o_e
    return offset + shift


def normalize(
    text: str, spans: list[Span], url_placeholder: str = "URL", mention_placeholder: str = ""
) -> tuple[str, list[Span]]:
    """Return the normalised text and the spans moved onto it (surface text refreshed)."""
    edits: list[tuple[int, int, str]] = []
    if url_placeholder:
        edits += [(m.start(), m.end(), url_placeholder) for m in _URL_RE.finditer(text)]
    if mention_placeholder:
        edits += [(m.start(), m.end(), mention_placeholder) for m in _MENTION_RE.finditer(text)]
    edits += [
        (i, i + 2 if text[i + 1 : i + 2] == "\n" else i + 1, "\n")
        for i, ch in enumerate(text)
        if ch == "\r"
    ]
    edits += [(m.start(), m.end(), "") for m in CONTROL_RE.finditer(text)]
    edits.sort()
    kept: list[tuple[int, int, str]] = []
    for e in edits:  # drop any edit overlapping an earlier one
        if not kept or e[0] >= kept[-1][1]:
            kept.append(e)
    new_text, regions = rewrite(text, kept)
    moved = []
    for s in spans:
        start = map_offset(s.start, regions, "start")
        end = map_offset(s.end, regions, "end")
        moved.append(Span(start, end, s.label, new_text[start:end]))
    return new_text, moved
