"""Do annotators labelling at the same moment get the same task?  SQLite vs PostgreSQL.

    python benchmarks/concurrent_annotators.py [--tasks 60] [--users 2,4] [--browser]

For each database a new Label Studio starts (temp data dir; PostgreSQL: a cluster mmnerd
runs under it).  On a project of ``--tasks`` tasks (``maximum_annotations = 1``), N annotators
(logged in through the form, as the page is) ask for their next task *at the same instant*
(a thread barrier), label it (an annotation written for them), and again, until nothing is
left.  Two ways of asking, as the page does:

* ``Label All Tasks``: ``GET /api/projects/<id>/next`` (the page's request after that button:
  no Data Manager filters), the lock-aware stream with the project's sampling;
* ``Data Manager queue``: ``POST /api/dm/actions?id=next_task`` with the view's (empty)
  filters, what the page sends when the stream is opened by its URL or with "Label Tasks As
  Displayed": Label Studio then takes the first unlabelled task without looking at locks.

Reported: tasks annotated more than once, and rounds in which two annotators were served
the same task.  ``--browser`` adds the real-browser run of
tests/labelstudio/test_browser_team.py (4 Chromium contexts, "Label All Tasks") on SQLite,
where the test itself runs on PostgreSQL.  Results:
``benchmarks/results/concurrent_annotators.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import save  # noqa: E402

DM_BODY = {
    "ordering": [],
    "selectedItems": {"all": False, "included": []},
    "filters": {"conjunction": "and", "items": []},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def race(client, url: str, tasks: int, users: int, mode: str, tag: str) -> dict:
    """N annotators asking at the same instant, round after round; what they were served."""
    from mmnerd.labelstudio.users import create_annotator, login

    label_config = (ROOT / "annotation" / "label_config.xml").read_text()
    proj = client.post("/api/projects", {"title": f"race {tag}", "label_config": label_config,
                                         "maximum_annotations": 1})  # fmt: skip
    pid = proj["id"]
    client.import_tasks(pid, [{"data": {"post_id": f"p{i}", "text": f"task {i}", "lang": "en",
                                        "image": ""}} for i in range(tasks)])  # fmt: skip
    who = [create_annotator(client, f"race{k}.{tag}@example.org") for k in range(users)]
    sessions = [login(url, a.email, a.password) for a in who]
    barrier = threading.Barrier(users)
    rounds = same = 0
    t0 = time.perf_counter()
    while True:
        got: list[int | None] = [None] * users

        def ask(k: int, got: list[int | None]) -> None:
            barrier.wait()
            if mode == "Label All Tasks":
                r = sessions[k].get(f"{url}/api/projects/{pid}/next", timeout=120)
            else:
                r = sessions[k].post(f"{url}/api/dm/actions", params={"id": "next_task",
                                     "project": pid}, json=DM_BODY, timeout=120)  # fmt: skip
            got[k] = int(r.json()["id"]) if r.status_code == 200 else None

        threads = [threading.Thread(target=ask, args=(k, got)) for k in range(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [g for g in got if g is not None]
        if not ids:
            break
        rounds += 1
        same += len(set(ids)) < len(ids)
        for k, g in enumerate(got):
            if g is not None:
                client.create_annotation(g, [], who[k].id, 1.0)
    per_task = Counter()
    for t in client.iter_tasks(pid, include="id,total_annotations"):
        per_task[int(t["total_annotations"])] += 1
    twice = sum(n for k, n in per_task.items() if k > 1)
    return {"rounds": rounds, "rounds serving one task twice+": same,
            "tasks annotated twice+": twice, "extra annotations":
            sum((k - 1) * n for k, n in per_task.items() if k > 1),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def browser_run(cfg_factory, client, annotators: int, tasks: int) -> dict:
    """The browser test's team (Chromium contexts pressing "Label All Tasks") on this server."""
    from mmnerd.labelstudio.push import PushStage
    from mmnerd.labelstudio.users import create_annotator
    from mmnerd.pipeline import Runner, iter_stage, seed_stage
    from tests.labelstudio.test_browser_team import _posts, _team

    cfg = cfg_factory(f"browser{annotators}", overlap_share=0.0)
    seed_stage(cfg, "dedup", _posts(tasks))
    Runner(cfg).run_stage(PushStage())
    pushed = list(iter_stage(cfg, "push"))
    pid = pushed[0].ls.project
    tag = str(int(time.time()))
    accounts = [create_annotator(client, f"b{k}.{tag}@example.org") for k in range(annotators)]
    t0 = time.perf_counter()
    try:
        runs = asyncio.run(_team(client.url, pid, accounts))
        error = ""
    except Exception as e:  # a collision can also make a page wait for a task it never gets
        runs, error = [], f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    by_task: dict[int, int] = defaultdict(int)
    for t in client.iter_tasks(pid, include="id,total_annotations"):
        by_task[int(t["id"])] = int(t["total_annotations"])
    return {"tasks annotated twice+": sum(v > 1 for v in by_task.values()),
            "tasks not annotated": sum(v == 0 for v in by_task.values()),
            "served": sum(len(r["served"]) for r in runs), "error": error,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def _config(base: Path, ls: dict, name: str, **over: object):
    from mmnerd.config import PipelineConfig

    return PipelineConfig.model_validate({"name": name, "data_dir": str(base / name),
        "labelstudio": {**ls, "project_title": f"race {name}", **over}})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--users", default="2,4")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--browser", action="store_true", help="also the real-browser team on SQLite")
    a = ap.parse_args(argv)

    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.client import LSClient

    rows = []
    for database in a.databases.split(","):
        base = Path(tempfile.mkdtemp(prefix=f"mmnerd-race-{database}-"))
        base.chmod(0o711)  # an embedded PostgreSQL runs as the postgres user under root
        ls = {"data_dir": str(base / "ls"), "venv": str(ROOT / ".venv-ls"), "port": free_port(),
              "document_root": str(base), "database": database, "start_timeout": 600.0,
              "label_config": str(ROOT / "annotation" / "label_config.xml"),
              "instructions": str(ROOT / "annotation" / "guidelines.md")}  # fmt: skip

        cfg = functools.partial(_config, base, ls)
        boot = cfg("boot")
        info = server.up(boot)
        try:
            client = LSClient(info.url, info.token)
            for users in (int(u) for u in a.users.split(",")):
                for mode in ("Label All Tasks", "Data Manager queue"):
                    tag = f"{database}-{users}-{mode[0]}-{int(time.time())}"
                    res = race(client, info.url, a.tasks, users, mode, tag)
                    rows.append({"database": database, "annotators": users, "asking": mode,
                                 "tasks": a.tasks, **res})  # fmt: skip
                    print(rows[-1], file=sys.stderr, flush=True)
            if a.browser and database == "sqlite":
                res = browser_run(cfg, client, 4, a.tasks)
                rows.append({"database": database, "annotators": 4,
                             "asking": "Label All Tasks (real browser)", "tasks": a.tasks,
                             **res})  # fmt: skip
                print(rows[-1], file=sys.stderr, flush=True)
        finally:
            server.down(boot)
            shutil.rmtree(base, ignore_errors=True)
    save("concurrent_annotators", rows,
         notes="Label Studio 1.23; N annotators ask for their next task at the same instant, "
         "label it, and again until none is left; maximum_annotations = 1.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
