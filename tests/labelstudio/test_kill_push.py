"""kill -9 during `mmnerd annotate push` and `mmnerd pull` (real CLI subprocesses, real Label
Studio from the session fixture) at seeded random moments, rerun, and compare with an
uninterrupted run: exactly one task per post, the same records, no temp file left.

Kill moments are drawn between 30 % and 100 % of the clean run's wall time (start-up,
listing, bulk imports in batches of 15, overlap PATCHes, state and shard writes).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmnerd.config import load_config
from mmnerd.labelstudio.adjudicate import adjudication_title
from mmnerd.labelstudio.client import LSClient
from mmnerd.pipeline import iter_stage, seed_stage
from mmnerd.privacy import corpus_key
from tests.killing import kill_after, temp_files

from .conftest import ROOT, make_posts

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

POSTS = 90
TRIALS = 2


def write_pipeline(ls_session: dict, data_dir: Path, title: str) -> Path:
    ls = {
        **ls_session["ls"],
        "project_title": title,
        "batch_size": 15,
        "overlap_share": 0.5,
        "overlap_k": 2,
    }
    lines = [f"name = {json.dumps(data_dir.name)}", f"data_dir = {json.dumps(str(data_dir))}"]
    lines.append("[labelstudio]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in ls.items()]
    lines += ["[simulate]", "annotators = 2", "noise = 0.3", "seed = 11"]
    path = data_dir.parent / f"{data_dir.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmnerd.cli", *args]


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cli(*args), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return time.perf_counter() - t0


def kill_at(args: list[str], delay: float) -> bool:
    return kill_after(cli(*args), delay)


def tasks_per_post(pipeline: Path, title: str) -> dict[str, int]:
    cfg = load_config(pipeline)
    client = LSClient.from_config(cfg, start=False)
    project = client.find_project(title)
    counts: dict[str, int] = {}
    if project is None:
        return counts
    for t in client.iter_tasks(project["id"]):
        pid = t["data"]["post_id"]
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def pushed(pipeline: Path) -> list[dict]:
    """The push stage's records without the per-project Label Studio ids."""
    out = []
    for p in iter_stage(load_config(pipeline), "push"):
        d = p.to_dict()
        d["ls"] = {"overlap": d["ls"]["overlap"]}  # task and project ids differ per project
        out.append(d)
    return out


def seeded(ls_session: dict, name: str) -> tuple[Path, Path, str]:
    """A data dir under the server's document root holding a finished dedup stage."""
    d = Path(ls_session["base"]) / name
    title = f"kill {name}"
    pipeline = write_pipeline(ls_session, d, title)
    seed_stage(load_config(pipeline), "dedup", make_posts(POSTS, seed=21, root=d))
    return d, pipeline, title


def test_kill_9_during_push_then_rerun_is_one_task_per_post(db_session):
    ls_session = db_session  # SQLite, then PostgreSQL
    clean, clean_p, clean_title = seeded(ls_session, "killpush-clean")
    took = run(["annotate", "push", "-p", str(clean_p)])
    expected = pushed(clean_p)
    assert len(expected) == POSTS
    assert set(tasks_per_post(clean_p, clean_title).values()) == {1}
    rng = random.Random(4403)
    killed = 0
    for trial in range(TRIALS):
        d, p, title = seeded(ls_session, f"killpush-{trial}")
        args = ["annotate", "push", "-p", str(p)]
        killed += kill_at(args, rng.uniform(0.2, 0.7) * took)
        run(args)
        counts = tasks_per_post(p, title)
        assert len(counts) == POSTS and set(counts.values()) == {1}, f"trial {trial}"
        assert pushed(p) == expected, f"trial {trial}"
        assert not temp_files(d), f"trial {trial}: {temp_files(d)}"
    assert killed == TRIALS  # every trial really interrupted the run


def test_kill_9_during_pull_then_rerun_equals_clean_run(db_session):
    ls_session = db_session  # SQLite, then PostgreSQL
    src, src_p, title = seeded(ls_session, "killpull-src")
    run(["annotate", "push", "-p", str(src_p)])
    run(["annotate", "simulate", "-p", str(src_p)])
    corpus_key(src)  # the copies below are one corpus: same key, same annotator pseudonyms

    def copy(name: str) -> tuple[Path, Path]:
        d = src.parent / name
        shutil.copytree(src, d)
        text = src_p.read_text().replace(json.dumps(str(src)), json.dumps(str(d)))
        p = d.parent / f"{name}.toml"
        p.write_text(text)
        return d, p

    clean, clean_p = copy("killpull-clean")
    took = run(["pull", "-p", str(clean_p)])
    expected = sorted(
        json.dumps(p.to_dict(), sort_keys=True) for p in iter_stage(load_config(clean_p), "pull")
    )
    assert len(expected) == POSTS
    adj_title = adjudication_title(title)
    rng = random.Random(4404)
    killed = 0
    for trial in range(TRIALS):
        d, p = copy(f"killpull-{trial}")
        args = ["pull", "-p", str(p)]
        killed += kill_at(args, rng.uniform(0.2, 0.7) * took)
        run(args)
        got = sorted(
            json.dumps(q.to_dict(), sort_keys=True) for q in iter_stage(load_config(p), "pull")
        )
        assert got == expected, f"trial {trial}"
        assert not temp_files(d), f"trial {trial}: {temp_files(d)}"
    assert killed == TRIALS  # every trial really interrupted the run
    assert set(tasks_per_post(src_p, title).values()) == {1}
    adj = tasks_per_post(src_p, adj_title)
    assert not adj or set(adj.values()) == {1}  # the adjudication queue has no duplicates
