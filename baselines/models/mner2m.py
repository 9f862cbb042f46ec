"""mner2m (2M-NER) and its ablations: cross-attention from the text states to the ViT
patches and to the CNN vector, NT-Xent between the sentence and each image (the defaults of
:class:`~baselines.config.ModelConfig`); see :mod:`baselines.models.tagger`."""

from __future__ import annotations

from baselines.models import ModelSpec, register

register(
    ModelSpec(
        "mner2m",
        "the 2M-NER model: cross-attention to ViT patches and the CNN vector, NT-Xent",
        quick=True,
    )
)
register(ModelSpec("mner2m_no_cl", "mner2m without the contrastive loss", {"use_cl": False}))
register(ModelSpec("mner2m_no_cnn", "mner2m without the CNN (ViT only)", {"use_cnn": False}))
register(ModelSpec("mner2m_no_vit", "mner2m without the ViT (CNN only)", {"use_vit": False}))
