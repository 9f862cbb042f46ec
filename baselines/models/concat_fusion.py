"""concat_fusion: text states concatenated with the pooled ViT and CNN features."""

from __future__ import annotations

from baselines.models import ModelSpec, register

register(
    ModelSpec(
        "concat_fusion",
        "text states concatenated with pooled ViT and CNN features (no attention, no CL)",
        {"fusion": "concat", "use_cl": False},
    )
)
