"""The model registry (baselines.models): names, one-line errors, and a model added by
registering one spec is built, trained and reloaded like the built-in ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import baselines.models as registry
from baselines.config import MODEL_NAMES, QUICK_MODELS, TrainConfig, model_config_for
from baselines.errors import BenchmarkError
from baselines.models import ModelSpec, register
from baselines.models.tagger import Tagger
from baselines.train import build_model, train_run

ROOT = Path(__file__).resolve().parents[2]
TINY = {"vit_image_size": 32, "cnn_image_size": 32, "hidden_size": 32, "proj_dim": 16}


def test_names_and_quick_set_are_the_cli_names() -> None:
    assert MODEL_NAMES == (
        "text_crf", "bilstm_crf", "concat_fusion", "mner2m",
        "mner2m_no_cl", "mner2m_no_cnn", "mner2m_no_vit", "mner2m_gated",
    )  # fmt: skip
    assert QUICK_MODELS == ("text_crf", "mner2m")


def test_family_modules_fix_the_flags() -> None:
    assert set(registry.FAMILIES) <= {n for n in MODEL_NAMES}  # each family names a model
    assert model_config_for("bilstm_crf").encoder == "bilstm"
    assert model_config_for("mner2m_gated").gate == "agreement"
    assert not model_config_for("text_crf").multimodal
    assert model_config_for("mner2m_no_cl", use_cl=True).use_cl is False  # flags win


def test_unknown_model_is_one_line_listing_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError) as err:
        model_config_for("mner3m")
    msg = str(err.value)
    assert "\n" not in msg and "'mner3m'" in msg
    assert all(n in msg for n in MODEL_NAMES)
    r = subprocess.run(
        [sys.executable, "-m", "baselines.benchmark", "--export", str(tmp_path), "--models", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr  # before the (absent) export
    assert r.stderr.strip().count("\n") == 0
    assert "unknown model 'x'; choose from text_crf, bilstm_crf" in r.stderr


def test_registering_a_name_twice_fails() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(ModelSpec("text_crf", "again"))


class _Counted(Tagger):
    """A 'new architecture': the shared tagger, counting its forward passes."""

    calls = 0

    def forward(self, batch):  # noqa: ANN001, ANN201
        type(self).calls += 1
        return super().forward(batch)


def _build_counted(cfg, labels, vocab_size, saved=None):  # noqa: ANN001, ANN202
    return _Counted(cfg, labels, vocab_size, saved)


@pytest.fixture
def new_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """A model registered the way a new family module does it (removed afterwards)."""
    name = "concat_fusion_cl"
    spec = ModelSpec(name, "concat fusion with NT-Xent", {"fusion": "concat"}, _build_counted)
    monkeypatch.setitem(registry._REGISTRY, name, spec)
    return name


def test_a_registered_model_trains_and_reloads(new_model: str, prepared, tmp_path: Path) -> None:
    from baselines.predict import Predictor

    mcfg = model_config_for(new_model, **TINY)
    assert mcfg.fusion == "concat" and mcfg.use_cl and mcfg.multimodal
    torch.manual_seed(0)
    assert isinstance(build_model(mcfg, prepared), _Counted)
    tcfg = TrainConfig(epochs=1, batch_size=32, seed=1, shuffled_image_eval=False)
    tcfg.robustness_eval = False
    res = train_run(mcfg, tcfg, prepared, checkpoint_dir=tmp_path / "ck", log=lambda m: None)
    assert _Counted.calls > 0 and 0.0 <= res.test["overall"]["f1"] <= 1.0
    pred = Predictor.load(tmp_path / "ck", device="cpu")
    assert isinstance(pred.model, _Counted)  # rebuilt through the registry by name
