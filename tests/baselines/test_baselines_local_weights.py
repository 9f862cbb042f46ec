"""Encoders given as local folders (the real-run path: mBERT, CLIP, ResNet-152 saved locally)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.benchmark import main
from baselines.predict import Predictor


@pytest.fixture(scope="module")
def local_models(tmp_path_factory: pytest.TempPathFactory, prepared) -> dict[str, Path]:
    """Tiny BERT (+ its tokenizer), a full CLIP checkpoint (+ image processor), a ResNet."""
    from transformers import (
        BertConfig,
        BertModel,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        ResNetConfig,
        ResNetModel,
    )

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tok = prepared.tokenizer
    bert = BertModel(
        BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=64)
    )  # fmt: skip
    bert.save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 99, "eos_token_id": 2}  # fmt: skip
    vision = {"image_size": 32, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 2}  # fmt: skip
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision)).save_pretrained(root / "clip")
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(root / "clip")
    ResNetModel(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ).save_pretrained(root / "resnet")
    return {"text": root / "bert", "vit": root / "clip", "cnn": root / "resnet"}


def test_benchmark_with_local_encoders(synth_export, local_models, tmp_path: Path, capsys) -> None:
    rep = tmp_path / "r"
    args = ["--export", str(synth_export), "--report-dir", str(rep), "--models", "mner2m",
            "--epochs", "1", "--lr", "1e-3", "--text-encoder", str(local_models["text"]),
            "--vit", str(local_models["vit"]), "--cnn", str(local_models["cnn"])]  # fmt: skip
    assert main(args) == 0
    report = json.loads((rep / "benchmark.json").read_text())
    assert report["encoders"]["text"] == str(local_models["text"])
    ck = rep / "checkpoints" / "mner2m" / "seed1"
    conf = json.loads((ck / "config.json").read_text())
    assert conf["encoder_configs"]["vit"]["image_size"] == 32
    assert conf["encoder_configs"]["text"]["hidden_size"] == 32
    tagger = Predictor.load(ck)  # rebuilt from config.json, without the model folders
    specs = tagger.model.image_specs()
    assert specs["vit"].size == 32 and specs["cnn"].size == 224  # ResNet without processor
    out = tagger.predict([{"tokens": ["Jordan", "in", "Paris"]}])
    assert len(out[0]["tags"]) == 3
    # features of the frozen ResNet (loaded from a path) persist between benchmark runs
    assert len(list((rep / "cache").glob("cnn-ResNetModel-*.pt"))) == 1
    capsys.readouterr()
    assert main([*args, "--models", "mner2m_no_vit"]) == 0
    # 240 images + the zero row + 17 probe pictures (blank, 16 noise) of the robustness protocol
    assert "loaded 258 cached cnn features" in capsys.readouterr().err


def test_pretrained_text_weights_are_loaded(prepared, local_models) -> None:
    from transformers import BertModel

    from baselines.config import model_config_for
    from baselines.train import build_model

    model = build_model(
        model_config_for("text_crf", text_encoder=str(local_models["text"])), prepared
    )
    ref = BertModel.from_pretrained(local_models["text"])
    w = "embeddings.word_embeddings.weight"
    assert torch.equal(model.text.state_dict()[w], ref.state_dict()[w])


def test_unknown_encoder_fails_in_one_line(synth_export, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--export", str(synth_export), "--report-dir", str(tmp_path)]
    assert main([*args, "--text-encoder", "no-such/model-name"]) == 2
    assert main([*args, "--cnn", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: cannot load encoder") for line in err)
