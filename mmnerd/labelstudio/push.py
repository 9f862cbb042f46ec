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

import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mmnerd.config import PipelineConfig
from mmnerd.errors import LabelStudioError
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post, Span

FROM_NAME = "label"
TO_NAME = "text"
GOLD_MODEL_VERSION = "gold-import"


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


def load_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """``mmnerd predict`` output: post id -> {"tags": [...], "model_version": str}."""
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
            out[str(row["id"])] = {
                "tags": list(row["tags"]),
                "model_version": str(row.get("model_version", "model")),
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
        task["predictions"] = [
            {
                "model_version": prediction["model_version"],
                "result": prediction_result(post, prediction["tags"]),
            }
        ]
    return task


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
    client.ensure_local_storage(proj["id"], images)
    return proj


def _instructions_html(markdown: str) -> str:
    """Label Studio shows expert_instruction as HTML: keep the markdown readable in a <pre>."""
    import html

    if not markdown:
        return ""
    return f'<pre style="white-space: pre-wrap; font-family: inherit">{html.escape(markdown)}</pre>'


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


class PushStage(Stage):
    """Import the kept posts as Label Studio tasks; duplicates are excluded (reason 'duplicate').

    ``after_batch(i)`` is called after each imported batch (tests use it to
    simulate a crash between batches).
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

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        from mmnerd.labelstudio.client import LSClient
        from mmnerd.progress import progress_bar

        config = ctx.config
        ls = config.labelstudio
        client = self.client or LSClient.from_config(config)
        kept: list[Post] = []
        for post in records:
            if post.duplicate_of:
                post.extra["duplicate_of"] = post.duplicate_of
                yield post.drop("duplicate")
                continue
            if post.image is None or not post.image.path:
                ctx.flag("no_image")
            kept.append(post)
        predictions = load_predictions(ls.predictions) if ls.predictions else {}
        proj = ensure_project(client, config)
        pid = int(proj["id"])
        by_post, dupes = existing_tasks(client, pid)
        if dupes:
            # only possible if something imported twice outside this stage: the oldest task
            # is the post's; delete unlabelled copies, keep (and report) labelled ones
            for t in dupes:
                if t.get("total_annotations"):
                    ctx.flag("duplicate_task_with_annotations_kept")
                else:
                    client.delete_task(t["id"])
                    ctx.flag("duplicate_task_deleted")
        ids = {p.id for p in kept}
        stale = sum(pid not in ids for pid in by_post)
        if stale:
            ctx.flag("tasks_not_in_input", stale)  # e.g. posts dropped upstream since
        changed = sum(
            1 for p in kept if p.id in by_post and by_post[p.id]["data"].get("text") != p.text
        )
        if changed:
            # never rewrite a task silently: pull checks spans against the post's text
            ctx.flag("task_text_differs", changed)
        missing = [p for p in kept if p.id not in by_post]
        if len(kept) > len(missing):
            ctx.flag("already_in_label_studio", len(kept) - len(missing))
        with progress_bar("push: importing tasks", total=len(missing)) as advance:
            for i in range(0, len(missing), ls.batch_size):
                batch = missing[i : i + ls.batch_size]
                payload = [
                    task_payload(p, config, ls.pre_annotate, predictions.get(p.id)) for p in batch
                ]
                new_ids = client.import_tasks(pid, payload)
                for p, tid in zip(batch, new_ids, strict=True):
                    by_post[p.id] = {"id": tid, "overlap": 1, "data": {"text": p.text}}
                advance(len(batch))
                if self.after_batch is not None:
                    self.after_batch(i // ls.batch_size)
        if missing:
            ctx.flag("imported", len(missing))
        fixes: list[tuple[int, int]] = []
        for p in kept:
            task = by_post[p.id]
            want = overlap_for(p.id, ls.overlap_share, ls.overlap_k)
            if int(task.get("overlap", 1)) != want:
                fixes.append((int(task["id"]), want))
            p.extra["ls_task_id"] = int(task["id"])
            p.extra["ls_project_id"] = pid
            p.extra["ls_overlap"] = want
        if fixes:
            client.map(lambda c, f: c.set_overlap(*f), fixes, ls.workers)
            ctx.flag("overlap_set", len(fixes))
        print(
            f"Label Studio project '{ls.project_title}': {client.url}/projects/{pid}/data "
            f"({len(kept)} tasks, {sum(p.extra['ls_overlap'] > 1 for p in kept)} with overlap "
            f"{ls.overlap_k}).\nAnnotators join through the organisation's invite link "
            f"(Organization -> Add People; sign-up without it is disabled), then log in at "
            f"{client.url}/user/login/ with their e-mail and password. The admin account "
            f"({ls.admin_email}) and its password are in {Path(ls.data_dir) / 'credentials.json'}.",
            file=sys.stderr,
        )
        yield from kept
