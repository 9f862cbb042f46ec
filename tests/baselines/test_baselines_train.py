"""A short training run on the synthetic export: dev F1 rises, epoch chosen on dev, test once."""

from __future__ import annotations

from pathlib import Path

import torch

from baselines.config import TrainConfig, model_config_for
from baselines.train import ROBUSTNESS, Evaluator, train_run


def test_mner2m_learns_and_selects_on_dev(prepared, tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    original = Evaluator.evaluate

    def spy(self, split, shuffle_images=False, seed=0, condition="", counts=False):
        calls.append(
            split + ("_shuffled" if shuffle_images else "") + (f"_{condition}" * bool(condition))
        )
        return original(self, split, shuffle_images, seed, condition, counts)

    monkeypatch.setattr(Evaluator, "evaluate", spy)
    torch.manual_seed(0)
    mcfg = model_config_for("mner2m", vit_image_size=32, cnn_image_size=32)
    tcfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, seed=1)
    res = train_run(mcfg, tcfg, prepared, tmp_path / "ckpt", log=lambda m: None)
    dev = [h["dev_f1"] for h in res.history]
    assert len(dev) == 4
    assert max(dev) > dev[0] + 0.1, dev  # learns
    assert res.best_epoch == 1 + dev.index(max(dev))  # chosen on dev (earliest best)
    assert res.dev["overall"]["f1"] == max(dev)
    # test evaluated exactly once, after all dev evaluations (+ once per image condition of
    # the robustness protocol, the shuffled control doubling as 100% replaced)
    others = ["test_replaced_25", "test_replaced_50", "test_blank", "test_noise"]
    assert calls == ["dev"] * 4 + ["test", "test_shuffled", *others]
    assert res.eval_counts == {"dev": 4, "test": 1, "test_shuffled": 1} | dict.fromkeys(others, 1)
    assert set(res.test_robustness) == set(ROBUSTNESS)
    assert res.test_robustness["replaced_100"] is res.test_shuffled
    n = len(prepared.data.splits["test"])
    assert (
        len(res.test["post_counts"]) == n and len(res.test_robustness["noise"]["post_counts"]) == n
    )
    assert set(res.test) >= {"overall", "per_type", "per_language", "image_decided"}
    assert set(res.test["per_language"]) == {"en", "fr", "de", "es"}
    assert res.history[-1]["cl_loss"] > 0
    # the image decides the ambiguous names: mner2m gets them, and loses them if images shuffle
    decided = res.test["image_decided"]["f1"]
    assert decided >= 0.8, decided
    assert res.test_shuffled["image_decided"]["f1"] < decided - 0.3
    ck = Path(res.checkpoint)
    assert (ck / "model.pt").is_file() and (ck / "config.json").is_file()
    assert (ck / "tokenizer" / "tokenizer.json").is_file()


def test_text_crf_and_bilstm_train(prepared) -> None:
    for name in ("text_crf", "bilstm_crf"):
        res = train_run(
            model_config_for(name),
            TrainConfig(epochs=2, batch_size=32, lr=3e-3),
            prepared,
            None,
            log=lambda m: None,
        )
        assert res.test_shuffled is None and res.eval_counts == {"dev": 2, "test": 1}
        assert res.train_examples_per_s > 0 and res.checkpoint == ""
