"""Published corpora as they are: import -> dedup -> export (gold labels, source splits) with
no Label Studio, the IMGID round trip, text-only posts, and loud drops.

Fixtures are tests/data/imgid (invented texts in the exact published layouts, see
make_fixtures.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mmnerd.config import load_config
from mmnerd.export import export
from mmnerd.pipeline import stage_dir, stage_stats
from mmnerd.sources.conll import read_imgid
from mmnerd.stages import run_collect, run_dedup
from tests.conftest import ROOT, run_mmnerd

FIXTURES = ROOT / "tests" / "data" / "imgid"
PIPELINES = ROOT / "pipelines"
MMNERD = FIXTURES / "mmnerd" / "train_valid_test" / "train_valid_test_en"
CORPORA = {  # pipeline -> (fixture folder, file names train/dev/test, posts per split)
    "import-twitter2015.toml": (FIXTURES / "twitter2015", ("train.txt", "valid.txt", "test.txt"),
                                (8, 2, 3)),
    "import-twitter2017.toml": (FIXTURES / "twitter2017", ("train.txt", "valid.txt", "test.txt"),
                                (3, 1, 2)),
    "import-mmnerd.toml": (MMNERD, ("train_conll_format.txt", "valid_conll_format.txt",
                                    "test_conll_format.txt"), (10, 1, 2)),
}  # fmt: skip


def imported(tmp_path: Path, pipeline: str, *more: str):
    folder, names, _ = CORPORA[pipeline]
    files = json.dumps([str(folder / n) for n in names])
    return load_config(
        ROOT / "pipelines" / pipeline,
        [f'data_dir="{tmp_path / "data"}"', f"source.files={files}", *more],
    )


def repaired(path: Path) -> str:
    """The published file as the round trip gives it back: orphan I- tags read as B-."""
    from mmnerd.text.bio import repair_iob2

    out = []
    for imgid, tokens, labels in read_imgid(path):
        tags = repair_iob2([lab.replace("OTHER", "MISC") for lab in labels])
        tags = [t.replace("MISC", "OTHER") if "OTHER" in path.read_text() else t for t in tags]
        lines = "".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags, strict=True))
        out.append(f"IMGID:{imgid}\n{lines}\n")
    return "".join(out)


@pytest.mark.parametrize("pipeline", sorted(CORPORA))
def test_import_dedup_export_without_label_studio(tmp_path: Path, pipeline: str) -> None:
    cfg = imported(tmp_path, pipeline)
    run_collect(cfg)
    run_dedup(cfg)
    manifest, stats = export(cfg)
    folder, names, counts = CORPORA[pipeline]
    assert [s.stage for s in stats] == ["gold", "split"]
    assert not stage_dir(cfg, "push").exists() and not stage_dir(cfg, "pull").exists()
    assert [f["rows"] for f in manifest["files"]] == list(counts)  # nothing lost, nothing moved
    for split, n in zip(("train", "validation", "test"), counts, strict=True):
        table = pq.read_table(cfg.export_dir / f"{split}.parquet")
        assert table.num_rows == n and set(table.column("split").to_pylist()) == {split}
        assert table.column("image").null_count == n  # the corpora ship without pictures
        assert table.column("image_sha256").null_count == n
    # the round trip: IMGID -> Parquet -> IMGID gives back the published files
    for name, out in zip(names, ("train.txt", "valid.txt", "test.txt"), strict=True):
        back = (cfg.export_dir / "imgid" / out).read_text(encoding="utf-8")
        assert back == repaired(folder / name), f"{pipeline}: {name} differs"
    assert manifest["imgid"]["ids"] == "published"
    card = (cfg.export_dir / "README.md").read_text(encoding="utf-8")
    assert "corpus's own" in card and "| train | " in card
    fetch = stage_stats(cfg, "fetch")
    assert fetch.items_out == sum(counts) and fetch.flagged["text_only"] == sum(counts)


def test_source_splits_report_what_straddles_and_keep_posts_in_place(tmp_path: Path) -> None:
    cfg = imported(tmp_path, "import-twitter2015.toml")
    run_collect(cfg)
    run_dedup(cfg)
    export(cfg)
    straddle = json.loads((cfg.export_dir / "straddling.json").read_text())
    # "RT @... : Storm clouds over Lake Geneva tonight URL" (train) ~ the test post (J = 5/6)
    assert straddle["clusters"] == 1
    (members,) = straddle["straddling"].values()
    assert members == {"train": ["twitter2015:train:41203"], "test": ["twitter2015:test:88003"]}
    split = stage_stats(cfg, "split")
    assert split.flagged["straddling_clusters"] == 1
    assert split.flagged["posts_in_straddling_clusters"] == 2


def test_gold_labels_are_the_published_tags(tmp_path: Path) -> None:
    cfg = imported(tmp_path, "import-twitter2015.toml")
    run_collect(cfg)
    run_dedup(cfg)
    export(cfg)
    rows = {r["id"]: r for s in ("train", "validation", "test")
            for r in pq.read_table(cfg.export_dir / f"{s}.parquet").to_pylist()}  # fmt: skip
    odd = rows["twitter2015:train:77001"]
    assert odd["tokens"] == ["can", "\u200eDublin", "wait", "?", "don\x92t", "think", "so"]
    assert odd["ner_tags_str"] == ["O", "B-LOC", "O", "O", "O", "O", "O"]
    assert odd["text"] == " ".join(odd["tokens"]) and odd["lang"] == "en"
    assert rows["twitter2015:train:1187734"]["ner_tags_str"][:4] == ["B-MISC"] + ["I-MISC"] * 3
    assert rows["twitter2015:train:90211"]["tokens"][6] == "\u200e"  # no token vanishes
    assert len(rows) == 13


def mmnerd_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    files = json.dumps([str(MMNERD / n) for n in CORPORA["import-mmnerd.toml"][1]])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return run_mmnerd(*args, "-p", PIPELINES / "import-mmnerd.toml",
                      "--set", f'data_dir="{tmp_path / "data"}"', "--set", f"source.files={files}",
                      env=env, cwd=tmp_path)  # fmt: skip


def test_required_images_on_a_corpus_without_any_fails_loudly(tmp_path: Path) -> None:
    res = mmnerd_cli(tmp_path, "collect", "--set", "images.required=true")
    assert res.returncode == 3, res.stderr
    assert "warning: stage 'fetch' dropped 13 of 13 posts (100%): no_image: 13" in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("mmnerd: error: collect produced no posts: fetch dropped 13")
    assert "[images] required = false" in last


def test_the_cli_path_import_dedup_export(tmp_path: Path) -> None:
    for command in ("collect", "dedup", "export"):
        res = mmnerd_cli(tmp_path, command)
        assert res.returncode == 0, f"{command}: {res.stderr}"
        assert "Traceback" not in res.stderr
    assert "train.parquet: 10, validation.parquet: 1, test.parquet: 2" in res.stderr
    again = mmnerd_cli(tmp_path, "export")  # a rerun changes nothing
    assert again.returncode == 0 and "done before" in again.stdout
