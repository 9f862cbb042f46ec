"""Fixtures of the baselines tests: a tiny synthetic multimodal export (see baselines.synthetic)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def synth_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train 160 / dev 40 / test 40 posts; image colour/shape decides ambiguous names' types."""
    from baselines.synthetic import write_synthetic_export

    out = tmp_path_factory.mktemp("export")
    return write_synthetic_export(out, {"train": 160, "dev": 40, "test": 40}, seed=0, image_size=32)


@pytest.fixture(scope="session")
def prepared(synth_export: Path):
    """Shared tokenizer / vocab / caches over the synthetic export."""
    import torch

    from baselines.data import load_export
    from baselines.train import prepare

    torch.set_num_threads(1)
    return prepare(load_export(synth_export), vocab_size=500)
