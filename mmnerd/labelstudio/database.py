"""Label Studio's database: SQLite (default) or PostgreSQL, and their backups.

``labelstudio.database = "postgresql"`` runs Label Studio on PostgreSQL
(``DJANGO_DB=default`` and the ``POSTGRE_*`` variables it reads):

* ``labelstudio.database_url = "postgresql://user@host:port/name"``: a server run by
  someone else.  Its password comes from ``MMNERD_LS_DB_PASSWORD`` (never from a file
  that is committed); mmnerd never starts nor stops that server.
* no URL: one machine.  mmnerd initialises a PostgreSQL cluster in
  ``<data_dir>/postgres`` (``initdb``, scram-sha-256 passwords generated with
  :mod:`secrets` and kept in ``<data_dir>/database.json``, mode 0600), listening on a
  Unix socket in that folder only (no TCP port), and starts / stops it with Label
  Studio.  PostgreSQL refuses to run as root, so under root the cluster belongs to the
  ``postgres`` system user and its commands run through ``runuser``; the data dir then
  lets that user's group through (mode 0710, group ``postgres``) and nothing more: every
  secret file in it stays 0600.

A data dir keeps the database it was created with (``database.json`` records it): a
SQLite data dir is never silently reopened on an empty PostgreSQL database or the other
way round.

Backups (``mmnerd ls backup`` / ``mmnerd ls restore``): one 0600 tar file holding the
database (``pg_dump`` custom format, or SQLite's online backup) and ``credentials.json``
(the admin token stored in the database must match it).  A restore stops Label Studio,
replaces the database (``pg_restore --clean`` in one transaction, or the SQLite file),
puts the credentials back and starts Label Studio again if it was running.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mmnerd.config import LabelStudioConfig
from mmnerd.errors import ConfigError, LabelStudioError
from mmnerd.io import read_json, write_json

DB_FILE = "database.json"
PG_DIR = "postgres"
SQLITE_FILE = "label_studio.sqlite3"
PASSWORD_ENV = "MMNERD_LS_DB_PASSWORD"
PG_USER = "postgres"  # the system user that runs the cluster when we are root
PG_PORT = 5432  # with no TCP listener it only names the socket file
SOCKET_MAX = 100  # Unix socket paths are limited to 107 bytes
BACKUP_FORMAT = "mmnerd.labelstudio.backup/1"
_LS_DB_VARS = ("DJANGO_DB", "POSTGRE_NAME", "POSTGRE_USER", "POSTGRE_PASSWORD", "POSTGRE_HOST",
               "POSTGRE_PORT", "DATABASE_NAME")  # fmt: skip


@dataclass
class Database:
    """Where Label Studio's data lives (the password never appears in repr)."""

    kind: str  # sqlite | postgresql
    embedded: bool = False  # a cluster under the data dir, started and stopped by us
    host: str = ""  # host name, or the socket folder of an embedded cluster
    port: int = PG_PORT
    name: str = ""
    user: str = ""
    password: str = field(default="", repr=False)

    def libpq_env(self) -> dict[str, str]:
        """``PG*`` variables for psql / pg_dump / pg_restore (password included)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.name,
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGCONNECT_TIMEOUT": "10",
        }


def _ls_dir(ls: LabelStudioConfig) -> Path:
    return Path(ls.data_dir).resolve()


def cluster_dir(ls: LabelStudioConfig) -> Path:
    return _ls_dir(ls) / PG_DIR


def embedded(ls: LabelStudioConfig) -> bool:
    return ls.database == "postgresql" and not ls.database_url


def cluster_owner(ls: LabelStudioConfig) -> tuple[int, int] | None:
    """(uid, gid) that runs an embedded cluster when it is not us (we are root), else None."""
    if not embedded(ls) or os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        raise LabelStudioError(
            "running as root, PostgreSQL needs the 'postgres' system user (initdb refuses "
            "root); install PostgreSQL (make postgres-deps) or run mmnerd as another user"
        ) from None
    return pw.pw_uid, pw.pw_gid


def traverse_gid(ls: LabelStudioConfig) -> int | None:
    """The group let through the data dir (mode 0710) so an embedded cluster owned by the
    ``postgres`` user can reach its folder; None: the data dir stays 0700."""
    owner = cluster_owner(ls)
    return owner[1] if owner else None


def bin_dir(ls: LabelStudioConfig) -> Path:
    """The folder holding initdb / pg_ctl / pg_dump (config, PATH, newest Debian layout)."""
    if ls.postgres_bin:
        folder = Path(ls.postgres_bin)
        if not (folder / "pg_ctl").exists():
            raise ConfigError(f"labelstudio.postgres_bin: no pg_ctl in {folder}")
        return folder
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    raise LabelStudioError(
        "labelstudio.database = postgresql: PostgreSQL's programs (initdb, pg_ctl) are not "
        "installed; run `make postgres-deps` (apt-get install postgresql) or set "
        "labelstudio.postgres_bin"
    )


def _tool(ls: LabelStudioConfig, name: str) -> str:
    path = bin_dir(ls) / name
    if path.exists():
        return str(path)
    found = shutil.which(name)  # e.g. pg_dump from postgresql-client only
    if not found:
        raise LabelStudioError(f"{name} not found next to pg_ctl ({bin_dir(ls)}) nor on PATH")
    return found


def _as_owner(ls: LabelStudioConfig, cmd: list[str]) -> list[str]:
    """``cmd`` run as the cluster's owner (``runuser -u postgres --`` when we are root)."""
    if cluster_owner(ls) is None:
        return cmd
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", PG_USER, "--", *cmd]


