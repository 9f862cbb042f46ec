"""Synthetic IMGID corpora in the published layouts, with a known set of planted overlaps.

    python benchmarks/imgid_corpus.py OUT_DIR --posts 25000 --layout mmnerd|twitter --seed N
        [--second DIR --second-posts 5000 --second-layout twitter] [--images] [--crlf]

writes OUT_DIR as ``train.txt``/``valid.txt``/``test.txt`` (``--layout twitter``,
Twitter-2015/2017) or ``{train,valid,test}_conll_format.txt`` (``--layout mmnerd``): an
``IMGID:<id>`` line, ``token<TAB>label`` lines, a blank line between posts.  Posts are short
captions and tweets built from templates (names, places, organisations, products and events,
hashtags, @mentions, emoji) with BIO tags over PER/LOC/ORG/MISC (the twitter layout writes
``OTHER`` for MISC, as Twitter-2015 does) and a few orphan ``I-`` tags.  Ids look like the
real ones: MMNERD product-image names (``00361613---Tapas...Marine-Tavern...1-L``,
``...?s=612x612``, ``.jpg`` endings, ``%2F``, commas, ``*``, ``~``), Twitter ids (``O_123``,
``17_06_4237``, digits), and ids that repeat inside a split.

Planted overlaps (all recorded in ``OUT_DIR/planted.json`` with the audit's post ids,
``<split>:<imgid>`` plus ``~n`` for the n-th repeat of an id in a split):

- inside each corpus: copies of a post into a later split (leaks) and into the same split
  (duplicates, not leaks);
- with ``--second DIR``: a second corpus of fresh posts plus copies of posts of the first:
  exact copies, lowercased copies and copies with one word changed (word 2-shingle Jaccard
  >= 0.85).  Each planted post is used once, so every leak has exactly one match.

:func:`expected_leaks` turns ``planted.json`` into the ``(id, kind, against)`` set that
``mmnerd audit-leakage`` must report.  ``--images`` writes ``images/<id>.jpg`` (a noise
picture seeded by the id: the same id in both corpora gives the same picture); random
pictures can be pHash near-duplicates by chance, so image matches are not part of the plan.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYOUTS = {
    "twitter": {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
    "mmnerd": {
        "train": "train_conll_format.txt",
        "validation": "valid_conll_format.txt",
        "test": "test_conll_format.txt",
    },
}
SHARES = {  # split proportions of the published releases
    "mmnerd": {"train": 0.802, "validation": 0.099, "test": 0.099},  # MMNERD-en 19,968/2,463/2,533
    "twitter": {"train": 0.703, "validation": 0.149, "test": 0.148},  # Twitter-2017 3,373/723/723
}
SPLITS = ("train", "validation", "test")


def _words(text: str, sep: str | None = None) -> list[str]:
    return text.split(sep)


FIRST = _words(
    "Marie Lucas Emma Hugo Sofia Mateo Lena Jonas Chloe Leon Alice Pablo Clara Noah Ines Paul "
    "Julia Felix Laura Diego Nina Oscar Eva Louis Anna Carlos Mia Theo Lucia Max Sara Adrien "
    "Elena Jan Camille Javier Hanna Tom Rosa Luca Zoe Ivan Ada Omar Lea Raul Maya Victor Ana "
    "Kevin Taylor Serena Roger Rafael Adele Rihanna Lionel Cristiano Angela Emmanuel Justin"
)
LAST = _words(
    "Martin Dubois Muller Schmidt Garcia Lopez Bernard Fischer Weber Moreau Fernandez Perez "
    "Laurent Wagner Becker Sanchez Roux Hoffmann Gomez Fontaine Schulz Diaz Girard Koch "
    "Martinez Blanc Richter Ruiz Bonnet Klein Navarro Mercier Wolf Torres Lambert Neumann "
    "Swift Williams Federer Nadal Messi Ronaldo Merkel Macron Bieber Obama Curry Jordan Bolt"
)
PLACES = _words(
    "Paris;Berlin;Madrid;London;New York;Lyon;Munich;Barcelona;Seville;Hamburg;Marseille;"
    "Bordeaux;Valencia;Cologne;Toulouse;Bilbao;Dresden;Nice;Malaga;Leipzig;Rio de Janeiro;"
    "Los Angeles;San Francisco;Buenos Aires;Mexico City;Tokyo;Sydney;Cape Town;Dublin;Vienna;"
    "Zurich;Lisbon;Porto;Rome;Milan;Brussels;Amsterdam;Prague;Oslo;Boston;Chicago;Texas;"
    "Florida;Brittany;Bavaria;Andalusia;Provence;Catalonia;Normandy;Alsace;Tuscany;Iceland;"
    "Canada;Spain;France;Germany;Mexico;Brazil;Japan;Scotland;Wales;Hyde Park;Central Park;"
    "Times Square;Eiffel Tower;Brandenburg Gate;Sagrada Familia;Lake Geneva;Black Forest",
    ";",
)
ORGS = _words(
    "Real Madrid;Bayern Munich;Paris Saint-Germain;FC Barcelona;Manchester United;Arsenal;"
    "Apple;Google;Amazon;Microsoft;Tesla;Airbus;Siemens;Renault;Volkswagen;Zara;Adidas;Nike;"
    "United Nations;Red Cross;UNESCO;NASA;BBC;CNN;Le Monde;El Pais;Der Spiegel;Reuters;"
    "Louvre;Prado;Marine Tavern;Blue Note;Ritz;Starbucks;IKEA;Lufthansa;Iberia;Air France;"
    "Deutsche Bahn;SNCF;Renfe;Harvard;Sorbonne;Oxford;NBA;FIFA;UEFA;Netflix;Spotify;Sony",
    ";",
)
MISC = _words(
    "World Cup;Champions League;Olympics;Oscars;Grammys;Christmas;Easter;Oktoberfest;"
    "Carnival;Tour de France;Super Bowl;Eurovision;Black Friday;Ramadan;Halloween;iPhone;"
    "PlayStation;Galaxy;Kindle;Model 3;Golf GTI;Game of Thrones;Star Wars;Harry Potter;"
    "Stranger Things;French;German;Spanish;European;American;Brexit;COVID-19;Euro 2024;"
    "Wimbledon;Roland Garros;Formula 1;Paella;Tapas;Croissant;Bratwurst;Nobel Prize;Cannes;"
    "La Liga;Bundesliga;Ligue 1;Fashion Week;Pride;Valentine's Day;New Year;Independence Day",
    ";",
)
ADJ = _words(
    "beautiful amazing rainy sunny quiet busy old new tiny huge golden fresh cosy empty "
    "crowded colourful vintage modern stunning lovely cold warm bright dark foggy windy "
    "delicious spicy sweet famous historic hidden local rustic elegant wild calm noisy "
    "snowy autumn spring summer winter late early last first final official"
)
NOUN = _words(
    "view sunset market street bridge cafe beach harbour garden concert match festival "
    "museum station skyline morning evening night lunch dinner breakfast coffee cake bread "
    "wine beer pizza burger salad soup train flight hotel room apartment kitchen terrace "
    "rooftop river lake mountain forest park square tower church castle palace gallery "
    "stadium arena crowd team game goal win loss record album song video photo poster "
    "dress shoes jacket bag watch phone laptop camera car bike bus boat plane"
)
VERB = _words(
    "visit open close win lose sign join leave meet watch play buy sell launch announce "
    "celebrate cancel postpone host present unveil release"
)
TIME = _words(
    "today;tonight;this morning;this weekend;on Sunday;on Monday;next week;last night;"
    "right now;this summer;in 2019;in 2021;in 2023;yesterday;at dawn;after the rain",
    ";",
)
EMOJI = ("😀", "🔥", "⚽", "🎉", "❤️", "🇫🇷", "🇪🇸", "🇩🇪", "📷", "🍷", "☀️", "👏")
# templates: {PER} {LOC} {ORG} {MISC} are entities; the others are plain slots
CLAUSES = (
    "{PER} arrives in {LOC} for the {MISC} {TIME}",
    "{ADJ} {NOUN} near {LOC} , {NUM}",
    "{ORG} confirms {PER} will {VERB} the {NOUN} in {LOC}",
    "{ADJ} {NOUN} and {ADJ} {NOUN} at the {LOC} market {TIME}",
    "{MISC} at {ORG} in {LOC} with {PER}",
    "stock photo of a {ADJ} {NOUN} in {LOC} , {YEAR}",
    "{PER} and {PER} {VERB} the {MISC} {TIME}",
    "what a {NOUN} by {PER} ! {ORG} {NUM} - {NUM2}",
    "{ORG} to {VERB} a {ADJ} {NOUN} for the {MISC}",
    "{ADJ} {NOUN} with a view of {LOC} #{TAG}",
    "new {MISC} {NOUN} from {ORG} only {PRICE}",
    "{NUM} people queue for the {MISC} in {LOC} {TIME}",
    "{PER} spotted at the {ADJ} {NOUN} of {ORG}",
    "{ADJ} {NOUN} , {ADJ} {NOUN} : {LOC} in {MONTH}",
    "{MISC} fans in {LOC} celebrate {TIME}",
    "our {NOUN} at {ORG} , {LOC} , {YEAR}",
    '{PER} : " {ADJ} {NOUN} , {ADJ} people "',
    "{ORG} and {ORG} {VERB} {MISC} deal worth {PRICE}",
)
TAGS = _words(
    "travel food photo love sunset football music art nofilter weekend summer style news "
    "throwback foodie instagood citylife streetart architecture nature fashion"
)
MONTHS = _words(
    "January February March April May June July August September October November December"
)
HOWS = ("exact", "lower", "word", "exact", "lower", "word", "exact", "lower", "word", "exact")
"""How the cross-corpus copies are made, in turn: 40% exact, 30% lowercased, 30% a word changed."""
HANDLES = ("@news", "@user", "@fan", "@cityguide", "@foodblog", "@sportsdaily", "@mmnerd")


@dataclass
class GenPost:
    """One post: its IMGID, tokens and BIO labels (MISC; the twitter layout writes OTHER)."""

    imgid: str
    tokens: list[str]
    labels: list[str]
    uid: int = 0


@dataclass
class GenCorpus:
    layout: str
    splits: dict[str, list[GenPost]] = field(default_factory=dict)

    def ids(self) -> dict[int, tuple[str, str]]:
        """uid → (split, the audit's post id) in file order."""
        out: dict[int, tuple[str, str]] = {}
        for split, posts in self.splits.items():
            seen: Counter[str] = Counter()
            for p in posts:
                seen[p.imgid] += 1
                n = seen[p.imgid]
                out[p.uid] = (split, f"{split}:{p.imgid}" + (f"~{n}" if n > 1 else ""))
        return out


class Maker:
    """Seeded post and id factory; ids are unique across every corpus it makes (repeats
    inside a split are planted on purpose)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.used_ids: set[str] = set()
        self.keys: set[str] = set()
        self.uid = 0

    # ---------------------------------------------------------------- ids
    def _twitter_id(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.4:
            return f"O_{r.randrange(1, 10**6)}"
        if k < 0.7:
            return f"{r.choice((16, 17))}_{r.randrange(1, 13):02d}_{r.randrange(1, 10**5)}"
        if k < 0.85:
            return f"16_05_{r.randrange(1, 32):02d}_{r.randrange(1, 10**4)}"
        return str(r.randrange(10**5, 10**7))

    def _product_id(self) -> str:
        r = self.rng
        words = [w.capitalize() for w in r.sample(NOUN + ADJ, r.randrange(2, 5))]
        k = r.random()
        if k < 0.35:  # 00361613---Tapas...Marine-Tavern...1-L
            return f"{r.randrange(10**8):08d}---{'...'.join(words)}...{r.randrange(1, 9)}-L"
        if k < 0.55:
            return f"istockphoto-{r.randrange(10**9)}-612x612.jpg?s=612x612"
        if k < 0.7:
            return f"{'-'.join(w.lower() for w in words)}-{r.randrange(10**6)}.jpg"
        if k < 0.8:
            return f"{words[0]}%2F{words[1]},{r.randrange(1990, 2024)}~{r.randrange(100)}"
        if k < 0.9:
            return f"{words[0].lower()}*{r.randrange(10**5)}_{words[-1].lower()}"
        return f"{r.randrange(10**6)}-{'_'.join(words)}"

    def new_id(self, layout: str) -> str:
        while True:
            twitter = layout == "twitter" or self.rng.random() < 0.3
            imgid = self._twitter_id() if twitter else self._product_id()
            if imgid not in self.used_ids:
                self.used_ids.add(imgid)
                return imgid

    # ---------------------------------------------------------------- text
    def _clause(self) -> tuple[list[str], list[str]]:
        r = self.rng
        tokens: list[str] = []
        labels: list[str] = []
        for part in r.choice(CLAUSES).split():
            head, _, tail = part.partition("}")
            slot = head[1:] if head.startswith("{") else ""
            pre = "#" if part.startswith("#") else ""
            if part.startswith("#{"):
                slot, tail = part[2:].split("}")[0], ""
            if not slot:
                tokens.append(part)
                labels.append("O")
                continue
            ent = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", "MISC": "MISC"}.get(slot)
            if ent:
                words = self._entity(ent).split()
                tokens += words
                labels += [f"B-{ent}"] + [f"I-{ent}"] * (len(words) - 1)
            else:
                words = self._plain(slot).split()
                words[0] = pre + words[0]
                tokens += words
                labels += ["O"] * len(words)
            if tail:
                tokens.append(tail)
                labels.append("O")
        return tokens, labels

    def _entity(self, kind: str) -> str:
        r = self.rng
        if kind == "PER":
            return r.choice(FIRST) if r.random() < 0.2 else f"{r.choice(FIRST)} {r.choice(LAST)}"
        return r.choice({"LOC": PLACES, "ORG": ORGS, "MISC": MISC}[kind])

    def _plain(self, slot: str) -> str:
        r = self.rng
        return {
            "ADJ": lambda: r.choice(ADJ),
            "NOUN": lambda: r.choice(NOUN),
            "VERB": lambda: r.choice(VERB),
            "TIME": lambda: r.choice(TIME),
            "NUM": lambda: str(r.randrange(1, 1000)),
            "NUM2": lambda: str(r.randrange(0, 10)),
            "YEAR": lambda: str(r.randrange(1990, 2025)),
            "PRICE": lambda: f"${r.randrange(1, 999)}.{r.randrange(100):02d}",
            "MONTH": lambda: r.choice(MONTHS),
            "TAG": lambda: r.choice(TAGS),
        }[slot]()

    def post(self, layout: str) -> GenPost:
        """A fresh post whose text no earlier post of this maker had."""
        r = self.rng
        while True:
            tokens, labels = self._clause()
            if r.random() < 0.6:  # a second clause, as in longer captions and tweets
                t2, l2 = self._clause()
                tokens += [r.choice((".", ",", "-", "|", "and"))] + t2
                labels += ["O"] + l2
            if r.random() < 0.3:
                tokens.insert(0, r.choice(HANDLES))
                labels.insert(0, "O")
                if r.random() < 0.5:
                    tokens[:0], labels[:0] = ["RT"], ["O"]
            if r.random() < 0.3:
                tokens.append(f"#{r.choice(TAGS)}{r.randrange(100)}")
                labels.append("O")
            if r.random() < 0.15:
                tokens.append(r.choice(EMOJI))
                labels.append("O")
            if r.random() < 0.1:
                tokens.append("URL" if layout == "twitter" else "http://t.co/" + _hex(r, 8))
                labels.append("O")
            key = " ".join(t.lower() for t in tokens if t.isalnum())
            if key in self.keys:
                continue
            self.keys.add(key)
            if r.random() < 0.01:  # an orphan I- tag, as in Twitter-2015
                starts = [k for k, lab in enumerate(labels) if lab.startswith("B-")]
                if starts:
                    k = r.choice(starts)
                    labels[k] = "I-" + labels[k][2:]
            if layout == "twitter" and r.random() < 0.005:  # invisible characters in a token
                k = r.randrange(len(tokens))
                tokens[k] = tokens[k] + r.choice(("\u200e", "\x92"))
            self.uid += 1
            return GenPost(self.new_id(layout), tokens, labels, self.uid)

    def copy(self, p: GenPost, layout: str, same_id: bool = False) -> GenPost:
        self.uid += 1
        imgid = p.imgid if same_id else self.new_id(layout)
        return GenPost(imgid, list(p.tokens), list(p.labels), self.uid)


def _hex(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _shingle_set(p: GenPost) -> frozenset[str]:
    """The audit's text key: word 2-shingles of the normalised text ("URL" dropped)."""
    from mmnerd.dedup.text import normalize_text, shingles

    return frozenset(shingles(normalize_text(" ".join(p.tokens), ("URL",))))


class NearIndex:
    """Exact "is any indexed set within Jaccard ``t``?" by prefix filtering: two sets with
    Jaccard >= t share an element among the first ``n - ceil(t * n) + 1`` of each, in one
    fixed element order (rare first).  Independent of the audit's own search."""

    def __init__(self, t: float, freq: Counter[str]):
        self.t, self.freq = t, freq
        self.sets: list[frozenset[str]] = []
        self.index: dict[str, list[int]] = {}

    def _prefix(self, s: frozenset[str]) -> list[str]:
        import math

        elems = sorted(s, key=lambda x: (self.freq.get(x, 0), x))
        return elems[: len(elems) - math.ceil(self.t * len(elems)) + 1]

    def near(self, s: frozenset[str]) -> bool:
        seen: set[int] = set()
        lo, hi = self.t * len(s), len(s) / self.t  # Jaccard >= t needs sizes this close
        for x in self._prefix(s):
            for i in self.index.get(x, ()):
                if i not in seen:
                    seen.add(i)
                    other = self.sets[i]
                    if lo <= len(other) <= hi and len(other & s) / len(other | s) >= self.t:
                        return True
        return False

    def add(self, s: frozenset[str]) -> None:
        for x in self._prefix(s):
            self.index.setdefault(x, []).append(len(self.sets))
        self.sets.append(s)


def prune_near(maker: Maker, corpora: list[GenCorpus], t: float = 0.6) -> int:
    """Give a new text to every post that is a near-duplicate (Jaccard >= ``t``) of an
    earlier post of ``corpora``, so the only near-duplicates left are the planted ones;
    returns how many were replaced."""
    posts = [(c.layout, p) for c in corpora for ps in c.splits.values() for p in ps]
    sets = [_shingle_set(p) for _, p in posts]
    index = NearIndex(t, Counter(x for s in sets for x in s))
    replaced = 0
    for (layout, p), s in zip(posts, sets, strict=True):
        while not s or index.near(s):
            fresh = maker.post(layout)
            maker.used_ids.discard(fresh.imgid)
            p.tokens, p.labels = fresh.tokens, fresh.labels
            s = _shingle_set(p)
            replaced += 1
        index.add(s)
    return replaced


def make_corpus(maker: Maker, n_posts: int, layout: str) -> GenCorpus:
    """``n_posts`` fresh posts over train/validation/test in the release's proportions; ~3% of
    the posts reuse the id of an earlier post of their split (as MMNERD ids do)."""
    r = maker.rng
    corpus = GenCorpus(layout)
    left = n_posts
    for k, split in enumerate(SPLITS):
        n = left if k == len(SPLITS) - 1 else round(n_posts * SHARES[layout][split])
        left -= n
        posts: list[GenPost] = []
        for _ in range(n):
            p = maker.post(layout)
            if posts and r.random() < 0.03:
                maker.used_ids.discard(p.imgid)
                p.imgid = r.choice(posts).imgid
            posts.append(p)
        corpus.splits[split] = posts
    return corpus


def _insert(r: random.Random, posts: list[GenPost], p: GenPost) -> None:
    posts.insert(r.randrange(len(posts) + 1), p)


def plant_within(
    maker: Maker, corpus: GenCorpus, pool: list[GenPost], n_leaks: int, n_dups: int
) -> list[dict[str, Any]]:
    """Copy posts of ``pool`` (used up) into a later split (leaks) and into their own split
    (duplicates, not leaks); exact or lowercased copies."""
    r = maker.rng
    split_of = {p.uid: s for s, ps in corpus.splits.items() for p in ps}
    plants: list[dict[str, Any]] = []
    for k in range(n_leaks + n_dups):
        leak = k < n_leaks
        src = next(p for p in pool if split_of[p.uid] != "test" or not leak)
        pool.remove(src)
        here = split_of[src.uid]
        to = r.choice(SPLITS[SPLITS.index(here) + 1 :]) if leak else here
        how = r.choice(("exact", "lower"))
        cp = maker.copy(src, corpus.layout)
        if how == "lower":
            cp.tokens = [t.lower() for t in cp.tokens]
        _insert(r, corpus.splits[to], cp)
        plants.append({"src": src.uid, "copy": cp.uid, "how": how, "leak": leak})
    return plants


def _word_changed(maker: Maker, p: GenPost, layout: str) -> GenPost | None:
    """A copy of ``p`` with one plain word replaced, keeping the word 2-shingle Jaccard of
    the normalised texts at 0.85 or more (None if no word qualifies)."""
    from mmnerd.dedup.text import normalize_text, shingles

    r = maker.rng
    base = set(shingles(normalize_text(" ".join(p.tokens), ("URL",))))
    spots = [k for k, t in enumerate(p.tokens) if t.isalpha() and t.islower() and len(t) > 2]
    r.shuffle(spots)
    for k in spots:
        cp = maker.copy(p, layout)
        cp.tokens[k] = r.choice([w for w in NOUN + ADJ if w != p.tokens[k]])
        new = set(shingles(normalize_text(" ".join(cp.tokens), ("URL",))))
        if base and len(base & new) / len(base | new) >= 0.85:
            return cp
        maker.uid -= 1
    return None


def make_pair(
    n_first: int,
    n_second: int,
    seed: int = 1,
    layout: str = "mmnerd",
    second_layout: str = "twitter",
    overlap: float = 0.1,
) -> tuple[GenCorpus, GenCorpus, dict[str, Any]]:
    """Two corpora and the plan of what they share: ``overlap`` of the second corpus are
    copies of posts of the first (40% exact, 30% lowercased, 30% one word changed; a third
    of the exact ones keep the id), each split of both corpora holding some; plus leaks
    and duplicates planted inside each corpus."""
    maker = Maker(seed)
    r = maker.rng
    first = make_corpus(maker, n_first, layout)
    n_copies = max(3, round(n_second * overlap)) if n_second else 0
    second = make_corpus(maker, max(0, n_second - n_copies), second_layout)
    prune_near(maker, [first, second])  # no near-duplicates but the planted ones
    pool_a = [p for ps in first.splits.values() for p in ps]
    pool_b = [p for ps in second.splits.values() for p in ps]
    r.shuffle(pool_a)
    r.shuffle(pool_b)
    split_of = {p.uid: s for s, ps in first.splits.items() for p in ps}
    by_split = {s: [p for p in pool_a if split_of[p.uid] == s] for s in SPLITS}
    used: set[int] = set()
    repeats = Counter(p.imgid for p in pool_a)
    cross = []
    for k in range(n_copies):
        split_a, split_b = SPLITS[k % 3], SPLITS[(k // 3) % 3]  # every pair of splits
        how = HOWS[(k // 9) % len(HOWS)]
        while True:
            src = by_split[split_a].pop()
            used.add(src.uid)
            if how != "word":
                same = (  # keep the id (as MMNERD did for Twitter posts) if it is unique
                    how == "exact"
                    and _twitterish(src.imgid)
                    and repeats[src.imgid] == 1
                    and r.random() < 0.5
                )
                cp = maker.copy(src, second_layout, same_id=same)
                if how == "lower":
                    cp.tokens = [t.lower() for t in cp.tokens]
                break
            cp = _word_changed(maker, src, second_layout)
            if cp is not None:
                break
        _insert(r, second.splits[split_b], cp)
        cross.append({"first": src.uid, "second": cp.uid, "how": how})
    pool_a = [p for p in pool_a if p.uid not in used]
    n_in = max(2, n_first // 2500)
    within_first = plant_within(maker, first, pool_a, n_in, n_in)
    within_second = []
    if n_second:
        within_second = plant_within(maker, second, pool_b, max(1, n_second // 2500), 1)
    return first, second, {"cross": cross, "first": within_first, "second": within_second}


def _twitterish(imgid: str) -> bool:
    """A Twitter-2015/2017 id (MMNERD holds such posts under the same id)."""
    return re.fullmatch(r"O_\d+|\d+(?:_\d+)*", imgid) is not None


def plan_json(first: GenCorpus, second: GenCorpus | None, plan: dict[str, Any]) -> dict:
    """The plan with the audit's post ids (``first``/``second`` = ``{split, id}``)."""
    ids_a = first.ids()
    ids_b = second.ids() if second is not None else {}

    def where(ids: dict[int, tuple[str, str]], uid: int) -> dict[str, str]:
        split, pid = ids[uid]
        return {"split": split, "id": pid}

    return {
        "cross": [
            {
                "first": where(ids_a, c["first"]),
                "second": where(ids_b, c["second"]),
                "how": c["how"],
            }
            for c in plan.get("cross", [])
        ],
        "first": [
            {"src": where(ids_a, w["src"]), "copy": where(ids_a, w["copy"])}
            | {"how": w["how"], "leak": w["leak"]}
            for w in plan.get("first", [])
        ],
        "second": [
            {"src": where(ids_b, w["src"]), "copy": where(ids_b, w["copy"])}
            | {"how": w["how"], "leak": w["leak"]}
            for w in plan.get("second", [])
        ],
    }


def expected_leaks(
    planted: dict[str, Any], audited: str = "first", images: bool = False
) -> dict[tuple, str]:
    """``(id, kind, against) -> matched id`` that ``audit-leakage`` must list when auditing
    the ``first`` (or ``second``) corpus against the other one.  ``images``: both corpora
    were written with ``--images``, so the copies that kept their id share the picture too
    (other random pictures may still be pHash neighbours by chance)."""
    other = "second" if audited == "first" else "first"
    out = {(c[audited]["id"], "text", "ref"): c[other]["id"] for c in planted["cross"]}
    for w in planted[audited]:
        if w["leak"]:
            out[(w["copy"]["id"], "text", "splits")] = w["src"]["id"]
    if images:
        for c in planted["cross"]:
            if c[audited]["id"].split(":", 1)[1] == c[other]["id"].split(":", 1)[1]:
                out[(c[audited]["id"], "image", "ref")] = c[other]["id"]
    return out


def write_corpus(
    corpus: GenCorpus, out_dir: Path, crlf: bool = False, images: bool = False
) -> None:
    """The IMGID files of ``corpus`` (``\\r\\n`` line ends with ``crlf``); ``images``:
    ``images/<id>.jpg`` per distinct id."""
    out_dir.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    misc = "OTHER" if corpus.layout == "twitter" else "MISC"
    for split, name in LAYOUTS[corpus.layout].items():
        lines = []
        for p in corpus.splits[split]:
            lines.append(f"IMGID:{p.imgid}{end}")
            for t, lab in zip(p.tokens, p.labels, strict=True):
                lines.append(f"{t}\t{lab.replace('MISC', misc)}{end}")
            lines.append(end)
        (out_dir / name).write_bytes("".join(lines).encode("utf-8"))
    if images:
        write_images({p.imgid for ps in corpus.splits.values() for p in ps}, out_dir / "images")


def write_images(imgids: set[str], folder: Path) -> None:
    """A small noise picture per id, seeded by the id (same id → same picture)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for imgid in sorted(imgids):
        seed = int.from_bytes(hashlib.blake2b(imgid.encode(), digest_size=8).digest(), "little")
        pix = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pix).resize((128, 96), Image.BILINEAR).save(
            folder / f"{imgid}.jpg", quality=85
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--posts", type=int, default=25000)
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="mmnerd")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--second", type=Path, help="also write a second corpus sharing posts")
    ap.add_argument("--second-posts", type=int, default=5000)
    ap.add_argument("--second-layout", choices=sorted(LAYOUTS), default="twitter")
    ap.add_argument("--overlap", type=float, default=0.1, help="share of the second corpus")
    ap.add_argument("--images", action="store_true", help="write images/<id>.jpg too")
    ap.add_argument("--crlf", action="store_true", help="CRLF line ends")
    a = ap.parse_args(argv)
    n2 = a.second_posts if a.second else 0
    first, second, plan = make_pair(a.posts, n2, a.seed, a.layout, a.second_layout, a.overlap)
    write_corpus(first, a.out_dir, a.crlf, a.images)
    planted = plan_json(first, second if a.second else None, plan)
    if a.second:
        write_corpus(second, a.second, a.crlf, a.images)
    (a.out_dir / "planted.json").write_text(json.dumps(planted, indent=1, ensure_ascii=False))
    sizes = {s: len(ps) for s, ps in first.splits.items()}
    print(f"wrote {a.out_dir} ({a.layout}, {sizes})", file=sys.stderr)
    if a.second:
        sizes = {s: len(ps) for s, ps in second.splits.items()}
        print(f"wrote {a.second} ({a.second_layout}, {sizes})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
