"""One Label Studio server per data dir, whatever is killed when (issue 20, item 1).

The reproduction: ``mmnerd ls up`` (or ``annotate push``) is killed with its whole process
group while a *new* server is still migrating its database.  The server lives on in its
own session.  Before the fix the rerun found it "not healthy", started a second server on
the same SQLite folder (concurrent migrations: ``table ... already exists``, ``database is
locked``), exited 2, deleted ``server.json``, and the survivor was lost to ``ls status`` and
``ls down``.  Now the server holds ``server.lock`` for its whole life: the rerun waits for
it, and ``ls status`` / ``ls down`` find it even without ``server.json``.

Each test starts its own server on a fresh data dir (a first start, ~20 s here).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmnerd.config import load_config
from mmnerd.pipeline import seed_stage
from tests.conftest import free_port

from .conftest import LS_BIN, ROOT, make_posts

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

POSTS = 12


def ls_processes(ls_dir: Path) -> list[int]:
    """Live label-studio processes whose LABEL_STUDIO_BASE_DATA_DIR is ``ls_dir`` (read
    from /proc independently of mmnerd's own lookup)."""
    want = b"LABEL_STUDIO_BASE_DATA_DIR=" + str(ls_dir.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"label-studio" in cmd and want in env and state != "Z":
            found.append(int(entry.name))
    return found


def healthy(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def write_pipeline(base: Path, name: str) -> tuple[Path, Path, int]:
    """A pipeline with its own Label Studio data dir and port; returns (file, ls dir, port)."""
    port = free_port()
    ls_dir = base / f"{name}-ls"
    ls = {
        "data_dir": str(ls_dir),
        "venv": str(ROOT / ".venv-ls"),
        "port": port,
        "document_root": str(base),
        "label_config": str(ROOT / "annotation" / "label_config.xml"),
        "instructions": str(ROOT / "annotation" / "guidelines.md"),
        "start_timeout": 300.0,
        "project_title": f"one server {name}",
        "batch_size": 5,
    }
    lines = [f"name = {json.dumps(name)}", f"data_dir = {json.dumps(str(base / name))}"]
    lines += ["[labelstudio]"] + [f"{k} = {json.dumps(v)}" for k, v in ls.items()]
    path = base / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, ls_dir, port


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmnerd.cli", *args]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, cwd=ROOT, timeout=600)


def kill_while_starting(argv: list[str], ls_dir: Path, port: int) -> None:
    """Start ``argv`` in its own session, wait until it has spawned a server on ``ls_dir``,
    let the migrations run a little, then SIGKILL the whole process group (as in the
    report: ``setsid mmnerd ls up & sleep 12; kill -9 -<pgid>``)."""
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not ls_processes(ls_dir):
        assert proc.poll() is None, f"{argv} ended before starting a server"
        assert time.monotonic() < deadline, "no server was started"
        time.sleep(0.1)
    time.sleep(3)  # well inside the first start's ~20 s of migrations
    assert not healthy(port), "the server was ready already: the kill must land mid-start"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(ls_processes(ls_dir)) == 1, "the server should outlive the killed command"


@contextlib.contextmanager
def reaped(ls_dir: Path):
    """Whatever happens, stop the servers this test started on ``ls_dir``."""
    try:
        yield
    finally:
        for pid in ls_processes(ls_dir):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def status(pipeline: Path) -> str:
    out = run("ls", "status", "-p", str(pipeline))
    assert out.returncode == 0, out.stderr
    return out.stdout


def down_without_server_json(pipeline: Path, ls_dir: Path) -> None:
    """``ls status`` and ``ls down`` find the server even when server.json is gone."""
    (ls_dir / "server.json").unlink(missing_ok=True)
    assert "running at" in status(pipeline)
    out = run("ls", "down", "-p", str(pipeline))
    assert out.returncode == 0, out.stderr
    assert ls_processes(ls_dir) == []
    assert "not running" in status(pipeline)


@pytest.fixture(autouse=True)
def _needs_server() -> None:
    if not LS_BIN.exists():
        pytest.skip(f"Label Studio server not installed ({LS_BIN} missing)")
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc")


def test_kill_ls_up_while_starting_then_reruns_share_one_server(tmp_path):
    pipeline, ls_dir, port = write_pipeline(tmp_path, "up")
    with reaped(ls_dir):
        kill_while_starting(cli("ls", "up", "-p", str(pipeline)), ls_dir, port)
        # two reruns at once, while the orphan is still migrating: both wait for it
        reruns = [
            subprocess.Popen(
                cli("ls", "up", "-p", str(pipeline)),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for r in reruns:
            _, err = r.communicate(timeout=600)
            assert r.returncode == 0, err[-2000:]
        assert len(ls_processes(ls_dir)) == 1
        assert healthy(port)
        log = (ls_dir / "server.log").read_text(errors="replace")
        assert "already exists" not in log and "database is locked" not in log
        down_without_server_json(pipeline, ls_dir)


def test_kill_push_while_server_starts_then_rerun_is_one_server(tmp_path):
    pipeline, ls_dir, port = write_pipeline(tmp_path, "push")
    cfg = load_config(pipeline)
    seed_stage(cfg, "dedup", make_posts(POSTS, seed=5, root=cfg.root))
    with reaped(ls_dir):
        kill_while_starting(cli("annotate", "push", "-p", str(pipeline)), ls_dir, port)
        out = run("annotate", "push", "-p", str(pipeline))
        assert out.returncode == 0, out.stderr[-2000:]
        assert len(ls_processes(ls_dir)) == 1
        from mmnerd.labelstudio.client import LSClient

        client = LSClient.from_config(cfg, start=False)
        project = client.find_project(cfg.labelstudio.project_title)
        ids = [t["data"]["post_id"] for t in client.iter_tasks(project["id"])]
        assert sorted(ids) == sorted(p.id for p in make_posts(POSTS, seed=5))
        down_without_server_json(pipeline, ls_dir)
