"""The whole chain on a tiny sample (60 posts) against the real Label Studio server:
collect -> dedup -> push -> simulate -> pull -> export -> benchmark, then a rerun
that must change nothing (no new tasks, byte-identical Parquet)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from mmnerd.config import PipelineConfig
from mmnerd.export import export
from mmnerd.pipeline import iter_excluded, iter_stage
from mmnerd.stages import (
    run_benchmark,
    run_collect,
    run_dedup,
    run_predict,
    run_pull,
    run_push,
    run_simulate,
)
from mmnerd.text.bio import spans_to_bio

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def chain_config(ls_session: dict) -> PipelineConfig:
    base = ls_session["base"]
    return PipelineConfig.model_validate(
        {
            "name": "chain",
            "data_dir": str(base / "chain"),
            "shard_size": 25,
            "source": {"kind": "sample", "posts": 60, "seed": 5},
            "labelstudio": {**ls_session["ls"], "project_title": "chain (synthetic)"},
            "simulate": {"annotators": 2, "noise": 0.0, "seed": 3},
            "benchmark": {"epochs": 2, "report_dir": str(base / "chain" / "reports")},
        }
    )


def task_count(config: PipelineConfig) -> int:
    from mmnerd.labelstudio.client import LSClient

    client = LSClient.from_config(config)
    project = client.find_project(config.labelstudio.project_title)
    ids = [t["data"]["post_id"] for t in client.iter_tasks(project["id"])]
    assert len(ids) == len(set(ids)), "duplicate tasks"
    return len(ids)


def test_whole_chain_then_rerun_changes_nothing(ls_session):
    cfg = chain_config(ls_session)
    collected = run_collect(cfg)
    by_stage = {s.stage: s for s in collected}
    assert by_stage["collect"].items_out == 60
    assert sum(v for k, v in by_stage["language"].dropped.items() if k.startswith("lang:")) >= 3
    assert all(p.lang in ("en", "fr", "de", "es") for p in iter_stage(cfg, "fetch"))
    assert {p.reason.split(":")[1] for p in iter_excluded(cfg, "fetch")} <= {
        "missing_file",
        "not_image",
        "corrupt_image",
    }

    run_dedup(cfg)
    deduped = list(iter_stage(cfg, "dedup"))
    dups = [p for p in deduped if p.duplicate_of]
    present = {p.id for p in deduped}
    planted = [p for p in deduped if p.extra.get("near_duplicate_of") in present]
    assert planted and all(p.cluster_id for p in planted)

    push = run_push(cfg)[0]
    assert push.items_out == len(deduped) - len(dups) == task_count(cfg)
    run_simulate(cfg)
    run_pull(cfg)
    pulled = {p.id: p for p in iter_stage(cfg, "pull")}
    assert len(pulled) == push.items_out
    for post in pulled.values():  # noise 0: pulled BIO equals the gold spans' BIO
        gold = spans_to_bio(post.gold_spans, post.token_offsets).tags
        assert post.ner_tags == gold, post.text

    manifest, _ = export(cfg)
    rows = {f["file"]: f["rows"] for f in manifest["files"]}
    assert sum(rows.values()) == len(pulled)
    test_ids = set(pq.read_table(cfg.export_dir / "test.parquet").column("id").to_pylist())
    train_clusters = {
        c
        for c in pq.read_table(cfg.export_dir / "train.parquet").column("cluster_id").to_pylist()
        if c
    }
    assert not {pulled[i].cluster_id for i in test_ids if pulled[i].cluster_id} & train_clusters
    assert "SYNTHETIC" in (cfg.export_dir / "README.md").read_text()

    assert run_benchmark(cfg) == 0
    report = json.loads((cfg.root / "reports" / "benchmark.json").read_text())
    assert report  # the trainer wrote its figures

    # --- rerun: nothing new, nothing duplicated, identical files
    before = json.loads((cfg.export_dir / "manifest.json").read_text())
    assert all(s.skipped for s in run_collect(cfg))
    assert all(s.skipped for s in run_dedup(cfg))
    run_push(cfg)
    run_simulate(cfg)
    run_pull(cfg)
    export(cfg)
    assert task_count(cfg) == push.items_out
    after = json.loads((cfg.export_dir / "manifest.json").read_text())
    assert [f["sha256"] for f in after["files"]] == [f["sha256"] for f in before["files"]]

    # --- the trained model pre-annotates a new project (mmnerd predict -> push)
    preds = run_predict(cfg, cfg.root / "reports" / "checkpoints" / "mner2m" / "seed1")
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == push.items_out and all(len(r["tags"]) == len(r["tokens"]) for r in rows)
    # for uncertainty sampling: a confidence (calibrated on the export's dev split) and a cluster
    assert all(0 <= r["confidence"] <= 1 and isinstance(r["cluster"], int) for r in rows)
    cfg.labelstudio.project_title = "chain (synthetic) pre-annotated"
    cfg.labelstudio.predictions = str(preds)
    run_push(cfg)
    from mmnerd.labelstudio.client import LSClient

    client = LSClient.from_config(cfg)
    project = client.find_project(cfg.labelstudio.project_title)
    task = next(iter(client.iter_tasks(project["id"])))
    listed = client.get("/api/predictions/", params={"task": task["id"]})
    assert listed and listed[0]["model_version"] == "mmnerd-predict:mner2m/seed1"
    assert listed[0]["score"] is not None and listed[0]["cluster"] is not None
    proj = client.project(project["id"])
    assert proj["sampling"] == "Uncertainty sampling"
    assert proj["model_version"] == "mmnerd-predict:mner2m/seed1"
