"""Predicting from a saved checkpoint reproduces the trainer's own predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.config import TrainConfig, model_config_for
from baselines.predict import Predictor, entities, main, simple_tokenize
from baselines.train import Evaluator, ImageFeeder, build_model, save_checkpoint, train_run


def test_entities_and_tokenize() -> None:
    toks = ["I", "saw", "Marie", "Curie", "in", "Paris"]
    tags = ["O", "O", "B-PER", "I-PER", "I-LOC", "B-LOC"]
    assert entities(toks, tags) == [
        {"start": 2, "end": 4, "label": "PER", "text": "Marie Curie"},
        {"start": 5, "end": 6, "label": "LOC", "text": "Paris"},
    ]
    assert simple_tokenize("Hi @Macron, see https://x.org/a #Paris!") == [
        "Hi", "@Macron", ",", "see", "https://x.org/a", "#Paris", "!",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["mner2m", "bilstm_crf"])
def test_predictor_matches_trainer(prepared, tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    mcfg = model_config_for(name, vit_image_size=32, cnn_image_size=32)
    tcfg = TrainConfig(epochs=1, batch_size=32, lr=3e-3)
    res = train_run(mcfg, tcfg, prepared, tmp_path / "ck", log=lambda m: None)
    tagger = Predictor.load(res.checkpoint)
    exs = prepared.data.splits["test"][:12]
    posts = [
        {"id": e.id, "tokens": e.tokens, "image": prepared.data.images.get(e.image_key)}
        for e in exs
    ]
    got = tagger.predict(posts)
    # the trainer's evaluator on the same model weights
    ev = Evaluator(tagger.model, prepared, ImageFeeder(tagger.model, prepared, False), tcfg)
    want = ev.predict("test")[:12]
    assert [g["tags"] for g in got] == want
    assert [g["id"] for g in got] == [e.id for e in exs]


def test_predict_cli(prepared, tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    mcfg = model_config_for("text_crf")
    model = build_model(mcfg, prepared)
    ck = save_checkpoint(model, mcfg, TrainConfig(), prepared, tmp_path / "ck", 1, 0.0)
    src = tmp_path / "posts.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "I saw Jordan in Paris"}) + "\n")
    assert main(["--checkpoint", str(ck), "--input", str(src)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["id"] == "a" and len(row["tags"]) == len(row["tokens"]) == 5
    assert main(["--checkpoint", str(tmp_path), "--input", str(src)]) == 2


def test_confidence_is_the_crf_probability_of_the_predicted_path(prepared, tmp_path) -> None:
    """``confidence`` = exp(score(path) - log Z) under the decoding's constrained CRF, checked
    against the CRF's own score / forward algorithm; a temperature flattens it; clusters are
    ints in range."""
    from baselines.data import load_export
    from baselines.predict import confidences, kmeans, path_log_probs

    torch.manual_seed(0)
    mcfg = model_config_for("bilstm_crf")
    res = train_run(mcfg, TrainConfig(epochs=2, batch_size=32, lr=3e-3), prepared,
                    tmp_path / "ck", log=lambda m: None)  # fmt: skip
    tagger = Predictor.load(res.checkpoint)
    data = load_export(prepared.data.root)
    exs = data.splits["dev"][:20]
    scored = tagger.score(exs, data.images)
    logp = path_log_probs(tagger.model, scored)
    crf = tagger.model.crf
    for i in range(len(exs)):
        em = scored.emissions[i].unsqueeze(0)
        tags = torch.tensor([scored.paths[i]])
        mask = torch.ones_like(tags, dtype=torch.bool)
        want = crf.score(em, tags, mask, True) - crf.log_partition(em, mask, True)
        assert abs(float(want.detach()) - logp[i]) < 1e-4
    c1 = confidences(tagger.model, scored)
    hot = confidences(tagger.model, scored, 5.0)
    assert ((c1 > 0) & (c1 <= 1)).all() and (hot <= c1 + 1e-9).all()  # flatter: less sure
    fit = tagger.calibrate(data.splits["dev"], data.images)
    assert fit["posts"] == len(data.splits["dev"])
    assert fit["log_loss_after"] <= fit["log_loss_before"]
    labels = kmeans(scored.features, 4)
    assert len(labels) == 20 and set(labels) <= {0, 1, 2, 3} and len(set(labels)) > 1
    assert list(kmeans(scored.features, 4)) == list(labels)  # seeded


def test_predict_cli_writes_confidence_and_cluster(prepared, synth_export, tmp_path, capsys):
    torch.manual_seed(0)
    mcfg = model_config_for("text_crf")
    model = build_model(mcfg, prepared)
    ck = save_checkpoint(model, mcfg, TrainConfig(), prepared, tmp_path / "ck", 1, 0.0)
    src = tmp_path / "posts.jsonl"
    lines = [json.dumps({"id": f"p{i}", "text": f"I saw Jordan {i} in Paris"}) for i in range(8)]
    src.write_text("\n".join(lines) + "\n")
    args = ["--checkpoint", str(ck), "--input", str(src), "--clusters", "3"]
    assert main([*args, "--calibration", str(synth_export)]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert all(0 < r["confidence"] <= 1 and r["cluster"] in (0, 1, 2) for r in rows)
    assert "calibration: temperature" in err and "expected calibration error" in err
