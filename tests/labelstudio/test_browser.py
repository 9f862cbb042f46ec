"""The annotator's seat in a REAL browser (headless Debian Chromium driven by Playwright).

Our tooling sets the project up (seeded 'dedup' stage -> PushStage, annotator
accounts via mmnerd.labelstudio.users); a person-like annotator logs in through
the form, opens the labelling stream, sees text, language and image, labels
words that come after emoji / a ZWJ sequence / a combining accent, and submits.
We record what the page really sent, pull, and compare the BIO with the
expected one.  Then a second annotator must not be served the completed tasks
(maximum_annotations=1).  Screenshots go to reports/browser/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.labelstudio.client import LSClient
from mmnerd.labelstudio.pull import PullStage
from mmnerd.labelstudio.push import PushStage
from mmnerd.labelstudio.users import create_annotator
from mmnerd.pipeline import Runner, iter_stage, seed_stage
from mmnerd.records import ImageRef, Post, Span
from mmnerd.text.bio import cp_to_utf16, spans_to_bio

from .conftest import ROOT, tokenize

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPORTS = ROOT / "reports" / "browser"
DOC_IMAGE = ROOT / "docs" / "img" / "annotator-task.png"

# (post id, lang, text, [(surface, label), ...]) — every entity comes after a hard case
CASES = [
    ("b:flag", "fr", "Merci @Macron 🇫🇷 pour Paris 😀 !", [("Paris", "LOC")]),
    ("b:zwj", "es", "Familia 👨‍👩‍👧‍👦 de vacaciones en Barcelona ☀️", [("Barcelona", "LOC")]),
    ("b:comb", "fr", "Ame\u0301lie adore Zürich 🎉", [("Zürich", "LOC")]),
]
DECIDED = "b:comb"  # the annotator ticks "image decided" (hotkey i) on this one
# left for the overlap check: never labelled by annotator A
EXTRA = [
    ("b:x1", "en", "Good morning from the office", []),
    ("b:x2", "de", "Guten Morgen zusammen", []),
]


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (160, 100), colour)
    ImageDraw.Draw(img).ellipse((50, 20, 110, 80), fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _posts(cfg: PipelineConfig) -> list[Post]:
    posts = []
    colours = [(0, 85, 164), (200, 16, 46), (0, 150, 80), (120, 120, 120), (250, 200, 0)]
    for i, (pid, lang, text, ents) in enumerate(CASES + EXTRA):
        rel = f"br/{i:02d}.png"
        _png(cfg.root / "images" / rel, colours[i])
        tokens, offs = tokenize(text, lang)
        spans = [Span(text.index(s), text.index(s) + len(s), lab, s) for s, lab in ents]
        posts.append(
            Post(
                id=pid,
                source="test",
                source_id=str(i),
                text=text,
                lang=lang,
                tokens=tokens,
                token_offsets=offs,
                gold_spans=spans,
                image=ImageRef(url=f"http://example.invalid/{i}.png", status="ok", path=rel),
                synthetic=True,
            )
        )
    return posts


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing (make browser-deps)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _login(browser, url: str, email: str, password: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/user/login" not in page.url, f"login failed for {email}"
    return ctx, page


GUIDELINES_SEEN: list[str] = []  # the pages whose instructions modal was checked


def _wait_task(page, previous: str | None = None) -> str:
    """Wait until a task's text is shown (different from ``previous``); returns it."""
    page.wait_for_function(
        """prev => {
            const c = document.querySelector('.lsf-richtext__container');
            return c && c.textContent.length > 0 && c.textContent !== prev;
        }""",
        arg=previous,
    )
    close = page.locator("button[aria-label='Close modal']")  # the project's instructions
    if close.count() and close.first.is_visible():
        # the guidelines are shown rendered (headings, lists), not as raw markdown
        body = page.locator(".lsf-modal-ls__body")
        assert body.locator("h1", has_text="mmnerd annotation guidelines").count() == 1
        assert body.locator("li").count() > 5 and "**" not in body.inner_text()
        GUIDELINES_SEEN.append(page.url)
        close.first.click()
    return page.locator(".lsf-richtext__container").inner_text()