def _run(
    cmd: list[str],
    what: str,
    env: dict[str, str] | None = None,
    input: str | None = None,
    start_new_session: bool = False,
) -> str:
    """Run a PostgreSQL program; a failure is one line (its last output line)."""
    proc = subprocess.run(
        cmd,
        env={**os.environ, **(env or {})},
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=start_new_session,
    )
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise LabelStudioError(f"{what} failed: {last[:300]}")
    return proc.stdout


# --- which database a data dir holds ------------------------------------------------------
def recorded(ls: LabelStudioConfig) -> dict:
    return read_json(_ls_dir(ls) / DB_FILE) or {}


def check_kind(ls: LabelStudioConfig) -> None:
    """Refuse to open a data dir with another database than the one it was created with."""
    folder = _ls_dir(ls)
    rec = recorded(ls)
    kind = rec.get("kind") or ("sqlite" if (folder / SQLITE_FILE).exists() else "")
    if kind and kind != ls.database:
        raise ConfigError(
            f"labelstudio.database = {ls.database}, but {folder} holds a {kind} Label Studio; "
            f"use another labelstudio.data_dir, or move the data with `mmnerd ls backup` / "
            f"`mmnerd ls restore` into a data dir of the same kind"
        )
    if ls.database == "postgresql" and rec and bool(rec.get("embedded")) != embedded(ls):
        was = "a PostgreSQL run by mmnerd" if rec.get("embedded") else "database_url"
        raise ConfigError(
            f"{folder} was created with {was}; keep labelstudio.database_url as it was, or use "
            f"another labelstudio.data_dir"
        )


def resolve(ls: LabelStudioConfig) -> Database:
    """The database of this config (secrets read from database.json or the environment)."""
    if ls.database == "sqlite":
        return Database("sqlite", name=str(_ls_dir(ls) / SQLITE_FILE))
    if ls.database_url:
        return _from_url(ls.database_url)
    rec = recorded(ls)
    return Database(
        "postgresql",
        embedded=True,
        host=str(cluster_dir(ls)),
        name=rec.get("name", "labelstudio"),
        user=rec.get("user", "labelstudio"),
        password=rec.get("password", ""),
    )


def _from_url(url: str) -> Database:
    """``postgresql://user@host:port/name``, or ``postgresql://user@/name?host=/socket/dir``
    (libpq's form for a Unix socket)."""
    from urllib.parse import parse_qs

    usage = (
        "labelstudio.database_url: expected postgresql://user@host:port/name "
        "(or postgresql://user@/name?host=/socket/folder)"
    )
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(usage)
    if parts.password is not None:
        raise ConfigError(
            f"labelstudio.database_url must not hold the password; set {PASSWORD_ENV} instead"
        )
    name = unquote(parts.path.lstrip("/"))
    host = (parse_qs(parts.query).get("host") or [""])[0] or parts.hostname or ""
    if not host or not parts.username or not name:
        raise ConfigError(usage)
    return Database(
        "postgresql",
        host=host,
        port=parts.port or PG_PORT,
        name=name,
        user=unquote(parts.username),
        password=os.environ.get(PASSWORD_ENV, ""),
    )


