"""docs/api.md's examples run as written (from a repository-like folder whose data/mmnerd is
the published-corpus fixture), and the API behaves as documented."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "api.md"


def blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def repo_like(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "pipelines").symlink_to(ROOT / "pipelines")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mmnerd").symlink_to(ROOT / "tests" / "data" / "imgid" / "mmnerd")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path


def test_the_api_page_examples_run_as_written(repo_like: Path) -> None:
    import mmnerd.audit  # noqa: F401 - a submodule must not shadow an API function
    import mmnerd.export.load  # noqa: F401

    code = blocks(DOC)
    assert len(code) >= 6
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in code:
            exec(compile(block, str(DOC), "exec"), scope)  # noqa: S102 - our own docs
    text = out.getvalue()
    assert "export [('gold', 13, 13), ('split', 13, 13)]" in text
    assert "10 ['id', 'lang', 'text', 'tokens', 'ner_tags']" in text
    assert "split 13 {}" in text or "split 13 {'straddling_clusters'" in text
    assert "('Tapas', 'B-MISC')" in text
    # the fixture's "keep calm and visit Oslo" (train) is in test, lowercased: a leak
    assert re.search(
        r"test:08378650---DSC2936-1534x1024 test ~ \S+17_06_4240 train text 1\.0", text
    )
    assert " 0\n" in text  # the two navy pictures are 0 bits apart
    assert "field 'images.timeout'" in text


def test_importing_mmnerd_loads_nothing_heavy() -> None:
    code = ("import sys, mmnerd; dir(mmnerd); "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'torch', 'datasets') "
            "if m in sys.modules))")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "[]", res.stderr


def test_unknown_commands_and_stages_are_one_line_errors(repo_like: Path) -> None:
    import mmnerd
    from mmnerd.errors import ConfigError

    cfg = mmnerd.load_config("pipelines/import-mmnerd.toml")
    with pytest.raises(ConfigError, match="unknown command 'colect'; one of collect"):
        mmnerd.run(cfg, "colect")
    with pytest.raises(ConfigError, match="unknown stage 'tokenise'; stages: collect"):
        mmnerd.run_stage(cfg, "tokenise")
    with pytest.raises(AttributeError):
        _ = mmnerd.not_a_function
