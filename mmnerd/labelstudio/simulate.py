"""SIMULATED annotators (demo and tests only): label tasks from the gold spans, with noise.

Nothing here is human work.  ``simulate(config, posts)`` creates
``simulate.annotators`` users named ``sim-annotator-<i>@mmnerd.local``
("SIMULATED annotator <i>") through the admin API and writes, through the
Label Studio API, one annotation per (task, simulated annotator): tasks with
overlap k (see :mod:`mmnerd.labelstudio.push`) get k simulated annotators, the
others one.  Each gold span is kept, or with probability ``simulate.noise``
dropped or given another label (half and half); the "image decided" choice
is ticked where the source flags the post (``Post.image_decided``), flipped
with the same probability.  A ``simulate.skip_share`` of
(task, annotator) pairs is skipped (a cancelled annotation, as the Skip button
does).  Offsets are code points, ``value.text`` is the surface text.

Only ``simulate.share`` of the tasks (a hash of the post id) are labelled: the
demo keeps the API round trips real but few, and lets the pull keep the
source's gold labels for the others (``labelstudio.unannotated = "source"``).

Deterministic for a seed, and idempotent: pairs that already have an
annotation from that simulated user are not written again.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.errors import LabelStudioError
from mmnerd.labelstudio.push import image_decided_result, span_result
from mmnerd.records import ENTITY_TYPES, Post, Span

SIM_EMAIL = "sim-annotator-{i}@mmnerd.local"


def sim_email(i: int) -> str:
    return SIM_EMAIL.format(i=i)


def is_simulated(email: str) -> bool:
    """An account created by :func:`simulate` (``sim-annotator-<i>@mmnerd.local``)."""
    head, _, tail = SIM_EMAIL.partition("{i}")
    return (
        email.startswith(head) and email.endswith(tail) and email[len(head) : -len(tail)].isdigit()
    )


def _rng(seed: int, *parts: object) -> random.Random:
    key = ":".join(str(p) for p in (seed, *parts))
    return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))


def noisy_spans(
    gold: Sequence[Span], noise: float, rng: random.Random
) -> tuple[list[Span], Counter]:
    """The spans one simulated annotator marks: gold with some dropped or relabelled."""
    out: list[Span] = []
    what: Counter = Counter()
    for s in gold:
        if noise > 0 and rng.random() < noise:
            if rng.random() < 0.5:
                what["dropped"] += 1
                continue
            other = rng.choice([t for t in ENTITY_TYPES if t != s.label])
            out.append(Span(s.start, s.end, other, s.text))
            what["relabelled"] += 1
        else:
            out.append(Span(s.start, s.end, s.label, s.text))
    return out, what


def noisy_flag(flag: bool, noise: float, rng: random.Random) -> bool:
    """The "image decided" choice a simulated annotator ticks: the source's flag, flipped with
    probability ``noise``."""
    return (not flag) if noise > 0 and rng.random() < noise else flag


def annotators_for(post_id: str, overlap: int, n: int, seed: int) -> list[int]:
    """Which simulated annotators (1-based) label a post: ``min(overlap, n)`` distinct ones."""
    k = max(1, min(overlap, n))
    start = _rng(seed, "who", post_id).randrange(n)
    return [(start + j) % n + 1 for j in range(k)]


def simulate(config: PipelineConfig, posts: Sequence[Post], client: Any = None) -> dict:
    """SIMULATION: write annotations for ``posts`` (pushed: ``post.ls`` set).

    Returns counts: annotations written, already present, skipped (cancelled),
    spans dropped / relabelled by the noise, and the simulated user ids.
    """
    from mmnerd.labelstudio.client import LSClient
    from mmnerd.progress import progress_bar

    sim = config.simulate
    client = client or LSClient.from_config(config)
    users = {
        i: client.ensure_user(sim_email(i), "SIMULATED", f"annotator {i}")
        for i in range(1, sim.annotators + 1)
    }
    project_ids = {p.ls.project for p in posts if p.ls is not None}
    if not project_ids:
        if posts:
            raise LabelStudioError("simulate: posts carry no Label Studio task ids; run push first")
        return {"written": 0}
    done: set[tuple[int, int]] = set()
    for pid in project_ids:
        listing = client.iter_tasks(
            int(pid), include="id,annotations,completed_by", annotations=True
        )
        for t in listing:
            for a in t.get("annotations") or []:
                uid = a.get("completed_by")
                uid = uid.get("id") if isinstance(uid, dict) else uid
                if uid is not None:
                    done.add((int(t["id"]), int(uid)))
    counts: Counter = Counter()
    jobs: list[tuple[int, list[dict], int, float, bool]] = []
    for post in posts:
        if post.ls is None:
            counts["no_task"] += 1
            continue
        if sim.share < 1.0 and _rng(sim.seed, "share", post.id).random() >= sim.share:
            counts["not_simulated"] += 1  # outside simulate.share: left unannotated
            continue
        tid, overlap = post.ls.task, post.ls.overlap
        for i in annotators_for(post.id, overlap, sim.annotators, sim.seed):
            uid = users[i]
            if (int(tid), uid) in done:
                counts["already_present"] += 1
                continue
            rng = _rng(sim.seed, "ann", post.id, i)
            lead = round(rng.uniform(5, 90), 2)
            if sim.skip_share and rng.random() < sim.skip_share:
                jobs.append((int(tid), [], uid, lead, True))
                counts["skipped"] += 1
                continue
            spans, what = noisy_spans(post.gold_spans, sim.noise, rng)
            counts.update(what)
            result = [span_result(s, post.text, f"s{i}-{k}") for k, s in enumerate(spans)]
            if noisy_flag(bool(post.image_decided), sim.noise, rng):
                result.append(image_decided_result(f"s{i}-img"))
                counts["image_decided"] += 1
            jobs.append((int(tid), result, uid, lead, False))
            counts["written"] += 1
    with progress_bar("simulate: SIMULATED annotations", total=len(jobs)) as advance:

        def write(c: Any, job: tuple[int, list[dict], int, float, bool]) -> None:
            tid, result, uid, lead, cancelled = job
            c.create_annotation(tid, result, uid, lead, was_cancelled=cancelled)
            advance(1)

        client.map(write, jobs, sim.workers)
    out: dict[str, Any] = dict(sorted(counts.items()))
    out["simulated_users"] = {sim_email(i): uid for i, uid in users.items()}
    return out
