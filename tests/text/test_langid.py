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


def _language_stage(posts, **language):
    from mmnerd.config import PipelineConfig
    from mmnerd.pipeline import StageContext, StageStats
    from mmnerd.text.stages import LanguageStage

    cfg = PipelineConfig.model_validate({"language": language})
    ctx = StageContext(cfg, StageStats("language"))
    return list(LanguageStage().run(posts, ctx)), ctx.stats


def test_trust_hint_keeps_a_declared_language_detection_gets_wrong():
    from mmnerd.records import Post

    def posts():
        return [Post(id="a", source="d", source_id="a", text="Gol de Messi en Barcelona",
                     lang_hint="es"),
                Post(id="b", source="d", source_id="b", text="The match was great tonight",
                     lang_hint="de"),  # a wrong declaration: kept, but counted
                Post(id="c", source="d", source_id="c", text="Bonne nuit tout le monde",
                     lang_hint="")]  # fmt: skip

    out, _ = _language_stage(posts())
    assert out[0].reason == "lang:ca"  # what detection makes of it
    out, stats = _language_stage(posts(), trust_hint=True)
    assert [(p.ok, p.lang, p.lang_score) for p in out] == [
        (True, "es", 1.0), (True, "de", 1.0), (True, "fr", out[2].lang_score)]  # fmt: skip
    assert stats.flagged["lang_from_hint"] == 2 and stats.flagged["lang_hint_disputed"] == 1
