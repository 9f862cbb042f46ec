"""text_crf: the text encoder (tiny random BERT or a local transformers path) + linear + CRF."""

from __future__ import annotations

from baselines.models import ModelSpec, register

TEXT_ONLY = {"fusion": "none", "use_vit": False, "use_cnn": False, "use_cl": False}
"""ModelConfig flags of a tagger that sees no image."""

register(ModelSpec("text_crf", "text encoder + linear + CRF", TEXT_ONLY, quick=True))
