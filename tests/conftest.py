"""Shared fixtures: a pipeline config rooted in a temp folder, and small posts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    """The default pipeline, writing under tmp_path, with a free port for the sample server."""
    return load_config(
        ROOT / "pipelines" / "sample.toml",
        [f'data_dir="{tmp_path / "data"}"', f"source.image_port={free_port()}"],
    )
