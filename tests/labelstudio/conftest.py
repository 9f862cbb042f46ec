"""ONE real Label Studio server per test session (from .venv-ls), on 127.0.0.1 and a free port.

Each test works in its own project (unique title) and its own pipeline data
folder, so tests stay independent while sharing the server.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.records import ImageRef, Post, Span
from mmnerd.text.tokenize import tokenize
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
LS_BIN = ROOT / ".venv-ls" / "bin" / "label-studio"

_counter = itertools.count()


def _settings(base: Path, **over: object) -> dict:
    return {
        "data_dir": str(base / "labelstudio"),
        "venv": str(ROOT / ".venv-ls"),
        "port": free_port(),
        "document_root": str(base),
        "label_config": str(ROOT / "annotation" / "label_config.xml"),
        "instructions": str(ROOT / "annotation" / "guidelines.md"),
        "start_timeout": 300.0,
        "batch_size": 50,
        **over,
    }


def _serve(base: Path, **over: object) -> Iterator[dict]:
    from mmnerd.labelstudio import server

    ls = _settings(base, **over)
    cfg = PipelineConfig.model_validate({"data_dir": str(base / "boot"), "labelstudio": ls})
    info = server.up(cfg)
    try:
        yield {"base": base, "ls": ls, "info": info, "database": ls.get("database", "sqlite")}
    finally:
        server.down(cfg)


def _need_server() -> None:
    if not LS_BIN.exists():
        pytest.skip(f"Label Studio server not installed ({LS_BIN} missing; run make setup)")


@pytest.fixture(scope="session")
def ls_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Start the real server once (SQLite); yields {'base', 'ls' (labelstudio settings dict),
    'info', 'database'}."""
    _need_server()
    yield from _serve(tmp_path_factory.mktemp("ls"))


def postgres_missing() -> str:
    """Why PostgreSQL cannot be used here ('' when it can)."""
    from mmnerd.config import LabelStudioConfig
    from mmnerd.errors import MmnerdError
    from mmnerd.labelstudio import database

    try:
        database.bin_dir(LabelStudioConfig(database="postgresql"))
        database.cluster_owner(LabelStudioConfig(database="postgresql"))
    except MmnerdError as e:
        return str(e)
    return ""


def need_postgres() -> None:
    """PostgreSQL is a prerequisite of the suite (make postgres-deps installs it): its absence
    fails, unless MMNERD_TESTS_WITHOUT_POSTGRES=1 says to skip these tests on purpose."""
    why = postgres_missing()
    if not why:
        return
    if os.environ.get("MMNERD_TESTS_WITHOUT_POSTGRES") == "1":
        pytest.skip(f"PostgreSQL tests skipped on request: {why}")
    pytest.fail(f"{why} (or set MMNERD_TESTS_WITHOUT_POSTGRES=1 to skip them)", pytrace=False)


def postgres_base(name: str) -> Path:
    """A temp folder the ``postgres`` system user can pass through (pytest's own temp root is
    0700 root, and an embedded cluster run as that user lives below it)."""
    base = Path(tempfile.mkdtemp(prefix=f"mmnerd-{name}-"))
    base.chmod(0o711)
    return base


@pytest.fixture(scope="session")
def pg_session() -> Iterator[dict]:
    """The real server once more, on a PostgreSQL cluster mmnerd initialises and runs under
    its data dir (``labelstudio.database = "postgresql"``, no URL)."""
    _need_server()
    need_postgres()
    base = postgres_base("pg")
    try:
        yield from _serve(base, database="postgresql")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_session(request: pytest.FixtureRequest) -> dict:
    """The SQLite or the PostgreSQL session server: loop tests run on both."""
    return request.getfixturevalue("ls_session" if request.param == "sqlite" else "pg_session")


def _maker(session: dict):
    def make(**ls_over: object) -> PipelineConfig:
        n = next(_counter)
        ls = {**session["ls"], "project_title": f"test project {n}", **ls_over}
        return PipelineConfig.model_validate(
            {
                "name": f"t{n}",
                "data_dir": str(session["base"] / f"pipe{n}"),
                "labelstudio": ls,
                "simulate": {"annotators": 3, "noise": 0.0, "seed": 7},
            }
        )

    return make


@pytest.fixture
def make_config(ls_session: dict):
    """A pipeline config on the shared SQLite server with its own data folder and project."""
    return _maker(ls_session)


@pytest.fixture
def make_db_config(db_session: dict):
    """:func:`make_config` on the SQLite and on the PostgreSQL server (parametrised)."""
    return _maker(db_session)


WORDS = {
    "en": ("Great day with", "in", "thanks to", "watching"),
    "fr": ("Belle journée avec", "à", "merci à", "on regarde"),
    "de": ("Schöner Tag mit", "in", "danke an", "wir schauen"),
    "es": ("Gran día con", "en", "gracias a", "viendo"),
}
NAMES = {
    "PER": ["@Macron", "Zinédine Zidane", "Ame\u0301lie Poulain", "Jürgen Klopp", "Rosalía"],
    "LOC": ["Paris", "São Paulo", "Zürich", "Ciudad de México", "Köln"],
    "ORG": ["#NASA", "Real Madrid", "SNCF", "Bayern München", "UNESCO"],
    "MISC": ["#Paris2024", "Oktoberfest", "Tour de France", "iPhone", "Día de los Muertos"],
}
EMOJI = ["😀", "🇫🇷", "👨‍👩‍👧‍👦", "👍🏽", "❤️", "🎉", "1️⃣", ""]


def make_posts(n: int, seed: int = 1, root: Path | None = None) -> list[Post]:
    """``n`` posts with emoji, ZWJ sequences, flags, combining marks, CRLF and gold spans."""
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        lang = ("en", "fr", "de", "es")[i % 4]
        w = WORDS[lang]
        parts: list[tuple[str, str | None]] = [(rng.choice(EMOJI), None), (w[0], None)]
        t1 = rng.choice(list(NAMES))
        parts += [(rng.choice(NAMES[t1]), t1), (rng.choice(EMOJI) + rng.choice(["", "\r\n"]), None)]
        t2 = rng.choice(list(NAMES))
        parts += [(w[1], None), (rng.choice(NAMES[t2]), t2)]
        if rng.random() < 0.5:
            parts += [(w[3], None), (rng.choice(NAMES["MISC"]), "MISC")]
        parts.append((rng.choice(EMOJI) + " !", None))
        text = ""
        spans: list[Span] = []
        for piece, label in parts:
            if text and not text.endswith(("\n", " ")):
                text += " "
            if label:
                spans.append(Span(len(text), len(text) + len(piece), label, piece))
            text += piece
        text = text.strip(" ")
        tokens, offs = tokenize(text, lang)
        image = None
        if root is not None:
            rel = f"ab/img{i:04d}.png"
            (root / "images" / "ab").mkdir(parents=True, exist_ok=True)
            (root / "images" / rel).write_bytes(_PNG)
            image = ImageRef(url=f"http://example.invalid/{i}.png", status="ok", path=rel)
        posts.append(
            Post(
                id=f"test:{seed}:{i}",
                source="test",
                source_id=str(i),
                text=text,
                lang=lang,
                tokens=tokens,
                token_offsets=offs,
                gold_spans=spans,
                image=image,
                synthetic=True,
            )
        )
    return posts


# a 1x1 transparent PNG
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5ddfb1c0000000049454e44ae426082"
)
