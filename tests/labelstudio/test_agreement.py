"""Agreement and vote on a constructed case, against values computed by hand (no server)."""

from __future__ import annotations

import pytest

from mmnerd.labelstudio.adjudicate import majority_vote
from mmnerd.labelstudio.agreement import cohen_kappa, compute, entity_f1, write_report
from mmnerd.records import Annotation, Post, Span

TEXT_EN = "Anna met Bob in Paris"
OFFS_EN = [(0, 4), (5, 8), (9, 12), (13, 15), (16, 21)]
TEXT_FR = "il pleut encore"
OFFS_FR = [(0, 2), (3, 8), (9, 15)]


def _posts() -> list[Post]:
    a = [Span(0, 4, "PER"), Span(9, 12, "PER"), Span(16, 21, "LOC")]
    b = [Span(0, 4, "PER"), Span(9, 12, "ORG"), Span(16, 21, "LOC")]
    en = Post(
        id="x:1",
        source="x",
        source_id="1",
        text=TEXT_EN,
        lang="en",
        token_offsets=OFFS_EN,
        annotations=[Annotation("A", a, 1), Annotation("B", b, 2)],
    )
    fr = Post(
        id="x:2",
        source="x",
        source_id="2",
        text=TEXT_FR,
        lang="fr",
        token_offsets=OFFS_FR,
        annotations=[
            Annotation("A", [], 3),
            Annotation("B", [], 4),
            Annotation("C", [Span(0, 2, "PER")], 5, cancelled=True),  # skipped: ignored
        ],
    )
    return [en, fr]


def test_hand_computed_values(tmp_path):
    r = compute(_posts())
    assert r["annotators"] == ["A", "B"]
    en = r["per_language"]["en"]
    # entities: A={Anna/PER, Bob/PER, Paris/LOC}, B={Anna/PER, Bob/ORG, Paris/LOC}: 2*2/(3+3)
    assert en["entity_f1"] == pytest.approx(4 / 6, abs=1e-4)
    # tags A: B-PER O B-PER O B-LOC / B: B-PER O B-ORG O B-LOC -> po=4/5, pe=7/25
    assert en["token_kappa"] == pytest.approx((0.8 - 0.28) / 0.72, abs=1e-4)
    assert en["per_type"]["PER"]["entity_f1"] == pytest.approx(2 / 3, abs=1e-4)
    # PER binary: A TFTFF, B TFFFF -> po=0.8, pe=(2*1+3*4)/25=0.56
    assert en["per_type"]["PER"]["token_kappa"] == pytest.approx(0.24 / 0.44, abs=1e-4)
    assert en["per_type"]["ORG"]["entity_f1"] == 0.0
    assert en["per_type"]["LOC"]["entity_f1"] == 1.0
    assert en["per_type"]["MISC"]["entity_f1"] is None  # nobody used MISC
    fr = r["per_language"]["fr"]
    assert fr["token_kappa"] == 1.0 and fr["entity_f1"] == 1.0 and fr["tokens"] == 3
    # pooled over both posts (8 tokens): po=7/8, pe=(2*1+5*5+1*1)/64
    o = r["overall"]
    assert o["token_kappa"] == pytest.approx((7 / 8 - 28 / 64) / (1 - 28 / 64), abs=1e-4)
    assert o["entity_f1"] == pytest.approx(4 / 6, abs=1e-4)
    assert r["confusion"]["A|B"] == {"LOC|LOC": 1, "O|O": 5, "PER|ORG": 1, "PER|PER": 1}

    out = write_report(_posts(), tmp_path / "agreement")
    md = (tmp_path / "agreement" / "agreement.md").read_text()
    assert "| en | 1 | 5 | 0.667 | 0.722 |" in md
    pngs = sorted(p.name for p in (tmp_path / "agreement").glob("*.png"))
    assert pngs == ["pair_A_B.png", "pairwise_f1.png"]
    assert (tmp_path / "agreement" / "pair_A_B.png").read_bytes()[:4] == b"\x89PNG"
    assert len(out["files"]) == 2


def test_vote_ties_and_kappa_edges():
    en = _posts()[0]
    v = majority_vote(en.annotations, en.text)
    assert [(s.text, s.label) for s in v.spans] == [("Anna", "PER"), ("Paris", "LOC")]
    assert v.ties == [(9, 12, "ORG"), (9, 12, "PER")] and v.needs_adjudication
    assert v.agreement == pytest.approx(4 / 6)
    three = [*en.annotations, Annotation("C", list(en.annotations[0].spans), 9)]
    v3 = majority_vote(three, en.text)
    assert [s.label for s in v3.spans] == ["PER", "PER", "LOC"] and not v3.ties
    assert not v3.needs_adjudication  # 2 of 3 decide; mean F1 = (2/3+1+2/3)/3 > 0.5
    assert entity_f1([], []) == 1.0
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["O", "O"], ["O", "O"]) == 1.0
    assert cohen_kappa(["A", "B"], ["B", "A"]) == pytest.approx(-1.0)


def test_report_clears_temp_files_a_killed_pull_left(tmp_path):
    out = tmp_path / "agreement"
    out.mkdir()
    stale = out / ".agreement.json.ftqmw9tn.tmp"  # what kill -9 mid-write leaves
    stale.write_text('{"half": ')
    write_report(_posts(), out)
    assert not stale.exists() and not list(out.glob(".*.tmp"))
    assert (out / "agreement.json").read_text().startswith("{")
