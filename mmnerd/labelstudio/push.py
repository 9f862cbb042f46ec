"""Push deduplicated posts to Label Studio as tasks, idempotently (stage ``push``).

One task per post, keyed by ``data.post_id``.  Before importing, the stage
lists the post ids already in the project and imports only the missing ones,
in bulk batches of ``labelstudio.batch_size`` sent once each (never retried:
see :mod:`mmnerd.labelstudio.client`).  So a rerun, or a rerun after a push
killed between batches, ends with exactly one task per post.

Overlap (several annotators per task).  Label Studio Community has one
project-wide ``maximum_annotations`` and an ``overlap_cohort_percentage`` whose
cohort Label Studio picks itself (and re-picks on every import); it does not
read an overlap from imported task data.  But each task has an ``overlap``
field that the community labelling stream honours (a task is "labelled" once
``overlap`` distinct annotators completed it), and it can be PATCHed.  So we
keep the project at ``maximum_annotations=1`` / cohort 100 % and set
``overlap=overlap_k`` on a deterministic share (``overlap_share``) of tasks,
chosen by a hash of the post id (same posts on every run and machine).  The
stage re-checks every task's overlap on each run, so it repairs them if
someone changes the project's overlap settings in the UI (which resets them).

Task data: ``{post_id, text, lang, image}`` with ``image`` =
``/data/local-files/?d=<path relative to labelstudio.document_root>``; a Local
Files storage on ``<data_dir>/images`` lets the server serve them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mmnerd.config import PipelineConfig
from mmnerd.errors import LabelStudioError
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import LSRef, Post, Span

FROM_NAME = "label"
TO_NAME = "text"
IMAGE_DECIDED_NAME = "image_decided"
"""The ``Choices`` control of annotation/label_config.xml marking an image-decided post."""
IMAGE_DECIDED_CHOICE = "image decided"


def image_decided_result(rid: str) -> dict[str, Any]:
    """The Label Studio result of a ticked "image decided" choice (a per-post choice)."""
    return {
        "id": rid,
        "from_name": IMAGE_DECIDED_NAME,
        "to_name": TO_NAME,
        "type": "choices",
        "origin": "manual",
        "value": {"choices": [IMAGE_DECIDED_CHOICE]},
    }


GOLD_MODEL_VERSION = "gold-import"
EARLY_BATCH = 500
"""Posts worth an import call of their own when the server would otherwise wait."""


def overlap_for(post_id: str, share: float, k: int) -> int:
    """How many annotators a post gets: ``k`` for a deterministic ``share`` of ids, else 1."""
    if k <= 1 or share <= 0:
        return 1
    h = int(hashlib.sha256(f"overlap:{post_id}".encode()).hexdigest()[:12], 16) / 16**12
    return k if h < share else 1


def image_url(post: Post, config: PipelineConfig) -> str:
    """``/data/local-files/?d=<relpath>`` for the post's stored image ('' when it has none)."""
    if post.image is None or not post.image.path:
        return ""
    from mmnerd.io import inside
    from mmnerd.labelstudio.server import document_root

    full = inside(config.root / "images", post.image.path)  # a tampered record cannot escape
    root = document_root(config)
    try:
        rel = full.relative_to(root)
    except ValueError:
        raise LabelStudioError(
            f"image {full} is outside labelstudio.document_root ({root}); set document_root "
            f"to a folder that contains {config.root / 'images'}"
        ) from None
    return "/data/local-files/?d=" + quote(rel.as_posix(), safe="/")


def span_result(span: Span, text: str, rid: str) -> dict[str, Any]:
    """One Label Studio ``labels`` region (code-point offsets, surface text included)."""
    return {
        "id": rid,
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "labels",
        "origin": "manual",
        "value": {
            "start": span.start,
            "end": span.end,
            "text": text[span.start : span.end],
            "labels": [span.label],
        },
    }


SAMPLING = {
    "sequential": "Sequential sampling",
    "uniform": "Uniform sampling",
    "uncertainty": "Uncertainty sampling",
}
"""``labelstudio.sampling`` -> Label Studio's project ``sampling`` value."""


def load_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """``mmnerd predict`` output: post id -> {"tags": [...], "model_version": str,
    "score": float | None (the model's confidence in its tagging), "cluster": int | None}."""
    import json

    from mmnerd.errors import InputError

    out: dict[str, dict[str, Any]] = {}
    src = Path(path)
    if not src.is_file():
        raise InputError(f"labelstudio.predictions: {src} does not exist (run `mmnerd predict`)")
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            score = row.get("score", row.get("confidence"))
            cluster = row.get("cluster")
            out[str(row["id"])] = {
                "tags": list(row["tags"]),
                "model_version": str(row.get("model_version", "model")),
                "score": None if score is None else float(score),
                "cluster": None if cluster is None else int(cluster),
            }
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{src}:{n}: not a prediction row ({type(e).__name__})") from None
    return out


