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
* ``<data_dir>/server.json`` holds pid, port and url; ``<data_dir>/server.log``
  the server's output.  A server recorded there that is alive, healthy and
  accepts our token is reused.
* Local files: ``LOCAL_FILES_SERVING_ENABLED=true`` with
  ``LOCAL_FILES_DOCUMENT_ROOT=labelstudio.document_root`` so images under it
  are served as ``/data/local-files/?d=<path relative to the root>``.

Label Studio silently moves to the next port when the requested one is busy;
we check the port before starting and that the server answering is ours.
"""

from __future__ import annotations

import contextlib
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

CREDENTIALS = "credentials.json"
SERVER_FILE = "server.json"
LOG_FILE = "server.log"


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
    path = data_dir(ls) / CREDENTIALS
    creds = read_json(path)
    if creds:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, 0o600)
        return creds
    if not create:
        raise LabelStudioError(f"{path}: no Label Studio credentials yet; run `mmnerd ls up` first")
    if (data_dir(ls) / "label_studio.sqlite3").exists():
        raise LabelStudioError(
            f"{data_dir(ls)} holds a Label Studio database that mmnerd did not create "
            f"(no {CREDENTIALS}); point labelstudio.data_dir to a new folder"
        )
    creds = {
        "email": ls.admin_email,
        "password": secrets.token_urlsafe(18),
        "token": secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(40),
    }
    data_dir(ls).mkdir(parents=True, exist_ok=True, mode=0o700)
    write_json(path, creds, perms=0o600)
    return creds


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


def running(config: PipelineConfig | LabelStudioConfig) -> ServerInfo | None:
    """Our server if server.json names a live, healthy process that accepts our token."""
    ls = _ls(config)
    info = read_json(data_dir(ls) / SERVER_FILE)
    creds = read_json(data_dir(ls) / CREDENTIALS)
    if not info or not creds or not _pid_alive(int(info.get("pid", 0))):
        return None
    url = info["url"]
    if not (_healthy(url) and _is_ours(url, creds)):
        return None
    return ServerInfo(url, creds["token"], info["pid"], info["port"], True, creds["email"])


def _binary(ls: LabelStudioConfig) -> Path:
    exe = Path(ls.venv).resolve() / "bin" / "label-studio"
    if not exe.exists():
        raise LabelStudioError(
            f"{exe} not found: install the server with "
            f"`python -m venv {ls.venv} && {ls.venv}/bin/pip install label-studio` (make setup)"
        )
    return exe


def server_env(ls: LabelStudioConfig, creds: dict[str, str]) -> dict[str, str]:
    """The environment Label Studio runs with (contains secrets: never log it)."""
    env = dict(os.environ)
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
    """Start our Label Studio server, or reuse the one already running; wait until ready."""
    ls = _ls(config)
    found = running(ls)
    if found:
        bound = (read_json(data_dir(ls) / SERVER_FILE) or {}).get("host", ls.host)
        if public and bound != "0.0.0.0":
            raise LabelStudioError(
                f"Label Studio already runs on {bound} only; stop it with `mmnerd ls down` "
                f"and start it again with --public"
            )
        return found
    exe = _binary(ls)
    creds = credentials(ls, create=True)
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
    document_root(ls).mkdir(parents=True, exist_ok=True)
    folder = data_dir(ls)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = folder / LOG_FILE
    cmd = [
        str(exe),
        "start",
        "--no-browser",
        "--port",
        str(ls.port),
        "--internal-host",
        bind,
        "--enable-legacy-api-token",
        "--log-level",
        ls.log_level,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=server_env(ls, creds),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: down() stops it and its children
        )
    url = f"http://{host}:{ls.port}"
    write_json(folder / SERVER_FILE, {"pid": proc.pid, "port": ls.port, "url": url, "host": bind})
    deadline = time.monotonic() + ls.start_timeout
    log_offset = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _forget(folder)
            raise LabelStudioError(
                f"Label Studio exited with code {proc.returncode} while starting; see {log_path}"
            )
        moved, log_offset = _moved_port(log_path, log_offset, ls.port)
        if moved:
            _stop_pid(proc.pid)
            _forget(folder)
            raise LabelStudioError(
                f"Label Studio found port {ls.port} busy and moved to {moved}; "
                f"set labelstudio.port to a free port"
            )
        if _healthy(url):
            if not _is_ours(url, creds):
                _stop_pid(proc.pid)
                _forget(folder)
                raise LabelStudioError(
                    f"the server answering on {url} does not accept our API token "
                    f"(another Label Studio on that port, or {folder} was reused)"
                )
            return ServerInfo(url, creds["token"], proc.pid, ls.port, False, creds["email"])
        time.sleep(0.5)
    _stop_pid(proc.pid)
    _forget(folder)
    raise LabelStudioError(
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
    """Stop the server that ``up`` started (recorded in server.json); False if none ran."""
    ls = _ls(config)
    folder = data_dir(ls)
    info = read_json(folder / SERVER_FILE)
    if not info:
        return False
    pid = int(info.get("pid", 0))
    if not _pid_alive(pid):
        _forget(folder)
        return False
    if not _cmdline_is_label_studio(pid):
        _forget(folder)  # the pid was reused by an unrelated process: leave it alone
        return False
    _stop_pid(pid)
    _forget(folder)
    host, port = _client_host(info.get("host", ls.host)), int(info.get("port", ls.port))
    deadline = time.monotonic() + 10
    while _port_busy(host, port) and time.monotonic() < deadline:
        time.sleep(0.2)  # the listening socket closes when the last thread exits
    return True


def _cmdline_is_label_studio(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc (not Linux): trust server.json
    return b"label-studio" in cmd


def status(config: PipelineConfig | LabelStudioConfig) -> str:
    """One line: running (url, pid) or not."""
    ls = _ls(config)
    info = running(ls)
    if info:
        return f"Label Studio running at {info.url} (pid {info.pid}, data {data_dir(ls)})"
    rec = read_json(data_dir(ls) / SERVER_FILE)
    if rec and _pid_alive(int(rec.get("pid", 0))):
        return f"Label Studio process {rec['pid']} is alive but not ready at {rec.get('url')}"
    return f"Label Studio is not running (data {data_dir(ls)})"


def connect(config: PipelineConfig | LabelStudioConfig, start: bool = True) -> ServerInfo:
    """The running server (started if needed and ``start``), for clients."""
    info = up(config) if start else running(config)
    if info is None:
        raise LabelStudioError("Label Studio is not running; start it with `mmnerd ls up`")
    return info