def _image_loaded(page) -> int:
    page.wait_for_function(
        """() => { const i = document.querySelector('img[alt=image]');
                   return i && i.complete && i.naturalWidth > 0; }"""
    )
    return page.evaluate("document.querySelector('img[alt=image]').naturalWidth")


# The viewport box of a word in the task text: a DOM Range over the text node holding it.
WORD_BOX_JS = """word => {
    const c = document.querySelector('.lsf-richtext__container');
    const walker = document.createTreeWalker(c, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walker.nextNode())) {
        const i = n.data.indexOf(word);
        if (i >= 0) {
            const r = document.createRange();
            r.setStart(n, i); r.setEnd(n, i + word.length);
            const b = r.getBoundingClientRect();
            return {x: b.x, y: b.y, w: b.width, h: b.height};
        }
    }
    return null;
}"""


def _word_box(page, word: str) -> dict:
    """Viewport box of ``word`` in the task text (a DOM Range over its text node)."""
    box = page.evaluate(
        WORD_BOX_JS,
        word,
    )
    assert box, f"{word!r} not found in the task text"
    return box


def _label_word(page, word: str, label: str) -> None:
    hotkey = {"PER": "p", "LOC": "l", "ORG": "o", "MISC": "m"}[label]
    before = page.locator("span.htx-highlight").count()
    page.keyboard.press(hotkey)
    selected = page.locator(".lsf-label_selected")
    selected.wait_for()
    assert label in selected.inner_text()
    b = _word_box(page, word)
    y = b["y"] + b["h"] / 2
    # drag across the word with the mouse, as a person does
    page.mouse.move(b["x"] + 1, y)
    page.mouse.down()
    page.mouse.move(b["x"] + b["w"] / 2, y, steps=3)
    page.mouse.move(b["x"] + b["w"] - 1, y, steps=3)
    page.mouse.up()
    page.wait_for_function(
        "n => document.querySelectorAll('span.htx-highlight').length > n", arg=before
    )
    assert word in page.locator("span.htx-highlight").last.inner_text()


def _tick_image_decided(page) -> None:
    """The "image decided" choice by its hotkey (i), as the guidelines say; the checkbox must
    end up checked."""
    page.keyboard.press("Escape")  # no region selected: the hotkey is the task's choice
    page.keyboard.press("i")
    box = page.locator(".lsf-choices input[type=checkbox]").first
    box.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.lsf-choices input[type=checkbox]')]"
        ".some(b => b.checked)"
    )


def _submit(page, project_id: int) -> dict:
    with page.expect_response(
        lambda r: r.request.method == "POST" and "/annotations" in r.url and r.status == 201
    ) as resp:
        page.keyboard.press("Control+Enter")
    r = resp.value
    return {"sent": r.request.post_data_json, "stored": r.json()}


