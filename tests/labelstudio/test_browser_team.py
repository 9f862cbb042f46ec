"""A team labelling at the same moment, in the real browser: 2 and then 4 annotators (browser
contexts of one headless Chromium, driven concurrently by Playwright's async API) press
"Label All Tasks" on a 60-task project on PostgreSQL and label until the stream is empty.

Label Studio's labelling stream locks each task it serves (``TaskLock``) and, on
PostgreSQL, picks it inside a transaction with ``SELECT ... FOR UPDATE SKIP LOCKED``: two
annotators asking at the same instant get different tasks.  Asserted: every task is
annotated exactly ``overlap`` times by distinct annotators (twice for the designated overlap
tasks, once for the others), none is skipped, and pull reports agreement on the overlap
tasks.  (On SQLite the same stream has no transaction and serves the same task twice:
``benchmarks/concurrent_annotators.py`` measures it; docs/annotation.md has the figures.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.labelstudio.client import LSClient
from mmnerd.labelstudio.pull import PullStage
from mmnerd.labelstudio.push import PushStage
from mmnerd.labelstudio.users import create_annotator
from mmnerd.pipeline import Runner, iter_stage, seed_stage
from mmnerd.records import Post, Span

from .conftest import tokenize
from .test_browser import CHROMIUM, CHROMIUM_ARGS, WORD_BOX_JS

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.slow]

TASKS = 60
CITIES = ["Paris", "Berlin", "Madrid", "Lyon", "Köln", "Sevilla"]
NEXT = "/api/dm/actions"


def _posts(n: int) -> list[Post]:
    out = []
    for i in range(n):
        city = CITIES[i % len(CITIES)]
        text = f"Task {i}: greetings from {city} 🎉"
        tokens, offs = tokenize(text, "en")
        start = text.index(city)
        out.append(
            Post(
                id=f"team:{i}",
                source="test",
                source_id=str(i),
                text=text,
                lang="en",
                tokens=tokens,
                token_offsets=offs,
                synthetic=True,
                gold_spans=[Span(start, start + len(city), "LOC", city)],
            )  # fmt: skip
        )
    return out


async def _annotate(browser, url: str, project_id: int, email: str, password: str) -> dict:
    """One annotator: log in, "Label All Tasks", label the city of each task served and submit,
    until the stream has nothing left; returns the task ids served and timings."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await ctx.new_page()
    page.set_default_timeout(90_000)
    await page.goto(f"{url}/user/login/")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    await page.goto(f"{url}/projects/{project_id}/data")

    def is_next(r) -> bool:
        return NEXT in r.url and "next_task" in r.url

    async with page.expect_response(is_next) as first:
        await page.get_by_role("button", name="Label All Tasks").click()
    resp = await first.value
    served, queues = [], Counter()
    t0 = time.monotonic()
    while resp.status == 200:
        task = await resp.json()
        served.append(int(task["id"]))
        queues[task.get("queue", "")] += 1
        text = task["data"]["text"]
        await page.wait_for_function(
            """t => { const c = document.querySelector('.lsf-richtext__container');
                      return c && c.textContent === t; }""",
            arg=text,
        )
        close = page.locator("button[aria-label='Close modal']")  # the guidelines, once
        if await close.count() and await close.first.is_visible():
            await close.first.click()
        city = next(c for c in CITIES if c in text)
        await page.keyboard.press("l")
        await page.locator(".lsf-label_selected").wait_for()
        box = await page.evaluate(
            WORD_BOX_JS,
            city,
        )
        y = box["y"] + box["h"] / 2
        await page.mouse.move(box["x"] + 1, y)
        await page.mouse.down()
        await page.mouse.move(box["x"] + box["w"] - 1, y, steps=4)
        await page.mouse.up()
        await page.locator("span.htx-highlight").first.wait_for()
        async with page.expect_response(is_next) as nxt:
            async with page.expect_response(
                lambda r: r.request.method == "POST" and "/annotations" in r.url
            ) as ann:
                await page.keyboard.press("Control+Enter")
            assert (await ann.value).status == 201
        resp = await nxt.value
    assert resp.status == 404, f"{email}: next_task answered {resp.status}"
    await ctx.close()
    return {"served": served, "queues": dict(queues), "seconds": time.monotonic() - t0}


async def _team(url: str, project_id: int, accounts: list) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            return await asyncio.gather(
                *(_annotate(browser, url, project_id, a.email, a.password) for a in accounts)
            )
        finally:
            await browser.close()


@pytest.mark.parametrize("annotators", [2, 4])
def test_concurrent_annotators_never_collide(pg_session, annotators, capsys):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing (make browser-deps)")
    pytest.importorskip("playwright.async_api")
    n = f"team{annotators}-{int(time.time())}"
    cfg = PipelineConfig.model_validate(
        {
            "name": n,
            "data_dir": str(pg_session["base"] / n),
            "labelstudio": {
                **pg_session["ls"],
                "project_title": f"team {n}",
                "overlap_share": 0.1,
                "overlap_k": 2,
            },  # fmt: skip
        }
    )
    seed_stage(cfg, "dedup", _posts(TASKS))
    Runner(cfg).run_stage(PushStage())
    pushed = {p.ls.task: p for p in iter_stage(cfg, "push")}
    overlap = {tid: p.ls.overlap for tid, p in pushed.items()}
    assert 2 in overlap.values() and 1 in overlap.values()
    project_id = next(iter(pushed.values())).ls.project
    client = LSClient.from_config(cfg, start=False)
    accounts = [create_annotator(client, f"a{k}.{n}@example.org") for k in range(annotators)]

    t0 = time.monotonic()
    runs = asyncio.run(_team(client.url, project_id, accounts))
    took = time.monotonic() - t0

    served = Counter(t for r in runs for t in r["served"])
    for r in runs:  # nobody was served a task twice, and only by the lock-aware stream
        assert len(r["served"]) == len(set(r["served"]))
        assert all("Data manager" not in q for q in r["queues"]), r["queues"]
    by_task: dict[int, list[int]] = defaultdict(list)
    for t in client.iter_tasks(project_id, include="id,annotations,completed_by",
                               annotations=True):  # fmt: skip
        for a in t.get("annotations") or []:
            cb = a["completed_by"]
            by_task[int(t["id"])].append(cb["id"] if isinstance(cb, dict) else cb)
    twice = sorted(t for t, who in by_task.items() if len(who) > overlap[t])
    skipped = sorted(t for t in overlap if len(by_task.get(t, [])) < overlap[t])
    assert not twice, f"annotated more often than their overlap: {twice}"
    assert not skipped, f"not annotated (enough): {skipped}"
    assert all(len(set(who)) == len(who) for who in by_task.values())
    assert dict(served) == {t: overlap[t] for t in overlap}

    st = Runner(cfg).run_stage(PullStage(), force=True)
    pulled = {p.id: p for p in iter_stage(cfg, "pull")}
    assert len(pulled) == TASKS, st.to_dict()
    for p in pulled.values():
        assert p.ner_tags.count("B-LOC") == 1
        if p.ls.overlap == 2:
            assert p.agreement == 1.0 and p.annotator_count == 2
    with capsys.disabled():
        per = ", ".join(f"{len(r['served'])} tasks in {r['seconds']:.0f} s" for r in runs)
        twos = sum(v == 2 for v in overlap.values())
        print(f"\n{annotators} annotators at once on PostgreSQL: {per}; {took:.0f} s in all; "
              f"{twos} overlap tasks; none twice, none skipped")  # fmt: skip
