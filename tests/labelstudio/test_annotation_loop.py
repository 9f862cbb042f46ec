"""The annotation loop against the REAL Label Studio server (one per session, see conftest).

The loop's key tests (``make_db_config``) run twice: on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from mmnerd.errors import LabelStudioError
from mmnerd.labelstudio import server
from mmnerd.labelstudio.client import LSClient
from mmnerd.labelstudio.pull import PullStage
from mmnerd.labelstudio.push import PushStage, overlap_for, task_payload
from mmnerd.labelstudio.simulate import simulate
from mmnerd.pipeline import Runner, iter_excluded, iter_stage, seed_stage
from mmnerd.text.bio import OffsetIndex, spans_to_bio

from .conftest import make_posts

pytestmark = pytest.mark.labelstudio


def _client(cfg) -> LSClient:
    return LSClient.from_config(cfg, start=False)


def _task_count(cfg) -> tuple[int, int]:
    """(tasks, distinct post ids) in the config's project."""
    c = _client(cfg)
    proj = c.find_project(cfg.labelstudio.project_title)
    tasks = list(c.iter_tasks(proj["id"]))
    return len(tasks), len({t["data"]["post_id"] for t in tasks})


def test_credentials_are_private_and_never_logged(ls_session, make_config, capfd):
    cfg = make_config()
    folder = server.data_dir(cfg)
    creds_path = folder / "credentials.json"
    assert stat.S_IMODE(os.stat(creds_path).st_mode) == 0o600
    creds = server.credentials(cfg)
    info = server.up(cfg)  # reuses the session's server
    assert info.reused and info.pid == ls_session["info"].pid
    assert creds["token"] not in repr(info)
    assert "running" in server.status(cfg)
    with pytest.raises(LabelStudioError, match="--public"):
        server.up(cfg, public=True)  # never silently keeps a loopback server for --public
    log = (folder / "server.log").read_text(errors="replace")
    out, err = capfd.readouterr()
    for secret in (creds["token"], creds["password"], creds["secret_key"]):
        assert secret not in log and secret not in out and secret not in err
    # a wrong token gives one clear line without the secret
    bad = LSClient(info.url, "0" * 40)
    with pytest.raises(LabelStudioError) as e:
        bad.whoami()
    assert "token refused" in str(e.value) and "\n" not in str(e.value)


def test_busy_port_fails_with_one_line(make_config, ls_session):
    # a different data dir asking for the session server's (busy) port
    cfg = make_config(data_dir=str(ls_session["base"] / "other-ls"))
    with pytest.raises(LabelStudioError) as e:
        server.up(cfg)
    assert "in use" in str(e.value) and "\n" not in str(e.value)


