"""Forward/backward shapes of every model on a tiny batch; cached vs live frozen features."""

from __future__ import annotations

import pytest
import torch

from baselines.config import MODEL_NAMES, model_config_for
from baselines.data import collate
from baselines.train import ImageFeeder, build_model
from mmnerd.records import LABELS

TINY = {"vit_image_size": 32, "cnn_image_size": 32, "hidden_size": 32, "proj_dim": 16}


def _batch(prepared, model, n: int = 4, cache: bool = False) -> dict[str, torch.Tensor]:
    exs = prepared.data.splits["train"][:n]
    enc = prepared.encodings("train", model.cfg.encoder, model.cfg.max_length)[:n]
    pad = 0 if model.cfg.encoder == "bilstm" else prepared.tokenizer.pad_token_id
    batch = collate(enc, pad)
    if model.cfg.multimodal:
        batch.update(
            ImageFeeder(model, prepared, cache, log=lambda m: None).batch(
                [e.image_key for e in exs]
            )
        )
    return batch


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_shapes(prepared, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config_for(name, **TINY), prepared)
    batch = _batch(prepared, model)
    out = model(batch)
    b, w = batch["word_mask"].shape
    assert out["emissions"].shape == (b, w, len(LABELS))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in model.head_parameters()]
    assert all(g is not None for g in grads)
    assert model.crf.transitions.grad is not None
    if model.cfg.use_cl and model.cfg.multimodal:
        assert float(out["cl_loss"]) > 0
    else:
        assert float(out["cl_loss"]) == 0
    if model.cnn is not None:  # frozen CNN: no gradient
        assert all(p.grad is None for p in model.cnn.parameters())
    paths = model.decode(out)
    assert [len(p) for p in paths] == batch["word_mask"].sum(1).tolist()


def test_cached_frozen_features_equal_live(prepared) -> None:
    torch.manual_seed(0)
    cfg = model_config_for("mner2m", **TINY, freeze_vit=True, dropout=0.0)
    model = build_model(cfg, prepared)
    model.train()
    assert not model.cnn.training and not model.vit.training  # frozen encoders stay in eval
    model.eval()
    live = _batch(prepared, model, cache=False)
    cached = _batch(prepared, model, cache=True)
    assert "vit_pixels" in live and "vit_tokens" in cached and "cnn_vec" in cached
    with torch.no_grad():
        a, b = model(live)["emissions"], model(cached)["emissions"]
    assert torch.allclose(a, b, atol=1e-5)
