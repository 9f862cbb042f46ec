"""Dedup: text normalisation and the exact text near-duplicate join (against brute force),
clusters and keep policy, the stage (report, contact sheet, flags) through the runner, and
the cross-split leakage audit."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mmnerd.audit import audit_leakage
from mmnerd.config import DedupConfig, PipelineConfig
from mmnerd.dedup import (
    DedupStage,
    connected_components,
    deduplicate,
    keep_key,
    normalize_text,
    shingle_hashes,
    shingles,
    text_edges,
)
from mmnerd.dedup import text as text_mod
from mmnerd.io import write_json, write_posts
from mmnerd.pipeline import MARKER, Runner, StageContext, StageStats, iter_stage, stage_dir
from mmnerd.records import ImageRef, Post


def picture(seed: int, size: tuple[int, int] = (240, 180)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))]
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=col)
    return img


def save(img: Image.Image, root: Path, name: str, fmt: str = "JPEG", **kw) -> ImageRef:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    data = buf.getvalue()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / name).write_bytes(data)
    return ImageRef(
        url=f"http://x/{name}",
        status="ok",
        sha256=hashlib.sha256(data).hexdigest(),
        path=name,
        width=img.width,
        height=img.height,
    )


def post(i: int, text: str, image: ImageRef | None, created: str = "") -> Post:
    return Post(
        id=f"t:{i}", source="t", source_id=str(i), text=text, image=image, created_at=created
    )


@pytest.fixture
def corpus(tmp_path: Path) -> list[Post]:
    """0-2: one picture (original, half-size re-encode, byte copy); 3: a crop-free
    different picture; 4,5: same text as each other, different pictures; 6: no image."""
    a = picture(1, (400, 300))
    ref_a = save(a, tmp_path, "a.jpg", quality=90)
    small = save(a.resize((200, 150)), tmp_path, "a_small.jpg", quality=70)
    posts = [
        post(0, "Sunset over Paris", small, "2024-01-02T00:00:00Z"),
        post(1, "Look at this!", ref_a, "2024-01-03T00:00:00Z"),
        post(2, "repost", ImageRef(**{**ref_a.__dict__, "path": "a.jpg"}), "2024-01-01T00:00:00Z"),
        post(
            3,
            "Berlin at night, what a view from the tower",
            save(picture(2), tmp_path, "b.png", "PNG"),
            "",
        ),
        post(4, "Merci @Macron pour Paris https://t.co/x", save(picture(3), tmp_path, "c.jpg")),
        post(5, "merci   pour PARIS", save(picture(4), tmp_path, "d.jpg")),
        post(6, "Berlin at night, what a view from the tower!", None),
    ]
    return posts


def test_normalize_text() -> None:
    assert normalize_text("Merci @Macron  pour\nParis https://t.co/x 😀") == "merci pour paris 😀"
    assert normalize_text("RT @user@mastodon.social: Hallo www.x.de") == "rt hallo"
    assert normalize_text("¡Qué día! #Madrid… «top»") == "qué día madrid top"
    assert normalize_text("see URL now", drop=["URL"]) == "see now"
    assert normalize_text("   ") == ""
    assert shingles("a b c") == ["a b", "b c"]
    assert shingles("solo") == ["solo"]
    assert shingles("") == []


def _normalize_by_regex(text: str) -> str:
    """The original definition of :func:`normalize_text` (regex whitespace collapse, both
    patterns always applied), as the oracle for its faster version."""
    t = text_mod._URL_RE.sub(" ", text)
    t = text_mod._MENTION_RE.sub(" ", t)
    t = t.casefold().translate(text_mod._punct_table())
    return re.sub(r"\s+", " ", t).strip()


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            list("wW.:/@_hHtTpPsSx1 é!,#") + ["\t", "\n", "\x1c", "\xa0", "\u2003", "ſ", "😀"]
        ),
        max_size=40,
    )
)
def test_normalize_text_matches_regex_definition(text: str) -> None:
    assert normalize_text(text) == _normalize_by_regex(text)


def test_shingle_hashes() -> None:
    hv, counts = shingle_hashes(["a b c", "a b", "", "solo", "x x x"])
    assert counts.tolist() == [2, 1, 0, 1, 2]  # repeats are kept ("x x" twice)
    assert hv.dtype == np.uint64
    assert hv[0] == hv[2] and hv[0] != hv[1]  # same shingle, same hash
    assert hv[3] != hv[0] and hv[4] == hv[5]


# --------------------------------------------------------------------------- exact text join
def brute_force_edges(
    texts: Sequence[str], t: float, groups: Sequence[int] | None = None
) -> dict[tuple[int, int], float]:
    """What :func:`text_edges` must return, from Python sets of string shingles.

    Without groups: identical normalised texts as a star to the first one (1.0), and every
    pair of first occurrences with Jaccard >= t.  With groups: classes are (normalised
    text, group); every pair of classes in different groups with Jaccard >= t gives
    (first a, first b), (other a, first b), (first a, other b)."""
    norms = [normalize_text(x) for x in texts]
    sets = [frozenset(shingles(x)) for x in norms]
    lab = list(groups) if groups is not None else [0] * len(texts)
    first: dict[tuple[str, int], int] = {}
    members: dict[int, list[int]] = {}
    out: dict[tuple[int, int], float] = {}
    for i, x in enumerate(norms):
        if x:
            f = first.setdefault((x, lab[i]), i)
            members.setdefault(f, []).append(i)
            if f != i and groups is None:
                out[(f, i)] = 1.0
    for a, b in itertools.combinations(sorted(members), 2):
        if lab[a] == lab[b] and (groups is not None or norms[a] == norms[b]):
            continue
        jac = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
        if jac < t:
            continue
        if groups is None:
            out[(a, b)] = jac
        else:
            for x in members[a]:
                out[(min(x, b), max(x, b))] = jac
            for y in members[b]:
                out[(min(a, y), max(a, y))] = jac
    return out


def edge_dict(texts: Sequence[str], t: float, **kw) -> dict[tuple[int, int], float]:
    i, j, w = text_edges(texts, t, **kw)
    assert i.dtype == j.dtype == np.int64 and w.dtype == np.float64
    assert (i < j).all()
    out = {(int(a), int(b)): float(s) for a, b, s in zip(i, j, w, strict=True)}
    assert len(out) == len(i), "an edge was returned twice"
    return out


VOCAB = ["a", "b", "c", "d", "e", "f", "g", "h", "ok", "no"]
corpora = st.lists(
    st.lists(st.sampled_from(VOCAB), min_size=0, max_size=9).map(" ".join), max_size=40
)
# few distinct base texts, each repeated with small edits: near-duplicates everywhere
edited = st.lists(
    st.lists(st.sampled_from(VOCAB), min_size=0, max_size=10), min_size=1, max_size=4
).flatmap(
    lambda bases: st.lists(
        st.tuples(
            st.sampled_from(bases),
            st.lists(
                st.tuples(st.integers(0, 2), st.integers(0, 9), st.sampled_from(VOCAB)), max_size=2
            ),
            st.booleans(),
        ).map(_edit),
        max_size=50,
    )
)


def _edit(spec: tuple[list[str], list[tuple[int, int, str]], bool]) -> str:
    words, ops, shout = list(spec[0]), spec[1], spec[2]
    for op, at, w in ops:
        if op == 0 and words:
            words.pop(at % len(words))
        elif op == 1:
            words.insert(at % (len(words) + 1), w)
        elif words:
            words[at % len(words)] = w
    text = " ".join(words)
    return text.upper() + "!" if shout else text


thresholds = st.one_of(
    st.sampled_from([0.2, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]),
    st.floats(0.05, 1.0, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(corpora, edited), thresholds, st.sampled_from([1, 2 << 30]))
def test_text_edges_equals_brute_force(texts: list[str], t: float, budget: int) -> None:
    assert edge_dict(texts, t, memory_bytes=budget) == brute_force_edges(texts, t)


@settings(max_examples=300, deadline=None)
@given(edited, thresholds, st.data())
def test_cross_group_edges_equal_brute_force(texts: list[str], t: float, data) -> None:
    groups = data.draw(st.lists(st.integers(-1, 2), min_size=len(texts), max_size=len(texts)))
    got = edge_dict(texts, t, groups=np.array(groups, dtype=np.int64), memory_bytes=1)
    assert got == brute_force_edges(texts, t, groups)
    assert all(groups[a] != groups[b] for a, b in got)


def test_many_scan_passes_and_runs_give_the_same_edges(monkeypatch) -> None:
    """Texts shingled 3 per pass and sets ranked 64 shingles per run: copies and near
    copies across passes are still found, exactly as brute force finds them."""
    monkeypatch.setattr(text_mod, "_SCAN_TEXTS", 3)
    rng = np.random.default_rng(5)
    bases = [[VOCAB[int(v)] for v in rng.integers(0, len(VOCAB), 9)] for _ in range(4)]
    texts = []
    for _ in range(80):
        words = list(bases[int(rng.integers(0, 4))])
        for _ in range(int(rng.integers(0, 3))):
            words[int(rng.integers(0, len(words)))] = VOCAB[int(rng.integers(0, len(VOCAB)))]
        texts.append(" ".join(words) if rng.random() < 0.9 else "")
    groups = rng.integers(0, 3, len(texts))
    for t in (0.5, 0.8, 1.0):
        assert edge_dict(texts, t, memory_bytes=1) == brute_force_edges(texts, t)
        got = edge_dict(texts, t, groups=groups, memory_bytes=1)
        assert got == brute_force_edges(texts, t, groups.tolist())


@given(st.lists(st.integers(0, 6), max_size=30), st.integers(1, 12))
def test_text_runs_cover_every_text_once_within_the_read_size(counts: list[int], cap: int) -> None:
    """The runs the join reads by (from counts, or from the offsets with no copies):
    consecutive, every text once, each run's elements its texts' own, at most ``cap`` of
    them unless one text alone has more."""
    c = np.asarray(counts, dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(c)])
    runs = list(text_mod._text_runs(c, cap))
    assert runs == list(text_mod._ptr_runs(ptr, cap))
    bounds = [0] + [d1 for _, d1, *_ in runs]
    assert [d0 for d0, *_ in runs] == bounds[:-1]
    assert bounds[-1] == len(c)
    for d0, d1, e0, e1 in runs:
        assert (e0, e1) == (ptr[d0], ptr[d1])
        assert e1 - e0 <= cap or d1 == d0 + 1
        assert d1 == len(c) or ptr[d1 + 1] - e0 > cap  # as many texts as fit


def test_text_edges() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    texts = [
        base,
        base.upper() + " https://t.co/abc",  # identical after normalisation
        base.replace("today", "tonight"),  # near duplicate
        "completely different words about football and the world cup",
        "",
        "",
    ]
    edges = edge_dict(texts, 0.7)
    assert edges[(0, 1)] == 1.0
    assert edges[(0, 2)] == 12 / 14  # exact: 12 shared shingles of 14
    assert not any(3 in e or 4 in e or 5 in e for e in edges)
    assert set(edge_dict(texts, 1.0)) == {(0, 1)}  # exact only
    assert set(edge_dict(texts, 12 / 14)) == {(0, 1), (0, 2)}
    assert set(edge_dict(texts, 12 / 14 + 1e-9)) == {(0, 1)}


def test_text_edges_edge_cases() -> None:
    assert edge_dict([], 0.8) == {}
    assert edge_dict(["", "  ", "!!", "https://t.co/x @someone"], 0.5) == {}  # empty never match
    assert edge_dict(["solo", "solo", "Solo!", "other"], 0.5) == {(0, 1): 1.0, (0, 2): 1.0}
    assert edge_dict(["solo", "solo word"], 0.01) == {}  # {"solo"} vs {"solo word"}
    # distinct normalised texts with the same shingle set are a pair at threshold 1.0
    three = edge_dict(["ha ha ha", "ha ha ha ha", "ha ha"], 1.0)
    assert three == {(0, 1): 1.0, (0, 2): 1.0, (1, 2): 1.0}
    # J exactly at the threshold where t * |x| rounds up in floats (0.28 * 25 > 7): the
    # prefix of x (25 shingles, 18 of them its own, so rarer) must reach a shared one
    assert 0.28 * 25 > 7
    x = [f"w{k}" for k in range(26)]
    assert edge_dict([" ".join(x), " ".join(x[18:])], 0.28) == {(0, 1): 7 / 25}
    # drop words go before shingling
    assert edge_dict(["see URL now", "see now"], 1.0, drop=["URL"]) == {(0, 1): 1.0}
    with pytest.raises(ValueError, match="threshold"):
        text_edges(["a b"], 0.0)
    with pytest.raises(ValueError, match="groups"):
        text_edges(["a b", "a c"], 0.5, groups=np.zeros(3, np.int64))


def test_near_identical_group_under_a_tiny_budget(monkeypatch) -> None:
    """500 near-identical posts (124,750 pairs): a 256 KiB budget (hundreds of runs)
    gives the very same edges as the default 2 GiB (runs of the 32 MiB working set: tens),
    and both match brute force."""
    passes = []
    real = text_mod._chunks

    def spy(count, max_pairs):
        for run in real(count, max_pairs):
            passes.append(max_pairs)
            yield run

    monkeypatch.setattr(text_mod, "_chunks", spy)
    rng = np.random.default_rng(3)
    base = [f"w{k}" for k in range(40)]
    texts = []
    for _ in range(500):
        words = list(base)
        for _ in range(int(rng.integers(1, 3))):
            words[int(rng.integers(0, 40))] = f"x{int(rng.integers(0, 10_000))}"
        texts.append(" ".join(words))
    texts += ["an unrelated post about something else entirely"] * 3
    big = text_edges(texts, 0.6)
    n_big = len(passes)
    passes.clear()
    small = text_edges(texts, 0.6, memory_bytes=1 << 18)
    assert n_big <= 40 and len(passes) > 4 * n_big
    key = lambda e: np.lexsort((e[1], e[0]))  # noqa: E731
    for a, b in zip(big, small, strict=True):
        assert np.array_equal(a[key(big)], b[key(small)])
    assert len(big[0]) == 124_750 + 2
    assert edge_dict(texts, 0.6) == brute_force_edges(texts, 0.6)


def test_cross_groups_never_enumerate_pairs_inside_a_group(monkeypatch) -> None:
    """200 near-identical train posts and one test post: only the test post's pairs are
    candidates; the 19,900 train-train pairs are never generated nor verified."""
    verified = []
    real = text_mod._verify

    def spy(sets, a, *args):
        verified.append(len(a))
        return real(sets, a, *args)

    monkeypatch.setattr(text_mod, "_verify", spy)
    texts = [f"big sale on shoes today number {k} only" for k in range(200)]
    texts.append("big sale on shoes today number 7 only!")  # same text as train post 7
    texts.append("nothing in common here at all")
    groups = np.array([0] * 200 + [1, 1])
    got = edge_dict(texts, 0.5, groups=groups)
    assert got == brute_force_edges(texts, 0.5, groups.tolist())
    assert (7, 200) in got and got[(7, 200)] == 1.0
    assert all(groups[a] != groups[b] for a, b in got)
    assert sum(verified) <= 400  # candidates: the test post against train only
    verified.clear()
    edge_dict(texts, 0.5)  # without groups the train-train pairs are all there
    assert sum(verified) > 10_000


def _near_copies(n: int, seed: int) -> list[str]:
    """``n`` posts over a 300-word vocabulary: 60 bases, each post a base with 0-4 words
    substituted, inserted or deleted (near-duplicates at every Jaccard), some shouted."""
    rng = np.random.default_rng(seed)
    vocab = [f"v{k}" for k in range(300)]
    bases = [[vocab[int(v)] for v in rng.integers(0, 300, rng.integers(4, 25))] for _ in range(60)]
    texts = []
    for _ in range(n):
        words = list(bases[int(rng.integers(0, 60))])
        for _ in range(int(rng.integers(0, 5))):
            at, op = int(rng.integers(0, len(words))), rng.random()
            new = vocab[int(rng.integers(0, 300))]
            if op < 0.4:
                words[at] = new
            elif op < 0.7:
                words.insert(at, new)
            elif len(words) > 2:
                words.pop(at)
        text = " ".join(words)
        texts.append(text.upper() + "!" if rng.random() < 0.1 else text)
    return texts


def _sorted_edges(e: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    o = np.lexsort((e[1], e[0]))
    return np.stack([e[0][o], e[1][o], np.round(e[2][o] * 2**40)])


def test_tiny_budget_takes_many_passes_and_gives_the_same_pairs(monkeypatch, tmp_path) -> None:
    """1,500 near-copies of 60 posts: a budget 16 KiB above the floor of its sets
    counts frequencies in 8+ passes and generates candidates in many passes over rank
    ranges, and gives the very same edges as the default 2 GiB (one pass each), which
    match brute force; the join's files live in ``work_dir/textjoin`` and are removed."""
    calls = {"freq": 0, "entries": 0}
    real_bits, real_entries = text_mod._freq_bits, text_mod._entries

    def bits_spy(total, room):
        bits = real_bits(total, room)
        calls["freq"] = 1 << bits
        return bits

    def entries_spy(*args):
        calls["entries"] += 1
        return real_entries(*args)

    monkeypatch.setattr(text_mod, "_freq_bits", bits_spy)
    monkeypatch.setattr(text_mod, "_entries", entries_spy)
    texts = _near_copies(1500, 7)
    for t in (0.5, 0.8):
        big = text_edges(texts, t)
        assert calls["entries"] == calls["freq"] == 1
        calls["entries"] = 0
        m = len({normalize_text(x) for x in texts})  # the sets the join ranks
        budget = text_mod.join_floor_bytes(m) + (1 << 14)
        small = text_edges(texts, t, memory_bytes=budget, work_dir=tmp_path)
        assert calls["freq"] >= 8 and calls["entries"] >= 10, calls
        calls["entries"] = 0
        assert np.array_equal(_sorted_edges(big), _sorted_edges(small))
        assert len(big[0]) > 400
        assert not (tmp_path / "textjoin").exists()
    assert edge_dict(texts[:600], 0.6, memory_bytes=budget) == brute_force_edges(texts[:600], 0.6)


