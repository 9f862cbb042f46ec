"""Start, reuse, stop the Label Studio server installed in its own venv (``.venv-ls``).

``up(config)`` starts ``label-studio start`` bound to 127.0.0.1 with the data
dir, admin user and API token under our control:

* ``<data_dir>/credentials.json`` (mode 0600) holds the admin e-mail, a
  generated password, the API token and Django's secret key.  Created on the
  first start, reused afterwards; never printed or logged.
* The token is a *legacy* token (``Authorization: Token ...``): on a new data
  dir Label Studio sets it from ``LABEL_STUDIO_USER_TOKEN`` and, with
  ``--enable-legacy-api-token``, stores "legacy tokens enabled" in the
  organisation, so it keeps working on every restart.
* One server per data dir, whatever is killed when: ``up`` takes an exclusive
  ``flock`` on ``<data_dir>/server.lock`` and hands the locked file to the server
  process, which holds it for its whole life (the starter closes its copy), so a
  server that survives a killed ``mmnerd`` still holds it.  A lock that is held
  means "a server lives or is starting here": ``up`` waits for it (never starts a
  second one); a free lock means none does, and only then is a stale
  ``server.json`` removed.
* ``<data_dir>/server.json`` holds pid, port and url (a convenience: the server is
  also found without it, as the ``label-studio`` process whose environment names
  this data dir, its port read from its command line); ``<data_dir>/server.log``
  the server's output.  A healthy server that accepts our token is reused.
* Privacy: the data dir is kept 0700 and every file in it that holds a secret
  (credentials, the SQLite database, which stores the token, server.json, the log)
  0600 on every command that touches it (``up``, ``running``, ``down``,
  ``status``), a pre-existing looser folder included; the server runs with umask
  077.
* Local files: ``LOCAL_FILES_SERVING_ENABLED=true`` with
  ``LOCAL_FILES_DOCUMENT_ROOT=labelstudio.document_root`` so images under it
  are served as ``/data/local-files/?d=<path relative to the root>``.

Label Studio silently moves to the next port when the requested one is busy;
we check the port before starting and that the server answering is ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmnerd.config import LabelStudioConfig, PipelineConfig
from mmnerd.errors import LabelStudioError
from mmnerd.io import read_json, write_json
from mmnerd.privacy import private_dir, private_file

CREDENTIALS = "credentials.json"
SERVER_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "server.log"
DATABASE = "label_studio.sqlite3"
PRIVATE_FILES = (
    CREDENTIALS,
    "database.json",
    SERVER_FILE,
    LOCK_FILE,
    LOG_FILE,
    DATABASE,
    f"{DATABASE}-wal",
    f"{DATABASE}-shm",
    f"{DATABASE}-journal",
)
"""Files in the data dir that hold (or may hold) a secret: kept 0600."""


@dataclass
class ServerInfo:
    """Where our server listens and how to talk to it (the token never appears in repr)."""

    url: str
    token: str = field(repr=False)
    pid: int = 0
    port: int = 0
    reused: bool = False
    email: str = ""


def _ls(config: PipelineConfig | LabelStudioConfig) -> LabelStudioConfig:
    return config.labelstudio if isinstance(config, PipelineConfig) else config


def data_dir(config: PipelineConfig | LabelStudioConfig) -> Path:
    return Path(_ls(config).data_dir).resolve()


def document_root(config: PipelineConfig | LabelStudioConfig) -> Path:
    return Path(_ls(config).document_root).resolve()


def credentials(config: PipelineConfig | LabelStudioConfig, create: bool = False) -> dict[str, str]:
    """The admin credentials and API token (created with ``secrets`` on first use)."""
    ls = _ls(config)
    folder = data_dir(ls)
    path = folder / CREDENTIALS
    if folder.is_dir():
        secure(ls)
    creds = read_json(path)
    if creds:
        return creds
    if not create:
        raise LabelStudioError(f"{path}: no Label Studio credentials yet; run `mmnerd ls up` first")
    if (folder / DATABASE).exists() or (folder / "postgres" / "PG_VERSION").exists():
        raise LabelStudioError(
            f"{folder} holds a Label Studio database that mmnerd did not create "
            f"(no {CREDENTIALS}); point labelstudio.data_dir to a new folder"
        )
    creds = {
        "email": ls.admin_email,
        "password": secrets.token_urlsafe(18),
        "token": secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(40),
    }
    _private(ls, folder)
    write_json(path, creds, perms=0o600)
    return creds


def secure(config: PipelineConfig | LabelStudioConfig, create: bool = False) -> Path | None:
    """Keep the data dir 0700 and its secret-holding files 0600 (a looser folder or file
    found, e.g. made by hand with mode 0755, is tightened; one owned by another user is
    refused in one line).  Without ``create`` a missing data dir is left missing."""
    ls = _ls(config)
    folder = data_dir(ls)
    if not create and not folder.exists():
        return None
    _private(ls, folder)
    for name in PRIVATE_FILES:
        path = folder / name
        if path.exists() or path.is_symlink():
            private_file(path)
    return folder


def _private(ls: LabelStudioConfig, folder: Path) -> None:
    """The data dir: 0700, or 0710 for the ``postgres`` group when an embedded PostgreSQL
    run by that user (we are root) must reach its folder inside."""
    from mmnerd.labelstudio import database

    private_dir(folder, database.traverse_gid(ls))


class _Lock:
    """The data dir's ``server.lock`` (never replaced nor deleted: every process must lock
    the same inode).  ``acquire()`` is non-blocking: False means a server lives or is
    starting on this data dir (or another ``up`` is starting one)."""

    def __init__(self, folder: Path):
        self.fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases our hold; a server that inherited it keeps it
            self.fd = -1

    def __enter__(self) -> _Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock_held(folder: Path) -> bool:
    """True while a server (or an ``up`` starting one) holds the data dir's lock."""
    if not (folder / LOCK_FILE).exists():
        return False
    with _Lock(folder) as lock:
        return not lock.acquire()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _get(url: str, token: str | None = None, timeout: float = 5.0) -> Any:
    import requests

    headers = {"Authorization": f"Token {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=timeout)


def _healthy(url: str) -> bool:
    try:
        return _get(f"{url}/health", timeout=3).status_code == 200
    except Exception:
        return False


def _is_ours(url: str, creds: dict[str, str]) -> bool:
    """True when the server at ``url`` accepts our token as our admin."""
    try:
        r = _get(f"{url}/api/current-user/whoami", creds["token"], timeout=10)
        return r.status_code == 200 and r.json().get("email") == creds["email"]
    except Exception:
        return False


def _port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _client_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "") else bind