def prediction_result(post: Post, tags: list[str]) -> list[dict[str, Any]]:
    """A model's IOB2 tags over ``post.tokens`` as Label Studio span results."""
    from mmnerd.text.bio import bio_to_spans

    if len(tags) != len(post.token_offsets):
        return []  # predicted over other tokens: never guess offsets
    spans, _ = bio_to_spans(tags, post.token_offsets, post.text)
    return [span_result(s, post.text, f"m{i}") for i, s in enumerate(spans)]


def task_payload(
    post: Post,
    config: PipelineConfig,
    pre_annotate: bool = False,
    prediction: dict[str, Any] | None = None,
) -> dict:
    task: dict[str, Any] = {
        "data": {
            "post_id": post.id,
            "text": post.text,
            "lang": post.lang or post.lang_hint,
            "image": image_url(post, config),
        }
    }
    if pre_annotate and post.gold_spans:
        task["predictions"] = [
            {
                "model_version": GOLD_MODEL_VERSION,
                "score": 1.0,
                "result": [
                    span_result(s, post.text, f"g{i}") for i, s in enumerate(post.gold_spans)
                ],
            }
        ]
    elif prediction is not None:  # from a model trained by baselines/ (mmnerd predict)
        task["predictions"] = [model_prediction(post, prediction)]
    return task


def model_prediction(post: Post, prediction: dict[str, Any], task_id: int | None = None) -> dict:
    """A Label Studio prediction from an ``mmnerd predict`` row: spans, ``score`` (lowest
    served first under uncertainty sampling) and ``cluster`` (spread over by the sampling)."""
    out: dict[str, Any] = {
        "model_version": prediction["model_version"],
        "result": prediction_result(post, prediction["tags"]),
    }
    if prediction.get("score") is not None:
        out["score"] = prediction["score"]
    if prediction.get("cluster") is not None:
        out["cluster"] = prediction["cluster"]
    if task_id is not None:
        out["task"] = task_id
    return out


def sampling_for(config: PipelineConfig, predictions: dict[str, dict[str, Any]]) -> str:
    """The project's ``sampling``: as configured, or (auto) uncertainty when the model's
    predictions carry scores."""
    ls = config.labelstudio
    if ls.sampling != "auto":
        return SAMPLING[ls.sampling]
    scored = any(p.get("score") is not None for p in predictions.values())
    return SAMPLING["uncertainty" if scored else "sequential"]


def sync_predictions(
    client: Any, project_id: int, wanted: dict[int, dict[str, Any]], workers: int = 4
) -> dict[str, int]:
    """Make each task's prediction be ``wanted[task]`` (model version, spans, score, cluster);
    idempotent: a rerun writes nothing.

    One model's prediction per task: a task that holds predictions of another version loses
    them (one Data Manager call, ``delete_tasks_predictions``) before the new one is written.
    Label Studio orders uncertainty sampling by joining tasks to *all* their predictions, so
    an older version's score or cluster would otherwise leak into the order.  Its bulk
    imports ignore a prediction's ``cluster``; only ``POST /api/predictions`` and ``PATCH``
    set it.  So predictions without a cluster go in bulk, those with one one call each (on
    ``workers`` threads), and a changed score or cluster is PATCHed."""
    counts = {"predictions_created": 0, "predictions_updated": 0, "predictions_replaced": 0}
    if not wanted:
        return counts
    have: dict[int, list[dict]] = {}
    for pred in client.get("/api/predictions", params={"project": project_id}) or []:
        if int(pred["task"]) in wanted:
            have.setdefault(int(pred["task"]), []).append(pred)
    stale = sorted(
        tid
        for tid, preds in have.items()
        if any(p.get("model_version") != wanted[tid]["model_version"] for p in preds)
    )
    for k in range(0, len(stale), 1000):
        part = stale[k : k + 1000]
        client.post(
            f"/api/dm/actions?id=delete_tasks_predictions&project={project_id}",
            {"selectedItems": {"all": False, "included": part}},
        )
    for tid in stale:
        have.pop(tid)
    bulk, single, patches = [], [], []
    for tid, w in wanted.items():
        old = (have.get(tid) or [None])[0]
        if old is None:
            (single if w.get("cluster") is not None else bulk).append({**w, "task": tid})
            continue
        change = {k: w.get(k) for k in ("score", "cluster") if old.get(k) != w.get(k)}
        if change:
            patches.append((int(old["id"]), change))
    for k in range(0, len(bulk), 1000):
        client.post(f"/api/projects/{project_id}/import/predictions", bulk[k : k + 1000])
    client.map(lambda c, body: c.post("/api/predictions", body), single, workers)
    client.map(lambda c, f: c.patch(f"/api/predictions/{f[0]}", f[1]), patches, workers)
    counts["predictions_created"] = len(bulk) + len(single)
    counts["predictions_updated"] = len(patches)
    counts["predictions_replaced"] = len(stale)
    return counts