def _count_rank_passes(monkeypatch) -> list[int]:
    """The number of candidate passes of each join from now on (a spy on _rank_passes)."""
    passes: list[int] = []
    real = text_mod._rank_passes

    def spy(sets, max_entries):
        out = real(sets, max_entries)
        passes.append(len(out))
        return out

    monkeypatch.setattr(text_mod, "_rank_passes", spy)
    return passes


def test_working_set_is_capped_below_a_large_budget_and_files_are_read_once(
    monkeypatch, tmp_path
) -> None:
    """Below the budget the join's passes are sized to _WORK_BYTES, not to the budget (so
    the driver does not grow with the corpus): with a 24 KiB cap and the default 2 GiB
    budget it takes many frequency and candidate passes, yet reads the shingle spool and
    the ranks file no more often than with one pass (bucket files), and the edges equal
    the one-pass run's."""
    read: dict[str, int] = {}
    real_read = text_mod._read

    def read_spy(f, dtype, e0, e1):
        name = Path(f.name).name
        read[name] = read.get(name, 0) + (e1 - e0) * np.dtype(dtype).itemsize
        return real_read(f, dtype, e0, e1)

    passes = _count_rank_passes(monkeypatch)
    monkeypatch.setattr(text_mod, "_read", read_spy)
    texts = _near_copies(1500, 11)
    one = text_edges(texts, 0.6, work_dir=tmp_path)
    one_read = dict(read)
    read.clear()
    monkeypatch.setattr(text_mod, "_WORK_BYTES", 24 << 10)
    capped = text_edges(texts, 0.6, work_dir=tmp_path)
    assert passes[0] == 1 and passes[1] >= 8, passes
    assert np.array_equal(_sorted_edges(one), _sorted_edges(capped))
    assert len(one[0]) > 400
    for name in ("shingles.u64", "ranks.i32"):  # read in more chunks, not more often
        assert read[name] == one_read[name], (name, read, one_read)
    assert not (tmp_path / "textjoin").exists()