def test_round_trip_gold_equals_bio_and_rerun_adds_nothing(make_db_config):
    cfg = make_db_config()
    posts = make_posts(200, seed=3, root=cfg.root)
    posts[5].duplicate_of = posts[4].id  # a duplicate is excluded, with its reason
    for p in posts:
        p.image_decided = p.source_id.endswith(("3", "7"))  # the source's flag, simulated
    seed_stage(cfg, "dedup", posts)
    runner = Runner(cfg)
    st = runner.run_stage(PushStage())
    assert st.items_out == 199 and st.dropped["duplicate"] == 1
    assert [p.id for p in iter_excluded(cfg, "push")] == [posts[5].id]
    assert _task_count(cfg) == (199, 199)
    pushed = list(iter_stage(cfg, "push"))
    assert all(p.ls.task for p in pushed)
    n_overlap = sum(p.ls.overlap == 2 for p in pushed)
    assert 20 <= n_overlap <= 60  # ~20 % of 199
    # the overlap is really set on the tasks
    c = _client(cfg)
    overlaps = {t["id"]: t["overlap"] for t in c.iter_tasks(pushed[0].ls.project)}
    assert all(overlaps[p.ls.task] == p.ls.overlap for p in pushed)

    # rerun: nothing new
    st2 = runner.run_stage(PushStage(), force=True)
    assert st2.flagged["already_in_label_studio"] == 199 and "imported" not in st2.flagged
    assert _task_count(cfg) == (199, 199)

    res = simulate(cfg, pushed)
    assert res["written"] == 199 + n_overlap
    assert simulate(cfg, pushed)["already_present"] == 199 + n_overlap  # idempotent

    st3 = runner.run_stage(PullStage(), force=True)
    assert st3.items_out == 199, st3.to_dict()
    pulled = {p.id: p for p in iter_stage(cfg, "pull")}
    for p in posts:
        if p.id == posts[5].id:
            continue
        q = pulled[p.id]
        gold = spans_to_bio(p.gold_spans, p.token_offsets, p.text)
        assert gold.issues == []
        assert q.ner_tags == gold.tags, (p.text, q.ner_tags, gold.tags)
        assert [(s.start, s.end, s.label) for s in q.spans] == [
            (s.start, s.end, s.label) for s in p.gold_spans
        ]
        assert q.image_decided is p.image_decided  # the "image decided" choice came back
        if q.ls.overlap == 2:
            assert q.agreement == 1.0 and len(q.annotations) == 2
            assert len({a.annotator for a in q.annotations}) == 2
        else:
            assert q.agreement is None
        a = q.annotations[0]
        assert a.annotator and "@" not in a.annotator and a.lead_time > 0 and a.created_at
    assert (cfg.root / "side" / "pull" / "agreement" / "agreement.md").exists()

    # a second pull fetches nothing and yields the same records (and clears a temp file that
    # a pull killed while saving its state would leave)
    from mmnerd.labelstudio.pull import state_path

    stale = state_path(cfg).parent / ".pull-state.json.k9x2.tmp"
    stale.write_text('{"projects": ')
    st4 = runner.run_stage(PullStage(), force=True)
    assert not stale.exists()
    assert st4.flagged["fetch_changed"] == 0
    again = {p.id: p for p in iter_stage(cfg, "pull")}
    assert {k: v.to_dict() for k, v in again.items()} == {k: v.to_dict() for k, v in pulled.items()}

    # restart Label Studio in the middle of a pull: the pull waits for it and loses nothing
    state_path(cfg).unlink()  # so this pull fetches every annotation again, in chunks of 40
    restarts: list[threading.Thread] = []

    class RestartedMidPull(LSClient):
        def tasks_with_annotations(self, project_id, ids, chunk=500):
            for i, task in enumerate(super().tasks_with_annotations(project_id, ids, chunk=40)):
                if i == 40 and not restarts:  # the first chunk is in, the next 4 are not
                    server.down(cfg)
                    assert "not running" in server.status(cfg)
                    restarts.append(threading.Thread(target=server.up, args=(cfg,)))
                    restarts[0].start()
                yield task

    base = _client(cfg)
    client = RestartedMidPull(base.url, base._token, reconnect=cfg.labelstudio.reconnect_timeout)
    st5 = runner.run_stage(PullStage(client=client), force=True)
    restarts[0].join()
    assert "running" in server.status(cfg)
    assert st5.items_out == 199 and st5.flagged["fetch_changed"] == 199, st5.to_dict()
    after = {p.id: p.to_dict() for p in iter_stage(cfg, "pull")}
    assert after == {k: v.to_dict() for k, v in pulled.items()}
    st6 = runner.run_stage(PullStage(), force=True)  # and the state it saved is complete
    assert st6.flagged["fetch_changed"] == 0 and st6.items_out == 199


def test_push_killed_between_batches_then_rerun_is_exact(make_db_config):
    cfg = make_db_config(batch_size=40)
    posts = make_posts(130, seed=4)
    seed_stage(cfg, "dedup", posts)

    def crash(i: int) -> None:
        if i == 1:
            raise KeyboardInterrupt("killed after the second batch")

    with pytest.raises(KeyboardInterrupt):
        Runner(cfg).run_stage(PushStage(after_batch=crash))
    assert _task_count(cfg) == (80, 80)
    # what a blindly retried bulk import would leave: a second task for a post
    c = _client(cfg)
    proj = c.find_project(cfg.labelstudio.project_title)
    c.import_tasks(proj["id"], [task_payload(posts[0], cfg)])
    assert _task_count(cfg) == (81, 80)
    st = Runner(cfg).run_stage(PushStage())
    assert st.flagged["already_in_label_studio"] == 80 and st.flagged["imported"] == 50
    assert st.flagged["duplicate_task_deleted"] == 1
    assert _task_count(cfg) == (130, 130)


