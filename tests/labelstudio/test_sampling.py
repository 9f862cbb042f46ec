"""Model in the loop on Label Studio's own machinery: predictions pushed with a score and a
cluster, the project on "Uncertainty sampling" with the model's version, and the real
server serving an annotator the tasks in the order :func:`uncertainty_order` predicts (the
order the active-learning benchmark simulates).  On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from mmnerd.labelstudio.client import LSClient
from mmnerd.labelstudio.push import PushStage
from mmnerd.labelstudio.sampling import uncertainty_order
from mmnerd.labelstudio.users import create_annotator, login
from mmnerd.pipeline import Runner, iter_stage, seed_stage

from .conftest import make_posts

pytestmark = pytest.mark.labelstudio


def test_uncertainty_order_is_least_score_first_spread_over_clusters():
    tasks = [("a", 0.9, 0), ("b", 0.1, 0), ("c", 0.2, 0), ("d", 0.5, 1), ("e", 0.3, None)]
    # fewest labelled in the cluster first, then lowest score: b (c0), e (None), d (c1), c, a
    assert list(uncertainty_order(tasks)) == ["b", "e", "d", "c", "a"]
    assert list(uncertainty_order(tasks, Counter({0: 2}))) == ["e", "d", "b", "c", "a"]
    assert list(uncertainty_order([(k, s, 0) for k, s, _ in tasks])) == ["b", "c", "e", "d", "a"]


def _write(path, posts, version: str, seed: int, clusters: int) -> dict[str, dict]:
    rng = random.Random(seed)
    rows = {}
    for i, p in enumerate(posts):
        tags = ["O"] * len(p.tokens)
        tags[1] = "B-LOC"
        conf = round(rng.uniform(0.01, 0.99), 6)
        rows[p.id] = {"id": p.id, "tags": tags, "model_version": version, "confidence": conf}
        rows[p.id]["cluster"] = i % clusters
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    return rows


def _served(client: LSClient, url: str, project_id: int, n: int) -> list[int]:
    """What the lock-aware stream serves a new annotator who labels each task at once."""
    who = create_annotator(client, f"al-{project_id}-{random.randrange(10**9)}@example.org")
    session = login(url, who.email, who.password)
    out = []
    for _ in range(n):
        r = session.get(f"{url}/api/projects/{project_id}/next", timeout=60)
        assert r.status_code == 200, r.text[:200]
        assert "Active learning" in r.json()["queue"]
        out.append(int(r.json()["id"]))
        client.create_annotation(out[-1], [], who.id, 1.0)
    return out


def test_pushed_predictions_drive_uncertainty_sampling(make_db_config, tmp_path):
    cfg = make_db_config(overlap_share=0.0)
    posts = make_posts(14, seed=41)
    seed_stage(cfg, "dedup", posts)
    v1 = "mmnerd-predict:text_crf/seed1"
    rows = _write(tmp_path / "p1.jsonl", posts, v1, 1, 3)
    cfg.labelstudio.predictions = str(tmp_path / "p1.jsonl")
    runner = Runner(cfg)
    st = runner.run_stage(PushStage())
    assert st.flagged["predictions_created"] == 14, st.to_dict()
    client = LSClient.from_config(cfg, start=False)
    pushed = {p.id: p.ls.task for p in iter_stage(cfg, "push")}
    pid = next(iter(iter_stage(cfg, "push"))).ls.project
    proj = client.project(pid)
    assert proj["sampling"] == "Uncertainty sampling" and proj["model_version"] == v1
    preds = {p["task"]: p for p in client.get("/api/predictions", params={"project": pid})}
    for post_id, tid in pushed.items():
        assert preds[tid]["score"] == pytest.approx(rows[post_id]["confidence"])
        assert preds[tid]["cluster"] == rows[post_id]["cluster"]
        assert preds[tid]["result"][0]["value"]["labels"] == ["LOC"]
    # a rerun writes nothing
    again = runner.run_stage(PushStage(), force=True)
    assert "predictions_created" not in again.flagged and "predictions_updated" not in again.flagged
    # the real server serves what uncertainty_order predicts
    expected = list(
        uncertainty_order((pushed[k], r["confidence"], r["cluster"]) for k, r in rows.items())
    )
    assert _served(client, client.url, pid, 6) == expected[:6]

    # a newer model: its scores now order the tasks (the project follows the newest version)
    v2 = "mmnerd-predict:text_crf/seed2"
    rows2 = _write(tmp_path / "p2.jsonl", posts, v2, 2, 2)
    cfg.labelstudio.predictions = str(tmp_path / "p2.jsonl")
    st = runner.run_stage(PushStage(), force=True)
    assert st.flagged["predictions_created"] == st.flagged["predictions_replaced"] == 14
    assert client.project(pid)["model_version"] == v2
    listed = client.get("/api/predictions", params={"project": pid})
    assert len(listed) == 14 and {p["model_version"] for p in listed} == {v2}
    done = set(expected[:6])
    left = [(pushed[k], r["confidence"], r["cluster"]) for k, r in rows2.items()]
    expected2 = list(uncertainty_order(t for t in left if t[0] not in done))
    assert _served(client, client.url, pid, 4) == expected2[:4]