def server_env(db: Database, lock_ttl: int) -> dict[str, str]:
    """What Label Studio's settings read for this database (contains the password)."""
    env = {"TASK_LOCK_TTL": str(lock_ttl)}
    if db.kind == "sqlite":
        env.update({"DJANGO_DB": "sqlite", "DATABASE_NAME": db.name})
        return env
    env.update(
        {
            "DJANGO_DB": "default",
            "POSTGRE_NAME": db.name,
            "POSTGRE_USER": db.user,
            "POSTGRE_PASSWORD": db.password,
            "POSTGRE_HOST": db.host,
            "POSTGRE_PORT": str(db.port),
        }
    )
    return env


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """Drop database variables inherited from the shell (with Label Studio's prefixes too):
    the config decides the database, not a stray DJANGO_DB."""
    out = dict(env)
    for name in _LS_DB_VARS:
        for prefix in ("", "LABEL_STUDIO_", "HEARTEX_"):
            out.pop(prefix + name, None)
    return out


# --- an embedded cluster ------------------------------------------------------------------
def cluster_running(ls: LabelStudioConfig) -> bool:
    folder = cluster_dir(ls)
    if not (folder / "PG_VERSION").exists():
        return False
    cmd = _as_owner(ls, [_tool(ls, "pg_ctl"), "-D", str(folder), "status"])
    return subprocess.run(cmd, capture_output=True).returncode == 0


def ensure_started(ls: LabelStudioConfig) -> Database:
    """The database, ready for Label Studio: an embedded cluster is initialised (first
    time) and started if needed; a server given by URL is only checked to be reachable."""
    check_kind(ls)
    folder = _ls_dir(ls)
    if ls.database == "sqlite":
        if not recorded(ls):
            write_json(folder / DB_FILE, {"kind": "sqlite"}, perms=0o600)
        return resolve(ls)
    if ls.database_url:
        db = resolve(ls)
        if not recorded(ls):
            write_json(folder / DB_FILE, {"kind": "postgresql", "embedded": False}, perms=0o600)
        _wait_ready(ls, db, 30.0)
        return db
    pgdir = cluster_dir(ls)
    _check_reachable(ls, folder)
    if len(str(pgdir / ".s.PGSQL.5432")) > SOCKET_MAX:
        raise ConfigError(
            f"labelstudio.data_dir {folder} is too long for PostgreSQL's socket path "
            f"(max {SOCKET_MAX - 24} characters); choose a shorter data dir"
        )
    rec = recorded(ls)
    # (a record without "ready" predates the flag: its cluster was complete)
    ready = rec.get("ready", bool(rec.get("password")) and (pgdir / "PG_VERSION").exists())
    if ready is not True:
        _init_cluster(ls)  # first time, or a first time that was interrupted
    if not cluster_running(ls):
        _start_cluster(ls)
    db = resolve(ls)
    _wait_ready(ls, db, 60.0)
    return db


def _check_reachable(ls: LabelStudioConfig, folder: Path) -> None:
    """Under root the cluster runs as ``postgres``: every folder above the data dir must let
    that user through (the data dir itself is made 0710 for its group)."""
    owner = cluster_owner(ls)
    if owner is None:
        return
    uid, gid = owner
    for up in folder.parents:
        st = up.stat()
        mode = st.st_mode
        ok = (
            (st.st_uid == uid and mode & 0o100)
            or (st.st_gid == gid and mode & 0o010)
            or (st.st_uid != uid and st.st_gid != gid and mode & 0o001)
        )
        if not ok:
            raise ConfigError(
                f"PostgreSQL runs as the '{PG_USER}' user (we are root) and cannot pass through "
                f"{up} (mode {oct(mode & 0o777)}); put labelstudio.data_dir under a folder it can "
                f"reach, or use labelstudio.database_url"
            )


def _pg_ctl(ls: LabelStudioConfig, what: str, *args: str, new_session: bool = False) -> str:
    cmd = [_tool(ls, "pg_ctl"), "-D", str(cluster_dir(ls)), *args]
    return _run(_as_owner(ls, cmd), what, start_new_session=new_session)


def _start_cluster(ls: LabelStudioConfig) -> None:
    log = str(cluster_dir(ls) / "server.log")
    # its own session: the postmaster outlives a killed mmnerd (and its process group)
    _pg_ctl(ls, "starting PostgreSQL", "-l", log, "-w", "-t", "120", "start", new_session=True)


