"""The order Label Studio serves tasks in under "Uncertainty sampling", as a pure function.

Label Studio 1.23 (``projects/functions/next_task.py``, ``_try_uncertainty_sampling``), for
an annotator who presses "Label All Tasks" (the lock-aware stream; a Data Manager queue
ignores the sampling): among the unlabelled tasks that have a prediction of the project's
``model_version``, it serves the one whose prediction ``cluster`` holds the fewest tasks
this annotator already labelled, and within those the lowest prediction ``score``; tasks
locked for someone else are skipped.  (With more than one project member it would draw at
random instead; community projects have none.)

:func:`uncertainty_order` replays that for one annotator who labels every task served, so
a simulation (``benchmarks/active_learning.py``) serves what Label Studio would; a test
checks it against the real server.  Ties in score are broken by task key (the database's
order is unspecified there).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from typing import Any


def uncertainty_order(
    tasks: Iterable[tuple[Any, float, Hashable]],
    solved: Counter | None = None,
) -> Iterator[Any]:
    """Task keys in serving order, from ``(key, score, cluster)`` triples (``cluster`` may be
    None: a cluster of its own); ``solved`` counts the tasks per cluster the annotator already
    labelled (updated as tasks are served).  Lazy: take as many as a round needs."""
    counts: Counter = Counter(solved or {})
    queues: dict[Hashable, list[tuple[float, Any]]] = {}
    for key, score, cluster in tasks:
        queues.setdefault(cluster, []).append((float(score), key))
    for q in queues.values():
        heapq.heapify(q)
    while queues:
        cluster = min(queues, key=lambda c: (counts[c], queues[c][0]))
        _, key = heapq.heappop(queues[cluster])
        if not queues[cluster]:
            del queues[cluster]
        counts[cluster] += 1
        yield key
