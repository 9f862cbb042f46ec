"""Scale benchmark: N synthetic Mastodon posts with small images through the real pipeline,
with the local executor and with Dask (LocalCluster), side by side.

    .venv/bin/python benchmarks/scale.py [--posts 100000] [--executors local,dask] [--workers 2]

A separate server process on 127.0.0.1 speaks the Mastodon timelines API
(``GET /api/v1/timelines/public``: ``limit`` <= 40, newest first, ``max_id`` /
``since_id``, ``Link: <...max_id=...>; rel="next"``, HTML ``content``, image
``media_attachments``) and serves each post's image (``/media/<n>.jpg``, a
64x48 JPEG of ~1 KB, pre-encoded in memory at server start).  About 5% of the
posts reuse an earlier post's image and 2% an earlier post's text, so dedup has
work to do.

Each executor runs in its own child process on a fresh data dir (clean peak RSS):

    collect (mastodon source over HTTP, journal + cursor per page)
      -> language -> normalize -> tokenize -> fetch (real fetcher, SSRF guard with
      127.0.0.1 allowed) -> dedup (keys per shard on the executor: pHash, text shingles;
      exact image + text search in the driver over arrays; marks written per shard on the
      executor) -> pull* -> export (split, Parquet with embedded images, IMGID files, card)

*SHORTCUT: annotation is human-bound, so Label Studio push/pull are not part of
this run.  Instead a stage named "pull" reads the dedup output, skips duplicates
(as the real push does) and sets ``spans`` + strict-IOB2 ``ner_tags`` from gold
entities (the lexicon names the server put into the text, found again in the
normalised text) via :func:`mmnerd.text.bio.spans_to_bio`.  It runs on the
executor like any shard stage and is reported as ``pull (gold shortcut)``.

Shard stages (language, normalize, tokenize, fetch, pull) and dedup's keys and
write-back run on the executor; collect, dedup's search and export run in the driver.
items/s = items in / stage wall seconds.  Peak RSS (VmHWM): the driver process, and for
Dask each worker process (asked on the worker).
Prints a table and writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, peak_rss_mb, save  # noqa: E402

BASE_ID = 110_000_000_000_000_000  # Mastodon-like snowflake-sized ids
IMAGE_SIZE = (64, 48)

# --------------------------------------------------------------------------- synthetic posts
LEXICON = {
    "PER": [
        "Marie Curie", "Lionel Messi", "Angela Merkel", "Rafael Nadal", "Serena Williams",
        "Victor Hugo", "Frida Kahlo", "Emma Watson", "Thomas Müller", "Pedro Almodóvar",
        "Simone Biles", "Jean Dujardin", "Greta Thunberg", "Luka Modric", "Zinedine Zidane",
    ],
    "LOC": [
        "Paris", "Berlin", "Madrid", "London", "Lyon", "Hamburg", "Sevilla", "Boston",
        "Marseille", "München", "Valencia", "Toronto", "Bordeaux", "Köln", "Granada",
    ],
    "ORG": [
        "UNESCO", "Airbus", "Real Madrid", "Deutsche Bahn", "BBC", "Renault", "Siemens",
        "Telefónica", "Greenpeace", "SNCF", "Lufthansa", "Zara", "NASA", "Le Monde", "Adidas",
    ],
    "MISC": [
        "Tour de France", "Oktoberfest", "Champions League", "Eurovision", "Roland Garros",
        "La Liga", "Bundesliga", "Olympics", "Cannes Festival", "Feria de Abril",
    ],
}  # fmt: skip
TEMPLATES = {
    "en": [
        "What a day with {PER} in {LOC}, thanks to {ORG} for the {MISC} tickets",
        "We watched the {MISC} in {LOC} and {PER} was amazing, said the people from {ORG}",
        "Just arrived in {LOC} for a meeting at {ORG}, hoping to see {PER} before the {MISC}",
    ],
    "fr": [
        "Quelle journée avec {PER} à {LOC}, merci à {ORG} pour les billets du {MISC}",
        "Nous avons regardé le {MISC} à {LOC} et {PER} était vraiment formidable selon {ORG}",
        "Je suis arrivée à {LOC} pour une réunion chez {ORG}, j'espère voir {PER} avant le {MISC}",
    ],
    "de": [
        "Was für ein Tag mit {PER} in {LOC}, danke an {ORG} für die Karten zur {MISC}",
        "Wir haben die {MISC} in {LOC} gesehen und {PER} war wirklich toll, sagt {ORG}",
        "Ich bin gerade in {LOC} angekommen für ein Treffen bei {ORG} und hoffe {PER} zu sehen",
    ],
    "es": [
        "Qué día con {PER} en {LOC}, gracias a {ORG} por las entradas de la {MISC}",
        "Vimos la {MISC} en {LOC} y {PER} estuvo increíble, según la gente de {ORG}",
        "Acabo de llegar a {LOC} para una reunión en {ORG}, espero ver a {PER} antes de la {MISC}",
    ],
}
FILLER = {
    "en": "the weather was really nice today and we are very happy with everything here "
    "again tomorrow morning friends family coffee",
    "fr": "il faisait vraiment beau aujourd'hui et nous sommes très contents de tout ici "
    "encore demain matin amis famille café",
    "de": "das Wetter war heute wirklich schön und wir sind sehr zufrieden mit allem hier "
    "wieder morgen früh Freunde Familie Kaffee",
    "es": "hoy hizo muy buen tiempo y estamos muy contentos con todo aquí otra vez "
    "mañana temprano amigos familia café",
}
LANGS = ("en", "fr", "de", "es")
_ENTITY_RE = re.compile(
    "|".join(re.escape(n) for n in sorted({n for v in LEXICON.values() for n in v}, key=len)[::-1])
)
_LABEL_OF = {n: lab for lab, names in LEXICON.items() for n in names}


def source_of(n: int) -> tuple[int, int]:
    """(post whose text this post reuses, post whose image it reuses): 2% / 5% reposts."""
    text_src = n - 11 if n % 50 == 11 else n
    image_src = n - 7 if n % 20 == 7 else n
    return text_src, image_src


def post_text(n: int) -> tuple[str, str]:
    """(language, plain text) of post n (deterministic)."""
    rng = random.Random(n)
    lang = LANGS[n % 4]
    fill = {lab: rng.choice(names) for lab, names in LEXICON.items()}
    words = FILLER[lang].split()
    tail = " ".join(rng.sample(words, 6))
    return lang, f"{rng.choice(TEMPLATES[lang]).format(**fill)}, {tail} {n}"


def status_json(n: int, base: str) -> dict[str, Any]:
    text_src, image_src = source_of(n)
    lang, text = post_text(text_src)
    sid = str(BASE_ID + n)
    user = f"user{n % 997}"
    content = (
        f"<p>{text} "
        f'<a href="{base}/tags/{lang}photo" class="mention hashtag" rel="tag">#<span>'
        f"{lang}photo</span></a></p>"
    )
    return {
        "id": sid,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1.7e9 + n * 30)),
        "visibility": "public",
        "language": lang,
        "uri": f"{base}/users/{user}/statuses/{sid}",
        "url": f"{base}/@{user}/{sid}",
        "content": content,
        "sensitive": False,
        "spoiler_text": "",
        "reblog": None,
        "account": {"acct": user, "url": f"{base}/@{user}"},
        "media_attachments": [
            {
                "id": str(image_src),
                "type": "image",
                "url": f"{base}/media/{image_src}.jpg",
                "preview_url": f"{base}/media/{image_src}.jpg",
                "description": "",
            }
        ],
    }


def make_image(n: int) -> bytes:
    """A distinct small JPEG per n: a random 8x6 colour grid, smoothly upscaled."""
    from PIL import Image

    rng = random.Random(n * 7919 + 1)
    grid = Image.frombytes("RGB", (8, 6), bytes(rng.getrandbits(8) for _ in range(8 * 6 * 3)))
    buf = io.BytesIO()
    grid.resize(IMAGE_SIZE, Image.BILINEAR).save(buf, "JPEG", quality=85)
    return buf.getvalue()


# --------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] = {}) -> None:  # noqa: B006
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        parts = urlsplit(self.path)
        srv = self.server
        if parts.path.startswith("/media/"):
            try:
                n = int(parts.path[len("/media/") :].removesuffix(".jpg"))
                body = srv.images[n]
            except (ValueError, IndexError):
                return self._send(404, b"not found", "text/plain")
            return self._send(200, body, "image/jpeg")
        if parts.path != "/api/v1/timelines/public":
            return self._send(404, b'{"error":"Record not found"}', "application/json")
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        limit = max(1, min(40, int(q.get("limit", 20))))
        top = srv.n - 1  # newest post index
        if "max_id" in q:
            top = min(top, int(q["max_id"]) - BASE_ID - 1)
        floor = int(q["since_id"]) - BASE_ID if "since_id" in q else -1
        ns = [n for n in range(top, max(floor, top - limit, -1), -1)]
        body = json.dumps([status_json(n, srv.base) for n in ns]).encode()
        headers = {}
        if ns and ns[-1] > floor + 1 and ns[-1] > 0:
            url = f"{srv.base}/api/v1/timelines/public?limit={limit}"
            headers["Link"] = (
                f'<{url}&max_id={BASE_ID + ns[-1]}>; rel="next", '
                f'<{url}&min_id={BASE_ID + ns[0]}>; rel="prev"'
            )
        self._send(200, body, "application/json; charset=utf-8", headers)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, n: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.n = n
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.images = [make_image(n) for n in range(n)]


def serve(n: int, port_file: Path) -> None:
    srv = _Server(n)
    port_file.write_text(srv.base)
    srv.serve_forever()


def start_server(n: int) -> tuple[subprocess.Popen, str]:
    port_file = Path(tempfile.mkdtemp()) / "base"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(n), str(port_file)])
    deadline = time.time() + 600
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("scale benchmark: the API server did not start")
        time.sleep(0.2)
    return proc, port_file.read_text()


# --------------------------------------------------------------------------- the run
def gold_pull_stage() -> Any:
    """The "pull" SHORTCUT (see the module docstring): gold spans as the adjudicated labels."""
    from mmnerd.pipeline import Stage
    from mmnerd.records import Span
    from mmnerd.text.bio import spans_to_bio

    class GoldPullStage(Stage):
        name = "pull"
        input = "dedup"

        def run(self, records, ctx):  # type: ignore[no-untyped-def]
            for p in records:
                if p.duplicate_of:  # the real push skips duplicates
                    yield p.drop("duplicate")
                    continue
                spans = [
                    Span(m.start(), m.end(), _LABEL_OF[m.group()], m.group())
                    for m in _ENTITY_RE.finditer(p.text)
                ]
                al = spans_to_bio(spans, p.token_offsets, p.text)
                p.spans, p.ner_tags = al.spans, al.tags
                yield p

    return GoldPullStage()


def hwm_mb() -> float:
    """Peak RSS of this process, MiB: VmHWM (ru_maxrss would report a parent's peak
    across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def _cpu() -> float:
    """CPU seconds of this process and its finished children (e.g. hashing processes)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_seconds(runner: Any, kind: str) -> float:
    """CPU seconds used so far by the driver and, for Dask, by every worker process."""
    total = _cpu()
    if kind == "dask":
        total += sum(runner.executor.client().run(_cpu).values())
    return total


def child(kind: str, n: int, base: str, workers: int, shard_size: int) -> dict[str, Any]:
    from mmnerd.config import PipelineConfig
    from mmnerd.dedup import DedupStage
    from mmnerd.export import export
    from mmnerd.images.fetch import FetchStage
    from mmnerd.pipeline import Runner
    from mmnerd.sources import get_source
    from mmnerd.sources.collect import CollectStage
    from mmnerd.text.stages import LanguageStage, NormalizeStage, TokenizeStage

    tmp = tempfile.mkdtemp(prefix=f"mmnerd-scale-{kind}-")
    cfg = PipelineConfig(
        name="scale",
        data_dir=tmp,
        shard_size=shard_size,
        executor={"kind": kind, "workers": workers, "threads_per_worker": 1},
        source={
            "kind": "mastodon",
            "instances": [base],
            "timelines": ["public"],
            "min_interval": 0,
            "max_posts": 0,
            "host_budget": 1_000_000,
            "max_retries": 2,
            "backoff": 0.1,
        },
        images={"allow_hosts": ["127.0.0.1"], "workers": 8, "per_host": 8},
    )
    runner = Runner(cfg)
    load0 = os.getloadavg()
    out: dict[str, Any] = {"stages": [], "cluster_start_s": 0.0}
    if kind == "dask":
        with Timer() as t:
            runner.executor.client()
        out["cluster_start_s"] = round(t.seconds, 2)
    stages = [
        CollectStage(get_source(cfg)),
        LanguageStage(),
        NormalizeStage(),
        TokenizeStage(),
        FetchStage(),
        DedupStage(),
        gold_pull_stage(),
    ]
    t_all = time.perf_counter()
    for st in stages:
        cpu0 = cpu_seconds(runner, kind)
        s = runner.run_stage(st)
        cpu = cpu_seconds(runner, kind) - cpu0
        name = "pull (gold shortcut)" if st.name == "pull" else st.name
        out["stages"].append(
            {"stage": name, "items_in": s.items_in, "items_out": s.items_out, "s": s.seconds,
             "cpu_s": cpu}
        )  # fmt: skip
    cpu0 = cpu_seconds(runner, kind)
    with Timer() as t:
        manifest, export_stats = export(cfg, runner)
    split_stats = export_stats[-1]
    rows = sum(f["rows"] for f in manifest["files"] if f.get("rows"))
    out["stages"].append(
        {"stage": "export", "items_in": split_stats.items_in, "items_out": rows, "s": t.seconds,
         "cpu_s": cpu_seconds(runner, kind) - cpu0}
    )  # fmt: skip
    out["total_s"] = time.perf_counter() - t_all
    out["driver_peak_rss_mb"] = round(hwm_mb(), 1)
    if kind == "dask":
        client = runner.executor.client()
        rss = client.run(hwm_mb)
        out["worker_peak_rss_mb"] = [round(v, 1) for v in rss.values()]
        runner.executor.close()
    out["load_before"] = [round(x, 2) for x in load0]
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--posts", type=int, default=100_000, help="synthetic posts served")
    ap.add_argument("--executors", default="local,dask", help="comma list of local,dask")
    ap.add_argument("--workers", type=int, default=2, help="Dask LocalCluster worker processes")
    ap.add_argument("--shard-size", type=int, default=1000, help="records per shard")
    ap.add_argument("--name", default="scale", help="results file benchmarks/results/<name>.json")
    ap.add_argument("--serve", nargs=2, metavar=("N", "PORT_FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "N", "BASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return
    if args.child:
        kind, n, base = args.child
        res = child(kind, int(n), base, args.workers, args.shard_size)
        print("RESULT " + json.dumps(res))
        return
    with Timer() as t:
        server, base = start_server(args.posts)
    print(f"API server with {args.posts} posts up at {base} in {t.seconds:.1f} s", flush=True)
    rows: list[dict[str, Any]] = []
    summary: list[str] = []
    try:
        for kind in args.executors.split(","):
            print(f"-- {kind} executor, {args.posts} posts", flush=True)
            cmd = [sys.executable, __file__, "--child", kind, str(args.posts), base]
            cmd += ["--workers", str(args.workers), "--shard-size", str(args.shard_size)]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            line = next(
                (x for x in proc.stdout.splitlines()[::-1] if x.startswith("RESULT ")), None
            )
            if proc.returncode or line is None:
                raise SystemExit(f"scale benchmark: the {kind} run failed (exit {proc.returncode})")
            res = json.loads(line[len("RESULT ") :])
            label = f"dask {args.workers}w" if kind == "dask" else "local"
            for st in res["stages"]:
                rows.append(
                    {
                        "executor": label,
                        "posts": args.posts,
                        "stage": st["stage"],
                        "items_in": st["items_in"],
                        "items_out": st["items_out"],
                        "seconds": round(st["s"], 2),
                        "items_per_s": round(st["items_in"] / st["s"]) if st["s"] else 0,
                        "cpu_s": round(st["cpu_s"], 1) if st.get("cpu_s") is not None else "",
                        "cpu_ms_per_item": round(1000 * st["cpu_s"] / st["items_in"], 2)
                        if st.get("cpu_s") is not None and st["items_in"]
                        else "",
                    }
                )
            rss = f"driver peak RSS {res['driver_peak_rss_mb']} MiB"
            if "worker_peak_rss_mb" in res:
                rss += f", workers {res['worker_peak_rss_mb']} MiB"
            rows.append(
                {
                    "executor": label,
                    "posts": args.posts,
                    "stage": "TOTAL (collect..export)",
                    "items_in": args.posts,
                    "seconds": round(res["total_s"], 1),
                    "items_per_s": round(args.posts / res["total_s"]),
                    "driver_peak_rss_mb": res["driver_peak_rss_mb"],
                    "worker_peak_rss_mb": max(res.get("worker_peak_rss_mb", [0]) or [0]),
                    "load_avg_1m": f"{res['load_before'][0]}->{res['load_after'][0]}",
                }
            )
            summary.append(
                f"{label}: {res['total_s']:.0f} s total, {rss}; cluster start "
                f"{res['cluster_start_s']} s; load average before {res['load_before']} "
                f"after {res['load_after']}"
            )
    finally:
        server.terminate()
        server.wait()
    notes = (
        f"{args.posts} posts from a local Mastodon-API server (127.0.0.1), 64x48 JPEGs, "
        f"shard_size {args.shard_size}, {os.cpu_count()} cores shared. Shard stages (language, "
        "normalize, tokenize, fetch, pull) and dedup's per-shard keys and write-back run on the "
        "executor; collect, dedup's search over arrays and export run in the driver. pull = "
        "SHORTCUT: gold spans as annotations (no Label Studio).\n" + "\n".join(summary)
    )
    save(args.name, rows, notes)


if __name__ == "__main__":
    main()
