"""seqeval strict IOB2 scores: overall, per type, per language, image-decided posts."""

from __future__ import annotations

import pytest

from baselines.metrics import entity_scores, evaluate_tags


def test_strict_iob2_scores() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"], ["O", "B-MISC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"], ["O", "B-LOC"]]
    res = entity_scores(gold, pred)
    # strict: "I-PER I-PER" is no entity; hits: LOC (post 0), ORG; predicted: LOC, ORG, LOC
    assert res["overall"]["precision"] == pytest.approx(2 / 3)
    assert res["overall"]["recall"] == pytest.approx(2 / 4)
    assert res["overall"]["support"] == 4
    assert res["per_type"]["PER"]["f1"] == 0.0 and res["per_type"]["ORG"]["f1"] == 1.0
    assert res["per_type"]["LOC"]["precision"] == pytest.approx(0.5)
    assert set(res["per_type"]) == {"PER", "LOC", "ORG", "MISC"}


def test_per_language_and_image_decided() -> None:
    gold = [["B-PER"], ["B-LOC"], ["O"]]
    pred = [["B-PER"], ["B-ORG"], ["O"]]
    res = evaluate_tags(gold, pred, ["en", "fr", "de"], [True, False, None])
    assert res["per_language"]["en"]["f1"] == 1.0 and res["per_language"]["fr"]["f1"] == 0.0
    assert res["per_language"]["de"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert res["image_decided"]["f1"] == 1.0 and res["image_decided"]["support"] == 1
    assert "image_decided" not in evaluate_tags(gold, pred, ["en"] * 3, [None] * 3)
    assert entity_scores([], [])["overall"]["f1"] == 0.0


def test_mean_and_sample_std_over_seeds() -> None:
    """Report figures are mean ± the *sample* standard deviation over seeds (n - 1)."""
    from baselines.report import mean_std

    ms = mean_std([0.5, 0.7, 0.9])
    assert ms["mean"] == pytest.approx(0.7) and ms["std"] == pytest.approx(0.2)
    assert mean_std([0.8]) == {"mean": 0.8, "std": 0.0, "values": [0.8]}
    assert mean_std([]) == {"mean": 0.0, "std": 0.0, "values": []}
