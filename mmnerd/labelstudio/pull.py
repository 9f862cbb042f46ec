"""Pull annotations from Label Studio into strict IOB2 (stage ``pull``).

Incremental.  ``<data_dir>/annotation/pull-state.json`` keeps, per task, a
signature (``updated_at``, annotation counts) and the raw annotations last
fetched.  A pull lists the tasks (paginated, light), fetches annotations only
for tasks whose signature changed (the task list filtered to those ids, in
chunks) and rebuilds every post from the state.  So a rerun with nothing
new fetches no annotation and yields the same records; nothing is lost
across Label Studio restarts (the server keeps its data, we keep ours).  The
state lives outside
``stages/pull/`` because the runner clears that folder on every pull.

Per annotation: each ``labels`` region is checked against its ``value.text``
with :func:`mmnerd.text.bio.check_span` (offsets read as code points, then as
UTF-16 units / UTF-8 bytes; otherwise the region is flagged and left out —
never silently mislabelled), then snapped to token boundaries
(``post.token_offsets``) by :func:`mmnerd.text.bio.spans_to_bio`.  Every
problem is recorded in ``Annotation.flags`` and counted in the stage stats.
Annotators are pseudonymised with the corpus key (:mod:`mmnerd.privacy`, kind
``annotator``, of their e-mail); lead time and
timestamps are kept; cancelled (skipped) annotations are kept with
``cancelled=True`` and take no part in the vote.

Final labels: an adjudicated annotation (see :mod:`.adjudicate`) if any; else
one completed annotation as is; else the majority vote.  ``post.ner_tags`` is
strict IOB2 over ``post.tokens``; ``post.agreement`` the mean pairwise entity F1
when two or more annotators completed the post.  ``post.image_decided``: the
"image decided" choice (hotkey i) of the adjudicator, else ticked by at least half
of the annotators; None when the labelling config has no such choice.  Posts without a completed
annotation are dropped with reason ``not_annotated`` (counted, written to the
exclusions file), or, with ``labelstudio.unannotated = "source"``, keep the
source's gold labels (``post.labels_from = "source"``, counted as
``source_labels``; otherwise ``annotators``, or ``simulated`` when every final
annotation comes from a simulated account).  An agreement report is written to
``<data_dir>/reports/agreement/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.errors import LabelStudioError
from mmnerd.io import read_json, remove_stale_temps, write_json
from mmnerd.labelstudio.push import IMAGE_DECIDED_CHOICE, IMAGE_DECIDED_NAME, read_text
from mmnerd.labelstudio.simulate import is_simulated
from mmnerd.pipeline import Stage, StageContext
from mmnerd.privacy import Pseudonymizer, pseudonymizer
from mmnerd.records import ENTITY_TYPES, Annotation, Post, Span
from mmnerd.text.bio import check_span, spans_to_bio

STATE_FILE = "pull-state.json"
RAW_KEYS = (
    "id",
    "completed_by",
    "result",
    "was_cancelled",
    "lead_time",
    "created_at",
    "updated_at",
    "ground_truth",
)


def state_path(config: PipelineConfig) -> Path:
    return config.root / "annotation" / STATE_FILE


def _sig(task: dict) -> list:
    return [
        task.get("updated_at"),
        task.get("total_annotations"),
        task.get("cancelled_annotations"),
    ]


def _raw(ann: dict) -> dict:
    out = {k: ann.get(k) for k in RAW_KEYS}
    cb = out["completed_by"]
    out["completed_by"] = cb.get("id") if isinstance(cb, dict) else cb
    return out


SIG_FIELDS = "id,updated_at,total_annotations,cancelled_annotations"


def sync_project(client: Any, project_id: int, state: dict) -> dict[str, int]:
    """Bring ``state`` (``{task id: {sig, annotations}}``) up to date; returns counts.

    Lists every task's signature (a light, paginated listing), then fetches the
    annotations of the tasks whose signature changed, and only those.
    """
    if client.request("GET", f"/api/projects/{project_id}", ok=(404,)) is None:
        raise LabelStudioError(
            f"Label Studio project {project_id} (recorded by push) no longer exists on "
            f"{client.url}; run `mmnerd annotate push --force` to recreate the tasks"
        )
    tasks = {str(t["id"]): t for t in client.iter_tasks(project_id, include=SIG_FIELDS)}
    changed = [tid for tid, t in tasks.items() if state.get(tid, {}).get("sig") != _sig(t)]
    gone = [tid for tid in state if tid not in tasks]
    for tid in gone:
        del state[tid]
    fetched = 0
    for t in client.tasks_with_annotations(project_id, [int(x) for x in changed]):
        tid = str(t["id"])
        # the signature stored is the one fetched with the annotations (never newer)
        state[tid] = {
            "sig": _sig(t),
            "annotations": [_raw(a) for a in t.get("annotations") or []],
        }
        fetched += len(t.get("annotations") or [])
    return {
        "tasks": len(tasks),
        "changed": len(changed),
        "deleted": len(gone),
        "annotations": fetched,
    }


def convert(raw: dict, post: Post, offsets: list[tuple[int, int]], who: str) -> Annotation:
    """One Label Studio annotation -> :class:`Annotation` with checked, token-aligned spans."""
    flags: list[str] = []
    spans: list[Span] = []
    decided = False
    for r in raw.get("result") or []:
        if r.get("type") == "choices" and r.get("from_name") == IMAGE_DECIDED_NAME:
            decided = IMAGE_DECIDED_CHOICE in ((r.get("value") or {}).get("choices") or [])
            continue
        if r.get("type") != "labels":
            flags.append(f"ignored_{r.get('type')}")
            continue
        v = r.get("value") or {}
        labels = v.get("labels") or []
        if not labels:
            flags.append("span_no_label")
            continue
        if len(labels) > 1:
            flags.append("span_multi_label")
        label = labels[0]
        if label not in ENTITY_TYPES:
            flags.append("span_bad_label")
            continue
        start, end = v.get("start"), v.get("end")
        if not isinstance(start, int) or not isinstance(end, int):
            flags.append("span_bad_offsets")
            continue
        chk = check_span(post.text, start, end, v.get("text"))
        if not chk.ok:
            flags.append(f"span_{chk.reason}")
            continue
        if chk.reason:
            flags.append(f"span_{chk.reason.replace('+', '_')}")
        spans.append(Span(chk.start, chk.end, label))
    al = spans_to_bio(spans, offsets, post.text)
    flags.extend(f"span_{i.reason}" for i in al.issues)
    return Annotation(
        annotator=who,
        spans=al.spans,
        annotation_id=int(raw.get("id") or 0),
        created_at=raw.get("created_at") or "",
        updated_at=raw.get("updated_at") or "",
        lead_time=float(raw.get("lead_time") or 0.0),
        cancelled=bool(raw.get("was_cancelled")),
        flags=flags,
        image_decided=decided,
    )


def combine_image_decided(done: list[Annotation], adjudicated: Annotation | None) -> bool:
    """The post's ``image_decided`` from its completed annotations: the adjudicator's choice if
    any, else ticked by at least half of the annotators (one annotator: theirs)."""
    if adjudicated is not None:
        return adjudicated.image_decided
    return 2 * sum(a.image_decided for a in done) >= len(done) > 0


def records_image_decided(config: PipelineConfig) -> bool:
    """Does the project's labelling config offer the "image decided" choice?  Without it
    nothing is recorded and posts keep ``image_decided = None``."""
    try:
        text = read_text(config.labelstudio.label_config, "label_config")
    except LabelStudioError:
        return False  # unknown config: record nothing rather than "not decided"
    return f'name="{IMAGE_DECIDED_NAME}"' in text


def annotator_id(user_id: Any, emails: dict[int, str], pseudonym: Pseudonymizer) -> str:
    """The annotator's keyed pseudonym (of the e-mail, else of the Label Studio user id)."""
    email = emails.get(int(user_id)) if user_id is not None else None
    return pseudonym(email or f"labelstudio-user:{user_id}", "annotator")


