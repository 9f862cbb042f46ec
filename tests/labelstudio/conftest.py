"""ONE real Label Studio server per test session (from .venv-ls), on 127.0.0.1 and a free port.

Each test works in its own project (unique title) and its own pipeline data
folder, so tests stay independent while sharing the server.
"""

from __future__ import annotations

import itertools
import random
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


@pytest.fixture(scope="session")
def ls_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Start the real server once; yields {'base': folder, 'ls': labelstudio settings dict}."""
    if not LS_BIN.exists():
        pytest.skip(f"Label Studio server not installed ({LS_BIN} missing; run make setup)")
    from mmnerd.labelstudio import server

    base = tmp_path_factory.mktemp("ls")
    ls = {
        "data_dir": str(base / "labelstudio"),
        "venv": str(ROOT / ".venv-ls"),
        "port": free_port(),
        "document_root": str(base),
        "label_config": str(ROOT / "annotation" / "label_config.xml"),
        "instructions": str(ROOT / "annotation" / "guidelines.md"),
        "start_timeout": 300.0,
        "batch_size": 50,
    }
    cfg = PipelineConfig.model_validate({"data_dir": str(base / "boot"), "labelstudio": ls})
    info = server.up(cfg)
    try:
        yield {"base": base, "ls": ls, "info": info}
    finally:
        server.down(cfg)


@pytest.fixture
def make_config(ls_session: dict):
    """A pipeline config on the shared server with its own data folder and project title."""

    def make(**ls_over: object) -> PipelineConfig:
        n = next(_counter)
        ls = {**ls_session["ls"], "project_title": f"test project {n}", **ls_over}
        return PipelineConfig.model_validate(
            {
                "name": f"t{n}",
                "data_dir": str(ls_session["base"] / f"pipe{n}"),
                "labelstudio": ls,
                "simulate": {"annotators": 3, "noise": 0.0, "seed": 7},
            }
        )

    return make


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
