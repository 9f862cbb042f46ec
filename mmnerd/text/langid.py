"""Language identification with py3langid restricted to candidate languages.

URLs, @mentions, #hashtags and emoji are removed before detection: they are
not language evidence and skew short posts.  See docs/language.md for the
measurement behind the choice of detector.

A post written mostly in a script none of the candidates uses (Arabic, Hebrew,
Cyrillic, CJK, ... when the candidates are Latin-script languages) would be
forced onto the closest candidate by the restricted model, with a low but
arbitrary probability.  So when most letters are not Latin, the unrestricted
model answers first, and a language outside the candidates is returned as is
(the language stage then drops the post as ``lang:<code>``, a non-target).
"""

from __future__ import annotations

from functools import lru_cache

import regex

from mmnerd.text.tokenize import PROTECTED

_LETTER = regex.compile(r"\p{L}")
_LATIN = regex.compile(r"\p{Script=Latin}")


@lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...]):
    """py3langid restricted to ``candidates`` (``()`` = every language it knows)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if candidates:
        ident.set_languages(list(candidates))
    return ident


def language_evidence(text: str) -> str:
    """The text with URLs, mentions, hashtag marks and emoji removed."""
    return PROTECTED.sub(lambda m: m.group()[1:] if m.group()[0] == "#" else " ", text)


def detect(text: str, candidates: tuple[str, ...]) -> tuple[str, float]:
    """Return (language code, probability in [0, 1]); ("", 0.0) if no evidence is left."""
    evidence = language_evidence(text).strip()
    if not any(ch.isalpha() for ch in evidence):
        return "", 0.0
    letters = len(_LETTER.findall(evidence))
    if len(_LATIN.findall(evidence)) * 2 < letters:  # mostly another script
        lang, prob = _identifier(()).classify(evidence)
        if lang not in candidates:
            return str(lang), float(prob)
    lang, prob = _identifier(tuple(sorted(candidates))).classify(evidence)
    return str(lang), float(prob)
