"""Typed configuration of models and training runs; saved as JSON next to every checkpoint.

Model names (``MODEL_NAMES``, in registration order) come from the registry,
:mod:`baselines.models` (one module per model family, each with its models' flags).

A run of a multimodal model also evaluates its selected checkpoint on the test split with the
images shuffled among the posts that have one (reported as ``<model>+shuffled_images``).  Posts
without an image are masked (:mod:`baselines.models.tagger`); with no image in train, multimodal
models are skipped (:func:`baselines.train.skip_reason`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.errors import BenchmarkError
from baselines.models import get_spec, model_names

MODEL_NAMES: tuple[str, ...] = model_names()
SHUFFLED_SUFFIX = "+shuffled_images"
QUICK_MODELS: tuple[str, ...] = tuple(n for n in MODEL_NAMES if get_spec(n).quick)
FULL_MODELS: tuple[str, ...] = MODEL_NAMES


@dataclass
class ModelConfig:
    """Architecture of one model.  Empty encoder paths mean small randomly initialised encoders."""

    name: str = "mner2m"
    encoder: str = field(default="transformer", metadata={"help": "transformer | bilstm"})
    fusion: str = field(default="cross", metadata={"help": "none | concat | cross"})
    use_vit: bool = True
    use_cnn: bool = True
    use_cl: bool = True
    # text encoder
    text_encoder: str = field(default="", metadata={"help": "local path or name; '' = tiny BERT"})
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 2000
    max_length: int = 128
    # BiLSTM baseline
    word_emb_dim: int = 64
    lstm_hidden: int = 64
    min_word_freq: int = 1
    # image encoders
    vit: str = field(default="", metadata={"help": "local CLIP path; '' = tiny random CLIP ViT"})
    vit_image_size: int = 64
    vit_patch_size: int = 16
    vit_hidden: int = 64
    vit_layers: int = 2
    vit_heads: int = 2
    freeze_vit: bool = False
    cnn: str = field(default="", metadata={"help": "local ResNet path; '' = tiny random ResNet"})
    cnn_image_size: int = 64
    cnn_hidden_sizes: tuple[int, ...] = (16, 32)
    cnn_depths: tuple[int, ...] = field(default=(), metadata={"help": "() = 1 block per stage"})
    cnn_layer_type: str = field(default="basic", metadata={"help": "basic | bottleneck"})
    freeze_cnn: bool = True
    # fusion and losses
    cross_heads: int = 2
    proj_dim: int = 64
    sentence_pool: str = field(default="mean", metadata={"help": "mean | cls"})
    temperature: float = 0.5
    w_crf: float = 0.8
    w_cl: float = 0.2
    dropout: float = 0.1
    # agreement gate (mner2m_gated): emissions = text head + gate * image head
    gate: str = field(default="none", metadata={"help": "none | agreement"})
    w_text: float = field(default=0.0, metadata={"help": "weight of the text-only CRF loss"})
    w_gate: float = field(default=0.0, metadata={"help": "weight of the agreement BCE loss"})
    image_dropout: float = field(
        default=0.0, metadata={"help": "training: share of posts whose image is hidden"}
    )
    image_mismatch: float = field(
        default=0.0, metadata={"help": "training: share of posts given another post's image"}
    )
    mismatch_loss: str = field(
        default="crf",
        metadata={
            "help": "crf: a post given another image keeps the CRF loss of the gated output; "
            "gate: only the agreement BCE learns from it (its CRF loss sees the text head)"
        },
    )
    crf_constrain_decode: bool = True
    crf_constrain_train: bool = False

    def validate(self) -> ModelConfig:
        checks = {
            "encoder": self.encoder in ("transformer", "bilstm"),
            "fusion": self.fusion in ("none", "concat", "cross"),
            "sentence_pool": self.sentence_pool in ("mean", "cls"),
            "temperature": self.temperature > 0,
            "hidden_size": self.hidden_size % max(self.num_heads, 1) == 0,
            "cnn_layer_type": self.cnn_layer_type in ("basic", "bottleneck"),
            "cnn_depths": not self.cnn_depths or len(self.cnn_depths) == len(self.cnn_hidden_sizes),
            "gate": self.gate == "none" or (self.gate == "agreement" and self.use_cl),
            "image_dropout": 0.0 <= self.image_dropout <= 1.0,
            "mismatch_loss": self.mismatch_loss in ("crf", "gate"),
            "image_mismatch": 0.0 <= self.image_mismatch <= 1.0 - self.image_dropout,
        }
        for name, ok in checks.items():
            if not ok:
                raise BenchmarkError(
                    f"model config {self.name}: invalid {name}={getattr(self, name)!r}"
                )
        return self

    @property
    def multimodal(self) -> bool:
        return self.fusion != "none" and (self.use_vit or self.use_cnn)


@dataclass
class TrainConfig:
    """Optimisation of one run (paper: Adam 5e-5, batch 32, 8 epochs; tiny models need more lr)."""

    epochs: int = 8
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float | None = field(default=None, metadata={"help": "lr of CRF/fusion; None = lr"})
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 1
    num_threads: int = 1  # tiny models: 1 is fastest, and 2 threads crawl on a busy machine
    cache_frozen_features: bool = True
    bucket_by_length: bool = field(
        default=True, metadata={"help": "batch posts of similar sub-word length together"}
    )
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast of the forward"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    shuffled_image_eval: bool = True
    robustness_eval: bool = field(
        default=True,
        metadata={"help": "evaluate test under each image condition of train.ROBUSTNESS"},
    )
    eval_batch_size: int = 64
    log_every_s: float = field(default=60.0, metadata={"help": "progress line every N seconds"})


def model_config_for(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a registered model, with field overrides (e.g. encoder
    paths); the model's own flags win over the overrides."""
    flags = get_spec(name).flags
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    bad = set(overrides) - known
    if bad:
        raise BenchmarkError(f"unknown model config field(s): {', '.join(sorted(bad))}")
    return ModelConfig(name=name, **{**overrides, **flags}).validate()


PRESETS: dict[str, dict[str, Any]] = {
    # tiny: learns the synthetic fixture in a few epochs on a laptop CPU
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128},
    # small: offline "full" mode without real weights
    # base: the paper's shapes (mBERT-base, CLIP ViT-B/32, ResNet-152), random weights;
    # for throughput measurements (benchmarks/train.py), not for learning offline
    "base": {
        "hidden_size": 768,
        "num_layers": 12,
        "num_heads": 12,
        "intermediate_size": 3072,
        "vocab_size": 30000,
        "vit_image_size": 224,
        "vit_patch_size": 32,
        "vit_hidden": 768,
        "vit_layers": 12,
        "vit_heads": 12,
        "cnn_image_size": 224,
        "cnn_hidden_sizes": (256, 512, 1024, 2048),
        "cnn_depths": (3, 8, 36, 3),
        "cnn_layer_type": "bottleneck",
        "cross_heads": 12,
        "proj_dim": 256,
        "word_emb_dim": 300,
        "lstm_hidden": 256,
    },
    "small": {
        "hidden_size": 128,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 256,
        "vocab_size": 8000,
        "vit_hidden": 128,
        "proj_dim": 128,
        "cross_heads": 4,
        "word_emb_dim": 100,
        "lstm_hidden": 100,
    },
}


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    d = dict(d)
    for key in ("cnn_hidden_sizes", "cnn_depths"):
        if key in d:
            d[key] = tuple(d[key])
    return ModelConfig(**d).validate()


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**d)


def save_json(obj: Any, path: Path) -> None:
    """Atomic JSON write (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
    tmp.replace(path)
