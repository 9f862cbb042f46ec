"""Pseudonyms that cannot be undone without a secret, and the private folder that keeps it.

Authors (and annotators, post ids or URLs where a source needs it) are published as
``HMAC-SHA256(corpus key, "<kind>:<value>")``, 16 hex digits.  The corpus key is 32
random bytes created on first use in ``<data_dir>/secrets/corpus.key`` (mode 0600, folder
0700) and never exported: without it nobody can test whether a given account wrote a
post of a published corpus, and two corpora built with different keys give the same
author different pseudonyms.  Keep the key as long as the corpus is extended (the same
author then keeps the same pseudonym); delete it to make new pseudonyms unlinkable.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from mmnerd.errors import ConfigError

SECRETS_DIR = "secrets"
KEY_FILE = "corpus.key"
PSEUDONYM_HEX = 16


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (mode 0700) or tighten an existing one; refuse one owned by
    another user or that is not a folder, in one line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.lstat()
    except FileExistsError:
        raise ConfigError(f"{path}: expected a private folder, found a file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot create a private folder ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: expected a private folder, found another kind of file")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path}: owned by another user (uid {st.st_uid}); refusing to keep "
                          "secrets there")  # fmt: skip
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Tighten an existing secret file to 0600 (refusing a symlink or another user's file)."""
    path = Path(path)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: expected a regular file holding a secret")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path}: owned by another user (uid {st.st_uid}); refusing to use it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o600)
    return path


def tighten(root: str | os.PathLike) -> None:
    """Re-tighten the corpus key's folder and file if they exist (never creates them)."""
    folder = Path(root) / SECRETS_DIR
    if folder.exists() or folder.is_symlink():
        private_dir(folder)
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a racing writer's temp file
                private_file(path)


def key_path(root: str | os.PathLike) -> Path:
    """Where the corpus key of a pipeline whose data dir is ``root`` lives."""
    return Path(root) / SECRETS_DIR / KEY_FILE


def corpus_key(root: str | os.PathLike) -> bytes:
    """The corpus key under ``root`` (created on first use; race-free across processes:
    the first complete file linked into place wins, the others read it)."""
    folder = private_dir(Path(root) / SECRETS_DIR)
    path = folder / KEY_FILE
    if not path.exists():
        tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    private_file(path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ConfigError(f"{path}: not a corpus key (expected 64 hex digits); restore it "
                          "from a backup, or delete it to start new pseudonyms")  # fmt: skip
    return key


class Pseudonymizer:
    """``p(value, kind)`` -> 16 hex digits of HMAC-SHA256(key, "<kind>:<value>"); "" -> ""."""

    def __init__(self, key: bytes):
        self._key = key

    def __call__(self, value: str, kind: str = "author") -> str:
        if not value:
            return ""
        mac = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:PSEUDONYM_HEX]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(<corpus key>)"


def pseudonymizer(root: str | os.PathLike) -> Pseudonymizer:
    """The pseudonymizer of the pipeline whose data dir is ``root``."""
    return Pseudonymizer(corpus_key(root))
