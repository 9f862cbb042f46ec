from hypothesis import given, settings
from hypothesis import strategies as st

from mmnerd.text.tokenize import tokenize


def test_social_media_units_stay_whole():
    text = "Merci @Macron 🇫🇷 pour #Paris2024 😀! 👨‍👩‍👧 voir https://t.co/abc?x=1. (Amazon)😀"
    tokens, _ = tokenize(text, "fr")
    for unit in ["@Macron", "🇫🇷", "#Paris2024", "👨‍👩‍👧", "https://t.co/abc?x=1", "Amazon"]:
        assert unit in tokens, unit
    assert "." in tokens  # trailing punctuation is not part of the URL
    assert tokens.count("😀") == 2


def test_mastodon_handles_keycaps_and_skin_tones():
    tokens, _ = tokenize("hi @anna@mastodon.social 1️⃣ 👍🏽 ok", "en")
    assert tokens == ["hi", "@anna@mastodon.social", "1️⃣", "👍🏽", "ok"]


def test_whitespace_and_crlf_never_in_tokens():
    text = "Hola  Madrid\r\n\r\nBarça  e\u0301te"
    tokens, offsets = tokenize(text, "es")
    assert tokens == ["Hola", "Madrid", "Barça", "e\u0301te"]
    assert [text[s:e] for s, e in offsets] == tokens


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80), st.sampled_from(["en", "de"]))
def test_offsets_always_point_at_the_token(text, lang):
    tokens, offsets = tokenize(text, lang)
    assert [text[s:e] for s, e in offsets] == tokens
    assert all(t.strip() == t and t for t in tokens)
    assert all(a[1] <= b[0] for a, b in zip(offsets, offsets[1:], strict=False))