class PullStage(Stage):
    """Fetch annotations, check and snap spans, vote, tag IOB2, report agreement."""

    name = "pull"
    input = "push"
    scope = "global"
    config_sections = ("labelstudio",)

    def __init__(self, client: Any = None, adjudicate: bool = True) -> None:
        self.client = client
        self.adjudicate = adjudicate

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        from mmnerd.labelstudio.adjudicate import (
            adjudication_title,
            majority_vote,
            queue_for_adjudication,
        )
        from mmnerd.labelstudio.agreement import write_report
        from mmnerd.labelstudio.client import LSClient

        config = ctx.config
        ls = config.labelstudio
        client = self.client or LSClient.from_config(config)
        posts = list(records)
        spath = state_path(config)
        remove_stale_temps(spath.parent)  # left by a pull killed while saving its state
        state = read_json(spath) or {"projects": {}}
        emails = {int(u["id"]): u.get("email", "") for u in client.users()}
        pseudonym = pseudonymizer(config.root)
        emails_of = {annotator_id(uid, emails, pseudonym): e for uid, e in emails.items()}
        recorded = records_image_decided(config)
        project_ids = sorted(
            {int(p.extra["ls_project_id"]) for p in posts if "ls_project_id" in p.extra}
        )
        adj = client.find_project(adjudication_title(ls.project_title)) if self.adjudicate else None
        if adj is not None:
            project_ids.append(int(adj["id"]))
        for pid in project_ids:
            pstate = state["projects"].setdefault(str(pid), {})
            for k, n in sync_project(client, pid, pstate).items():
                ctx.stats.flagged[f"fetch_{k}"] += n  # zeros too: "fetched nothing" is news
        state["pulled_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(spath, state)

        adj_by_post: dict[str, list[dict]] = {}
        if adj is not None:
            # adjudication tasks carry the post id in their data; map via a light listing
            for t in client.iter_tasks(int(adj["id"]), include="id,data"):
                pid_ = (t.get("data") or {}).get("post_id")
                anns = state["projects"][str(adj["id"])].get(str(t["id"]), {}).get("annotations")
                if pid_ and anns:
                    adj_by_post[pid_] = anns

        out: list[Post] = []
        queue: list[Post] = []
        for post in posts:
            tid = post.extra.get("ls_task_id")
            pid = post.extra.get("ls_project_id")
            offsets = self._offsets(post)
            raw = state["projects"].get(str(pid), {}).get(str(tid), {}).get("annotations", [])
            anns = [
                convert(r, post, offsets, annotator_id(r.get("completed_by"), emails, pseudonym))
                for r in sorted(raw, key=lambda r: r.get("id") or 0)
            ]
            post.annotations = anns
            for a in anns:
                for f in a.flags:
                    ctx.flag(f)
            # one vote per annotator: their latest completed annotation
            latest = {a.annotator: a for a in anns if not a.cancelled}  # anns sorted by id
            done = sorted(latest.values(), key=lambda a: a.annotation_id)
            if len(latest) < sum(not a.cancelled for a in anns):
                ctx.flag("repeat_annotation_by_same_annotator")
            if any(a.cancelled for a in anns):
                ctx.flag("cancelled_annotations", sum(a.cancelled for a in anns))
            gold = sorted(
                (r for r in adj_by_post.get(post.id, []) if not r.get("was_cancelled")),
                key=lambda r: r.get("id") or 0,
            )
            post.agreement = None
            post.extra.pop("needs_adjudication", None)
            post.extra.pop("adjudicated", None)
            post.labels_from = ""
            g = None
            if gold:
                g = convert(
                    gold[-1],
                    post,
                    offsets,
                    annotator_id(gold[-1].get("completed_by"), emails, pseudonym),
                )
                spans = g.spans
                post.extra["adjudicated"] = True
                if len(done) >= 2:
                    post.agreement = majority_vote(done, post.text, ls.adjudication_f1).agreement
                ctx.flag("adjudicated")
            elif not done and ls.unannotated == "source":
                spans = post.gold_spans  # the source's gold labels and image_decided flag
                post.labels_from = "source"
                ctx.flag("source_labels")
            elif not done:
                out.append(post.drop("not_annotated:skipped" if anns else "not_annotated"))
                continue
            elif len(done) == 1:
                spans = done[0].spans
            else:
                vote = majority_vote(done, post.text, ls.adjudication_f1)
                spans, post.agreement = vote.spans, vote.agreement
                if vote.needs_adjudication:
                    post.extra["needs_adjudication"] = True
                    queue.append(post)
                    ctx.flag("needs_adjudication")
            al = spans_to_bio(spans, offsets, post.text)
            post.spans = al.spans
            post.ner_tags = al.tags
            if post.labels_from != "source":
                post.image_decided = combine_image_decided(done, g) if recorded else None
                who = [g] if g is not None else done
                sim = all(is_simulated(emails_of.get(a.annotator, "")) for a in who)
                post.labels_from = "simulated" if sim else "annotators"
            if post.image_decided:
                ctx.flag("image_decided")
            post.extra["annotator_count"] = len({a.annotator for a in done})
            out.append(post)
        if queue and self.adjudicate:
            adj_pid, _ = queue_for_adjudication(client, config, queue)
            for p in queue:
                p.extra["ls_adjudication_project_id"] = adj_pid
        write_report([p for p in out if p.ok], config.root / "reports" / "agreement")
        yield from out

    @staticmethod
    def _offsets(post: Post) -> list[tuple[int, int]]:
        if not post.token_offsets:
            from mmnerd.text.tokenize import tokenize

            post.tokens, post.token_offsets = tokenize(post.text, post.lang or "xx")
        return [tuple(o) for o in post.token_offsets]  # type: ignore[misc]
