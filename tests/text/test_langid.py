import pytest

from mmnerd.text.langid import detect, language_evidence

CANDIDATES = ("en", "fr", "de", "es", "it", "pt", "nl")


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Great match tonight with @anna at the stadium, what a goal 😀 #football", "en"),
        ("Quelle belle soirée à Lyon avec les amis, on se revoit demain ! 🇫🇷", "fr"),
        ("Heute waren wir im Museum in Berlin, das Wetter war leider schlecht 🌧", "de"),
        ("Hoy fuimos a la playa con mi familia, ¡qué calor hacía en Valencia! ☀️", "es"),
        ("Oggi siamo andati al mare con gli amici, che bella giornata a Napoli", "it"),
        ("Hoje fomos à praia com os amigos, que dia lindo em Lisboa", "pt"),
        ("Vandaag zijn we naar het strand geweest, wat een mooie dag in Utrecht", "nl"),
    ],
)
def test_detects_target_and_other_languages(text, lang):
    got, prob = detect(text, CANDIDATES)
    assert got == lang
    assert 0.5 <= prob <= 1.0


def test_mentions_urls_emoji_are_not_evidence():
    assert language_evidence("@john https://x.org 😀 #Berlin").split() == ["Berlin"]


def test_no_letters_means_no_language():
    assert detect("😀 https://x.org @a", CANDIDATES) == ("", 0.0)
