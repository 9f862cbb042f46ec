"""Shared fixtures: a pipeline config rooted in a temp folder, and small posts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def error_line(stderr: str) -> str:
    """The one ``mmnerd: error:`` line of a failed command (progress lines of the work done
    before it may precede it; nothing may follow, and there is no traceback)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("mmnerd: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    """The default pipeline, writing under tmp_path."""
    return load_config(ROOT / "pipelines" / "sample.toml", [f'data_dir="{tmp_path / "data"}"'])
