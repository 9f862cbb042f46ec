"""The robustness protocol (replaced / blank / noise test images), training-time image
augmentation, per-post counts, bootstrap intervals and the paired test, the gated model."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from baselines.config import TrainConfig, model_config_for
from baselines.data import BLANK_KEY, NOISE_KEYS, collate, probe_images
from baselines.metrics import entity_scores, f1_from_counts, post_counts
from baselines.stats import as_counts, bootstrap_ci, mean_f1, paired_test
from baselines.train import ImageFeeder, augment_images, build_model, perturb_keys, train_run

KEYS = ["a", "", "b", "c", "", "d", "e", "f", "g", "h"]


@pytest.mark.parametrize("share", [25, 50, 100])
def test_replaced_share_gets_other_images(share: int) -> None:
    out = perturb_keys(KEYS, f"replaced_{share}", seed=3)
    present = [i for i, k in enumerate(KEYS) if k]
    moved = [i for i in present if out[i] != KEYS[i]]
    assert len(moved) == round(share / 100 * len(present))  # exactly that share, none kept
    assert all(out[i] == "" for i, k in enumerate(KEYS) if not k)  # no image stays masked
    assert sorted(out[i] for i in moved) == sorted(KEYS[i] for i in moved)  # a permutation
    assert out == perturb_keys(KEYS, f"replaced_{share}", seed=3)  # seeded
    assert out != perturb_keys(KEYS, f"replaced_{share}", seed=4)


def test_blank_and_noise_replace_every_image() -> None:
    blank = perturb_keys(KEYS, "blank", seed=0)
    assert blank == [BLANK_KEY if k else "" for k in KEYS]
    noise = perturb_keys(KEYS, "noise", seed=0)
    assert all((k in NOISE_KEYS) if KEYS[i] else k == "" for i, k in enumerate(noise))
    assert len({k for k in noise if k}) > 1
    with pytest.raises(Exception, match="unknown image condition"):
        perturb_keys(KEYS, "sepia", seed=0)


def test_probe_images_decode() -> None:
    from baselines.data import CLIP_MEAN, CLIP_STD, ImageSpec, preprocess_image

    probes = probe_images(size=32)
    assert set(probes) == {BLANK_KEY, *NOISE_KEYS}
    spec = ImageSpec(16, CLIP_MEAN, CLIP_STD)
    blank = preprocess_image(probes[BLANK_KEY], spec)
    noise = preprocess_image(probes[NOISE_KEYS[0]], spec)
    assert blank.std(axis=(1, 2)).max() < 1e-3 < noise.std(axis=(1, 2)).min()  # grey vs noise


def test_augment_images_drops_and_swaps() -> None:
    pool = [f"k{i}" for i in range(20)]
    keys = [pool[i % 20] for i in range(2000)] + [""] * 100
    out, match = augment_images(keys, pool, 0.2, 0.3, random.Random(0))
    own = [k for k in keys if k]
    n = len(own)
    dropped = sum(1 for k, o in zip(keys, out, strict=True) if k and o == "")
    swapped = sum(1 for k, o in zip(keys, out, strict=True) if k and o and o != k)
    assert abs(dropped / n - 0.2) < 0.03 and abs(swapped / n - 0.3) < 0.03
    assert all(m == 0.0 for k, o, m in zip(keys, out, match, strict=True) if k and o and o != k)
    assert all(m == 1.0 for k, o, m in zip(keys, out, match, strict=True) if o == k)
    assert out[-100:] == [""] * 100  # posts without an image stay without
    assert augment_images(["a", "a"], ["a"], 0.0, 1.0, random.Random(0))[0] == ["a", "a"]


def test_post_counts_sum_to_seqeval_micro() -> None:
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "B-MISC", "I-MISC"]
    y_true = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(60)]
    y_pred = [[rng.choice(tags) if rng.random() < 0.4 else t for t in s] for s in y_true]
    counts = post_counts(y_true, y_pred)
    tp, pred, gold = (sum(c[i] for c in counts) for i in range(3))
    ref = entity_scores(y_true, y_pred)["overall"]
    assert gold == ref["support"]
    assert f1_from_counts(tp, pred, gold) == pytest.approx(ref["f1"])


def test_bootstrap_interval_and_paired_test() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(1, 4, size=300)
    good = np.stack([np.minimum(gold, rng.integers(1, 4, size=300)), gold, gold], axis=-1)
    bad = good.copy()
    bad[:, 0] = np.maximum(0, good[:, 0] - rng.integers(0, 2, size=300))
    a, b = as_counts([good.tolist()] * 2), as_counts([bad.tolist()] * 2)
    lo, hi = bootstrap_ci(a)
    assert lo < mean_f1(a) < hi and hi - lo < 0.2
    same = paired_test(a, a)
    assert same["diff"] == 0.0 and same["p"] == 1.0
    better = paired_test(a, b)
    assert better["diff"] > 0 and better["p"] < 0.01 and better["ci95"][0] > 0
    worse = paired_test(b, a)
    assert worse["diff"] == pytest.approx(-better["diff"])
    sub = paired_test(a, b, idx=[0, 1, 2])
    assert sub["posts"] == 3
    assert paired_test(a, b, idx=[]) is None and bootstrap_ci(a, []) is None


TINY = {"vit_image_size": 32, "cnn_image_size": 32, "hidden_size": 32, "proj_dim": 16}


def test_gated_model_gate_and_losses(prepared) -> None:
    torch.manual_seed(0)
    model = build_model(model_config_for("mner2m_gated", **TINY), prepared)
    exs = prepared.data.splits["train"][:4]
    enc = prepared.encodings("train", "transformer", model.cfg.max_length)[:4]
    batch = collate(enc, prepared.tokenizer.pad_token_id)
    keys = [exs[0].image_key, "", exs[2].image_key, exs[3].image_key]
    batch.update(ImageFeeder(model, prepared, True, log=lambda m: None).batch(keys))
    batch["image_match"] = torch.tensor([1.0, 1.0, 0.0, 1.0])
    out = model(batch)
    gate = out["gate"]
    assert gate.shape == (4,) and gate[1] == 0.0 and bool(((gate >= 0) & (gate <= 1)).all())
    assert float(out["gate_loss"]) > 0 and float(out["text_crf_loss"]) > 0
    out["loss"].backward()
    assert all(p.grad is not None for p in model.head_parameters())
    # without an image the post is tagged by the text head alone, whatever is fed for it
    model.eval()
    with torch.no_grad():
        a = model(batch)["emissions"][1]
        other = dict(batch)
        for name in ("vit_tokens", "vit_pooled", "cnn_vec"):
            if name in other:
                other[name] = torch.randn_like(other[name])
        assert torch.allclose(a, model(other)["emissions"][1], atol=1e-5)


def test_gated_model_trains_and_reports_gates(prepared) -> None:
    torch.manual_seed(0)
    mcfg = model_config_for("mner2m_gated", vit_image_size=32, cnn_image_size=32)
    res = train_run(
        mcfg, TrainConfig(epochs=2, batch_size=16, lr=3e-3), prepared, None, log=lambda m: None
    )
    assert {"gate_loss", "text_crf_loss"} <= set(res.history[-1])
    for ev in (res.test, *res.test_robustness.values()):
        assert 0.0 <= ev["gate"]["mean"] <= 1.0