def _proc_env(pid: int, name: str) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode("utf-8", "replace")
    return None


def _proc_args(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def server_pids(config: PipelineConfig | LabelStudioConfig) -> list[int]:
    """Live ``label-studio`` processes whose environment names this data dir (found
    through /proc, with or without server.json; servers of other data dirs are left out)."""
    folder = str(data_dir(config))
    pids = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            args = _proc_args(pid)
            if not any("label-studio" in a for a in args[:2]) or "start" not in args:
                continue
            if _proc_env(pid, "LABEL_STUDIO_BASE_DATA_DIR") == folder and _pid_alive(pid):
                pids.append(pid)
    if not pids:  # no /proc (not Linux): trust server.json
        info = read_json(data_dir(config) / SERVER_FILE) or {}
        pid = int(info.get("pid") or 0)
        if not Path("/proc/self").exists() and _pid_alive(pid):
            pids.append(pid)
    return sorted(pids)


def _where(config: PipelineConfig | LabelStudioConfig, pid: int) -> dict[str, Any]:
    """url, host and port of the server ``pid``: from server.json when it names that pid,
    else from the process's own command line (``--port P --internal-host H``)."""
    ls = _ls(config)
    info = read_json(data_dir(ls) / SERVER_FILE) or {}
    if int(info.get("pid") or 0) == pid and info.get("url"):
        return info
    args = _proc_args(pid)

    def opt(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args[:-1] else default

    port = opt("--port", str(ls.port))
    bind = opt("--internal-host", ls.host)
    url = f"http://{_client_host(bind)}:{port}"
    return {"pid": pid, "port": int(port) if port.isdigit() else ls.port, "url": url, "host": bind}


def running(config: PipelineConfig | LabelStudioConfig) -> ServerInfo | None:
    """Our server on this data dir if it is alive, healthy and accepts our token."""
    ls = _ls(config)
    folder = secure(ls)
    if folder is None:
        return None
    creds = read_json(folder / CREDENTIALS)
    pids = server_pids(ls)
    if not creds or not pids:
        return None
    where = _where(ls, pids[0])
    url = where["url"]
    if not (_healthy(url) and _is_ours(url, creds)):
        return None
    return ServerInfo(url, creds["token"], pids[0], int(where["port"]), True, creds["email"])


def _binary(ls: LabelStudioConfig) -> Path:
    exe = Path(ls.venv).resolve() / "bin" / "label-studio"
    if not exe.exists():
        raise LabelStudioError(
            f"{exe} not found: install the server with "
            f"`python -m venv {ls.venv} && {ls.venv}/bin/pip install label-studio` (make setup)"
        )
    return exe


def server_env(ls: LabelStudioConfig, creds: dict[str, str], db: Any = None) -> dict[str, str]:
    """The environment Label Studio runs with (contains secrets: never log it).  ``db``: a
    :class:`~mmnerd.labelstudio.database.Database` (default: the config's, not started)."""
    from mmnerd.labelstudio import database

    env = database.clean_env(dict(os.environ))
    env.update(database.server_env(db or database.resolve(ls), ls.lock_ttl))
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir(ls)),
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_USERNAME": creds["email"],
            "LABEL_STUDIO_PASSWORD": creds["password"],
            "LABEL_STUDIO_USER_TOKEN": creds["token"],
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "SECRET_KEY": creds["secret_key"],
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(document_root(ls)),
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def up(config: PipelineConfig | LabelStudioConfig, public: bool = False) -> ServerInfo:
    """Start our Label Studio server, or reuse (or wait for) the one of this data dir.

    Never two servers on one data dir: whoever holds ``server.lock`` starts the server
    and hands the lock to it; everyone else waits (up to ``start_timeout``) for that
    server to answer, and starts one only once the lock is free (no server left)."""
    ls = _ls(config)
    folder = secure(ls, create=True)
    assert folder is not None
    deadline = time.monotonic() + ls.start_timeout
    while True:
        with _Lock(folder) as lock:
            if lock.acquire():
                found = running(ls)  # a server from before the lock (older mmnerd)
                if found is None:
                    return _start(ls, folder, lock, public)
            else:
                found = running(ls)
        if found:
            bound = _where(ls, found.pid).get("host", ls.host)
            if public and bound != "0.0.0.0":
                raise LabelStudioError(
                    f"Label Studio already runs on {bound} only; stop it with `mmnerd ls down` "
                    f"and start it again with --public"
                )
            return found
        if time.monotonic() > deadline:
            pids = server_pids(ls)
            who = f"Label Studio (pid {pids[0]})" if pids else "another `mmnerd` starting it"
            raise LabelStudioError(
                f"{who} holds {folder} but is not ready after {ls.start_timeout:.0f} s; "
                f"see {folder / LOG_FILE}, or stop it with `mmnerd ls down`"
            )
        time.sleep(0.5)


def _start(ls: LabelStudioConfig, folder: Path, lock: _Lock, public: bool) -> ServerInfo:
    """Start the server while holding ``lock`` (no other server lives on ``folder``)."""
    exe, bind, host = _preflight(ls, folder, public)
    creds = credentials(ls, create=True)
    document_root(ls).mkdir(parents=True, exist_ok=True)
    proc, log_offset = _spawn(ls, folder, lock, [str(exe), "start", "--no-browser", "--port",
                              str(ls.port), "--internal-host", bind, "--enable-legacy-api-token",
                              "--log-level", ls.log_level], creds)  # fmt: skip
    url = f"http://{host}:{ls.port}"
    write_json(
        folder / SERVER_FILE,
        {"pid": proc.pid, "port": ls.port, "url": url, "host": bind},
        perms=0o600,
    )
    _wait_ready(ls, folder, proc, url, creds, log_offset)
    return ServerInfo(url, creds["token"], proc.pid, ls.port, False, creds["email"])


def _preflight(ls: LabelStudioConfig, folder: Path, public: bool) -> tuple[Path, str, str]:
    """Refuse to start beside a stray server, without the server installed, on 0.0.0.0
    without ``public`` or on a busy port; returns (the ``label-studio`` executable, address
    to bind, address to reach it)."""
    legacy = server_pids(ls)
    if legacy:  # alive, not holding the lock, not answering as ours: started by hand?
        raise LabelStudioError(
            f"a Label Studio process (pid {legacy[0]}) runs on {folder} without its lock "
            f"and does not answer; stop it with `mmnerd ls down`"
        )
    _forget(folder)  # no server holds the lock: a leftover server.json is stale
    exe = _binary(ls)
    bind = "0.0.0.0" if public else ls.host
    if bind == "0.0.0.0" and not public:
        raise LabelStudioError("labelstudio.host = 0.0.0.0 needs `mmnerd ls up --public`")
    if public:
        print(
            "WARNING: Label Studio will listen on ALL interfaces (0.0.0.0): anyone who can "
            "reach this machine can reach the login page; put it behind HTTPS (docs/annotation.md)",
            file=sys.stderr,
        )
    host = _client_host(bind)
    if _port_busy(host, ls.port):
        raise LabelStudioError(
            f"port {ls.port} on {host} is in use by another program; "
            f"set labelstudio.port (e.g. --set labelstudio.port={ls.port + 1})"
        )
    return exe, bind, host


def _spawn(
    ls: LabelStudioConfig, folder: Path, lock: _Lock, cmd: list[str], creds: dict
) -> tuple[subprocess.Popen, int]:
    """Start the database (PostgreSQL) and the server process, which takes over ``lock``;
    returns the process and where this start's lines begin in the log."""
    from mmnerd.labelstudio import database

    db = database.ensure_started(ls)  # PostgreSQL: initialised / started first
    stray = sorted(set(os.environ) - set(database.clean_env(dict(os.environ))))
    if stray:
        print(
            f"note: ignoring {', '.join(stray)} from the environment: Label Studio's database "
            f"is labelstudio.database ({ls.database}) and labelstudio.database_url",
            file=sys.stderr,
        )
    fd = os.open(folder / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    log_offset = os.fstat(fd).st_size  # earlier runs' lines are not this start's
    with open(fd, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=server_env(ls, creds, db),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: down() stops it and its children
            pass_fds=(lock.fd,),  # the server holds the data dir's lock for its whole life
            umask=0o077,  # its database (which holds our token) and uploads: owner only
        )
    lock.close()  # from now on only the server holds it: it dies, the lock is free
    return proc, log_offset


def _wait_ready(
    ls: LabelStudioConfig,
    folder: Path,
    proc: subprocess.Popen,
    url: str,
    creds: dict,
    log_offset: int,
) -> None:
    """Wait until the server answers as ours; stop it (and say why) if it exits, moves to
    another port, answers as another server or stays unready past ``start_timeout``."""
    log_path = folder / LOG_FILE

    def fail(message: str) -> LabelStudioError:
        _stop_pid(proc.pid)
        _forget_if_free(folder)
        return LabelStudioError(message)

    deadline = time.monotonic() + ls.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _forget_if_free(folder)
            raise LabelStudioError(
                f"Label Studio exited with code {proc.returncode} while starting; see {log_path}"
            )
        moved, log_offset = _moved_port(log_path, log_offset, ls.port)
        if moved:
            raise fail(
                f"Label Studio found port {ls.port} busy and moved to {moved}; "
                f"set labelstudio.port to a free port"
            )
        if _healthy(url):
            if not _is_ours(url, creds):
                raise fail(
                    f"the server answering on {url} does not accept our API token "
                    f"(another Label Studio on that port, or {folder} was reused)"
                )
            return
        time.sleep(0.5)
    raise fail(
        f"Label Studio did not become ready within {ls.start_timeout:.0f} s; see {log_path} "
        f"(raise labelstudio.start_timeout on a slow machine)"
    )


def _moved_port(log_path: Path, offset: int, port: int) -> tuple[int, int]:
    """Look for Label Studio's 'Port N is in use. Trying to start at M' warning."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return 0, offset
    text = chunk.decode("utf-8", "replace")
    marker = "Trying to start at "
    if f"Port {port} is in use" in text and marker in text:
        tail = text.split(marker, 1)[1].split()[0]
        return (int(tail) if tail.isdigit() else port + 1), offset + len(chunk)
    # keep the last partial line for the next read
    cut = chunk.rfind(b"\n") + 1
    return 0, offset + cut


def _threads_alive(pid: int) -> bool:
    """True while any thread of ``pid`` is not yet a zombie (its sockets may still be open)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for t in tasks:
        with contextlib.suppress(OSError):
            if (t / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
    return False


def _forget(folder: Path) -> None:
    (folder / SERVER_FILE).unlink(missing_ok=True)


def _forget_if_free(folder: Path) -> None:
    """Remove server.json only if no server holds the lock (else it may be a new one's)."""
    with _Lock(folder) as lock:
        if lock.acquire():
            _forget(folder)


def _stop_pid(pid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL after ``grace`` seconds."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid != pid:  # not a group leader we started: signal only the process itself
        pgid = 0
    with contextlib.suppress(ProcessLookupError):
        if pgid:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return  # our child, reaped: every thread (and its sockets) is gone
        except ChildProcessError:
            # not our child: a zombie whose threads still run keeps its sockets open,
            # so wait until the process entry itself is gone or reaped
            if not Path(f"/proc/{pid}").exists() or (
                not _pid_alive(pid) and not _threads_alive(pid)
            ):
                return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        if pgid:
            os.killpg(pgid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def down(config: PipelineConfig | LabelStudioConfig) -> bool:
    """Stop the server of this data dir (found with or without server.json, starting or
    ready); False if none ran.  Other Label Studio processes are left alone."""
    ls = _ls(config)
    folder = secure(ls)
    if folder is None:
        return False
    from mmnerd.labelstudio import database

    pids = server_pids(ls)
    # an `up` that holds the lock but has not exec'd the server yet: give it a moment
    deadline = time.monotonic() + 10
    while not pids and _lock_held(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = server_pids(ls)
    if not pids:
        _forget_if_free(folder)
        if not _lock_held(folder):
            database.stop(ls)  # an embedded PostgreSQL left by a killed server
        return False
    places = [_where(ls, pid) for pid in pids]
    for pid in pids:
        _stop_pid(pid)
    _forget_if_free(folder)
    deadline = time.monotonic() + 10
    for where in places:
        host, port = _client_host(where.get("host", ls.host)), int(where.get("port", ls.port))
        while _port_busy(host, port) and time.monotonic() < deadline:
            time.sleep(0.2)  # the listening socket closes when the last thread exits
    if not _lock_held(folder):
        database.stop(ls)  # the embedded PostgreSQL (never one given by URL)
    return True


def status(config: PipelineConfig | LabelStudioConfig) -> str:
    """One line: running (url, pid), starting / not answering, or not running."""
    ls = _ls(config)
    info = running(ls)
    if info:
        return f"Label Studio running at {info.url} (pid {info.pid}, data {data_dir(ls)})"
    pids = server_pids(ls)
    if pids:
        url = _where(ls, pids[0])["url"]
        return (
            f"Label Studio process {pids[0]} is alive but not ready at {url} "
            f"(starting, or not ours; data {data_dir(ls)})"
        )
    return f"Label Studio is not running (data {data_dir(ls)})"


def connect(config: PipelineConfig | LabelStudioConfig, start: bool = True) -> ServerInfo:
    """The running server (started if needed and ``start``), for clients."""
    info = up(config) if start else running(config)
    if info is None:
        raise LabelStudioError("Label Studio is not running; start it with `mmnerd ls up`")
    return info
