"""Pull annotations from Label Studio into strict IOB2 (stage ``pull``).

Incremental.  ``<data_dir>/side/pull/pull-state.json`` keeps, per task, a
signature (``updated_at``, annotation counts) and the raw annotations last
fetched.  A pull lists the tasks (paginated, light), fetches annotations only
for tasks whose signature changed (the task list filtered to those ids, in
chunks) and rebuilds every post from the state.  So a rerun with nothing
new fetches no annotation and yields the same records; nothing is lost
across Label Studio restarts (the server keeps its data, we keep ours).  The
state lives in the stage's side folder (:func:`mmnerd.pipeline.side_dir`): the runner
clears ``stages/pull/`` on every pull, never the side folder.

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
annotation comes from a simulated account).  ``post.adjudication`` is ``"needed"`` for a
post queued for adjudication, ``"done"`` once an adjudicator's annotation gives its labels.
An agreement report is written to ``<data_dir>/side/pull/agreement/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.errors import LabelStudioError
from mmnerd.io import read_json, write_json
from mmnerd.labelstudio.push import IMAGE_DECIDED_CHOICE, IMAGE_DECIDED_NAME, read_text
from mmnerd.labelstudio.simulate import is_simulated
from mmnerd.pipeline import Stage, StageContext, side_dir
from mmnerd.privacy import Pseudonymizer, pseudonymizer
from mmnerd.records import (
    ADJUDICATION_DONE,
    ADJUDICATION_NEEDED,
    ENTITY_TYPES,
    Annotation,
    Post,
    Span,
)
from mmnerd.text.bio import check_span, spans_to_bio

STATE_FILE = "pull-state.json"
AGREEMENT_DIR = "agreement"
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
    """``<data_dir>/side/pull/pull-state.json`` (the stage's side folder; a data dir from
    before issue 17 has it moved there from ``annotation/``)."""
    return side_dir(config, "pull") / STATE_FILE


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


@dataclass
class _Annotators:
    """Who annotated: Label Studio user id -> keyed pseudonym, pseudonym -> e-mail."""

    emails: dict[int, str]
    pseudonym: Pseudonymizer
    emails_of: dict[str, str]

    @classmethod
    def load(cls, client: Any, config: PipelineConfig) -> _Annotators:
        emails = {int(u["id"]): u.get("email", "") for u in client.users()}
        pseudonym = pseudonymizer(config.root)
        emails_of = {annotator_id(uid, emails, pseudonym): e for uid, e in emails.items()}
        return cls(emails, pseudonym, emails_of)

    def id(self, raw: dict) -> str:
        return annotator_id(raw.get("completed_by"), self.emails, self.pseudonym)

    def simulated(self, anns: list[Annotation]) -> bool:
        return all(is_simulated(self.emails_of.get(a.annotator, "")) for a in anns)


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
        from mmnerd.labelstudio.adjudicate import adjudication_title, queue_for_adjudication
        from mmnerd.labelstudio.agreement import write_report
        from mmnerd.labelstudio.client import LSClient

        config = ctx.config
        client = self.client or LSClient.from_config(config)
        posts = list(records)
        who = _Annotators.load(client, config)
        title = adjudication_title(config.labelstudio.project_title)
        adj = client.find_project(title) if self.adjudicate else None
        state = self._sync(client, ctx, posts, adj)
        adj_by_post = self._adjudications(client, state, adj)
        recorded = records_image_decided(config)
        for post in posts:
            gold = adj_by_post.get(post.id, [])
            self._label(post, state["projects"], gold, who, recorded, ctx)
        queue = [p for p in posts if p.ok and p.adjudication == ADJUDICATION_NEEDED]
        if queue and self.adjudicate:
            adj_pid, _ = queue_for_adjudication(client, config, queue)
            for p in queue:
                assert p.ls is not None  # annotated, so pushed
                p.ls.adjudication_project = adj_pid
        write_report([p for p in posts if p.ok], ctx.side / AGREEMENT_DIR)
        yield from posts

    @staticmethod
    def _sync(client: Any, ctx: StageContext, posts: list[Post], adj: dict | None) -> dict:
        """Bring the saved state (side folder) up to date with every project; returns it."""
        spath = state_path(ctx.config)
        state = read_json(spath) or {"projects": {}}
        project_ids = sorted({p.ls.project for p in posts if p.ls is not None})
        if adj is not None:
            project_ids.append(int(adj["id"]))
        for pid in project_ids:
            pstate = state["projects"].setdefault(str(pid), {})
            for k, n in sync_project(client, pid, pstate).items():
                ctx.stats.flagged[f"fetch_{k}"] += n  # zeros too: "fetched nothing" is news
        state["pulled_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(spath, state)
        return state

    @staticmethod
    def _adjudications(client: Any, state: dict, adj: dict | None) -> dict[str, list[dict]]:
        """post id -> raw annotations of its adjudication task (tasks carry the post id in
        their data; mapped through a light listing)."""
        out: dict[str, list[dict]] = {}
        if adj is None:
            return out
        pstate = state["projects"][str(adj["id"])]
        for t in client.iter_tasks(int(adj["id"]), include="id,data"):
            post_id = (t.get("data") or {}).get("post_id")
            anns = pstate.get(str(t["id"]), {}).get("annotations")
            if post_id and anns:
                out[post_id] = anns
        return out

    def _label(
        self,
        post: Post,
        projects: dict,
        gold_raw: list[dict],
        who: _Annotators,
        recorded: bool,
        ctx: StageContext,
    ) -> None:
        """Set the post's annotations, final spans, tags, agreement, adjudication and
        ``labels_from`` (or drop it: ``not_annotated``)."""
        offsets = self._offsets(post)
        ref = post.ls
        raw = projects.get(str(ref.project), {}).get(str(ref.task), {}) if ref else {}
        ordered = sorted(raw.get("annotations", []), key=lambda r: r.get("id") or 0)
        anns = [convert(r, post, offsets, who.id(r)) for r in ordered]
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
        gold = sorted((r for r in gold_raw if not r.get("was_cancelled")),
                      key=lambda r: r.get("id") or 0)  # fmt: skip
        g = convert(gold[-1], post, offsets, who.id(gold[-1])) if gold else None
        spans = self._final_spans(post, done, g, ctx)
        if spans is None:
            post.drop("not_annotated:skipped" if anns else "not_annotated")
            return
        al = spans_to_bio(spans, offsets, post.text)
        post.spans, post.ner_tags = al.spans, al.tags
        if post.labels_from != "source":
            post.image_decided = combine_image_decided(done, g) if recorded else None
            post.labels_from = "simulated" if who.simulated([g] if g else done) else "annotators"
        if post.image_decided:
            ctx.flag("image_decided")

    @staticmethod
    def _final_spans(
        post: Post, done: list[Annotation], g: Annotation | None, ctx: StageContext
    ) -> list[Span] | None:
        """The adjudicator's spans, the source's gold (``unannotated = "source"``), the one
        annotation or the majority vote; None when nothing labels the post.  Sets
        ``agreement``, ``adjudication`` and (source) ``labels_from``."""
        from mmnerd.labelstudio.adjudicate import majority_vote

        ls = ctx.config.labelstudio
        post.agreement = None
        post.adjudication = ""
        post.labels_from = ""
        if g is not None:
            post.adjudication = ADJUDICATION_DONE
            if len(done) >= 2:
                post.agreement = majority_vote(done, post.text, ls.adjudication_f1).agreement
            ctx.flag("adjudicated")
            return g.spans
        if not done and ls.unannotated == "source":
            post.labels_from = "source"  # the source's gold labels and image_decided flag
            ctx.flag("source_labels")
            return post.gold_spans
        if not done:
            return None
        if len(done) == 1:
            return done[0].spans
        vote = majority_vote(done, post.text, ls.adjudication_f1)
        post.agreement = vote.agreement
        if vote.needs_adjudication:
            post.adjudication = ADJUDICATION_NEEDED
            ctx.flag("needs_adjudication")
        return vote.spans

    @staticmethod
    def _offsets(post: Post) -> list[tuple[int, int]]:
        if not post.token_offsets:
            from mmnerd.text.tokenize import tokenize

            post.tokens, post.token_offsets = tokenize(post.text, post.lang or "xx")
        return [tuple(o) for o in post.token_offsets]  # type: ignore[misc]
