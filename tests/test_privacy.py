"""Keyed pseudonyms: the corpus key, its file modes, and what a pseudonym reveals."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from mmnerd.errors import ConfigError
from mmnerd.privacy import corpus_key, key_path, pseudonymizer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_same_author_same_pseudonym_within_a_corpus_and_another_across(tmp_path: Path) -> None:
    a, b = pseudonymizer(tmp_path / "a"), pseudonymizer(tmp_path / "b")
    again = pseudonymizer(tmp_path / "a")  # a later run of the same corpus
    assert a("https://m.test/@alice") == again("https://m.test/@alice")
    assert a("https://m.test/@alice") != b("https://m.test/@alice")
    assert a("https://m.test/@alice") != a("https://m.test/@bob")
    assert a("x", "author") != a("x", "annotator")  # kinds do not collide
    assert len(a("x")) == 16 and int(a("x"), 16) >= 0 and a("") == ""
    # the constant-salt hash anyone could recompute is not what is published
    assert a("alice") != hashlib.sha256(b"mmnerd:alice").hexdigest()[:16]
    assert "corpus key" in repr(a) and corpus_key(tmp_path / "a").hex() not in repr(a)


def test_key_file_is_0600_in_a_0700_folder_and_loosened_modes_are_fixed(tmp_path: Path) -> None:
    key = corpus_key(tmp_path)
    path = key_path(tmp_path)
    assert len(key) == 32 and mode(path) == 0o600 and mode(path.parent) == 0o700
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o755)
    assert corpus_key(tmp_path) == key
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_pre_existing_loose_folder_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir(mode=0o777)
    os.chmod(tmp_path / "secrets", 0o777)
    corpus_key(tmp_path)
    assert mode(tmp_path / "secrets") == 0o700


def test_a_damaged_key_is_one_clear_error(tmp_path: Path) -> None:
    corpus_key(tmp_path)
    key_path(tmp_path).write_text("not hex\n")
    with pytest.raises(ConfigError, match=r"corpus.key: not a corpus key"):
        corpus_key(tmp_path)


def test_a_symlinked_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "elsewhere").write_text("00" * 32)
    key_path(tmp_path).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="expected a regular file"):
        corpus_key(tmp_path)


def _key_hex(root: str) -> str:
    return corpus_key(root).hex()


def test_processes_racing_to_create_the_key_agree(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(_key_hex, [str(tmp_path)] * 8)
    assert len(set(keys)) == 1
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["corpus.key"]


def test_two_dump_pipelines_pseudonymise_the_same_author_differently(tmp_path: Path) -> None:
    """Pipeline level (collect over a JSONL dump): within a corpus one author has one
    pseudonym (also after a forced rerun); another corpus of the same dump gives other
    pseudonyms; the account names and the key never reach the stage files (issue 20.2)."""
    import json

    from mmnerd.config import PipelineConfig
    from mmnerd.pipeline import iter_stage
    from mmnerd.stages import run_collect

    dump = tmp_path / "dump.jsonl"
    rows = [
        ("1", "alice", "Great evening with friends in Paris watching the football match"),
        ("2", "bob", "The weather in London is lovely this morning, going for a walk"),
        ("3", "alice", "Just finished reading a wonderful novel about the history of Rome"),
    ]
    dump.write_text(
        "".join(json.dumps({"id": i, "text": t, "author": a}) + "\n" for i, a, t in rows)
    )

    def collect(name: str, force: bool = False) -> dict[str, str]:
        cfg = PipelineConfig.model_validate(
            {
                "name": name,
                "data_dir": str(tmp_path / name),
                "source": {"kind": "jsonl", "path": str(dump)},
            }
        )
        run_collect(cfg, force=force)
        return {p.source_id: p.author_hash for p in iter_stage(cfg, "collect")}

    a, b = collect("a"), collect("b")
    assert a["1"] == a["3"] != a["2"] and b["1"] == b["3"] != b["2"]
    assert not {a["1"], a["2"]} & {b["1"], b["2"]}
    assert collect("a", force=True) == a  # the key is kept: pseudonyms are stable
    assert a["1"] != hashlib.sha256(b"mmnerd:alice").hexdigest()[:16]
    key = corpus_key(tmp_path / "a").hex()
    for f in (tmp_path / "a").rglob("*"):
        if f.is_file() and f != key_path(tmp_path / "a"):
            blob = f.read_bytes()
            assert key.encode() not in blob and b"alice" not in blob, f
