"""Merge several annotations of one post: majority vote, and the adjudication queue.

Vote.  Each annotator's token-aligned spans are keys ``(start, end, label)``.
A span is kept when **more than half** of the annotators who completed the
post marked exactly it.  A span marked by exactly half of them is a **tie**
(with two annotators: any disagreement).

Queue.  A post goes to adjudication when its vote has a tie or its mean
pairwise entity F1 is below ``labelstudio.adjudication_f1``.  Queued posts are
imported into a second project, ``"<project title> — adjudication"``, with
one prediction per annotator (``model_version`` ``annotator-<hash>``) and the
majority vote (``majority-vote``), so the adjudicator starts from the vote and
sees the alternatives.  A completed annotation in that project is the post's
gold: on the next pull it replaces the vote (``post.adjudication == "done"``).
Until then the post keeps its majority spans and ``post.adjudication == "needed"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from mmnerd.labelstudio.agreement import entity_f1
from mmnerd.records import Annotation, Post, Span

ADJUDICATION_SUFFIX = " — adjudication"
MAJORITY_MODEL_VERSION = "majority-vote"


def mean_pairwise_f1(annotations: Sequence[Annotation]) -> float | None:
    pairs = list(combinations(annotations, 2))
    if not pairs:
        return None
    return sum(entity_f1(x.spans, y.spans) for x, y in pairs) / len(pairs)


@dataclass
class Vote:
    spans: list[Span]
    agreement: float | None
    ties: list[tuple[int, int, str]] = field(default_factory=list)
    contested: list[tuple[int, int, str]] = field(default_factory=list)
    needs_adjudication: bool = False


def majority_vote(annotations: Sequence[Annotation], text: str = "", min_f1: float = 0.5) -> Vote:
    """Vote over completed annotations (see the module docstring)."""
    done = [a for a in annotations if not a.cancelled]
    n = len(done)
    counts: Counter = Counter()
    for a in done:
        counts.update({s.key() for s in a.spans})
    kept = sorted(k for k, c in counts.items() if 2 * c > n)
    ties = sorted(k for k, c in counts.items() if 2 * c == n)
    contested = sorted(k for k, c in counts.items() if 2 * c <= n)
    agreement = mean_pairwise_f1(done)
    needs = n >= 2 and (bool(ties) or (agreement is not None and agreement < min_f1))
    spans = [Span(s, e, lab, text[s:e] if text else "") for s, e, lab in kept]
    return Vote(spans, agreement, ties, contested, needs)


def adjudication_title(title: str) -> str:
    return f"{title}{ADJUDICATION_SUFFIX}"


def queue_for_adjudication(
    client: Any, config: Any, posts: Sequence[Post]
) -> tuple[int, dict[str, int]]:
    """Import posts needing adjudication into the adjudication project (idempotent by post id).

    Returns the project id and ``post_id -> task id`` for every queued post (old and new).
    """
    from mmnerd.labelstudio.push import (
        _instructions_html,
        existing_tasks,
        read_text,
        span_result,
        task_payload,
    )

    ls = config.labelstudio
    guide = read_text(ls.instructions, "instructions") if ls.instructions else ""
    note = (
        "ADJUDICATION: each prediction is one annotator's labelling ('annotator-<id>'), "
        "'majority-vote' is the spans most annotators agreed on. Fix the spans and submit: "
        "your annotation becomes the gold labelling of the post.\n\n"
    )
    proj = client.ensure_project(
        adjudication_title(ls.project_title),
        read_text(ls.label_config, "label_config"),
        instructions=_instructions_html(note + guide),
        maximum_annotations=1,
        description="mmnerd adjudication queue: ties and low-agreement posts",
    )
    client.ensure_local_storage(proj["id"], Path(config.root / "images").resolve())
    by_post, _ = existing_tasks(client, int(proj["id"]))
    missing = [p for p in posts if p.id not in by_post]
    ids: dict[str, int] = {pid: int(t["id"]) for pid, t in by_post.items()}
    for i in range(0, len(missing), ls.batch_size):
        batch = missing[i : i + ls.batch_size]
        payload = []
        for p in batch:
            task = task_payload(p, config)
            task["data"]["source_task_id"] = p.ls.task if p.ls is not None else None
            preds = []
            for a in p.annotations:
                if a.cancelled:
                    continue
                preds.append(
                    {
                        "model_version": f"annotator-{a.annotator}",
                        "score": 0.5,
                        "result": [
                            span_result(s, p.text, f"a{a.annotation_id}-{k}")
                            for k, s in enumerate(a.spans)
                        ],
                    }
                )
            preds.append(
                {
                    "model_version": MAJORITY_MODEL_VERSION,
                    "score": 1.0,
                    "result": [span_result(s, p.text, f"v{k}") for k, s in enumerate(p.spans)],
                }
            )
            task["predictions"] = preds
            payload.append(task)
        for p, tid in zip(batch, client.import_tasks(int(proj["id"]), payload), strict=True):
            ids[p.id] = tid
    return int(proj["id"]), ids
