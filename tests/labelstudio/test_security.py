"""Security of the annotation side against the REAL server: loopback binding, private
credential files, and secrets that never reach logs, reports, exports or the console."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mmnerd.config import load_config
from mmnerd.labelstudio import server
from mmnerd.pipeline import seed_stage
from tests.conftest import run_mmnerd

from .conftest import ROOT, make_posts

pytestmark = pytest.mark.labelstudio


def listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) of sockets LISTENing on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            addr, hexport = cols[1].rsplit(":", 1)
            if int(hexport, 16) == port and cols[3] == "0A":  # 0A = LISTEN
                found.append(addr)
    return found


def test_label_studio_listens_on_loopback_only(ls_session):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    port = ls_session["info"].port
    addrs = listening(port)
    assert addrs, f"nothing listens on {port}"
    # 127.0.0.1 in /proc's little-endian hex; never 0.0.0.0 or :: (all interfaces)
    assert set(addrs) == {"0100007F"}, addrs


def test_credential_files_are_private(ls_session):
    folder = Path(ls_session["ls"]["data_dir"])
    creds = folder / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0  # the folder too (0700)
    # a copy made readable by mistake is tightened again on the next read
    creds.chmod(0o644)
    try:
        server.credentials(server.LabelStudioConfig(**ls_session["ls"]))
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    finally:
        creds.chmod(0o600)


@pytest.mark.slow
def test_secrets_never_in_files_logs_or_console(ls_session):
    """push -> simulate -> pull -> export through the CLI, then grep every file the pipeline
    wrote, the server log and the captured console output for the password, token and key."""
    base = Path(ls_session["base"])
    d = base / "secrets-chain"
    ls = {**ls_session["ls"], "project_title": "secrets chain", "batch_size": 20}
    lines = ['name = "secrets"', f"data_dir = {json.dumps(str(d))}", "[labelstudio]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in ls.items()]
    lines += ["[simulate]", "noise = 0.2", "[benchmark]", f'report_dir = "{d / "reports"}"']
    pipeline = base / "secrets-chain.toml"
    pipeline.write_text("\n".join(lines) + "\n")
    seed_stage(load_config(pipeline), "dedup", make_posts(30, seed=31, root=d))
    console = []
    for args in (
        ["ls", "status"],
        ["annotate", "push"],
        ["annotate", "simulate"],
        ["pull"],
        ["export"],
        ["status"],
    ):
        out = run_mmnerd(*args, "-p", pipeline)
        assert out.returncode == 0, out.stderr[-2000:]
        console += [out.stdout, out.stderr]
    # a wrong token: the error line must not echo it either
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mmnerd.labelstudio.client import LSClient; import sys;"
            f"LSClient({ls_session['info'].url!r}, 'f' * 40).whoami()",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode != 0
    console += [bad.stdout, bad.stderr]

    creds = json.loads((Path(ls_session["ls"]["data_dir"]) / "credentials.json").read_text())
    secrets = {k: creds[k] for k in ("password", "token", "secret_key")}
    from mmnerd.privacy import corpus_key, key_path

    secrets["corpus_key"] = corpus_key(d).hex()  # the pull pseudonymised annotators with it
    files = [p for p in d.rglob("*") if p.is_file() and p != key_path(d)]
    assert any(p.suffix == ".parquet" for p in files)
    assert any({"side", "agreement"} <= set(p.parts) for p in files)  # pull's report
    files.append(Path(ls_session["ls"]["data_dir"]) / "server.log")
    for f in files:
        blob = f.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in blob, f"{name} found in {f}"
    for text in console:
        for name, value in secrets.items():
            assert value not in text, f"{name} found in console output"


@pytest.mark.slow
def test_every_command_tightens_loosened_secrets(ls_session):
    """The data dir loosened to 0755 and its secret-holding files (credentials, the SQLite
    database that stores the token, server.json, log) to 0644, then each command: all are
    0700/0600 again afterwards (issue 20.3: only a server *start* re-tightened, and only
    credentials.json)."""
    folder = Path(ls_session["ls"]["data_dir"])
    base = Path(ls_session["base"])
    d = base / "perm-chain"
    ls = {**ls_session["ls"], "project_title": "perm chain", "batch_size": 20}
    lines = ['name = "perm"', f"data_dir = {json.dumps(str(d))}", "[labelstudio]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in ls.items()]
    pipeline = base / "perm-chain.toml"
    pipeline.write_text("\n".join(lines) + "\n")
    seed_stage(load_config(pipeline), "dedup", make_posts(8, seed=41, root=d))
    secret_files = [folder / n for n in server.PRIVATE_FILES if (folder / n).exists()]
    assert folder / "label_studio.sqlite3" in secret_files
    keys = d / "secrets"
    for args in (
        ["ls", "status"],
        ["ls", "up"],
        ["annotate", "push"],
        ["annotate", "simulate"],
        ["pull"],
        ["status"],
    ):
        folder.chmod(0o755)
        for f in secret_files:
            f.chmod(0o644)
        if keys.exists():
            keys.chmod(0o755)
            for f in keys.iterdir():
                f.chmod(0o644)
        out = run_mmnerd(*args, "-p", pipeline)
        assert out.returncode == 0, out.stderr[-2000:]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, args
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in secret_files}
        assert modes == {f.name: 0o600 for f in secret_files}, args
        if args == ["pull"]:  # annotator pseudonyms use the corpus key
            assert keys.exists()
        if keys.exists() and args in (["pull"], ["status"]):
            assert stat.S_IMODE(keys.stat().st_mode) == 0o700, args
            assert {stat.S_IMODE(f.stat().st_mode) for f in keys.iterdir()} == {0o600}, args
