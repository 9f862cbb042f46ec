"""Label Studio on SQLite or PostgreSQL (``labelstudio.database``), backups and restores.

The backup test runs on both databases: after a restore, pull gives the annotations of the
moment of the backup.  The URL test moves a PostgreSQL project into a second Label Studio
whose database is given by ``labelstudio.database_url`` (a new machine's restore).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from mmnerd.config import LabelStudioConfig, PipelineConfig
from mmnerd.errors import ConfigError
from mmnerd.labelstudio import database, server
from mmnerd.labelstudio.client import LSClient
from mmnerd.labelstudio.pull import PullStage
from mmnerd.labelstudio.push import PushStage
from mmnerd.labelstudio.simulate import simulate
from mmnerd.pipeline import Runner, iter_stage, seed_stage

from .conftest import ROOT, _maker, free_port, make_posts

pytestmark = pytest.mark.labelstudio


def test_database_url_and_environment(tmp_path, monkeypatch):
    pg = LabelStudioConfig(database="postgresql", database_url="postgresql://ls@db.internal/lab")
    monkeypatch.setenv(database.PASSWORD_ENV, "s3cret")
    db = database.resolve(pg)
    assert (db.host, db.port, db.name, db.user, db.password) == (
        "db.internal", 5432, "lab", "ls", "s3cret",
    )  # fmt: skip
    assert "s3cret" not in repr(db)
    env = database.server_env(db, 600)
    assert env["DJANGO_DB"] == "default" and env["POSTGRE_HOST"] == "db.internal"
    assert env["TASK_LOCK_TTL"] == "600"
    sock = database.resolve(pg.model_copy(update={"database_url": "postgresql://u@/n?host=/run/x"}))
    assert sock.host == "/run/x"
    for bad in ("postgresql://u:pw@h/n", "mysql://u@h/n", "postgresql://h/n"):
        with pytest.raises(ConfigError):
            database.resolve(pg.model_copy(update={"database_url": bad}))
    # the config decides the database, not variables left in the shell
    dirty = {"DJANGO_DB": "default", "LABEL_STUDIO_POSTGRE_HOST": "x", "PATH": "/bin"}
    assert database.clean_env(dirty) == {"PATH": "/bin"}
    lite = LabelStudioConfig(data_dir=str(tmp_path / "ls"))
    assert database.server_env(database.resolve(lite), 60)["DJANGO_DB"] == "sqlite"
    # a data dir keeps its database
    (tmp_path / "ls").mkdir()
    (tmp_path / "ls" / "label_studio.sqlite3").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds a sqlite Label Studio"):
        database.check_kind(lite.model_copy(update={"database": "postgresql"}))


def _pipeline_file(cfg: PipelineConfig) -> str:
    path = cfg.root.parent / f"{cfg.name}.toml"
    lines = [f"name = {json.dumps(cfg.name)}", f"data_dir = {json.dumps(str(cfg.root))}"]
    lines.append("[labelstudio]")
    dump = cfg.labelstudio.model_dump(mode="json")
    lines += [f"{k} = {json.dumps(v)}" for k, v in dump.items() if v not in (None, "")]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mmnerd.cli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stderr


def _pulled(cfg: PipelineConfig) -> dict[str, dict]:
    Runner(cfg).run_stage(PullStage(), force=True)
    return {p.id: p.to_dict() for p in iter_stage(cfg, "pull")}


def _annotated(make, n: int = 16) -> tuple[PipelineConfig, dict[str, dict]]:
    cfg = make(overlap_share=0.5)
    seed_stage(cfg, "dedup", make_posts(n, seed=31))
    Runner(cfg).run_stage(PushStage())
    cfg.simulate.noise = 0.3
    simulate(cfg, list(iter_stage(cfg, "push")))
    return cfg, _pulled(cfg)


def test_backup_then_restore_gives_the_same_pull(make_db_config, tmp_path):
    cfg, before = _annotated(make_db_config)
    pipeline = _pipeline_file(cfg)
    backup = tmp_path / "backups" / "ls.tar"
    assert "backed up" in _cli("ls", "backup", str(backup), "-p", pipeline)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # after the backup: an annotation deleted, another one added, and pulled
    client = LSClient.from_config(cfg, start=False)
    pushed = list(iter_stage(cfg, "push"))
    first = client.task_annotations(pushed[0].ls.task)[0]
    client.delete(f"/api/annotations/{first['id']}")
    client.create_annotation(pushed[1].ls.task, [], None, 2.0)
    assert _pulled(cfg) != before
    pid = server.running(cfg).pid
    assert "restarted Label Studio" in _cli("ls", "restore", str(backup), "-p", pipeline)
    info = server.running(cfg)
    assert info is not None and info.pid != pid  # stopped for the restore, started again
    assert _pulled(cfg) == before
    folder = server.data_dir(cfg)
    assert stat.S_IMODE((folder / "credentials.json").stat().st_mode) == 0o600
    # a backup of the other kind is refused in one line
    other = "postgresql" if cfg.labelstudio.database == "sqlite" else "sqlite"
    wrong = cfg.labelstudio.model_copy(update={"database": other, "data_dir": str(tmp_path / "x")})
    with pytest.raises(Exception, match="restore into a data dir of the same kind") as e:
        database.restore(wrong, backup)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_restore_into_a_server_given_by_url(pg_session, tmp_path, monkeypatch):
    """A new machine: a PostgreSQL run by someone else (here: a second database of the
    session's cluster), Label Studio given its URL, the backup restored before the first
    start, then pull as before."""
    cfg, before = _annotated(_maker(pg_session))
    backup = tmp_path / "ls.tar"
    database.backup(cfg.labelstudio, backup)
    # a role and a database for the "team server" in the session's cluster
    session_ls = LabelStudioConfig.model_validate(pg_session["ls"])
    rec = database.recorded(session_ls)
    admin = database.resolve(session_ls)
    admin.user, admin.password = rec["superuser"], rec["superuser_password"]
    database._psql(
        session_ls, admin,
        "CREATE ROLE team LOGIN PASSWORD 'team-pw-1';\nCREATE DATABASE teamls OWNER team;\n",
        "creating the team database",
    )  # fmt: skip
    monkeypatch.setenv(database.PASSWORD_ENV, "team-pw-1")
    url = f"postgresql://team@/teamls?host={database.cluster_dir(session_ls)}"
    moved = cfg.model_copy(deep=True)
    moved.labelstudio.data_dir = str(pg_session["base"] / "team-ls")
    moved.labelstudio.database_url = url
    moved.labelstudio.port = free_port()
    meta = database.restore(moved.labelstudio, backup)
    assert meta["restarted"] is False and server.running(moved) is None
    try:
        info = server.up(moved)  # no migrations to run: the restored database has them
        assert "not run by mmnerd" in database.status(moved.labelstudio)
        assert _pulled(moved) == before
        assert LSClient(info.url, info.token).whoami()["email"] == cfg.labelstudio.admin_email
    finally:
        server.down(moved)
    assert database.cluster_running(session_ls)  # a server given by URL is never stopped


def test_embedded_cluster_is_private(pg_session):
    """The cluster listens on a Unix socket in its own folder (no TCP port); under root it
    belongs to the postgres user and the data dir lets only that group pass (0710)."""
    ls = LabelStudioConfig.model_validate(pg_session["ls"])
    pgdir = database.cluster_dir(ls)
    assert "listen_addresses = ''" in (pgdir / "postgresql.conf").read_text()
    assert (pgdir / ".s.PGSQL.5432").is_socket()
    folder = server.data_dir(ls)
    mode = stat.S_IMODE(folder.stat().st_mode)
    if os.geteuid() == 0:
        assert mode == 0o710 and folder.stat().st_gid == database.traverse_gid(ls)
        assert stat.S_IMODE(pgdir.stat().st_mode) == 0o700
    else:
        assert mode == 0o700
    assert stat.S_IMODE((folder / "database.json").stat().st_mode) == 0o600
    assert "running" in database.status(ls)


def test_interrupted_first_start_is_redone_and_a_foreign_folder_kept(tmp_path):
    """A first ``ls up`` killed during initdb leaves a half-made cluster: the record says
    ``ready: false``, so the next start makes it again; a folder mmnerd did not make is
    never deleted."""
    from .conftest import need_postgres, postgres_base

    need_postgres()
    base = postgres_base("init")
    try:
        ls = LabelStudioConfig(database="postgresql", data_dir=str(base / "ls"))
        folder = server.secure(ls, create=True)
        pgdir = database.cluster_dir(ls)
        pgdir.mkdir()
        (pgdir / "PG_VERSION").write_text("15\n")  # what a killed initdb leaves
        with pytest.raises(Exception, match="no PostgreSQL cluster made by mmnerd"):
            database.ensure_started(ls)  # no record: not ours
        assert (pgdir / "PG_VERSION").exists()
        (folder / "database.json").write_text(
            json.dumps({"kind": "postgresql", "embedded": True, "ready": False})
        )
        db = database.ensure_started(ls)
        assert database.recorded(ls)["ready"] is True and database.cluster_running(ls)
        assert db.password and db.password not in database.status(ls)
        assert database.stop(ls) and not database.cluster_running(ls)
    finally:
        database.stop(LabelStudioConfig(database="postgresql", data_dir=str(base / "ls")))
        import shutil

        shutil.rmtree(base, ignore_errors=True)