def set_sampling(client: Any, project_id: int, sampling: str, model_version: str = "") -> None:
    """The project's task order, and (uncertainty sampling) the model version whose
    prediction scores order the tasks; only what differs is PATCHed."""
    proj = client.project(project_id)
    change: dict[str, Any] = {}
    if proj.get("sampling") != sampling:
        change["sampling"] = sampling
    if model_version and proj.get("model_version") != model_version:
        change["model_version"] = model_version  # must exist among the project's predictions
    if change:
        client.patch(f"/api/projects/{project_id}", change)


def read_text(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelStudioError(f"{path}: {what} file not found (labelstudio.{what})") from None


def ensure_project(client: Any, config: PipelineConfig) -> dict:
    """Create or update the annotation project and its Local Files storage."""
    ls = config.labelstudio
    label_config = read_text(ls.label_config, "label_config")
    instructions = read_text(ls.instructions, "instructions") if ls.instructions else ""
    proj = client.ensure_project(
        ls.project_title,
        label_config,
        instructions=_instructions_html(instructions),
        maximum_annotations=1,
        description=f"mmnerd pipeline '{config.name}' (tasks pushed by `mmnerd annotate push`)",
    )
    images = (config.root / "images").resolve()
    images.mkdir(parents=True, exist_ok=True)
    client.ensure_local_storage(proj["id"], images, new_project="created" in proj)
    return proj


def _instructions_html(markdown: str) -> str:
    """The guidelines as Label Studio's project instructions (``expert_instruction``, HTML).

    Rendered CommonMark (+ tables) with raw HTML escaped: headings, lists and tables
    as annotators expect them.  Label Studio's sanitiser stores this HTML unchanged, so a
    rerun finds the setting equal and does not rewrite it (attributes would be dropped).
    """
    if not markdown:
        return ""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)


def existing_tasks(client: Any, project_id: int) -> tuple[dict[str, dict], list[dict]]:
    """``post_id -> task`` for the project (lowest task id wins) and the duplicate tasks."""
    by_post: dict[str, dict] = {}
    dupes: list[dict] = []
    listing = client.iter_tasks(project_id, include="id,data,overlap,total_annotations")
    for t in sorted(listing, key=lambda t: t["id"]):
        pid = (t.get("data") or {}).get("post_id")
        if pid is None:
            continue
        if pid in by_post:
            dupes.append(t)
        else:
            by_post[pid] = t
    return by_post, dupes


