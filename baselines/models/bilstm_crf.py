"""bilstm_crf: word embeddings + BiLSTM + linear + CRF (the classic NER baseline)."""

from __future__ import annotations

from baselines.models import ModelSpec, register
from baselines.models.text_crf import TEXT_ONLY

register(
    ModelSpec(
        "bilstm_crf",
        "word embeddings + BiLSTM + linear + CRF",
        {"encoder": "bilstm", **TEXT_ONLY},
    )
)