def test_each_candidate_pass_holds_its_own_sets_within_its_share(monkeypatch) -> None:
    """Verification reads no file: each candidate pass carries the ranks of the sets with
    prefix entries in its ranks (from bucket files written in the one read of the ranks
    file).  With a 64 KiB working set, 6,000 near-copies take many passes; every
    candidate pair's two sets are in its pass's store with the ranks the ranks file
    holds, no pass holds more than its share (half the room, plus one histogram bucket),
    and the edges equal one pass's and brute force's."""
    texts = _near_copies(6000, 5)
    one = text_edges(texts, 0.6)
    held: list[int] = []
    real_passes, real_verify = text_mod._entry_passes, text_mod._verify

    def passes_spy(sets, t, passes, labels, read):
        for ent, store in real_passes(sets, t, passes, labels, read):
            ranks = np.fromfile(sets.path, dtype=np.int32)
            for k, d in enumerate(store.docs.tolist()):  # the file's ranks, not others
                lo, hi = store.ptr[k], store.ptr[k + 1]
                assert np.array_equal(store.tok[lo:hi], ranks[sets.ptr[d] : sets.ptr[d + 1]])
            held.append(len(ent.tok) * text_mod._ENTRY_BYTES + store.tok.nbytes)
            yield ent, store

    def verify_spy(sets, a, b, w, t, max_tokens, store):
        assert np.isin(a, store.docs).all() and np.isin(b, store.docs).all()
        return real_verify(sets, a, b, w, t, max_tokens, store)

    monkeypatch.setattr(text_mod, "_entry_passes", passes_spy)
    monkeypatch.setattr(text_mod, "_verify", verify_spy)
    monkeypatch.setattr(text_mod, "_WORK_BYTES", 64 << 10)
    cut = text_edges(texts, 0.6)
    assert len(held) >= 8 and max(held) <= (64 << 10) // 2 * 1.5, held
    assert np.array_equal(_sorted_edges(one), _sorted_edges(cut))
    assert len(one[0]) > 400
    assert edge_dict(texts[:1500], 0.6) == brute_force_edges(texts[:1500], 0.6)