def test_annotator_labels_emoji_texts_in_real_browser(ls_session, browser, capsys):
    t0 = time.monotonic()
    n = f"browser-{int(time.time())}"
    cfg = PipelineConfig.model_validate(
        {
            "name": n,
            "data_dir": str(ls_session["base"] / n),
            "labelstudio": {
                **ls_session["ls"],
                "project_title": f"annotator seat {n}",
                "overlap_share": 0.0,  # every task: one annotator (maximum_annotations=1)
            },
        }
    )
    posts = _posts(cfg)
    seed_stage(cfg, "dedup", posts)
    Runner(cfg).run_stage(PushStage())
    pushed = {p.id: p for p in iter_stage(cfg, "push")}
    project_id = next(iter(pushed.values())).ls.project
    client = LSClient.from_config(cfg, start=False)
    assert client.project(project_id)["maximum_annotations"] == 1

    a = create_annotator(client, f"anna.{n}@example.org")
    b = create_annotator(client, f"bruno.{n}@example.org")
    assert a.password not in repr(a)

    REPORTS.mkdir(parents=True, exist_ok=True)
    url = client.url
    by_text = {p.text: p for p in pushed.values()}
    sent: dict[str, dict] = {}
    ctx_a, page = _login(browser, url, a.email, a.password)
    page.goto(f"{url}/projects/{project_id}/data?labeling=1")
    shown = None
    done_task_ids = []
    for k in range(len(CASES)):
        shown = _wait_task(page, shown)
        post = by_text.get(shown) or by_text[shown.replace("\n", "\r\n")]
        assert post.id == CASES[k][0], (shown, "tasks are served in import order")
        assert f"Language: {post.lang}" in page.content()
        assert _image_loaded(page) == 160
        for surface, label in CASES[k][3]:
            _label_word(page, surface, label)
        if post.id == DECIDED:
            _tick_image_decided(page)
        page.screenshot(path=str(REPORTS / f"task-{k}-{post.id.split(':')[1]}.png"))
        if k == 0 and (not DOC_IMAGE.exists() or os.environ.get("MMNERD_UPDATE_DOC_IMAGES")):
            DOC_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPORTS / "task-0-flag.png", DOC_IMAGE)
        sent[post.id] = _submit(page, project_id)
        done_task_ids.append(post.ls.task)
    # after the last submit the stream serves (and locks for A) the next task
    a_next = _wait_task(page, shown)
    ctx_a.close()

    # overlap: annotator B is never served a task A completed (maximum_annotations=1)
    ctx_b, page_b = _login(browser, url, b.email, b.password)
    with page_b.expect_response(
        lambda r: "/api/dm/actions" in r.url and "next_task" in r.url
    ) as next_resp:
        page_b.goto(f"{url}/projects/{project_id}/data?labeling=1")
    b_next = {
        "request": next_resp.value.request.post_data_json,
        "queue": (next_resp.value.json() or {}).get("queue"),
    }
    b_text = _wait_task(page_b)
    page_b.screenshot(path=str(REPORTS / "annotator-b.png"))
    ctx_b.close()
    completed_texts = {c[2] for c in CASES}
    assert b_text not in completed_texts
    assert len(GUIDELINES_SEEN) >= 2  # each annotator was shown the rendered guidelines
    assert b_text in {e[2] for e in EXTRA}

    # pull: BIO from what the browser sent
    st = Runner(cfg).run_stage(PullStage(), force=True)
    pulled = {p.id: p for p in iter_stage(cfg, "pull")}
    assert set(pulled) == {c[0] for c in CASES}, st.to_dict()
    report = []
    for pid, _lang, text, ents in CASES:
        q = pulled[pid]
        result = sent[pid]["sent"]["result"]
        (region,) = [r for r in result if r["type"] == "labels"]
        choices = [r for r in result if r["type"] == "choices"]
        assert [c["value"]["choices"] for c in choices] == ([["image decided"]] if pid == DECIDED
                                                            else [])  # fmt: skip
        assert q.image_decided is (pid == DECIDED)
        v = region["value"]
        surface, label = ents[0]
        cp = text.index(surface)
        report.append(
            {
                "post": pid,
                "text": text,
                "sent": [v["start"], v["end"]],
                "sent_text": v.get("text"),
                "code_points": [cp, cp + len(surface)],
                "utf16": [cp_to_utf16(text, cp), cp_to_utf16(text, cp + len(surface))],
                "stored": sent[pid]["stored"]["result"][0]["value"]["start"],
                "flags": q.annotations[0].flags,
                "tags": list(zip(q.tokens, q.ner_tags, strict=True)),
            }
        )
        expected = spans_to_bio(q.gold_spans, q.token_offsets, text).tags
        assert q.ner_tags == expected, (text, q.ner_tags, expected)
        assert [(s.start, s.end, s.label) for s in q.spans] == [(cp, cp + len(surface), label)]
        assert q.ner_tags.count(f"B-{label}") == 1 and set(q.ner_tags) == {"O", f"B-{label}"}
    overlap = {"a_next": a_next, "b_served": b_text, "b_next_task_call": b_next}
    (REPORTS / "offsets.json").write_text(
        json.dumps({"cases": report, "overlap": overlap}, ensure_ascii=False, indent=2)
    )
    with capsys.disabled():
        for r in report:
            print(
                f"\n{r['post']}: browser sent {r['sent']} ({r['sent_text']!r}); code points "
                f"{r['code_points']}, UTF-16 {r['utf16']}; pull flags {r['flags']}"
            )
        print(f"A's next task (locked for A): {a_next!r}; B served: {b_text!r}; {b_next}")
        print(f"browser test: {time.monotonic() - t0:.1f} s")


