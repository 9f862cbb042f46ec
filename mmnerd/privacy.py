"""Pseudonyms that cannot be undone without a secret, and the private folder that keeps it.

Authors (and annotators, post ids or URLs where a source needs it) are published as
``HMAC-SHA256(corpus key, "<kind>:<value>")``, 16 hex digits.  The corpus key is 32
random bytes created on first use in ``<data_dir>/secrets/corpus.key`` (mode 0600, folder
0700) and never exported: without it nobody can test whether a given account wrote a
post of a published corpus, and two corpora built with different keys give the same
author different pseudonyms.  Keep the key as long as the corpus is extended (the same
author then keeps the same pseudonym); delete it to make new pseudonyms unlinkable.

Sources whose post ids or URLs name an account (Mastodon ``/@user/...``, Bluesky DIDs)
publish pseudonymised ids instead and keep the real ones in :class:`PrivateIds`
(``<data_dir>/private/<source>-ids.jsonl``, 0600 in a 0700 folder), for takedowns and
deletions; :func:`card_privacy_lines` says on the dataset card what an export keeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmnerd.errors import ConfigError

if TYPE_CHECKING:
    from mmnerd.config import PipelineConfig

SECRETS_DIR = "secrets"
PRIVATE_DIR = "private"
KEY_FILE = "corpus.key"
PSEUDONYM_HEX = 16


def private_dir(path: str | os.PathLike, traverse_gid: int | None = None) -> Path:
    """Create ``path`` (mode 0700) or tighten an existing one; refuse one owned by
    another user or that is not a folder, in one line.  ``traverse_gid``: that group may
    pass through (mode 0710, e.g. a database server run by its own system user reaching
    its folder inside), never list nor read."""
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
    if traverse_gid is not None:
        if st.st_gid != traverse_gid:
            os.chown(path, -1, traverse_gid)
        if stat.S_IMODE(st.st_mode) != 0o710:
            os.chmod(path, 0o710)
    elif stat.S_IMODE(st.st_mode) & 0o077:
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


class PrivateIds:
    """The private mapping of one source: pseudonymised post id -> real URI and URL.

    Append-only JSONL (``{"id", "uri", "url"}`` a line) in ``<data_dir>/private/``
    (file 0600, folder 0700), written before the posts it names are journaled, never
    copied into stage outputs or exports.  Use it to honour a takedown (find the URL,
    drop its id) and to re-check deletions before a release.
    """

    def __init__(self, root: str | os.PathLike, source: str):
        self.path = Path(root) / PRIVATE_DIR / f"{source}-ids.jsonl"

    def add(self, rows: Iterable[dict[str, str]]) -> None:
        """Append ``rows`` durably (fsynced)."""
        blob = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        if not blob:
            return
        private_dir(self.path.parent)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            data = memoryview(blob.encode("utf-8"))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        private_file(self.path)

    def load(self) -> dict[str, dict[str, str]]:
        """id -> row (the last line per id wins; a torn last line is ignored)."""
        if not self.path.exists():
            return {}
        private_file(self.path)
        out: dict[str, dict[str, str]] = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    out[str(row["id"])] = row
                except (ValueError, KeyError, TypeError):
                    continue
        return out


_ACCOUNT_SOURCES = {"mastodon": "status URI", "bluesky": "at:// URI"}


def card_privacy_lines(config: PipelineConfig) -> list[str]:
    """What an export of ``config`` publishes about people, as dataset-card bullet lines."""
    kind = config.source.kind
    opts: dict[str, Any] = config.source.options()
    lines = []
    if kind in _ACCOUNT_SOURCES:
        what = _ACCOUNT_SOURCES[kind]
        lines.append(
            f"- `id` and `source_id` are keyed pseudonyms of each post's {what} "
            "(HMAC-SHA256 with a secret corpus key, 16 hex digits); the real URIs and URLs "
            "stay with the corpus builder in a private file, for takedowns and deletions."
        )
        if opts.get("publish_urls"):
            lines.append(
                "- `url` holds each post's public URL, which names the author's account "
                "(published on request: `source.publish_urls = true`)."
            )
        else:
            lines.append("- `url` is empty: no column names the author's account.")
        lines.append(
            "- `author_hash` is a keyed pseudonym of the account (same key): it groups a "
            "person's posts but cannot be linked to the account without the key."
        )
        lines.append(
            "- Not stored: account names, display names, avatars, follower data, mentioned "
            "accounts' profile URLs and DIDs, quoted posts, Bluesky CIDs."
        )
    else:
        lines.append(
            f"- `id`, `source_id`, `url` and `author_hash` are as the `{kind}` source gives "
            "them (see docs/sources.md)."
        )
    norm = config.normalize
    if norm.url_placeholder:
        lines.append(f"- URLs in the text are replaced by `{norm.url_placeholder}`.")
    if norm.mention_placeholder:
        lines.append(f"- @mentions in the text are replaced by `{norm.mention_placeholder}`.")
    else:
        lines.append(
            "- @mentions stay in the text (some are entities); they can name accounts "
            "(set `normalize.mention_placeholder` to replace them)."
        )
    if config.images.store == "normalized":
        lines.append("- Images are re-encoded or stripped losslessly: no EXIF/GPS metadata.")
    else:
        lines.append("- Images are stored as downloaded: their metadata (EXIF, GPS) is kept.")
    return lines
