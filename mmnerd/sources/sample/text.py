"""Composing a sample post's text and gold spans from the lexicons (social-media noise
included: mentions, hashtags, URLs, emoji, NFD accents, CRLF)."""

from __future__ import annotations

import random
import unicodedata

from mmnerd.records import Span
from mmnerd.sources.sample.lexicon import (
    EMOJI,
    LEXICONS,
    TOKEN_RE,
    URL_CHARS,
    USER_HANDLES,
    Lexicon,
)

# ---------------------------------------------------------------------------
# Text generation
# ---------------------------------------------------------------------------


class _TextBuilder:
    """Concatenates fragments and records code-point spans of the entity fragments."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[Span] = []
        self.decided: list[list[int]] = []

    def add(self, s: str, label: str = "", decided: bool = False) -> None:
        start = self.length
        self.parts.append(s)
        self.length += len(s)
        if label:
            self.spans.append(Span(start, self.length, label, s))
            if decided:
                self.decided.append([start, self.length])

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _ascii(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if c.isascii() and c.isalnum())


def _surface(rng: random.Random, name: str, label: str) -> str:
    """How a name appears in a post: plain, @mention, #hashtag, or with combining accents."""
    r = rng.random()
    if label in ("PER", "ORG") and r < 0.15:
        handle = _ascii(name.split()[-1] if label == "PER" and rng.random() < 0.6 else name)
        return "@" + handle
    if label in ("LOC", "MISC") and r < 0.15:
        return "#" + "".join(c for c in name if c.isalnum())
    if r > 0.93 and name != unicodedata.normalize("NFD", name):
        return unicodedata.normalize("NFD", name)  # "José" -> "Jose\u0301"
    return name


def _fill(
    rng: random.Random,
    b: _TextBuilder,
    template: str,
    lex: Lexicon,
    amb: tuple[str, str] | None = None,
) -> None:
    """Append ``template`` with its slots filled; ``amb`` = (surface, type) for {AMB}."""
    pos = 0
    for m in TOKEN_RE.finditer(template):
        literal = template[pos : m.start()]
        if literal:
            nfd = rng.random() < 0.04
            b.add(unicodedata.normalize("NFD", literal) if nfd else literal)
        slot = m.group(1)
        if slot == "AMB":
            assert amb is not None
            name, label = amb
            shown = "#" + name if rng.random() < 0.1 else name
            b.add(shown, label, decided=True)
        else:
            b.add(_surface(rng, rng.choice(lex.names(slot)), slot), slot)
        pos = m.end()
    if template[pos:]:
        b.add(template[pos:])


def _sep(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.06:
        return "\r\n"
    if r < 0.10:
        return "\n\n"
    if r < 0.15:
        return "  "
    return " "


def compose(
    rng: random.Random, lang: str, amb: tuple[str, str] | None
) -> tuple[str, list[Span], list[list[int]]]:
    """One post's text, gold spans and image-decided spans."""
    lex = LEXICONS[lang]
    b = _TextBuilder()
    if rng.random() < 0.12:
        b.add(rng.choice(USER_HANDLES))
        b.add(" ")
    if amb is not None:
        _fill(rng, b, rng.choice(lex.ambiguous), lex, amb)
    else:
        _fill(rng, b, rng.choice(lex.templates), lex)
    ends_sentence = b.text.rstrip()[-1:] in (".", "!", "?")
    if rng.random() < 0.55:
        if not ends_sentence:
            b.add(rng.choice((".", ".", "!", " !!", "...")))
        b.add(_sep(rng))
        b.add(rng.choice(lex.fillers))
    elif not ends_sentence and rng.random() < 0.5:
        b.add(rng.choice((".", "!", "...")))
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        b.add(" ")
        b.add(rng.choice(EMOJI))
    if rng.random() < 0.4:
        for tag in rng.sample(lex.tags, rng.choice((1, 1, 2))):
            b.add(" ")
            b.add(tag)
    if rng.random() < 0.3:
        b.add(" ")
        code = "".join(rng.choice(URL_CHARS) for _ in range(7))
        host = rng.choice(("https://example.invalid/l/", "https://www.example.org/p/"))
        b.add(host + code)
    return b.text, b.spans, b.decided