class _SerialImporter:
    """Bulk imports sent one at a time, in order, on one background thread.

    So the server imports batch *i* while this process reads the next posts and
    the runner writes the finished ones.  Each batch is sent once; after the
    first failure (or :meth:`stop`) no later batch is sent.  At most
    ``max_pending`` batches are queued or in flight.
    """

    def __init__(
        self,
        send: Callable[[bytes, int], list[int]],
        after_batch: Callable[[int], None] | None,
        max_pending: int = 2,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mmnerd-push")
        self._send = send
        self._after_batch = after_batch
        self._stopped = False
        self.max_pending = max_pending
        self.sent = 0

    def submit(self, body: bytes, n_tasks: int) -> Any:
        """Queue one bulk import (encoded tasks); returns a future of the new task ids, in
        task order."""
        index = self.sent
        self.sent += 1
        return self._pool.submit(self._job, index, body, n_tasks)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the import thread, before the batches queued after it."""
        return self._pool.submit(fn, *args)

    def _job(self, index: int, body: bytes, n_tasks: int) -> list[int]:
        if self._stopped:
            raise LabelStudioError("push stopped before this batch was sent")
        try:
            ids = self._send(body, n_tasks)
            if self._after_batch is not None:
                self._after_batch(index)
        except BaseException:
            self._stopped = True
            raise
        return ids

    def stop(self) -> None:
        """Send nothing more; wait for the batch in flight (its tasks exist either way)."""
        self._stopped = True
        self._pool.shutdown(wait=True, cancel_futures=True)


WORK = "_work"
STOP = "STOP"
"""A file in ``_work`` that tells payload tasks still queued to do nothing (push failed)."""


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def build_payloads(config: PipelineConfig, input_stage: str, sid: str) -> int:
    """Step *payloads* for one input shard (runs on the executor): the Label Studio task of
    each post to push, one line ``<post id JSON> TAB <text digest> TAB <task JSON>``, into
    ``_work/tasks-<sid>.jsonl``; returns the lines (-1: the push stopped meanwhile).

    Model predictions go in afterwards (:func:`sync_predictions`): the bulk import drops
    their cluster."""
    from mmnerd.io import atomic_write, read_posts
    from mmnerd.pipeline import stage_dir

    work = stage_dir(config, "push") / WORK
    if (work / STOP).exists():
        return -1
    pre = config.labelstudio.pre_annotate
    n = 0
    with atomic_write(work / f"tasks-{sid}.jsonl", "wb", durable=False) as f:
        for post in read_posts(stage_dir(config, input_stage) / f"shard-{sid}.jsonl"):
            if post.duplicate_of:
                continue
            task = json.dumps(task_payload(post, config, pre), ensure_ascii=False, allow_nan=False)
            f.write(f"{json.dumps(post.id)}\t{_digest(post.text)}\t{task}\n".encode())
            n += 1
    return n


@functools.lru_cache(maxsize=1)
def _predictions(path: str, mtime_ns: int) -> dict[str, dict[str, Any]]:
    return load_predictions(path)


def write_push_shard(config: PipelineConfig, input_stage: str, sid: str, project: int) -> dict:
    """Step *write* for one input shard (runs on the executor): its posts with their
    :class:`~mmnerd.records.LSRef` (task ids from ``_work/ids-<sid>.json``; duplicates
    excluded) as ``shard-<sid>.jsonl``.  Returns the shard's stats, the overlap PATCHes
    ``[(task, overlap)]``, the model predictions ``{task: prediction}`` and how many posts
    get more than one annotator."""
    from mmnerd.io import read_json, read_posts
    from mmnerd.pipeline import StageStats, stage_dir, write_shard

    ls = config.labelstudio
    folder = stage_dir(config, "push")
    tasks = read_json(folder / WORK / f"ids-{sid}.json") or {}
    preds = (
        _predictions(ls.predictions, Path(ls.predictions).stat().st_mtime_ns)
        if ls.predictions
        else {}
    )
    stats = StageStats("push")
    fixes: list[tuple[int, int]] = []
    wanted: dict[int, dict[str, Any]] = {}
    out: list[Post] = []
    n_overlap = 0
    for p in read_posts(stage_dir(config, input_stage) / f"shard-{sid}.jsonl"):
        stats.items_in += 1
        if p.duplicate_of:
            out.append(p.drop("duplicate"))
            continue
        if p.image is None or not p.image.path:
            stats.flagged["no_image"] += 1
        task, have = tasks[p.id]
        want = overlap_for(p.id, ls.overlap_share, ls.overlap_k)
        if have != want:
            fixes.append((task, want))
        p.ls = LSRef(project=project, task=task, overlap=want)
        if p.id in preds and not (ls.pre_annotate and p.gold_spans):
            wanted[task] = model_prediction(p, preds[p.id])
        n_overlap += want > 1
        out.append(p)
    write_shard(folder, sid, out, stats, with_stats=True)
    return {"stats": stats.to_dict(), "fixes": fixes, "wanted": wanted, "n_overlap": n_overlap}


class _Batching:
    """What both pushes share: the project and its importer (:meth:`open_project`), and
    posts (or built payloads) gathered into batches and sent as bulk imports on the
    importer's thread, at most ``importer.max_pending`` at once.
    Subclasses define ``send`` (queue one import) and ``settle`` (wait for the oldest)."""

    stage: Any  # PushStage
    config: PipelineConfig
    client: Any  # LSClient
    ls: Any
    importer: Any
    by_post: dict[str, dict] | None
    listing: Any
    pid: int
    batch: list[Any]
    inflight: Any  # deque of (what was sent, future)
    early: int

    def send(self, batch: list[Any]) -> None:
        raise NotImplementedError

    def settle(self, advance: Callable[[int], None]) -> None:
        raise NotImplementedError

    def open_project(self) -> None:
        """The project (created if missing), the importer's thread bound to it, and the
        listing of its tasks (none to list when it was just created or is empty)."""
        proj = ensure_project(self.client, self.config)
        self.pid = pid = int(proj["id"])
        client = self.client
        self.importer = _SerialImporter(
            lambda body, n: client.import_json(pid, body, n), self.stage.after_batch
        )
        if "created" in proj or proj.get("task_number") == 0:
            self.by_post = {}  # nothing to list in a project just created or still empty
        else:  # runs on the import thread, before any import
            self.listing = self.importer.call(existing_tasks, client, pid)

    def pump(self, advance: Callable[[int], None], final: bool = False) -> None:
        """Collect finished imports; send a full batch at once, a smaller one only when the
        server is idle (so the first import starts as soon as the project is ready), and
        (``final``) whatever is left."""
        while self.inflight and self.inflight[0][1].done():
            self.settle(advance)
        size = self.ls.batch_size
        while len(self.batch) >= size or (not self.inflight and len(self.batch) >= self.early):
            if len(self.inflight) >= self.importer.max_pending:
                self.settle(advance)
            self.send(self.batch[:size])
            del self.batch[:size]
        if final and self.batch:
            self.send(list(self.batch))
            self.batch.clear()


class _StreamPush(_Batching):
    """One push with the local executor, streaming, in named steps: :meth:`plan` (project,
    listing), :meth:`take` (route each post: already a task, or into a batch),
    :meth:`send` / :meth:`settle` (bulk imports on the importer's thread), :meth:`ready`
    (posts whose task exists, in input order, with their :class:`~mmnerd.records.LSRef`)
    and :meth:`finish` (overlap, predictions, sampling)."""

    def __init__(self, stage: PushStage, ctx: StageContext) -> None:
        from collections import Counter, deque

        from mmnerd.labelstudio.client import LSClient

        self.stage, self.ctx, self.config = stage, ctx, ctx.config
        self.ls = ls = ctx.config.labelstudio
        self.client = stage.client or LSClient.from_config(ctx.config)
        self.predictions = load_predictions(ls.predictions) if ls.predictions else {}
        self.by_post: dict[str, dict] | None = None  # post id -> task, once listed
        self.listing: Any = None  # the tasks already there, listed while the input is read
        self.unrouted: list[Post] = []  # read before the listing arrived
        self.batch: list[Post] = []
        self.inflight: deque[tuple[list[Post], Any]] = deque()
        self.waiting: deque[Post] = deque()  # kept posts in input order, not yet yielded
        self.seen: set[str] = set()
        self.fixes: list[tuple[int, int]] = []  # (task id, overlap) to PATCH
        self.wanted: dict[int, dict[str, Any]] = {}  # task id -> model prediction
        self.counts: Counter[str] = Counter()  # stage flags
        self.n_overlap = 0  # posts given more than one annotator
        self.early = min(ls.batch_size, EARLY_BATCH)

    def plan(self) -> None:
        """The project first (a few small requests: imports need its id); only the listing
        of a non-empty project, which can take seconds, runs beside the reading."""
        self.open_project()

    def take(self, post: Post) -> None:
        """A kept post: route it now, or once the listing arrived."""
        self.seen.add(post.id)
        self.waiting.append(post)
        if self.by_post is not None:
            self.route(post)
            return
        self.unrouted.append(post)
        if self.listing.done() or len(self.unrouted) >= self.ls.batch_size:
            self.adopt()

    def route(self, post: Post) -> None:
        assert self.by_post is not None
        task = self.by_post.get(post.id)
        if task is None:
            self.batch.append(post)
            return
        self.counts["already_in_label_studio"] += 1
        if task["data"].get("text") != post.text:
            # never rewrite a task silently: pull checks spans against the post's text
            self.counts["task_text_differs"] += 1

    def adopt(self) -> None:
        """The listing is done: route the posts read meanwhile."""
        self.by_post = self.stage._adopt(*self.listing.result(), self.client, self.ctx)
        for p in self.unrouted:
            self.route(p)
        self.unrouted.clear()

    def send(self, posts: list[Post]) -> None:
        """Queue one bulk import.  Model predictions go in afterwards (sync_predictions):
        the bulk import drops their cluster."""
        from mmnerd.labelstudio.client import encode_tasks

        tasks = [task_payload(p, self.config, self.ls.pre_annotate) for p in posts]
        future = self.importer.submit(encode_tasks(tasks), len(posts))
        self.inflight.append((posts, future))

    def settle(self, advance: Callable[[int], None]) -> None:
        """Wait for the oldest import and record its task ids."""
        posts, future = self.inflight.popleft()
        assert self.by_post is not None
        for p, tid in zip(posts, future.result(), strict=True):
            self.by_post[p.id] = {"id": tid, "overlap": 1, "data": {"text": p.text}}
        self.counts["imported"] += len(posts)
        advance(len(posts))

    def ready(self) -> Iterator[Post]:
        """The waiting posts whose task exists, in input order, with their reference."""
        ls = self.ls
        while self.waiting and self.by_post is not None and self.waiting[0].id in self.by_post:
            p = self.waiting.popleft()
            task = self.by_post[p.id]
            want = overlap_for(p.id, ls.overlap_share, ls.overlap_k)
            if int(task.get("overlap", 1)) != want:
                self.fixes.append((int(task["id"]), want))
            p.ls = LSRef(project=self.pid, task=int(task["id"]), overlap=want)
            if p.id in self.predictions and not (ls.pre_annotate and p.gold_spans):
                self.wanted[p.ls.task] = model_prediction(p, self.predictions[p.id])
            self.n_overlap += want > 1
            yield p

    def finish(self) -> None:
        """Flags, overlap PATCHes, model predictions and the project's sampling."""
        from collections import Counter

        ctx, client, ls = self.ctx, self.client, self.ls
        assert self.by_post is not None
        stale = sum(post_id not in self.seen for post_id in self.by_post)
        if stale:
            ctx.flag("tasks_not_in_input", stale)  # e.g. posts dropped upstream since
        for k, n in self.counts.items():
            ctx.flag(k, n)
        if self.fixes:
            client.map(lambda c, f: c.set_overlap(*f), self.fixes, ls.workers)
            ctx.flag("overlap_set", len(self.fixes))
        for k, n in sync_predictions(client, self.pid, self.wanted, ls.workers).items():
            if n:
                ctx.flag(k, n)
        versions = Counter(w["model_version"] for w in self.wanted.values())
        sampling = sampling_for(self.config, self.predictions)
        # the pushed model's scores order the tasks (one version per file in practice)
        set_sampling(client, self.pid, sampling, versions.most_common(1)[0][0] if versions else "")
        self.stage._print_where(client, self.config, self.pid, len(self.seen), self.n_overlap)


class _ShardedPush(_Batching):
    """One push on a parallel executor (Dask), in named steps: :meth:`plan` (project,
    listing), :meth:`build` (task
    payloads per input shard on the executor, on a thread of their own), :meth:`take`
    (route each shard's posts: already a task, or into a batch), :meth:`pump` /
    :meth:`settle` (bulk imports on the importer's thread), :meth:`write` (output shards
    with each post's ``LSRef``, on the executor) and :meth:`finish` (overlap, predictions,
    sampling)."""

    def __init__(self, stage: PushStage, config: PipelineConfig, executor: Any, folder: Path):
        from collections import Counter, deque

        from mmnerd.labelstudio.client import LSClient
        from mmnerd.pipeline import StageStats, shard_ids

        self.stage, self.config, self.executor, self.folder = stage, config, executor, folder
        self.ls = ls = config.labelstudio
        self.ctx = StageContext(config, StageStats(stage.name))
        self.client = stage.client or LSClient.from_config(config)
        self.predictions = load_predictions(ls.predictions) if ls.predictions else {}
        self.sids = shard_ids(config, stage.input or "")
        self.work = folder / WORK
        self.by_post: dict[str, dict] | None = None  # post id -> task, once listed
        self.listing: Any = None  # the tasks already there, listed while payloads are built
        self.shard_posts: dict[str, list[str]] = {}  # input shard -> post ids pushed
        self.batch: list[tuple[str, bytes]] = []  # (post id, task JSON)
        self.inflight: deque[tuple[list[str], Any]] = deque()
        self.seen: set[str] = set()
        self.counts: Counter[str] = Counter()  # stage flags
        self.early = min(ls.batch_size, EARLY_BATCH)

    def run(self) -> Any:  # -> StageStats
        from mmnerd.progress import progress_bar

        self.plan()
        builder = self.build()
        try:
            with progress_bar("push: importing tasks") as advance:
                for sid in self.sids:
                    self.take(sid, builder, advance)
                self.pump(advance, final=True)
                while self.inflight:
                    self.settle(advance)
        except BaseException:
            (self.work / STOP).touch()  # payload tasks not started yet do nothing
            raise
        finally:
            self.importer.stop()
            builder.shutdown(wait=True)
        return self.finish(self.write())

    def plan(self) -> None:
        """Start over in the stage folder; the project first (a few small requests: imports
        need its id); only the listing of a non-empty project, which can take seconds,
        runs beside the payloads being built."""
        for old in [*self.folder.glob("shard-*"), *self.folder.glob("excluded-*"),
                    *self.folder.glob("stats-*")]:  # fmt: skip
            old.unlink()
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.open_project()

    def build(self) -> Any:
        """Build every input shard's payloads on the executor (:func:`build_payloads`), from
        a thread, so the driver imports the first shards while later ones are built."""
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="mmnerd-push-build")
        args = [(self.config, self.stage.input, sid) for sid in self.sids]
        self.built = pool.submit(
            self.executor.map_tasks, build_payloads, args, "push: task payloads"
        )
        return pool

    def take(self, sid: str, builder: Any, advance: Callable[[int], None]) -> None:
        """Route the posts of one input shard once its payloads are built."""
        import time

        path = self.work / f"tasks-{sid}.jsonl"
        while not path.exists():
            if self.built.done():
                self.built.result()  # raises the build's error
                if not path.exists():
                    raise LabelStudioError(f"push: no task payloads for shard {sid}")
            time.sleep(0.01)
        if self.by_post is None:
            self.by_post = self.stage._adopt(*self.listing.result(), self.client, self.ctx)
        ids = self.shard_posts.setdefault(sid, [])
        with open(path, "rb") as f:
            for line in f:
                head, digest, task = line.rstrip(b"\n").split(b"\t", 2)
                post_id = json.loads(head)
                ids.append(post_id)
                self.route(post_id, digest.decode(), task)
                self.pump(advance)

    def route(self, post_id: str, digest: str, task_json: bytes) -> None:
        assert self.by_post is not None
        if post_id in self.seen:
            return  # the same id twice in the input: one task
        self.seen.add(post_id)
        task = self.by_post.get(post_id)
        if task is None:
            self.batch.append((post_id, task_json))
            return
        self.counts["already_in_label_studio"] += 1
        if _digest(str((task.get("data") or {}).get("text"))) != digest:
            # never rewrite a task silently: pull checks spans against the post's text
            self.counts["task_text_differs"] += 1

    def send(self, batch: list[tuple[str, bytes]]) -> None:
        """Queue one bulk import of built payloads (the driver only joins them)."""
        body = b"[" + b",".join(task for _, task in batch) + b"]"
        future = self.importer.submit(body, len(batch))
        self.inflight.append(([post_id for post_id, _ in batch], future))

    def settle(self, advance: Callable[[int], None]) -> None:
        """Wait for the oldest import and record its task ids."""
        post_ids, future = self.inflight.popleft()
        assert self.by_post is not None
        for post_id, tid in zip(post_ids, future.result(), strict=True):
            self.by_post[post_id] = {"id": tid, "overlap": 1}
        self.counts["imported"] += len(post_ids)
        advance(len(post_ids))

    def write(self) -> list[dict]:
        """Each input shard's task ids, then its output shard (:func:`write_push_shard`)."""
        from mmnerd.io import write_json

        assert self.by_post is not None
        for sid, post_ids in self.shard_posts.items():
            tasks = {}
            for post_id in post_ids:
                task = self.by_post[post_id]
                tasks[post_id] = [int(task["id"]), int(task.get("overlap") or 1)]
            write_json(self.work / f"ids-{sid}.json", tasks)
        args = [(self.config, self.stage.input, sid, self.pid) for sid in self.sids]
        shards = self.executor.map_tasks(write_push_shard, args, "push: write")
        shutil.rmtree(self.work, ignore_errors=True)  # payloads hold every text: not kept
        return shards

    def finish(self, shards: list[dict]) -> Any:  # -> StageStats
        """Stats and flags, overlap PATCHes, model predictions and the project's sampling."""
        from collections import Counter

        from mmnerd.pipeline import StageStats

        ctx, client, ls = self.ctx, self.client, self.ls
        assert self.by_post is not None
        fixes = [tuple(f) for r in shards for f in r["fixes"]]
        wanted = {int(k): v for r in shards for k, v in r["wanted"].items()}
        for r in shards:
            ctx.stats.merge(StageStats.from_dict(r["stats"]))
        stale = sum(post_id not in self.seen for post_id in self.by_post)
        if stale:
            ctx.flag("tasks_not_in_input", stale)  # e.g. posts dropped upstream since
        for k, n in self.counts.items():
            ctx.flag(k, n)
        if fixes:
            client.map(lambda c, f: c.set_overlap(*f), fixes, ls.workers)
            ctx.flag("overlap_set", len(fixes))
        for k, n in sync_predictions(client, self.pid, wanted, ls.workers).items():
            if n:
                ctx.flag(k, n)
        versions = Counter(w["model_version"] for w in wanted.values())
        sampling = sampling_for(self.config, self.predictions)
        # the pushed model's scores order the tasks (one version per file in practice)
        set_sampling(client, self.pid, sampling, versions.most_common(1)[0][0] if versions else "")
        n_overlap = sum(r["n_overlap"] for r in shards)
        self.stage._print_where(client, self.config, self.pid, len(self.seen), n_overlap)
        return ctx.stats


class PushStage(Stage):
    """Import the kept posts as Label Studio tasks; duplicates are excluded (reason 'duplicate').

    With the local executor the push streams (:class:`_StreamPush`): once the project is
    set up, the listing of tasks already present (if any) runs while the input is read;
    new posts are imported in batches of up to ``labelstudio.batch_size`` (smaller ones,
    from ``EARLY_BATCH`` posts, only when no import is under way) on a background thread
    while later posts are read and earlier ones written; posts are yielded in input order
    once their task exists, with ``post.ls`` set.  On a parallel executor (Dask) it splits
    its work (:meth:`run_partitioned`, :class:`_ShardedPush`): each input shard's task
    payloads are built on the workers (:func:`build_payloads`) while the driver, which
    only joins and sends them, imports the shards already built; then each shard's posts
    are written with ``post.ls`` on the workers (:func:`write_push_shard`).  (Locally the
    split costs a second read of every post, measured 1.5x slower, so it streams.)
    ``after_batch(i)`` is called after each imported batch (tests use it to simulate a
    crash between batches).
    """

    name = "push"
    input = "dedup"
    scope = "global"
    config_sections = ("labelstudio",)

    def __init__(
        self, client: Any = None, after_batch: Callable[[int], None] | None = None
    ) -> None:
        self.client = client
        self.after_batch = after_batch

    def split_work(self, executor: Any) -> bool:
        """Split into executor tasks only where they run in parallel (Dask)."""
        return bool(getattr(executor, "parallel", False))

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        from mmnerd.progress import progress_bar

        push = _StreamPush(self, ctx)
        push.plan()
        try:
            with progress_bar("push: importing tasks") as advance:
                for post in records:
                    if post.duplicate_of:
                        yield post.drop("duplicate")
                        continue
                    if post.image is None or not post.image.path:
                        ctx.flag("no_image")
                    push.take(post)
                    push.pump(advance)
                    yield from push.ready()
                if push.by_post is None:
                    push.adopt()
                push.pump(advance, final=True)
                while push.inflight:
                    push.settle(advance)
                    yield from push.ready()
                yield from push.ready()
        finally:
            push.importer.stop()
        push.finish()

    def run_partitioned(self, config: PipelineConfig, executor: Any, folder: Path) -> Any:
        """The steps of :class:`_ShardedPush` with ``executor``; returns the stage's stats."""
        return _ShardedPush(self, config, executor, folder).run()

    @staticmethod
    def _adopt(by_post: dict, dupes: list[dict], client: Any, ctx: StageContext) -> dict:
        """Take the listing: delete unlabelled duplicate tasks, report labelled ones."""
        # only possible if something imported twice outside this stage: the oldest task
        # is the post's; delete unlabelled copies, keep (and report) labelled ones
        for t in dupes:
            if t.get("total_annotations"):
                ctx.flag("duplicate_task_with_annotations_kept")
            else:
                client.delete_task(t["id"])
                ctx.flag("duplicate_task_deleted")
        return by_post

    @staticmethod
    def _print_where(
        client: Any, config: PipelineConfig, pid: int, n_tasks: int, n_overlap: int
    ) -> None:
        ls = config.labelstudio
        print(
            f"Label Studio project '{ls.project_title}': {client.url}/projects/{pid}/data "
            f"({n_tasks} tasks, {n_overlap} with overlap {ls.overlap_k}).\n"
            f"Annotators join through the organisation's invite link "
            f"(Organization -> Add People; sign-up without it is disabled), then log in at "
            f"{client.url}/user/login/ with their e-mail and password. The admin account "
            f"({ls.admin_email}) and its password are in "
            f"{Path(ls.data_dir) / 'credentials.json'}.\n"
            f"Annotators start with the project's 'Label All Tasks' button (the stream that "
            f"reserves each task for one annotator and follows labelstudio.sampling)."
            + (
                " On SQLite two annotators asking at the same moment can get the same task: "
                "a team labelling at once needs labelstudio.database = postgresql."
                if ls.database == "sqlite"
                else ""
            ),
            file=sys.stderr,
        )
