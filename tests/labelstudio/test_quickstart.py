"""README's "Your own data in five minutes" runs as written: its commands, in order, on the
quickstart example, against the real Label Studio (simulated annotators stand in for the
people who label in the browser)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.labelstudio


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- quickstart[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert block, "README lost its quickstart block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()]


def test_the_readme_walkthrough_runs_as_written(ls_session: dict) -> None:
    work = ls_session["base"] / "quickstart-run"  # inside Label Studio's document root
    work.mkdir()
    (work / "pipelines").symlink_to(ROOT / "pipelines")
    (work / "examples").symlink_to(ROOT / "examples")
    (work / "annotation").symlink_to(ROOT / "annotation")
    ls = ls_session["ls"]
    overrides = []
    for key in ("data_dir", "venv", "document_root"):
        overrides += ["--set", f'labelstudio.{key}="{ls[key]}"']
    overrides += ["--set", f"labelstudio.port={ls['port']}"]
    env = {**os.environ, "MMNERD_PROGRESS_INTERVAL": "60"}
    ran = []
    for line in readme_commands():
        if line.startswith("# ... annotators label"):
            line = "mmnerd annotate simulate -p pipelines/quickstart.toml"  # people's stand-in
        if not line or line.startswith("#"):
            continue
        args = shlex.split(line)
        assert args[0] == "mmnerd", line
        cmd = [sys.executable, "-m", "mmnerd.cli", *args[1:], *overrides]
        res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, f"{line}: {res.stderr[-1500:]}"
        ran.append(args[1])
    assert ran == ["collect", "dedup", "status", "annotate", "annotate", "pull", "export"]
    data = work / "data" / "quickstart"
    for rel in ("stages", "images", "side/dedup/report.json", "secrets/corpus.key",
                "export/train.parquet", "export/validation.parquet", "export/test.parquet",
                "export/README.md", "export/manifest.json", "export/imgid"):  # fmt: skip
        assert (data / rel).exists(), rel
    # the Python snippet that follows the tree
    import datasets

    ds = datasets.load_dataset(str(data / "export"), cache_dir=str(work / "hf-cache"))
    assert sum(ds[s].num_rows for s in ds) == 4  # 6 posts, 2 duplicate pictures not annotated
    assert isinstance(ds["train"].features["ner_tags"].feature, datasets.ClassLabel)
    with_image = sum(r["image"] is not None for s in ds for r in ds[s])
    assert with_image == 3  # p5 has no picture: text-only, kept