def test_offsets_in_utf16_are_recovered_or_flagged(make_config):
    cfg = make_config()
    text = "Merci @Macron 🇫🇷 pour Paris 😀 et 👨‍👩‍👧 Berlin !"
    posts = make_posts(1, seed=5)
    p = posts[0]
    p.text = text
    from .conftest import tokenize

    p.tokens, p.token_offsets = tokenize(text, "fr")
    seed_stage(cfg, "dedup", [p])
    Runner(cfg).run_stage(PushStage())
    (p,) = iter_stage(cfg, "push")
    idx = OffsetIndex(text)
    paris, berlin = text.index("Paris"), text.index("Berlin")

    def region(rid, s, e, surface, label):
        return {
            "id": rid,
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": s, "end": e, "text": surface, "labels": [label]},
        }

    result = [
        region("a", 6, 13, "@Macron", "PER"),  # code points, fine
        # UTF-16 offsets (an old browser): recovered
        region("b", idx.cp_to_utf16(paris), idx.cp_to_utf16(paris + 5), "Paris", "LOC"),
        # offsets that match neither reading: flagged, left out (never mislabels)
        region("c", berlin - 3, berlin + 3, "Berlin", "ORG"),
    ]
    c = _client(cfg)
    c.create_annotation(p.ls.task, result, None, 3.0)
    st = Runner(cfg).run_stage(PullStage(), force=True)
    (q,) = iter_stage(cfg, "pull")
    assert [(s.text, s.label) for s in q.spans] == [("@Macron", "PER"), ("Paris", "LOC")]
    assert st.flagged["span_utf16"] == 1 and st.flagged["span_mismatch"] == 1
    assert sorted(q.annotations[0].flags) == ["span_mismatch", "span_utf16"]
    # Label Studio stores what it was sent: it does not check offsets against the text
    raw = c.task_annotations(p.ls.task)[0]
    assert raw["result"][1]["value"]["start"] == idx.cp_to_utf16(paris) != paris
    # an edit in Label Studio is picked up by the next (incremental) pull
    c.patch(f"/api/annotations/{raw['id']}", {"result": result[:1]})
    st = Runner(cfg).run_stage(PullStage(), force=True)
    assert st.flagged["fetch_changed"] == 1 and st.flagged["fetch_tasks"] == 1
    (q,) = iter_stage(cfg, "pull")
    assert [(s.text, s.label) for s in q.spans] == [("@Macron", "PER")]
    assert q.ner_tags.count("O") == len(q.tokens) - 1


def test_disagreement_goes_to_adjudication_and_adjudicated_becomes_gold(make_db_config):
    cfg = make_db_config(overlap_share=1.0)
    cfg.simulate.noise = 0.6
    cfg.simulate.annotators = 2
    cfg.simulate.skip_share = 0.1
    posts = make_posts(12, seed=6)
    seed_stage(cfg, "dedup", posts)
    runner = Runner(cfg)
    runner.run_stage(PushStage())
    pushed = list(iter_stage(cfg, "push"))
    assert all(p.ls.overlap == 2 for p in pushed)
    res = simulate(cfg, pushed)
    assert res.get("dropped", 0) + res.get("relabelled", 0) > 0
    st = runner.run_stage(PullStage(), force=True)
    kept = {p.id: p for p in iter_stage(cfg, "pull")}
    queued = [p for p in kept.values() if p.adjudication == "needed"]
    assert queued and st.flagged["needs_adjudication"] == len(queued)
    excluded = list(iter_excluded(cfg, "pull"))
    assert all(p.reason.startswith("not_annotated") for p in excluded)
    assert len(kept) + len(excluded) == 12
    c = _client(cfg)
    adj = c.find_project(cfg.labelstudio.project_title + " — adjudication")
    adj_tasks = {t["data"]["post_id"]: t for t in c.iter_tasks(adj["id"])}
    assert set(adj_tasks) == {p.id for p in queued}
    # pulling again queues nothing twice
    runner.run_stage(PullStage(), force=True)
    assert len(list(c.iter_tasks(adj["id"]))) == len(queued)
    # the adjudicator labels one post with its gold spans: that becomes the final labelling
    target = queued[0]
    gold = next(p for p in posts if p.id == target.id).gold_spans
    from mmnerd.labelstudio.push import span_result

    c.create_annotation(
        adj_tasks[target.id]["id"],
        [span_result(s, target.text, f"j{k}") for k, s in enumerate(gold)],
    )
    st = runner.run_stage(PullStage(), force=True)
    final = {p.id: p for p in iter_stage(cfg, "pull")}[target.id]
    assert final.adjudication == "done"
    assert [s.key() for s in final.spans] == [s.key() for s in gold]
    assert st.flagged["adjudicated"] == 1


def test_overlap_choice_is_deterministic():
    ids = [f"p{i}" for i in range(2000)]
    chosen = [overlap_for(i, 0.2, 3) for i in ids]
    assert chosen == [overlap_for(i, 0.2, 3) for i in ids]
    assert 0.17 < sum(c == 3 for c in chosen) / len(ids) < 0.23
    assert {overlap_for(i, 0.0, 3) for i in ids} == {1}


