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
