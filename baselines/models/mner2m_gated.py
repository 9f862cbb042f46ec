"""mner2m_gated, the robust model: mner2m's fusion added to a text-only tagger through a
per-post gate scored by text-image agreement, trained with image dropout, mismatched images
and an auxiliary text-only CRF (the ``gate == "agreement"`` parts of
:class:`~baselines.models.tagger.Tagger`)."""

from __future__ import annotations

from typing import Any

from baselines.models import ModelSpec, register

GATED: dict[str, Any] = {
    "gate": "agreement",
    "w_text": 0.5,
    "w_gate": 0.2,
    "image_dropout": 0.05,
    "image_mismatch": 0.10,
    "mismatch_loss": "gate",
}
"""What ``mner2m_gated`` adds to ``mner2m`` (the recipe measured in docs/benchmark.md)."""

register(
    ModelSpec(
        "mner2m_gated",
        "mner2m's fusion added to a text-only tagger through a text-image agreement gate",
        GATED,
    )
)
