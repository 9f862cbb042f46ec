"""Path traversal: paths that come from input files or records never make the pipeline read
or write outside its folders.  (IMGID ids: tests/test_bad_input.py; image URLs to
non-public addresses: tests/images/test_fetch_faults.py; Label Studio binding, file
modes and secrets: tests/labelstudio/test_security.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.errors import InputError
from mmnerd.io import inside, write_json
from mmnerd.pipeline import MARKER, StageStats, stage_dir, write_shard
from mmnerd.records import ImageRef, Post
from tests.conftest import ROOT, error_line, run_mmnerd


@pytest.mark.parametrize(
    "rel", ["../x.jpg", "ab/../../x.jpg", "/etc/passwd", "ab/../../../etc/passwd"]
)
def test_inside_refuses_paths_that_escape(tmp_path, rel):
    with pytest.raises(InputError, match="escapes"):
        inside(tmp_path / "images", rel)


def test_inside_refuses_a_symlink_out_and_accepts_plain_paths(tmp_path):
    images = tmp_path / "images"
    (images / "ab").mkdir(parents=True)
    os.symlink("/etc", images / "ab" / "link")
    with pytest.raises(InputError, match="escapes"):
        inside(images, "ab/link/passwd")
    assert inside(images, "ab/cd.jpg") == (images / "ab" / "cd.jpg").resolve()


def test_export_refuses_a_record_image_path_outside_images(tmp_path):
    """A tampered record (image.path = ../../secret) stops the export with one line and
    nothing outside ``<data_dir>/images`` is read into the Parquet files."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not export me")
    data = tmp_path / "data"
    cfg = PipelineConfig.model_validate({"name": "sec", "data_dir": str(data)})
    (data / "images").mkdir(parents=True)
    post = Post(
        id="x:1",
        source="x",
        source_id="1",
        text="Paris",
        lang="fr",
        tokens=["Paris"],
        token_offsets=[(0, 5)],
        ner_tags=["B-LOC"],
        image=ImageRef(url="http://example.invalid/1.jpg", status="ok", path="../../secret.txt"),
    )
    for name in ("push", "pull"):
        stats = StageStats(name)
        write_shard(stage_dir(cfg, name), "00000", [post], stats)
        write_json(
            stage_dir(cfg, name) / MARKER,
            {"fingerprint": "seeded", "run_id": name, "stats": stats.to_dict()},
        )
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'name = "sec"\ndata_dir = "{data}"\n[export]\nratios = [1.0, 0.0, 0.0]\n')
    out = subprocess.run(
        [sys.executable, "-m", "mmnerd.cli", "export", "-p", str(pipeline)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "'../../secret.txt' escapes" in error_line(out.stderr)
    for f in Path(data).rglob("*"):
        if f.is_file():
            assert b"do not export me" not in f.read_bytes(), f


# --- secrets on disk: 0600 files in 0700 folders, whatever mode they were found in ----------

LS_SECRET_FILES = ("credentials.json", "server.json", "label_studio.sqlite3", "server.log")


def test_commands_tighten_a_pre_existing_loose_label_studio_dir(tmp_path):
    """A Label Studio data dir made beforehand with mode 0755 (and a 0644 database, which
    holds the admin token) is tightened by `ls status`, `ls down` and `status` -- not only
    when a server starts (issue 20.3; the old code left it 0755 and the files 0644)."""
    import stat

    from mmnerd.privacy import corpus_key, key_path
    from tests.conftest import free_port

    ls_dir, root = tmp_path / "ls", tmp_path / "data"
    ls_dir.mkdir()
    corpus_key(root)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        f'name = "perm"\ndata_dir = "{root}"\n[labelstudio]\n'
        f'data_dir = "{ls_dir}"\nport = {free_port()}\n'
    )

    def loosen() -> None:
        for d in (ls_dir, key_path(root).parent):
            d.chmod(0o755)
        for name in LS_SECRET_FILES:
            (ls_dir / name).write_text("{}")
            (ls_dir / name).chmod(0o644)
        key_path(root).chmod(0o644)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    for args in (["ls", "status"], ["ls", "down"], ["status"]):
        loosen()
        out = run_mmnerd(*args, "-p", pipeline, timeout=120)
        assert out.returncode == 0, (args, out.stderr)
        assert mode(ls_dir) == 0o700, args
        assert {n: mode(ls_dir / n) for n in LS_SECRET_FILES if (ls_dir / n).exists()} == {
            n: 0o600 for n in LS_SECRET_FILES if (ls_dir / n).exists()
        }, args
        if args == ["status"]:
            assert mode(key_path(root)) == 0o600 and mode(key_path(root).parent) == 0o700


def test_a_label_studio_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "ls").write_text("not a folder")
    out = run_mmnerd("ls", "status", "--set", f'labelstudio.data_dir="{tmp_path / "ls"}"')
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("mmnerd: error: ") and out.stderr.count("\n") == 1