def test_pre_annotations_from_gold(make_config):
    cfg = make_config(pre_annotate=True)
    posts = make_posts(3, seed=8, root=cfg.root)
    seed_stage(cfg, "dedup", posts)
    Runner(cfg).run_stage(PushStage())
    c = _client(cfg)
    proj = c.find_project(cfg.labelstudio.project_title)
    exported = {t["data"]["post_id"]: t for t in c.export(proj["id"])}
    for p in posts:
        task = exported[p.id]
        assert (
            task["data"]["image"] == f"/data/local-files/?d={cfg.root.name}/images/{p.image.path}"
        )
        (pred,) = c.get("/api/predictions", params={"task": task["id"]})
        assert pred["model_version"] == "gold-import" and pred["score"] == 1.0
        got = [
            (r["value"]["start"], r["value"]["end"], r["value"]["labels"][0])
            for r in pred["result"]
        ]
        assert got == [s.key() for s in p.gold_spans]
        assert all(
            r["value"]["text"] == p.text[r["value"]["start"] : r["value"]["end"]]
            for r in pred["result"]
        )
    # the Local Files storage covers the images, so the server serves them (logged-in users)
    (storage,) = c.get("/api/storages/localfiles", params={"project": proj["id"]})
    assert storage["path"] == str((cfg.root / "images").resolve())
    r = c.session.get(c.url + exported[posts[0].id]["data"]["image"], timeout=30)
    assert (
        r.status_code == 200
        and r.content == (cfg.root / "images" / posts[0].image.path).read_bytes()
    )


def test_missing_server_venv_is_one_line(make_config, ls_session, tmp_path):
    cfg = make_config(venv=str(tmp_path / "no-venv"), data_dir=str(tmp_path / "ls"))
    with pytest.raises(LabelStudioError) as e:
        server.up(cfg)
    assert "not found" in str(e.value) and "\n" not in str(e.value)
    assert "not running" in server.status(cfg)
    assert server.down(cfg) is False


def test_pull_after_project_deleted_is_one_clear_line(make_config):
    cfg = make_config()
    seed_stage(cfg, "dedup", make_posts(2, seed=9))
    Runner(cfg).run_stage(PushStage())
    c = _client(cfg)
    c.delete(f"/api/projects/{c.find_project(cfg.labelstudio.project_title)['id']}")
    with pytest.raises(LabelStudioError) as e:
        Runner(cfg).run_stage(PullStage(), force=True)
    assert "no longer exists" in str(e.value) and "\n" not in str(e.value)


def test_project_set_up_again_changes_nothing(make_config):
    """A second push finds the project as it left it: no PATCH (Label Studio stores the
    label config without its final newline and drops HTML attributes of the instructions,
    and a mismatch used to rewrite the project on every push)."""
    from mmnerd.labelstudio.push import ensure_project

    cfg = make_config()
    first = ensure_project(_client(cfg), cfg)
    calls: list[tuple[str, str]] = []

    class Recording(LSClient):
        def request(self, method, path, ok=(), **kw):
            calls.append((method, path))
            return super().request(method, path, ok, **kw)

    base = _client(cfg)
    again = ensure_project(Recording(base.url, base._token), cfg)
    assert again["id"] == first["id"]
    assert [m for m, _ in calls] == ["GET", "GET"], calls  # find the project, its storages
    assert again["expert_instruction"].startswith("<h1>mmnerd annotation guidelines")


def test_simulated_share_and_source_labels_for_the_rest(make_config):
    """The demo's cheap simulation: simulated annotators label a share of the tasks through the
    API; with labelstudio.unannotated = "source" the others keep the source's gold labels."""
    cfg = make_config(overlap_share=0.0, unannotated="source")
    cfg.simulate.share = 0.5
    posts = make_posts(24, seed=9)
    for p in posts:
        p.image_decided = p.source_id.endswith("1")
    seed_stage(cfg, "dedup", posts)
    runner = Runner(cfg)
    runner.run_stage(PushStage())
    pushed = list(iter_stage(cfg, "push"))
    res = simulate(cfg, pushed)
    assert res["written"] + res["not_simulated"] == 24 and 4 <= res["written"] <= 20
    st = runner.run_stage(PullStage(), force=True)
    pulled = {p.id: p for p in iter_stage(cfg, "pull")}
    assert len(pulled) == 24 and st.flagged["source_labels"] == res["not_simulated"]
    origins = {p.labels_from for p in pulled.values()}
    assert origins == {"simulated", "source"}
    for p in posts:
        q = pulled[p.id]
        assert q.ner_tags == spans_to_bio(p.gold_spans, p.token_offsets, p.text).tags
        assert q.image_decided is p.image_decided  # annotators' choice or the source's flag
        assert (q.labels_from == "source") == (not q.annotations)
