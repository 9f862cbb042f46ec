"""Posts without an image: masked in every multimodal model, left out of NT-Xent, shuffled
images only among posts that have one, multimodal models skipped when train has no image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.benchmark import main
from baselines.config import MODEL_NAMES, TrainConfig, model_config_for
from baselines.data import collate, load_export
from baselines.errors import BenchmarkError
from baselines.synthetic import write_synthetic_export
from baselines.train import ImageFeeder, build_model, shuffle_among_present, train_run

TINY = {"vit_image_size": 32, "cnn_image_size": 32, "hidden_size": 32, "proj_dim": 16}
MULTIMODAL = [n for n in MODEL_NAMES if model_config_for(n).multimodal]
HAS = torch.tensor([True, False, True, False, True, True])


def _model(prepared, name: str, **kw):
    torch.manual_seed(0)
    model = build_model(model_config_for(name, **TINY, dropout=0.0, **kw), prepared)
    return model.eval()


def _batch(prepared, model, idx: list[int], cache: bool = False) -> dict[str, torch.Tensor]:
    """Posts ``idx`` of train (all have an image) with ``image_mask`` = HAS[: len(idx)]."""
    exs = [prepared.data.splits["train"][i] for i in idx]
    enc = prepared.encodings("train", model.cfg.encoder, model.cfg.max_length)
    batch = collate([enc[i] for i in idx], prepared.tokenizer.pad_token_id)
    feeder = ImageFeeder(model, prepared, cache, log=lambda m: None)
    batch.update(feeder.batch([e.image_key for e in exs]))
    batch["image_mask"] = HAS[: len(idx)].clone()
    return batch


def _scramble(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """A copy whose image inputs (pixels or cached features) are noise on ``rows``."""
    gen = torch.Generator().manual_seed(7)
    out = dict(batch)
    for k in ("vit_pixels", "cnn_pixels", "vit_tokens", "vit_pooled", "cnn_vec"):
        if k in out:
            t = out[k].clone()
            t[rows] = 5 * torch.randn(t[rows].shape, generator=gen)
            out[k] = t
    return out


@pytest.mark.parametrize("cache", [False, True], ids=["pixels", "cached"])
@pytest.mark.parametrize("name", MULTIMODAL)
def test_masked_post_output_ignores_its_image(prepared, name: str, cache: bool) -> None:
    model = _model(prepared, name, freeze_vit=cache)
    batch = _batch(prepared, model, list(range(6)), cache)
    with torch.no_grad():
        ref = model(batch)
        masked = model(_scramble(batch, ~HAS))
        seen = model(_scramble(batch, HAS))
    # whatever is fed for the posts without an image, no output changes (theirs or others')
    assert torch.allclose(ref["emissions"], masked["emissions"], atol=1e-6)
    assert torch.allclose(ref["loss"], masked["loss"], atol=1e-6)
    # while a post with an image does depend on it (the test can see a difference)
    assert not torch.allclose(ref["emissions"][HAS], seen["emissions"][HAS], atol=1e-4)


def test_masked_post_equals_no_image_branch(prepared) -> None:
    """A masked post gets exactly what a post gets with zero image contributions."""
    model = _model(prepared, "mner2m")
    batch = _batch(prepared, model, [0, 1])
    batch["image_mask"] = torch.tensor([False, False])
    with torch.no_grad():
        out = model(batch)
        h = model.text(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        fused = model.fuse(torch.cat([h, torch.zeros_like(h), torch.zeros_like(h)], -1))
        idx = batch["word_index"].unsqueeze(-1).expand(-1, -1, fused.size(-1))
        expected = model.emit(fused.gather(1, idx))
    assert torch.allclose(out["emissions"], expected, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in MULTIMODAL if model_config_for(n).use_cl])
def test_contrastive_loss_ignores_posts_without_image(prepared, name: str) -> None:
    model = _model(prepared, name)
    full = _batch(prepared, model, list(range(6)))
    keep = [i for i in range(6) if HAS[i]]
    sub = _batch(prepared, model, keep)
    sub["image_mask"] = torch.ones(len(keep), dtype=torch.bool)
    other = _batch(prepared, model, [0, 10, 2, 11, 4, 5])  # other posts (text) where masked
    with torch.no_grad():
        cl_full = model(full)["cl_loss"]
        cl_sub = model(sub)["cl_loss"]
        cl_other = model(_scramble(other, ~HAS))["cl_loss"]
    assert float(cl_full) > 0
    assert torch.allclose(cl_full, cl_sub, atol=1e-5)  # as if they were not in the batch
    assert torch.allclose(cl_full, cl_other, atol=1e-5)  # neither their text nor their image


def test_batch_without_any_image_trains(prepared) -> None:
    model = _model(prepared, "mner2m")
    model.train()
    batch = _batch(prepared, model, [0, 1, 2])
    batch["image_mask"] = torch.zeros(3, dtype=torch.bool)
    out = model(batch)
    assert float(out["cl_loss"]) == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    # every trainable parameter is still in the graph (DistributedDataParallel requires it)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_shuffle_among_present() -> None:
    keys = ["a", "", "b", "c", "", "d", "e"]
    out = shuffle_among_present(keys, seed=3)
    assert [k == "" for k in out] == [k == "" for k in keys]
    assert sorted(out) == sorted(keys) and out != keys
    assert out == shuffle_among_present(keys, seed=3)
    assert shuffle_among_present(["", "x", ""], 1) == ["", "x", ""]


def test_feeder_marks_posts_without_image(prepared) -> None:
    model = _model(prepared, "concat_fusion")
    keys = [prepared.data.splits["train"][0].image_key, "", ""]
    mask = ImageFeeder(model, prepared, cache=True, log=lambda m: None).batch(keys)["image_mask"]
    assert mask.tolist() == [True, False, False]


@pytest.fixture(scope="module")
def partial_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("partial")
    sizes = {"train": 48, "dev": 12, "test": 16}
    return write_synthetic_export(out, sizes, seed=1, image_share=0.5)


@pytest.fixture(scope="module")
def text_only_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("textonly")
    sizes = {"train": 40, "dev": 10, "test": 10}
    return write_synthetic_export(out, sizes, seed=2, image_share={"train": 0.0})


def test_train_run_refuses_multimodal_without_train_images(text_only_export: Path) -> None:
    from baselines.train import prepare

    prep = prepare(load_export(text_only_export), vocab_size=300)
    with pytest.raises(BenchmarkError, match="no post in train has an image"):
        train_run(model_config_for("mner2m"), TrainConfig(epochs=1), prep, log=lambda m: None)


def test_partial_coverage_benchmark(partial_export: Path, tmp_path: Path, capsys) -> None:
    data = load_export(partial_export)
    stats = data.stats()
    assert 0 < stats["train"]["without_image"] < 48
    rep = tmp_path / "r"
    args = ["--export", str(partial_export), "--report-dir", str(rep), "--epochs", "1"]
    assert main([*args, "--models", "concat_fusion", "--batch-size", "16"]) == 0
    err = capsys.readouterr().err
    t = stats["test"]
    line = (
        f"data: test: 16 posts, {t['with_image']} ({t['with_image_pct']:.1f}%) with an image, "
        f"{t['without_image']} ({t['without_image_pct']:.1f}%) without"
    )
    assert line in err
    report = json.loads((rep / "benchmark.json").read_text())
    assert report["data"]["test"]["without_image"] == t["without_image"]
    assert report["images"]["missing"] == "masked"
    assert report["images"]["test_without_image"] == t["without_image"]
    assert report["skipped"] == {}
    assert set(report["results"]) == {"concat_fusion", "concat_fusion+shuffled_images"}
    md = (rep / "benchmark.md").read_text()
    assert "| with image | without image |" in md
    n, yes, no = t["sentences"], t["with_image"], t["without_image"]
    assert f"| {yes} ({t['with_image_pct']:.1f}%) | {no} ({t['without_image_pct']:.1f}%) |" in md
    assert "masked" in md and f"test: {no} of {n} posts" in md
    assert f"shuffled among the {yes} test posts that have one" in md


def test_text_only_train_skips_multimodal_models(
    text_only_export: Path, tmp_path: Path, capsys
) -> None:
    rep = tmp_path / "r"
    args = ["--export", str(text_only_export), "--report-dir", str(rep), "--epochs", "1"]
    assert main([*args, "--models", "text_crf,mner2m,concat_fusion"]) == 0
    err = capsys.readouterr().err
    assert err.count("mner2m skipped: no post in train has an image") == 1
    assert err.count("concat_fusion skipped: no post in train has an image") == 1
    assert "data: train: 40 posts, 0 (0.0%) with an image, 40 (100.0%) without" in err
    report = json.loads((rep / "benchmark.json").read_text())
    assert set(report["results"]) == {"text_crf"}  # no shuffled-images row
    assert report["skipped"] == {
        "mner2m": "no post in train has an image",
        "concat_fusion": "no post in train has an image",
    }
    md = (rep / "benchmark.md").read_text()
    assert "- mner2m skipped: no post in train has an image" in md
    assert "shuffled" not in md
    assert not (rep / "checkpoints" / "mner2m").exists()


def test_only_multimodal_models_and_no_train_image_fails(
    text_only_export: Path, tmp_path: Path, capsys
) -> None:
    rep = tmp_path / "r"
    rc = main(["--export", str(text_only_export), "--report-dir", str(rep), "--models", "mner2m"])
    assert rc == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1  # one line, no traceback
    assert errors[0].startswith("error: nothing to run: mner2m skipped: no post in train has")
    assert not (rep / "benchmark.json").exists()