def _init_cluster(ls: LabelStudioConfig) -> None:
    """initdb + a role and database for Label Studio; passwords kept in database.json.

    The record is written first and marked ``ready`` last, so a first start killed
    half-way (initdb, the role) is redone from scratch by the next one: the folder then
    holds nothing but that unfinished cluster.  A folder mmnerd did not start is never
    touched."""
    folder = _ls_dir(ls)
    pgdir = cluster_dir(ls)
    rec = recorded(ls)
    if pgdir.exists() and any(pgdir.iterdir()):
        if rec.get("embedded") is not True or rec.get("ready") is not False:
            raise LabelStudioError(
                f"{pgdir} exists but holds no PostgreSQL cluster made by mmnerd; move it away "
                f"and run again"
            )
        with contextlib.suppress(LabelStudioError):  # an unfinished cluster still running
            _pg_ctl(ls, "stopping PostgreSQL", "-m", "immediate", "-w", "stop")
        shutil.rmtree(pgdir)
    rec = {
        "kind": "postgresql",
        "embedded": True,
        "ready": False,
        "name": "labelstudio",
        "user": "labelstudio",
        "password": secrets.token_urlsafe(24),
        "superuser": "postgres",
        "superuser_password": secrets.token_urlsafe(24),
    }
    write_json(folder / DB_FILE, rec, perms=0o600)
    pgdir.mkdir(mode=0o700, exist_ok=True)
    owner = cluster_owner(ls)
    if owner:
        os.chown(pgdir, *owner)
    os.chmod(pgdir, 0o700)
    # the superuser's password in a file only the cluster's owner reads, removed at once
    pwfile = folder / f".initdb-{secrets.token_hex(8)}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(rec["superuser_password"] + "\n")
        if owner:
            os.chown(pwfile, *owner)
        initdb = [_tool(ls, "initdb"), "-D", str(pgdir), "-U", rec["superuser"], "-E", "UTF8"]
        initdb += ["--auth=scram-sha-256", f"--pwfile={pwfile}", "--locale=C.UTF-8"]
        _run(_as_owner(ls, initdb), "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    sock = str(pgdir).replace("'", "''")
    conf = (
        "\n# mmnerd: a Unix socket in this folder only, no TCP port\n"
        f"listen_addresses = ''\nunix_socket_directories = '{sock}'\nport = {PG_PORT}\n"
    )
    _run(
        _as_owner(ls, ["sh", "-c", 'cat >> "$1"', "sh", str(pgdir / "postgresql.conf")]),
        "configuring PostgreSQL",
        input=conf,
    )
    _start_cluster(ls)
    superuser = Database("postgresql", True, str(pgdir), PG_PORT, "postgres", rec["superuser"],
                         rec["superuser_password"])  # fmt: skip
    user = rec["user"]
    pw = rec["password"].replace("'", "''")
    sql = (
        f"CREATE ROLE {user} LOGIN PASSWORD '{pw}';\n"
        f"CREATE DATABASE {rec['name']} OWNER {user} ENCODING 'UTF8';\n"
    )
    _psql(ls, superuser, sql, "creating Label Studio's database")
    write_json(folder / DB_FILE, {**rec, "ready": True}, perms=0o600)


def _psql(ls: LabelStudioConfig, db: Database, sql: str, what: str) -> str:
    cmd = [_tool(ls, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]
    return _run(cmd, what, env=db.libpq_env(), input=sql)


def _wait_ready(ls: LabelStudioConfig, db: Database, timeout: float) -> None:
    """Until a query answers (a server just started may still be recovering)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _psql(ls, db, "SELECT 1;", "connecting to PostgreSQL")
            return
        except LabelStudioError as e:
            if time.monotonic() > deadline:
                where = db.host if not db.embedded else "the PostgreSQL under the data dir"
                raise LabelStudioError(f"{e} ({where}, database {db.name!r})") from None
            time.sleep(0.5)


def stop(ls: LabelStudioConfig) -> bool:
    """Stop an embedded cluster (never a server given by URL); False if none ran."""
    if not embedded(ls) or not cluster_running(ls):
        return False
    _pg_ctl(ls, "stopping PostgreSQL", "-m", "fast", "-w", "-t", "60", "stop")
    return True


def status(ls: LabelStudioConfig) -> str:
    """One line on the database (no secret)."""
    if ls.database == "sqlite":
        return f"database: SQLite ({_ls_dir(ls) / SQLITE_FILE})"
    if ls.database_url:
        db = _from_url(ls.database_url)
        return f"database: PostgreSQL {db.user}@{db.host}:{db.port}/{db.name} (not run by mmnerd)"
    state = "running" if cluster_running(ls) else "stopped"
    return f"database: PostgreSQL under {cluster_dir(ls)} ({state}, Unix socket only)"


# --- backups ------------------------------------------------------------------------------
def backup(ls: LabelStudioConfig, out: Path) -> dict:
    """Write one 0600 tar file: the database and credentials.json.  Consistent while Label
    Studio runs (pg_dump takes a snapshot; SQLite's online backup copies one state)."""
    import sqlite3
    import tempfile

    from mmnerd.labelstudio.server import CREDENTIALS

    check_kind(ls)
    folder = _ls_dir(ls)
    creds = folder / CREDENTIALS
    if not creds.exists():
        raise LabelStudioError(f"{folder}: no Label Studio here yet (no {CREDENTIALS})")
    out = Path(out).resolve()
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new folder: private
    meta = {"format": BACKUP_FORMAT, "database": ls.database,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".backup-") as tmp:
        os.chmod(tmp, 0o700)
        if ls.database == "sqlite":
            dump = Path(tmp) / SQLITE_FILE
            src_path = folder / SQLITE_FILE
            if not src_path.exists():
                raise LabelStudioError(f"{src_path}: no SQLite database to back up")
            src = sqlite3.connect(src_path, timeout=60)
            dst = sqlite3.connect(dump)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
        else:
            db = ensure_started(ls) if embedded(ls) else resolve(ls)
            dump = Path(tmp) / "database.dump"
            _run([_tool(ls, "pg_dump"), "-Fc", "--no-owner", "--no-privileges", "-f", str(dump)],
                 "pg_dump", env=db.libpq_env())  # fmt: skip
        os.chmod(dump, 0o600)
        fd = os.open(Path(tmp) / "backup.tar", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            blob = json.dumps(meta, indent=2).encode()
            info = tarfile.TarInfo("backup.json")
            info.size, info.mode = len(blob), 0o600
            tar.addfile(info, io.BytesIO(blob))
            tar.add(creds, arcname=CREDENTIALS)
            tar.add(dump, arcname=dump.name)
        os.replace(Path(tmp) / "backup.tar", out)
    meta["size"] = out.stat().st_size
    return meta


def restore(ls: LabelStudioConfig, src: Path) -> dict:
    """Replace this data dir's database and credentials with a backup's; Label Studio is
    stopped first and started again if it was running."""
    import tempfile

    from mmnerd.labelstudio import server

    src = Path(src)
    if not src.is_file():
        raise LabelStudioError(f"{src}: no such backup file")
    check_kind(ls)
    with tarfile.open(src) as tar:
        try:
            meta = json.load(tar.extractfile("backup.json"))  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError):
            raise LabelStudioError(f"{src}: not an mmnerd Label Studio backup") from None
        if meta.get("format") != BACKUP_FORMAT:
            raise LabelStudioError(f"{src}: unknown backup format {meta.get('format')!r}")
        if meta.get("database") != ls.database:
            raise LabelStudioError(
                f"{src} holds a {meta.get('database')} database; labelstudio.database is "
                f"{ls.database}: restore into a data dir of the same kind"
            )
        was_running = server.running(ls) is not None
        server.down(ls)
        folder = server.secure(ls, create=True)
        assert folder is not None
        with tempfile.TemporaryDirectory(dir=folder, prefix=".restore-") as tmp:
            os.chmod(tmp, 0o700)
            names = set(tar.getnames())
            want = SQLITE_FILE if ls.database == "sqlite" else "database.dump"
            if want not in names or server.CREDENTIALS not in names:
                raise LabelStudioError(f"{src}: incomplete backup (needs {want} and credentials)")
            for name in (want, server.CREDENTIALS):
                tar.extract(name, tmp, filter="data")
                os.chmod(Path(tmp) / name, 0o600)
            if ls.database == "sqlite":
                for suffix in ("-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        (folder / f"{SQLITE_FILE}{suffix}").unlink()
                os.replace(Path(tmp) / SQLITE_FILE, folder / SQLITE_FILE)
                if not recorded(ls):
                    write_json(folder / DB_FILE, {"kind": "sqlite"}, perms=0o600)
            else:
                db = ensure_started(ls)
                _run([_tool(ls, "pg_restore"), "--clean", "--if-exists", "--no-owner",
                      "--no-privileges", "--single-transaction", "--exit-on-error",
                      "-d", db.name, str(Path(tmp) / "database.dump")],
                     "pg_restore", env=db.libpq_env())  # fmt: skip
            os.replace(Path(tmp) / server.CREDENTIALS, folder / server.CREDENTIALS)
    server.secure(ls)
    if was_running:
        server.up(ls)
    return {**meta, "restarted": was_running}
