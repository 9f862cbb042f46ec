"""Length bucketing of training batches, bf16 autocast, and device resolution."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from baselines.config import TrainConfig, model_config_for
from baselines.crf import CRF
from baselines.data import bucket_batches, collate, random_batches
from baselines.errors import BenchmarkError
from baselines.train import (
    ImageFeeder,
    autocast,
    build_model,
    local_dist,
    resolve_device,
    train_batches,
    train_run,
)


def _lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [4 + min(44, int(rng.expovariate(0.08))) for _ in range(n)]


def _spread(batches: list[list[int]], lengths: list[int]) -> float:
    """Mean (max - min) length within a batch."""
    return statistics.mean(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("n, size", [(1000, 16), (37, 8), (5, 16), (800, 8)])
def test_bucket_batches_cover_every_index_once(n: int, size: int) -> None:
    lengths = _lengths(n)
    batches = bucket_batches(lengths, size, torch.Generator().manual_seed(3), pool_batches=10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))  # each index exactly once
    assert all(1 <= len(b) <= size for b in batches)
    assert sum(len(b) < size for b in batches) <= 1 + n // (10 * size)  # one short per pool


def test_bucket_batches_seeded_and_shuffled() -> None:
    lengths = _lengths()

    def run(seed: int) -> list[list[int]]:
        return bucket_batches(lengths, 16, torch.Generator().manual_seed(seed))

    assert run(1) == run(1)
    assert run(1) != run(2)
    # the batch order is shuffled, not sorted by length
    means = [statistics.mean(lengths[i] for i in b) for b in run(1)]
    assert means != sorted(means) and means != sorted(means, reverse=True)
    # consecutive epochs of one generator differ
    gen = torch.Generator().manual_seed(1)
    assert bucket_batches(lengths, 16, gen) != bucket_batches(lengths, 16, gen)


def test_bucket_batches_are_length_homogeneous() -> None:
    lengths = _lengths()
    gen = torch.Generator().manual_seed(0)
    bucketed = _spread(bucket_batches(lengths, 16, gen), lengths)
    rand = _spread(random_batches(len(lengths), 16, torch.Generator().manual_seed(0)), lengths)
    assert bucketed < 0.25 * rand, (bucketed, rand)
    # padding: the sum of batch max lengths (what collate pads to) drops
    pad_b = sum(max(lengths[i] for i in b) * len(b) for b in bucket_batches(lengths, 16, gen))
    pad_r = sum(
        max(lengths[i] for i in b) * len(b)
        for b in random_batches(len(lengths), 16, torch.Generator().manual_seed(0))
    )
    assert pad_b < 0.8 * pad_r, (pad_b, pad_r)


def test_train_batches_follow_the_config(prepared) -> None:
    enc = prepared.encodings("train", "transformer", 128)
    usable = list(range(len(enc)))
    on = train_batches(enc, usable, TrainConfig(batch_size=8), torch.Generator().manual_seed(1))
    off = train_batches(
        enc,
        usable,
        TrainConfig(batch_size=8, bucket_by_length=False),
        torch.Generator().manual_seed(1),
    )
    lengths = [len(e.input_ids) for e in enc]
    assert sorted(i for b in on for i in b) == usable == sorted(i for b in off for i in b)
    assert _spread(on, lengths) < _spread(off, lengths)
    # collate pads to the batch's longest post
    batch = collate([enc[i] for i in on[0]], 0)
    assert batch["input_ids"].shape[1] == max(lengths[i] for i in on[0])


def test_bf16_step_float32_crf(prepared, monkeypatch) -> None:
    seen: dict[str, object] = {}
    nll = CRF.nll

    def spy(self, emissions, tags, mask, constrained=False):
        seen["dtype"] = emissions.dtype
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return nll(self, emissions, tags, mask, constrained)

    monkeypatch.setattr(CRF, "nll", spy)
    torch.manual_seed(0)
    mcfg = model_config_for("mner2m", vit_image_size=32, cnn_image_size=32)
    model = build_model(mcfg, prepared)
    dtypes: list[torch.dtype] = []  # outputs of a text-encoder Linear and the emission Linear
    for mod in (model.text.encoder.layer[0].attention.self.query, model.emit):
        mod.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    enc = prepared.encodings("train", "transformer", 128)[:8]
    exs = prepared.data.splits["train"][:8]
    batch = collate(enc, int(prepared.tokenizer.pad_token_id))
    batch.update(ImageFeeder(model, prepared, cache=True, log=lambda m: None).batch(
        [e.image_key for e in exs]
    ))  # fmt: skip
    model.train()
    with autocast(torch.device("cpu"), True):
        out = model(batch)
    assert dtypes == [torch.bfloat16, torch.bfloat16]  # the matmuls really ran in bf16
    assert seen == {"dtype": torch.float32, "autocast": False}  # ...the CRF did not
    assert out["emissions"].dtype == torch.float32 and out["loss"].dtype == torch.float32
    assert torch.isfinite(out["loss"]) and out["cl_loss"] > 0
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32


def test_bf16_training_run(prepared) -> None:
    mcfg = model_config_for("mner2m", vit_image_size=32, cnn_image_size=32)
    tcfg = TrainConfig(epochs=1, batch_size=16, lr=3e-3, bf16=True)
    res = train_run(mcfg, tcfg, prepared, None, lambda m: None)
    assert math.isfinite(res.history[0]["loss"]) and res.history[0]["loss"] > 0
    assert res.config["train"]["bf16"] is True and res.eval_counts["test"] == 1


@pytest.mark.parametrize(
    "requested, available, rank, expected",
    [
        ("auto", False, 0, ("cpu", "gloo")),
        ("cpu", True, 1, ("cpu", "gloo")),
        ("auto", True, 0, ("cuda:0", "nccl")),
        ("auto", True, 3, ("cuda:3", "nccl")),
        ("cuda", True, 1, ("cuda:1", "nccl")),
    ],
)
def test_resolve_device(requested: str, available: bool, rank: int, expected) -> None:
    assert resolve_device(requested, available, rank, 4 if available else None) == expected


def test_resolve_device_errors() -> None:
    with pytest.raises(BenchmarkError, match="CUDA is not available"):
        resolve_device("cuda", False, 0)
    with pytest.raises(BenchmarkError, match="LOCAL_RANK 2 but only 2 GPU"):
        resolve_device("cuda", True, 2, 2)
    with pytest.raises(BenchmarkError, match="--device must be one of"):
        resolve_device("tpu", True, 0)


def test_local_dist_cpu() -> None:
    assert local_dist("cpu").device == "cpu"
    if not torch.cuda.is_available():
        assert local_dist("auto").device == "cpu"
        with pytest.raises(BenchmarkError):
            local_dist("cuda")