def _label_all_tasks(page, url: str, project_id: int) -> dict:
    """Open the project's Data Manager and press "Label All Tasks", as an annotator starts;
    returns the first ``next_task`` call: its request body and answer."""
    page.goto(f"{url}/projects/{project_id}/data")
    with page.expect_response(lambda r: "/api/dm/actions" in r.url and "next_task" in r.url) as r:
        page.get_by_role("button", name="Label All Tasks").click()
    return {"request": r.value.request.post_data_json, "answer": r.value.json()}


def test_first_task_served_is_the_least_confident(ls_session, browser, tmp_path):
    """Model in the loop: predictions pushed with a confidence (score) and a cluster put the
    project on "Uncertainty sampling"; the annotator who presses "Label All Tasks" is served
    the least confident post first, then what the sampling's cluster rule gives."""
    from mmnerd.labelstudio.sampling import uncertainty_order

    n = f"uncertain-{int(time.time())}"
    cfg = PipelineConfig.model_validate(
        {
            "name": n,
            "data_dir": str(ls_session["base"] / n),
            "labelstudio": {
                **ls_session["ls"],
                "project_title": f"uncertainty {n}",
                "overlap_share": 0.0,
            },  # fmt: skip
        }
    )
    posts = _posts(cfg)
    confidence = [0.83, 0.07, 0.41, 0.66, 0.29]  # the ZWJ post is the least confident
    cluster = [0, 1, 0, 1, 0]
    preds = tmp_path / "predictions.jsonl"
    preds.write_text(
        "".join(
            json.dumps(
                {
                    "id": p.id,
                    "tags": ["O"] * len(p.tokens),
                    "confidence": c,
                    "cluster": k,
                    "model_version": "mmnerd-predict:test/seed1",
                }
            )
            + "\n"
            for p, c, k in zip(posts, confidence, cluster, strict=True)
        )  # fmt: skip
    )
    cfg.labelstudio.predictions = str(preds)
    seed_stage(cfg, "dedup", posts)
    Runner(cfg).run_stage(PushStage())
    pushed = {p.id: p for p in iter_stage(cfg, "push")}
    project_id = next(iter(pushed.values())).ls.project
    client = LSClient.from_config(cfg, start=False)
    assert client.project(project_id)["sampling"] == "Uncertainty sampling"
    tid = {p.id: p.ls.task for p in pushed.values()}
    expected = list(
        uncertainty_order(
            (tid[p.id], c, k) for p, c, k in zip(posts, confidence, cluster, strict=True)
        )
    )
    by_task = {v: k for k, v in tid.items()}
    assert by_task[expected[0]] == "b:zwj"

    who = create_annotator(client, f"carla.{n}@example.org")
    ctx, page = _login(browser, client.url, who.email, who.password)
    first = _label_all_tasks(page, client.url, project_id)
    # "Label All Tasks" asks without Data Manager filters: the project's sampling decides
    assert "filters" not in (first["request"] or {}), first["request"]
    assert "Active learning" in first["answer"]["queue"]
    served, shown = [], None
    for k in range(3):
        shown = _wait_task(page, shown)
        post = next(p for p in pushed.values() if p.text.replace("\r\n", "\n") == shown)
        served.append(post.ls.task)
        if k == 0:
            page.screenshot(path=str(REPORTS / "uncertainty-first-task.png"))
        for surface, label in next(c[3] for c in CASES + EXTRA if c[0] == post.id):
            _label_word(page, surface, label)
        _submit(page, project_id)
    ctx.close()
    assert served == expected[:3], (served, expected)
