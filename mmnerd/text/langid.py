"""Language identification with py3langid restricted to candidate languages.

URLs, @mentions, #hashtags and emoji are removed before detection: they are
not language evidence and skew short posts.  See docs/language.md for the
measurement behind the choice of detector.
"""

from __future__ import annotations

from functools import lru_cache

from mmnerd.text.tokenize import PROTECTED


@lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...]):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
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
    lang, prob = _identifier(tuple(sorted(candidates))).classify(evidence)
    return str(lang), float(prob)