def test_budget_below_the_floor_runs_at_the_minimum_with_a_warning(monkeypatch, caplog) -> None:
    """A budget below the per-text floor (here 1 byte) is not an error: the join warns in
    one line and runs at its minimum pass sizes, with passes capped at _MAX_PASSES (a tiny
    budget costs memory, not hours), and the edges are the same."""
    passes = _count_rank_passes(monkeypatch)
    monkeypatch.setattr(text_mod, "_MAX_PASSES", 8)
    texts = _near_copies(800, 3)
    big = text_edges(texts, 0.7)
    with caplog.at_level("WARNING", logger="mmnerd.dedup.text"):
        tiny = text_edges(texts, 0.7, memory_bytes=1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "below the join's floor for 800 texts" in lines[0]
    assert "\n" not in lines[0]
    assert passes[0] == 1 and 1 < passes[1] <= 9
    assert np.array_equal(_sorted_edges(big), _sorted_edges(tiny))


def test_connected_components_and_keep_policy() -> None:
    labels = connected_components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels[0] == labels[1] == labels[2] != labels[3]
    assert labels[4] == labels[5] != labels[3]
    big = post(1, "", ImageRef(url="", width=100, height=100), "2024-05-01")
    old = post(2, "", ImageRef(url="", width=10, height=10), "2020-01-01")
    undated = post(0, "", ImageRef(url="", width=10, height=10), "")
    for keep, winner in [("largest", big), ("earliest", old), ("id", undated)]:
        assert min([big, old, undated], key=lambda p, k=keep: keep_key(p, k)) is winner
    with pytest.raises(ValueError):
        keep_key(big, "random")


def test_deduplicate_marks_clusters(corpus: list[Post], tmp_path: Path) -> None:
    res = deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    by_id = {p.id: p for p in corpus}
    # image cluster: the largest (400x300) wins; ties on size broken by earliest date
    assert by_id["t:2"].duplicate_of == ""  # 400x300, earliest
    assert by_id["t:1"].duplicate_of == "t:2"
    assert by_id["t:0"].duplicate_of == "t:2"
    assert {by_id[k].cluster_id for k in ("t:0", "t:1", "t:2")} == {"img-t:2"}
    assert by_id["t:0"].duplicate_reason == "duplicate_image"
    # text clusters
    assert by_id["t:4"].cluster_id == by_id["t:5"].cluster_id == "txt-t:4"
    assert by_id["t:5"].duplicate_reason == "duplicate_text"
    assert by_id["t:3"].cluster_id == by_id["t:6"].cluster_id
    assert by_id["t:6"].duplicate_of == "t:3"  # the one with an image is larger
    assert all(p.ok for p in corpus)
    with Image.open(tmp_path / "images" / "b.png") as im:  # PNG: bit-exact
        assert by_id["t:3"].image.phash == str(imagehash.phash(im))
    assert len(by_id["t:1"].image.phash) == 16
    assert res.exact_image_edges == 1 and res.duplicate_image == 2 and res.duplicate_text == 2
    assert res.histogram() == {"2": 2, "3": 1}
    # idempotent: a second run gives the same marks
    before = [(p.cluster_id, p.duplicate_of) for p in corpus]
    deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    assert [(p.cluster_id, p.duplicate_of) for p in corpus] == before


def test_threshold_zero_and_text_off(corpus: list[Post], tmp_path: Path) -> None:
    cfg = DedupConfig(threshold=0, text_threshold=1.0, keep="id")
    deduplicate(corpus, cfg, image_root=tmp_path / "images", workers=1)
    by_id = {p.id: p for p in corpus}
    # the byte copy t:2 joins t:1 (and t:0 too if the half-size pHash is identical)
    assert by_id["t:2"].duplicate_of in ("t:0", "t:1")
    assert by_id["t:1"].cluster_id == by_id["t:2"].cluster_id != ""
    assert by_id["t:5"].cluster_id == by_id["t:4"].cluster_id  # identical normalised text
    assert by_id["t:6"].cluster_id == by_id["t:3"].cluster_id


def test_missing_image_is_flagged_not_fatal(corpus: list[Post], tmp_path: Path) -> None:
    (tmp_path / "images" / "b.png").unlink()
    res = deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    assert list(res.hash_failed) == ["t:3"]
    assert corpus[3].image.phash == ""


def test_stage_through_runner(corpus: list[Post], tmp_path: Path) -> None:
    config = PipelineConfig(name="t", data_dir=str(tmp_path))
    fetch = stage_dir(config, "fetch")
    write_posts(fetch / "shard-00000.jsonl", corpus[:4])
    write_posts(fetch / "shard-00001.jsonl", corpus[4:])
    write_json(fetch / MARKER, {"fingerprint": "x", "stats": StageStats("fetch").to_dict()})
    stats = Runner(config).run([DedupStage()])[0]
    assert stats.items_in == stats.items_out == 7
    assert stats.flagged == {"duplicate_image": 2, "duplicate_text": 2}
    out = {p.id: p for p in iter_stage(config, "dedup")}
    assert out["t:1"].duplicate_of == "t:2" and out["t:1"].image.phash
    report = json.loads((tmp_path / "side" / "dedup" / "report.json").read_text())
    assert report["clusters"] == 3 and report["cluster_size_histogram"] == {"2": 2, "3": 1}
    assert report["config"]["threshold"] == 10
    with Image.open(tmp_path / "side" / "dedup" / "clusters.png") as sheet:
        assert sheet.width > 100 and sheet.height > 100
    # a kill while the report (or the hash cache) was written left temp files: a rerun
    # removes them (issue 20.7: nothing did)
    stale = [
        tmp_path / "side" / "dedup" / ".clusters.png.k9x2.tmp",
        tmp_path / "index" / ".phash.npz.q1w2.tmp",
    ]
    for f in stale:
        f.write_bytes(b"half")
    Runner(config).run([DedupStage()], force=True)
    assert not any(f.exists() for f in stale)
    assert (tmp_path / "side" / "dedup" / "clusters.png").exists()


def test_a_killed_search_leaves_no_block_files(corpus: list[Post], tmp_path: Path) -> None:
    """A run killed during the clusters phase (on Dask, while the image search's blocks
    were on disk in _work/imagesearch/): the rerun removes those files, redoes the
    clusters and writes the same outputs (issue 16)."""
    config = PipelineConfig(name="t", data_dir=str(tmp_path))
    fetch = stage_dir(config, "fetch")
    write_posts(fetch / "shard-00000.jsonl", corpus)
    write_json(fetch / MARKER, {"fingerprint": "x", "stats": StageStats("fetch").to_dict()})
    Runner(config).run([DedupStage()])
    folder = stage_dir(config, "dedup")
    before = [p.read_bytes() for p in sorted(folder.glob("shard-*.jsonl"))]
    for done in [folder / MARKER, folder / "_work" / "marks.npz", *folder.glob("shard-*")]:
        done.unlink()
    left = folder / "_work" / "imagesearch" / "search-0a1b2c"
    left.mkdir(parents=True)
    (left / "0-b-rows.npy").write_bytes(b"half")
    Runner(config).run([DedupStage()])
    assert not left.parent.exists()
    assert [p.read_bytes() for p in sorted(folder.glob("shard-*.jsonl"))] == before


def test_hash_cache_spares_rehashing(corpus: list[Post], tmp_path: Path) -> None:
    cache = tmp_path / "index" / "phash.npz"
    first = deduplicate(corpus, DedupConfig(), tmp_path / "images", workers=1, cache_path=cache)
    assert first.hashed == 5 and cache.exists()  # t:1 and t:2 share a file
    marks = [(p.cluster_id, p.duplicate_of, p.image and p.image.phash) for p in corpus]
    second = deduplicate(corpus, DedupConfig(), tmp_path / "images", workers=1, cache_path=cache)
    assert second.hashed == 0
    assert [(p.cluster_id, p.duplicate_of, p.image and p.image.phash) for p in corpus] == marks
    third = deduplicate(
        corpus, DedupConfig(hash="dhash"), tmp_path / "images", workers=1, cache_path=cache
    )
    assert third.hashed == 5  # another kind: the cache does not apply


def test_stage_run_directly(corpus: list[Post], tmp_path: Path) -> None:
    config = PipelineConfig(name="t", data_dir=str(tmp_path))
    ctx = StageContext(config, StageStats("dedup"))
    out = list(DedupStage().run(iter(corpus), ctx))
    assert len(out) == len(corpus)
    assert ctx.stats.flagged["duplicate_image"] == 2


def test_audit_leakage(corpus: list[Post], tmp_path: Path) -> None:
    deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    clean = audit_leakage({"train": corpus[:3] + corpus[4:6], "test": [corpus[3], corpus[6]]})
    assert clean["ok"] and clean["leaking_posts"] == {}
    leaky = audit_leakage(
        {"train": corpus[:2] + corpus[3:5], "dev": [corpus[2]], "test": corpus[5:]}
    )
    assert not leaky["ok"]
    assert leaky["image"]["clusters"] == 1 and leaky["image"]["posts"] == {"train": 2, "dev": 1}
    assert leaky["text"]["clusters"] == 2
    image_rows = [r for r in leaky["leaks"] if r["kind"] == "image"]
    assert [(r["id"], r["split"], r["matches"]) for r in image_rows] == [(corpus[2].id, "dev", 2)]
    assert image_rows[0]["matched_id"] == corpus[0].id and image_rows[0]["distance"] == 0
    assert leaky["leaking_posts"] == {"dev": 1, "test": 2}


def test_partitioned_stage_equals_in_memory(corpus: list[Post], tmp_path: Path) -> None:
    """The runner's dedup (keys per shard, clusters over arrays, marks written back per
    output shard) gives byte-identical outputs and report to the in-memory stage, with
    output shards that straddle input shards, and resumes after a crash in any phase."""

    class InMemory(DedupStage):
        run_partitioned = None  # the runner then streams every post through run()

    outs = {}
    for name, stage in (("mem", InMemory()), ("part", DedupStage())):
        root = tmp_path / name
        shutil.copytree(tmp_path / "images", root / "images")
        config = PipelineConfig(name="t", data_dir=str(root), shard_size=2)
        fetch = stage_dir(config, "fetch")
        write_posts(fetch / "shard-00000.jsonl", corpus[:3])
        write_posts(fetch / "shard-00001.jsonl", corpus[3:])
        write_json(fetch / MARKER, {"fingerprint": "x", "stats": StageStats("fetch").to_dict()})
        stats = Runner(config).run([stage])[0]
        files = sorted(stage_dir(config, "dedup").glob("shard-*.jsonl"))
        outs[name] = (
            [f.read_bytes() for f in files],
            json.loads((root / "side" / "dedup" / "report.json").read_text()),
            stats.to_dict() | {"seconds": 0},
        )
    assert len(outs["part"][0]) == 4
    assert outs["mem"] == outs["part"]
    # a crash after the clusters and one output shard: the rerun writes only the rest
    config = PipelineConfig(name="t", data_dir=str(tmp_path / "part"), shard_size=2)
    folder = stage_dir(config, "dedup")
    (folder / MARKER).unlink()
    (folder / "shard-00002.jsonl").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.jsonl")}
    Runner(config).run([DedupStage()])
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.jsonl")}
    assert {k for k in after if before.get(k) != after[k]} == {"shard-00002.jsonl"}
    assert [f.read_bytes() for f in sorted(folder.glob("shard-*.jsonl"))] == outs["mem"][0]


def test_no_duplicates_at_all(tmp_path: Path) -> None:
    posts = [post(i, f"entirely different words number {i} " * (i + 1), None) for i in range(4)]
    res = deduplicate(posts, DedupConfig(), image_root=tmp_path, workers=1)
    assert res.clusters == {} and all(p.cluster_id == "" for p in posts)
