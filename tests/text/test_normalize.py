from mmnerd.records import Span
from mmnerd.text.normalize import normalize


def _span(text: str, surface: str, label: str) -> Span:
    i = text.index(surface)
    return Span(i, i + len(surface), label, surface)


def test_url_placeholder_moves_spans_after_it():
    text = "Vu @Macron sur https://x.org/a?b=1 et\r\nParis 😀 !"
    spans = [_span(text, "@Macron", "PER"), _span(text, "Paris", "LOC")]
    new, moved = normalize(text, spans, url_placeholder="URL")
    assert new == "Vu @Macron sur URL et\nParis 😀 !"
    assert [(new[s.start : s.end], s.label) for s in moved] == [
        ("@Macron", "PER"),
        ("Paris", "LOC"),
    ]
    assert all(s.text == new[s.start : s.end] for s in moved)


def test_mention_placeholder_keeps_entity_on_placeholder():
    text = "Thanks @Amazon for the parcel from Seattle"
    spans = [_span(text, "@Amazon", "ORG"), _span(text, "Seattle", "LOC")]
    new, moved = normalize(text, spans, url_placeholder="", mention_placeholder="@USER")
    assert new == "Thanks @USER for the parcel from Seattle"
    assert [new[s.start : s.end] for s in moved] == ["@USER", "Seattle"]


def test_keep_everything_when_placeholders_are_empty():
    text = "see www.example.org now"
    new, _ = normalize(text, [], url_placeholder="", mention_placeholder="")
    assert new == text
