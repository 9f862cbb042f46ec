"""Tokenisation with spaCy blank tokenizers, keeping social-media units whole.

URLs, @mentions (including Mastodon's ``@user@instance``), #hashtags and each
emoji (flags, ZWJ sequences, skin tones, keycaps) are single tokens; the text
between them goes through ``spacy.blank(lang)`` (no model download).  Offsets
are Python code-point indices into the input, half-open.
"""

from __future__ import annotations

from functools import lru_cache

import regex

_EMOJI = (
    r"\p{Regional_Indicator}{2}"  # flags
    r"|[0-9#*]\uFE0F?\u20E3"  # keycaps
    r"|\p{Extended_Pictographic}[\uFE0F\p{EMod}]*"
    r"(?:\u200D\p{Extended_Pictographic}[\uFE0F\p{EMod}]*)*"
)
_URL = r"(?:https?://|www\.)[^\s<>\"]+?(?=[.,;:!?)\]}'\"»…]*(?:\s|$))"
_MENTION = r"(?<![\w@])@\w+(?:@[\w-]+(?:\.[\w-]+)+)?"
_HASHTAG = r"(?<![\w#&])#\w+"
PROTECTED = regex.compile(f"{_URL}|{_MENTION}|{_HASHTAG}|{_EMOJI}", regex.UNICODE)
"""Units that must stay single tokens."""

SPACY_LANGS = {"en", "fr", "de", "es", "it", "pt", "nl", "ca", "ro", "pl"}


@lru_cache(maxsize=16)
def _tokenizer(lang: str):
    import spacy

    return spacy.blank(lang if lang in SPACY_LANGS else "xx").tokenizer


def tokenize(text: str, lang: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split ``text`` into tokens; returns (tokens, [(start, end), ...]) in code points.

    Whitespace (including CR/LF) is never part of a token, and
    ``text[start:end] == token`` always holds.
    """
    tokens: list[str] = []
    offsets: list[tuple[int, int]] = []
    tok = _tokenizer(lang)

    def plain(start: int, end: int) -> None:
        if start >= end:
            return
        for t in tok(text[start:end]):
            if t.is_space or not t.text.strip():
                continue
            s = start + t.idx
            # spaCy may keep trailing whitespace out of t.text already; strip to be sure
            word = t.text.strip()
            s += t.text.index(word)
            tokens.append(word)
            offsets.append((s, s + len(word)))

    pos = 0
    for m in PROTECTED.finditer(text):
        plain(pos, m.start())
        tokens.append(m.group())
        offsets.append((m.start(), m.end()))
        pos = m.end()
    plain(pos, len(text))
    return tokens, offsets
