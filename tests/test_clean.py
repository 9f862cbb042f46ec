"""`make clean` / `mmnerd clean` remove derived outputs only; annotations, journals, images
and keys go only with --all / --labelstudio, confirmed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_mmnerd


def fake_tree(base: Path) -> dict[str, Path]:
    """A data dir as a run leaves it (derived and precious parts) plus Label Studio's."""
    paths = {
        "stages": base / "data/sample/stages/collect/shard-00000.jsonl",
        "export": base / "data/sample/export/train.parquet",
        "reports": base / "data/sample/reports/import/bio-repairs.jsonl",
        "side": base / "data/sample/side/dedup/report.json",
        "raw": base / "data/sample/raw/sample/posts.jsonl",
        "bench": base / "reports/sample/benchmark.md",  # reports/<pipeline name>/
        "images": base / "data/sample/images/ab/abc.jpg",
        "state": base / "data/sample/state/mastodon.posts.jsonl",
        "secrets": base / "data/sample/secrets/corpus.key",
        "labelstudio": base / "data/labelstudio/label_studio.sqlite3",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    return paths


PRECIOUS = ("images", "state", "secrets", "labelstudio")


def mmnerd(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_mmnerd("clean", "-p", ROOT / "pipelines/sample.toml", *args, cwd=cwd, timeout=120)


def test_make_clean_leaves_annotations_journals_images_and_keys(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    paths = fake_tree(tmp_path)
    res = subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    for name, p in paths.items():
        assert p.exists() == (name in PRECIOUS), name
    assert "keeping  data/labelstudio" in res.stderr and "every annotation" in res.stderr


def test_all_needs_a_confirmation_and_says_what_it_deletes(tmp_path: Path) -> None:
    paths = fake_tree(tmp_path)
    res = mmnerd(tmp_path, "--all", "--labelstudio")  # no terminal, no --yes
    assert res.returncode == 2 and "add --yes" in res.stderr
    assert all(p.exists() for p in paths.values())
    res = mmnerd(tmp_path, "--all", "--labelstudio", "--yes")
    assert res.returncode == 0, res.stderr
    assert "removing data/labelstudio" in res.stderr
    assert not any(p.exists() for p in paths.values())
