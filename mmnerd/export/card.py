"""The dataset card: ``README.md`` with Hugging Face card data (valid YAML for any name,
complete features, configs and splits) and the sections a researcher needs to cite,
reload and audit the corpus."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.io import atomic_write, read_json
from mmnerd.records import ENTITY_TYPES, EXPORT_COLUMNS, SPLITS, Post, hf_features_yaml

TOOLKIT_CITATION = """@software{mmnerd,
  title  = {mmnerd: building and benchmarking multilingual, multimodal named-entity datasets},
  author = {{The mmnerd developers}},
  year   = {2026},
  url    = {https://github.com/mmnerd/mmnerd}
}"""
PAPER_CITATION = """@article{wang2024mner,
  title   = {{2M-NER}: Contrastive Learning for Multilingual and Multimodal {NER} with
             Language and Modal Fusion},
  author  = {Wang, Dongsheng and Feng, Xiaoqin and Liu, Zeming and Wang, Chuan},
  journal = {arXiv preprint arXiv:2404.17122},
  year    = {2024}
}"""


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


class CardTables:
    """The card's figures, accumulated post by post (:meth:`add`) and mergeable across
    shards (:meth:`merge`, in shard order): counts per language x entity type and per split
    (with and without image), agreement, sources, date range, whether everything is
    synthetic, and the first training post with entities (the card's example instance).
    Small (counters over languages, splits and sources) and picklable, so an executor task
    can return one per shard."""

    def __init__(self) -> None:
        self.per_lang: dict[str, Counter] = defaultdict(Counter)
        self.per_split: dict[str, Counter] = defaultdict(Counter)
        self.sources: Counter = Counter()
        self.labels_from: Counter = Counter()
        self.decided: Counter = Counter()
        self.n = self.n_agree = 0
        self.agree_sum = 0.0
        self.synthetic = True
        self.first = self.last = ""
        self.example: dict[str, Any] | None = None

    def add(self, p: Post) -> None:
        self.n += 1
        c = self.per_lang[p.lang]
        c["sentences"] += 1
        c["tokens"] += len(p.tokens)
        for s in p.spans:
            c[s.label] += 1
            c["entities"] += 1
        self.per_split[p.split]["sentences"] += 1
        self.per_split[p.split][p.lang] += 1
        self.per_split[p.split]["with_image"] += p.has_image
        self.sources[p.source] += 1
        self.labels_from[p.labels_from or "unknown"] += 1
        self.decided[{True: "yes", False: "no", None: "not recorded"}[p.image_decided]] += 1
        self.synthetic = self.synthetic and p.synthetic
        if self.example is None and p.split == "train" and p.spans:
            self.example = example_instance(p)
        if p.agreement is not None:
            self.n_agree += 1
            self.agree_sum += p.agreement
        if p.created_at:
            self.first = min(self.first, p.created_at) if self.first else p.created_at
            self.last = max(self.last, p.created_at)

    def merge(self, other: CardTables) -> CardTables:
        """Add ``other`` (the figures of the posts after this one's) into this one."""
        for mine, theirs in ((self.per_lang, other.per_lang), (self.per_split, other.per_split)):
            for key, counts in theirs.items():
                mine[key].update(counts)
        self.sources.update(other.sources)
        self.labels_from.update(other.labels_from)
        self.decided.update(other.decided)
        self.n += other.n
        self.n_agree += other.n_agree
        self.agree_sum += other.agree_sum
        self.synthetic = self.synthetic and other.synthetic
        if other.first:
            self.first = min(self.first, other.first) if self.first else other.first
            self.last = max(self.last, other.last)
        self.example = self.example or other.example
        return self

    def to_dict(self) -> dict[str, Any]:
        n, n_agree = self.n, self.n_agree
        return {
            "posts": n,
            "synthetic": self.synthetic and n > 0,
            "per_language": {k: dict(v) for k, v in sorted(self.per_lang.items())},
            "per_split": {k: dict(v) for k, v in self.per_split.items()},
            "with_image": sum(c["with_image"] for c in self.per_split.values()),
            "sources": dict(self.sources),
            "labels_from": dict(self.labels_from),
            "image_decided": dict(self.decided),
            "dates": [self.first, self.last] if self.first else [],
            "agreement": {
                "double_annotated": n_agree,
                "mean_entity_f1": round(self.agree_sum / n_agree, 4) if n_agree else None,
            },
            "example": self.example,
        }


def corpus_tables(posts: Iterable[Post]) -> dict[str, Any]:
    """:class:`CardTables` of a stream of posts, in one pass, as a dict."""
    tables = CardTables()
    for p in posts:
        tables.add(p)
    return tables.to_dict()


def example_instance(ex: Post) -> dict[str, Any]:
    """What the card shows of its example post (JSON-ready)."""
    return {
        "id": ex.id, "lang": ex.lang, "text": ex.text, "tokens": ex.tokens,
        "ner_tags_str": ex.ner_tags,
        "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in ex.spans],
        "image": f"<{ex.image.mime or 'image'}, {ex.image.width}x{ex.image.height}>"
        if ex.has_image and ex.image else None, "split": ex.split,
    }  # fmt: skip


def card_data(config: PipelineConfig, tables: dict[str, Any]):  # -> DatasetCardData
    """The card's YAML header as huggingface_hub card data (any name is quoted safely)."""
    from huggingface_hub import DatasetCardData

    synthetic = tables["synthetic"]
    gold = config.export.labels == "source"
    langs = list(tables["per_language"])
    splits = []  # only splits with posts: datasets cannot load an empty split
    for s in SPLITS:
        n = tables["per_split"].get(s, {}).get("sentences", 0)
        path = config.export_dir / f"{s}.parquet"
        if n and path.exists():
            splits.append({"name": s, "num_bytes": path.stat().st_size, "num_examples": n})
    return DatasetCardData(
        language=langs,
        license="cc0-1.0" if synthetic else "other",
        license_name=None if synthetic else "per post (see the licence column)",
        multilinguality="multilingual" if len(langs) > 1 else "monolingual",
        annotations_creators=["machine-generated" if synthetic else "found" if gold
                              else "expert-generated"],  # fmt: skip
        language_creators=["machine-generated" if synthetic else "found"],
        source_datasets=["extended"] if gold else ["original"],
        task_categories=["token-classification"],
        task_ids=["named-entity-recognition"],
        size_categories=[size_category(tables["posts"])],
        pretty_name=f"{config.name} (synthetic)" if synthetic else config.name,
        tags=["multimodal", "multilingual", "social-media", "mmnerd"],
        configs=[{"config_name": "default", "data_files": [
            {"split": s["name"], "path": f"{s['name']}.parquet"} for s in splits]}],
        dataset_info={"features": hf_features_yaml(), "splits": splits},
    )  # fmt: skip


def write_card(
    config: PipelineConfig,
    posts: Iterable[Post],
    stage_stats: list[Any],
    dedup_figures: dict[str, Any] | None = None,
) -> Path:
    """Write ``<export_dir>/README.md`` and the label-distribution chart; returns the card path.

    ``posts`` is read once (a stream is fine)."""
    return write_card_tables(config, corpus_tables(posts), stage_stats, dedup_figures)


def write_card_tables(
    config: PipelineConfig,
    tables: dict[str, Any],
    stage_stats: list[Any],
    dedup_figures: dict[str, Any] | None = None,
) -> Path:
    """:func:`write_card` from :meth:`CardTables.to_dict` figures."""
    from huggingface_hub import DatasetCard

    out = config.export_dir
    chart = plot_label_distribution(tables["per_language"], out / "label_distribution.png")
    body = [
        *_summary(config, tables),
        *_loading(config),
        *_structure(tables),
        *_creation(config, tables, stage_stats, dedup_figures, chart),
        *_personal_information(config),
        *_limitations(config, tables),
        "## Licensing information\n",
        "The synthetic sample is CC0-1.0."
        if tables["synthetic"]
        else "Each post keeps its own licence or terms (`licence` column): "
        f"{', '.join(sorted({str(k) for k in tables['sources']}))}. Posts and pictures remain "
        "their authors'; respect the platforms' terms and honour takedown requests.",
        "",
        "## Citation\n",
        "If you use this dataset, cite the toolkit that built it and the 2M-NER paper whose "
        "MMNERD corpus it follows:\n",
        "```bibtex",
        TOOLKIT_CITATION,
        "",
        PAPER_CITATION,
        "```",
        "",
    ]
    card = DatasetCard(f"---\n{card_data(config, tables).to_yaml()}\n---\n\n" + "\n".join(body))
    path = out / "README.md"
    with atomic_write(path) as f:
        f.write(str(card))
    return path


def _summary(config: PipelineConfig, tables: dict[str, Any]) -> list[str]:
    synthetic = tables["synthetic"]
    lines = [f"# {config.name}: multilingual multimodal NER{' (SYNTHETIC)' if synthetic else ''}\n"]
    if synthetic:
        lines.append(
            "> **This dataset is synthetic.** It was generated by mmnerd's bundled sample "
            "source for demos and tests; texts and images are machine-made, not real posts.\n"
        )
    langs = ", ".join(tables["per_language"]) or "-"
    lines += [
        "## Dataset summary\n",
        f"{tables['posts']} posts in {langs}, each with at most one image "
        f"({tables['with_image']} have one; the others are text-only, with null image "
        "columns), labelled with named entities in strict IOB2 over "
        f"{', '.join(ENTITY_TYPES)} (the scheme of MMNERD, arXiv 2404.17122). Built with "
        "mmnerd.\n",
    ]
    return lines


def _loading(config: PipelineConfig) -> list[str]:
    return [
        "## Loading\n",
        "```python",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("path/to/this/folder")        # train / validation / test',
        'names = ds["train"].features["ner_tags"].feature.names   # O, B-PER, I-PER, ...',
        'ds["train"][0]["image"]                            # a PIL image, or None',
        "",
        "import mmnerd                                       # pandas DataFrames per split",
        'frames = mmnerd.load_export("path/to/this/folder")',
        "```\n",
        "The same data in the Twitter-2015 / MMNERD IMGID layout is under `imgid/` "
        "(`train.txt`, `valid.txt`, `test.txt`, pictures in `imgid/images/`, and "
        "`imgid/ids.tsv` mapping each IMGID to its post id, split and language); "
        "`manifest.json` lists every file with its sha256.\n",
    ]


def _structure(tables: dict[str, Any]) -> list[str]:
    lines = ["## Dataset structure\n", "### Data instances\n"]
    shown: dict[str, Any] | None = tables["example"]
    if shown is not None:
        lines += ["```json", json.dumps(shown, ensure_ascii=False, indent=2), "```\n"]
    lines += ["### Data fields\n", "| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {text} |" for name, kind, text in EXPORT_COLUMNS]
    langs = list(tables["per_language"])
    lines += [
        "\n### Data splits\n",
        "| split | posts | with image | without image | " + " | ".join(langs) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(langs),
    ]
    for s in SPLITS:
        c = tables["per_split"].get(s, {})
        n, img = c.get("sentences", 0), c.get("with_image", 0)
        cells = " | ".join(str(c.get(lang, 0)) for lang in langs)
        lines.append(f"| {s} | {n} | {img} | {n - img} | {cells} |")
    lines += [
        "\n### Entities per language\n",
        "| language | posts | tokens | entities | " + " | ".join(ENTITY_TYPES) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(ENTITY_TYPES),
    ]
    for lang in langs:
        c = tables["per_language"][lang]
        cells = " | ".join(str(c.get(t, 0)) for t in ENTITY_TYPES)
        lines.append(
            f"| {lang} | {c['sentences']} | {c['tokens']} | {c.get('entities', 0)} | {cells} |"
        )
    lines.append("")
    return lines


def _creation(
    config: PipelineConfig,
    tables: dict[str, Any],
    stage_stats: list[Any],
    dedup_figures: dict[str, Any] | None,
    chart: Path | None,
) -> list[str]:
    lines = ["## Dataset creation\n", "### Splits\n", _splits_note(config), ""]
    if chart:
        lines.append(f"![entities per type and language]({chart.name})\n")
    lines.append("### Source data\n")
    lines.append(
        f"- sources (posts): {', '.join(f'{k}: {v}' for k, v in tables['sources'].items())}"
    )
    if tables["dates"]:
        lines.append(f"- posts dated {tables['dates'][0]} to {tables['dates'][1]}")
    lines.append(
        "- language: the source's declared language where it is a target (trust_hint)"
        if config.language.trust_hint
        else "- language: detected automatically (py3langid restricted to the candidate languages)"
    )
    lines.append("\n### Annotations\n")
    if config.export.labels == "source":
        lines.append(
            "The labels are the source corpus's own gold annotation, on its own tokens "
            "(orphan `I-` tags read as `B-`, as conlleval does); no new annotation was made.\n"
        )
    else:
        ag = tables["agreement"]
        lines.append(
            "Annotators labelled entity spans in Label Studio; spans were checked against the "
            "text and converted to strict IOB2; posts labelled by several annotators were "
            "combined by majority vote, disagreements adjudicated.\n\n"
            f"- posts labelled by two or more annotators: {ag['double_annotated']}\n"
            f"- mean pairwise entity-level F1 (exact span and type): {ag['mean_entity_f1']}\n"
        )
        lines += _label_origin_lines(tables)
    dec = tables.get("image_decided") or {}
    if dec.get("yes"):
        lines.append(
            f"- `image_decided`: {dec.get('yes', 0)} posts whose image decided an entity's type "
            f"(annotators' choice, or the source's flag), {dec.get('no', 0)} not, "
            f"{dec.get('not recorded', 0)} not recorded\n"
        )
    lines.append("### Deduplication and exclusions\n")
    if dedup_figures:
        lines.extend(_dedup_lines(dedup_figures, config))
    lines.append("\n| stage | in | out | dropped (reason: n) |\n|---|---:|---:|---|")
    for s in stage_stats:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(s.dropped.items())) or "-"
        lines.append(f"| {s.stage} | {s.items_in} | {s.items_out} | {dropped} |")
    lines.append("")
    return lines


def _label_origin_lines(tables: dict[str, Any]) -> list[str]:
    """Who gave the final labels: human annotators, SIMULATED annotators (the demo), or the
    source's gold (``labelstudio.unannotated = "source"``)."""
    origin = tables.get("labels_from") or {}
    out = []
    if origin.get("simulated"):
        out.append(
            f"- **{origin['simulated']} posts were labelled by SIMULATED annotators** "
            "(`mmnerd annotate simulate`: the sample's gold spans written through the Label "
            "Studio API with noise), not by people"
        )
    if origin.get("source"):
        out.append(
            f"- {origin['source']} posts nobody annotated keep the source's own gold labels "
            '(`labelstudio.unannotated = "source"`; the demo annotates a share of the '
            "tasks, `simulate.share`)"
        )
    if origin.get("annotators"):
        out.append(f"- {origin['annotators']} posts were labelled by annotators")
    return [*out, ""] if out else []


def _personal_information(config: PipelineConfig) -> list[str]:
    from mmnerd.privacy import card_privacy_lines

    return [
        "## Personal and sensitive information\n",
        "- Authors appear only as `author_hash`, a keyed pseudonym (HMAC-SHA256 with a random "
        "key kept by the corpus builder, never exported): without the key nobody can check "
        "whether a given account wrote a post, and another corpus gives the same author "
        "another pseudonym.",
        *card_privacy_lines(config),
        "- Texts are published as written (after normalisation) and may name people; pictures "
        "may show people. Remove a post on request: delete it from the source, rerun the "
        "pipeline and publish the new export.",
        "",
    ]


def _limitations(config: PipelineConfig, tables: dict[str, Any]) -> list[str]:
    limits = [
        "Tokens come from spaCy blank tokenizers; mentions, hashtags, URLs and emoji are single "
        "tokens (posts of a pre-tokenised corpus keep the corpus's own tokens).",
        "Near-duplicate detection uses 64-bit perceptual hashes and word-shingle Jaccard; "
        "heavily edited copies may be missed.",
    ]
    if not config.language.trust_hint:
        limits.insert(0, "Language identification is automatic; short posts may be misassigned.")
    if tables["posts"] and tables["with_image"] < tables["posts"]:
        limits.append(
            f"{tables['posts'] - tables['with_image']} posts have no image; multimodal models "
            "must mask them (mmnerd's trainer does)."
        )
    if tables["synthetic"]:
        limits.insert(0, "Synthetic data: figures say nothing about real social media.")
    return ["## Considerations and known limitations\n", *[f"- {x}" for x in limits], ""]


def _splits_note(config: PipelineConfig) -> str:
    """How the splits were made (stratified and leakage-free, or as the source published)."""
    if config.export.splits == "source":
        straddle = read_json(config.export_dir / "straddling.json") or {}
        n = straddle.get("clusters", 0)
        return (
            "Splits are the source corpus's own (train/validation/test as published), so "
            "scores stay comparable with the literature. Near-duplicate clusters were not "
            f"moved: {n} cluster(s) straddle splits (listed in `straddling.json`; audit with "
            "`mmnerd audit-leakage`)."
        )
    return (
        "Near-duplicate clusters (image or text) never straddle splits; splits are "
        "stratified by language and entity types present, deterministic for the seed "
        f"({config.export.seed}), ratios {list(config.export.ratios)}."
    )


def _dedup_lines(rep: dict[str, Any], config: PipelineConfig) -> list[str]:
    """Card lines from the dedup stage's report.json (see mmnerd/dedup/report.py)."""
    cfg = rep.get("config", {})
    dups = rep.get("duplicates", {})
    hist = ", ".join(f"{k}: {v}" for k, v in sorted(rep.get("cluster_size_histogram", {}).items()))
    fate = ("kept in the export (the corpus as published)" if config.export.labels == "source"
            else "not annotated")  # fmt: skip
    return [
        f"- deduplication ({cfg.get('hash', 'phash')}, Hamming <= {cfg.get('threshold')} of 64 "
        f"bits; text Jaccard >= {cfg.get('text_threshold')}): {rep.get('clusters', 0)} clusters "
        f"over {rep.get('posts_in_clusters', 0)} of {rep.get('posts', 0)} posts; "
        f"duplicates {fate}: {dups.get('duplicate_image', 0)} by image, "
        f"{dups.get('duplicate_text', 0)} by text; cluster sizes (size: count): {hist or '-'}",
    ]


def plot_label_distribution(per_language: dict[str, dict[str, int]], path: Path) -> Path | None:
    """A grouped bar chart: entities per type for each language (PNG)."""
    if not per_language:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = sorted(per_language)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    width = 0.8 / len(ENTITY_TYPES)
    for i, t in enumerate(ENTITY_TYPES):
        xs = [j + i * width for j in range(len(langs))]
        ax.bar(xs, [per_language[lang].get(t, 0) for lang in langs], width, label=t)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(langs))], langs)
    ax.set_ylabel("entities")
    ax.set_title("Entities per type and language")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
