"""Typed, validated pipeline configuration loaded from ``pipelines/*.toml``.

Every field has a default and help text; a bad value fails at start with a
:class:`ConfigError` naming the file and the field.  ``overrides`` (from the
CLI's ``--set section.field=value``) are applied before validation.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mmnerd import USER_AGENT
from mmnerd.errors import ConfigError
from mmnerd.images.hashing import HASH_BITS, KINDS
from mmnerd.safejson import MAX_JSON_DEPTH

HashName = Literal[KINDS]  # type: ignore[valid-type]  # the registered kinds (images/hashing.py)


def _folder(value: str) -> str:
    """A folder path, which may not exist yet; refused when it is, or lies under, a file."""
    if value:
        for q in (Path(value), *Path(value).parents):
            try:
                if not q.exists():
                    continue
                if not q.is_dir():
                    raise ValueError(f"{value!r} is not a folder ({q} is a file)")
            except OSError:
                pass
            break
    return value


Folder = Annotated[str, AfterValidator(_folder)]
"""A ``str`` field naming a folder the pipeline writes into."""


def split_allow_entry(entry: str) -> tuple[str, int]:
    """``"host"`` -> (host, 0: any port); ``"host:port"`` / ``"[v6]:port"`` -> (host, port).
    A bare IPv6 address (several colons, no brackets) means any port."""
    e = entry.strip()
    port = ""
    if e.startswith("["):
        host, _, rest = e[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{entry!r}: expected [address]:port")
            port = rest[1:]
    elif e.count(":") == 1:
        host, port = e.split(":")
    else:
        host = e
    if not host.strip():
        raise ValueError(f"{entry!r}: no host")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{entry!r}: port must be 1-65535")
    return host.strip(), int(port or 0)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(BaseModel):
    """Where posts come from.  ``kind`` picks a module in ``mmnerd.sources``;
    the other keys are validated by that source's own settings model."""

    model_config = ConfigDict(extra="allow")
    kind: str = Field("sample", description="source module: sample, jsonl, conll, ...")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LanguageConfig(_Section):
    targets: list[str] = Field(
        default_factory=lambda: ["en", "fr", "de", "es"],
        description="ISO 639-1 codes kept; posts detected as anything else are excluded",
    )
    candidates: list[str] = Field(
        default_factory=lambda: ["en", "fr", "de", "es", "it", "pt", "nl", "ca", "ro", "pl"],
        description="languages the detector may answer (must include the targets)",
    )
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="posts below this probability are excluded"
    )
    trust_hint: bool = Field(
        False,
        description="use the language the source declares (post lang_hint) when it is one of "
        "the targets, instead of detecting it (imported corpora, platforms whose declared "
        "language you trust); posts without a target hint are detected as usual",
    )
    quotas: dict[str, int] = Field(
        default_factory=dict,
        description="at most this many posts kept per target language, in input order "
        "(e.g. {en = 100, fr = 100}) to balance a corpus; unlisted languages are unlimited",
    )

    @model_validator(mode="after")
    def _targets_are_candidates(self) -> LanguageConfig:
        missing = set(self.targets) - set(self.candidates)
        if missing:
            raise ValueError(f"targets {sorted(missing)} are not in candidates")
        unknown = set(self.quotas) - set(self.targets)
        if unknown:
            raise ValueError(f"quotas for {sorted(unknown)}, which are not targets")
        if any(n < 0 for n in self.quotas.values()):
            raise ValueError("quotas must be >= 0")
        return self


class NormalizeConfig(_Section):
    url_placeholder: str = Field("URL", description='replaces URLs; "" keeps them')
    mention_placeholder: str = Field(
        "", description='replaces @mentions (e.g. "@USER"); "" keeps them (they can be entities)'
    )
    max_chars: int = Field(
        10_000,
        ge=0,
        description="posts longer than this many code points (after normalisation) are dropped "
        "as too_long (social posts are short; a huge one is a scraping accident); 0 = no limit",
    )


class ImagesConfig(_Section):
    required: bool = Field(
        True,
        description="true: a post without a usable image is dropped at fetch (no_image, "
        "image:<status>); false: it continues text-only, counted as text_only (published "
        "corpora without images, text NER)",
    )
    timeout: float = Field(10.0, gt=0, description="seconds per request")
    max_bytes: int = Field(20_000_000, gt=0, description="larger downloads are cut off")
    max_pixels: int = Field(
        40_000_000, gt=0, description="decompression-bomb limit (width x height)"
    )
    workers: int = Field(8, ge=1, le=256, description="concurrent downloads")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="hosts/IPs allowed even though they are loopback or private (SSRF guard); "
        '"host:port" or "[v6]:port" allows that port only, a bare host every port',
    )

    @field_validator("allow_hosts")
    @classmethod
    def _allow_entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            split_allow_entry(entry)
        return v

    user_agent: str = Field(USER_AGENT, description="User-Agent sent with every request")
    per_host: int = Field(4, ge=1, le=256, description="concurrent downloads per host (politeness)")
    retries: int = Field(2, ge=0, le=10, description="extra attempts after 429/5xx or a reset")
    max_retry_after: float = Field(
        30.0,
        ge=0,
        description="a longer Retry-After (or a 429's rate-limit reset) gives up at once "
        "(status http_429/503)",
    )
    total_timeout: float = Field(
        60.0, gt=0, description="seconds for one image: redirects, retries and body included"
    )
    max_redirects: int = Field(5, ge=0, le=20, description="redirect hops followed (each checked)")
    store: Literal["normalized", "original"] = Field(
        "normalized",
        description="normalized: orientation applied, metadata stripped, first frame, L/RGB(A),"
        " optional resize; original: the downloaded bytes, validated",
    )
    max_side: int = Field(
        0, ge=0, description="shrink the longest side to this many pixels (0 = keep; normalized)"
    )
    jpeg_quality: int = Field(90, ge=50, le=95, description="quality of re-encoded JPEGs")
    processes: int = Field(
        0, ge=0, le=64, description="decode/resize processes (0 = in the download threads)"
    )
    refetch: bool = Field(
        False,
        description="download images again even when an earlier run stored them (a failed "
        "download still keeps the stored copy); false: reuse what is stored",
    )

    @model_validator(mode="after")
    def _resize_needs_normalized(self) -> ImagesConfig:
        if self.max_side and self.store == "original":
            raise ValueError("max_side needs store = 'normalized' (originals are never resized)")
        return self


class DedupConfig(_Section):
    hash: HashName = Field(  # type: ignore[valid-type]
        "phash",
        description=f"perceptual hash of the images ({HASH_BITS} bits, imagehash semantics): "
        + (", ".join(KINDS[:-1]) + " or " + KINDS[-1] if len(KINDS) > 1 else KINDS[0]),
    )
    threshold: int = Field(
        10, ge=0, le=64, description="max Hamming distance (bits of 64) for near-duplicates"
    )
    keep: Literal["largest", "earliest", "id"] = Field(
        "largest", description="which member represents a cluster (ties: earliest, then id)"
    )
    text_threshold: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="min Jaccard similarity of the word 2-shingle sets of two normalised texts "
        "for near-duplicates, computed exactly (every pair at or above it is found); 1.0 = "
        "identical shingle sets (in practice identical normalised texts)",
    )
    memory_mb: int = Field(
        2048,
        ge=16,
        description="memory budget (MiB) of the exact searches: the text join keeps its "
        "shingle hashes and per-text ranks in files under the stage's work folder and sizes "
        "every pass to it, at most 32 MiB a pass (more passes, never more memory), above a "
        "floor of ~96 bytes per "
        "text (below that it warns and runs at its minimum pass sizes); the image search "
        "keeps a block's padded rows within a quarter of it (~100 bytes per hash besides)",
    )
    index_path: str = Field(
        "",
        description='hash cache (.npz) reused across runs; default "<data_dir>/index/<hash>.npz"',
    )


class LabelStudioConfig(_Section):
    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 needs --public")
    port: int = Field(8080, ge=1, le=65535)
    data_dir: Folder = Field("data/labelstudio", description="Label Studio's own data folder")
    venv: str = Field(".venv-ls", description="virtual env holding the label-studio server")
    project_title: str = Field("mmnerd sample (synthetic)", description="project to create/reuse")
    label_config: str = Field("annotation/label_config.xml")
    instructions: str = Field("annotation/guidelines.md")
    batch_size: int = Field(
        2000, ge=1, le=20000, description="tasks per bulk import (one HTTP call each)"
    )
    overlap_share: float = Field(0.2, ge=0.0, le=1.0, description="share of tasks labelled twice+")
    overlap_k: int = Field(2, ge=1, le=10, description="annotators per overlapping task")
    admin_email: str = Field("admin@mmnerd.local")
    document_root: Folder = Field(
        "data",
        description="folder Label Studio serves local files from (LOCAL_FILES_DOCUMENT_ROOT);"
        " must contain <data_dir>/images",
    )
    start_timeout: float = Field(180.0, gt=0, description="seconds to wait for /health on start")
    reconnect_timeout: float = Field(
        180.0,
        ge=0,
        description="seconds a read (pull's listing and fetches) keeps retrying while the "
        "server is unreachable, e.g. restarted mid-pull; 0 = fail at once",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="Label Studio's log level (server.log)"
    )
    pre_annotate: bool = Field(
        False, description="import gold spans as predictions (model_version 'gold-import')"
    )
    predictions: str = Field(
        "",
        description="predictions JSONL from `mmnerd predict`: imported as pre-annotations "
        "(model_version = the checkpoint) with new tasks",
    )
    workers: int = Field(
        4, ge=1, le=32, description="concurrent API calls for per-task writes (overlap, etc.)"
    )
    adjudication_f1: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="posts whose annotators agree below this entity F1 (or tie) go to adjudication",
    )
    unannotated: Literal["drop", "source"] = Field(
        "drop",
        description="posts nobody annotated: drop them on pull (reason not_annotated), or keep "
        "the source's own gold labels (only for sources that have gold: the sample, imported "
        "corpora; the card counts them)",
    )
    database: Literal["sqlite", "postgresql"] = Field(
        "sqlite",
        description="Label Studio's database: sqlite (one machine, one annotator at a time) or "
        "postgresql (a team: see database_url)",
    )
    database_url: str = Field(
        "",
        description="postgresql://user@host:port/name of a PostgreSQL server (password from "
        "the MMNERD_LS_DB_PASSWORD environment variable, never in this file); empty with "
        "database = postgresql: mmnerd initialises and runs one under <data_dir>/postgres",
    )
    postgres_bin: str = Field(
        "",
        description="folder of PostgreSQL's programs (initdb, pg_ctl, pg_dump); empty: PATH, "
        "then /usr/lib/postgresql/<newest>/bin",
    )
    sampling: Literal["auto", "sequential", "uniform", "uncertainty"] = Field(
        "auto",
        description="order Label Studio serves tasks in ('Label All Tasks'): uncertainty = "
        "lowest prediction score first, spread over clusters (needs predictions with scores); "
        "auto = uncertainty when the pushed predictions carry scores, else sequential",
    )
    lock_ttl: int = Field(
        3600,
        ge=60,
        description="seconds a task served to an annotator stays reserved for them "
        "(Label Studio's TASK_LOCK_TTL; its default is 24 h)",
    )


class SimulateConfig(_Section):
    annotators: int = Field(2, ge=1, le=20, description="simulated annotators")
    noise: float = Field(
        0.05, ge=0.0, le=1.0, description="chance a simulated annotator drops or mislabels a span"
    )
    seed: int = 7
    workers: int = Field(4, ge=1, le=32, description="concurrent API calls writing annotations")
    skip_share: float = Field(
        0.0, ge=0.0, le=1.0, description="share of tasks a simulated annotator skips (cancels)"
    )
    share: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="share of the tasks the simulated annotators label (a hash of the post id); "
        'with labelstudio.unannotated = "source" the others keep the source\'s gold labels',
    )


class ExportConfig(_Section):
    ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="train / dev / test shares"
    )
    seed: int = 13
    embed_images: bool = Field(True, description="embed image bytes (else relative paths)")
    out_dir: Folder = Field("", description='default: "<data_dir>/export"')
    row_group_size: int = Field(1000, ge=10, description="rows per Parquet row group")
    conll_misc_label: Literal["MISC", "OTHER"] = Field(
        "MISC", description='MISC tag name in the IMGID/CoNLL files ("OTHER" for Twitter-2015)'
    )
    fixed_test: str = Field(
        "", description="ids file or test.parquet of an earlier export: keep that test set fixed"
    )
    labels: Literal["labelstudio", "source"] = Field(
        "labelstudio",
        description="labelstudio: the annotations pulled from Label Studio; source: the "
        "source's own gold labels (imported corpora: collect -> dedup -> export, no Label "
        "Studio)",
    )
    splits: Literal["stratified", "source"] = Field(
        "stratified",
        description="stratified: new cluster-grouped, stratified splits (ratios, seed); "
        "source: keep the corpus's own train/dev/test and report clusters that straddle them",
    )

    @field_validator("ratios")
    @classmethod
    def _sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("ratios must be non-negative and sum to 1")
        return v


class BenchmarkConfig(_Section):
    """``mmnerd benchmark``: ``python -m baselines.benchmark`` on the export (docs/benchmark.md).
    Empty fields take the mode's defaults: quick = tiny random encoders, seed 1, text_crf and
    mner2m, 6 epochs, batch 16; full = seeds 1, 2, 3, every model, 8 epochs, batch 32."""

    mode: Literal["quick", "full"] = Field(
        "quick", description="quick: a smoke test in minutes; full: the real benchmark"
    )
    models: list[str] = Field(
        default_factory=list,
        description="models registered in baselines/models/ to train ([] = the mode's: quick "
        "text_crf, mner2m; full every registered one; python -m baselines.benchmark --help "
        "lists them)",
    )
    epochs: int | None = Field(None, ge=1, description="unset = the mode's (quick 6, full 8)")
    seeds: list[int] = Field(
        default_factory=list, description="[] = the mode's (quick [1], full [1, 2, 3])"
    )
    batch_size: int | None = Field(None, ge=1, description="unset = the mode's (16 / 32)")
    lr: float | None = Field(
        None, gt=0, description="unset: 5e-5 with a text_encoder, else 2e-3 (random encoders)"
    )
    text_encoder: str = Field(
        "",
        description="local folder of a transformers text encoder (paper: "
        "bert-base-multilingual-cased); '' = a tiny random BERT",
    )
    vit: str = Field(
        "", description="local folder of a CLIP model (paper: clip-vit-base-patch32); '' = random"
    )
    cnn: str = Field(
        "", description="local folder of a ResNet, kept frozen (paper: resnet-152); '' = random"
    )
    train_vit: bool = Field(True, description="fine-tune the ViT (paper) or freeze and cache it")
    cross_lingual: bool = Field(
        False,
        description="also train on each language alone and on all but one, test on every one",
    )
    cross_lingual_models: list[str] = Field(
        default_factory=list, description="models of the cross-lingual runs ([] = models)"
    )
    threads: int = Field(1, ge=1, le=2, description="torch threads per training process")
    jobs: int = Field(
        1, ge=1, le=64, description="training runs at a time, each in its own process"
    )
    report_dir: Folder = Field("", description='default "reports/<pipeline name>"')

    def missing_encoders(self) -> list[str]:
        """``benchmark.<field>: <path>`` for each encoder path that is not a local folder
        (checked when the benchmark starts, not at load: other stages run without them)."""
        return [
            f"benchmark.{name}: {path}"
            for name in ("text_encoder", "vit", "cnn")
            if (path := getattr(self, name)) and not Path(path).expanduser().is_dir()
        ]

    def args(self) -> list[str]:
        """The ``python -m baselines.benchmark`` options these fields set (unset ones are left
        to the mode)."""
        out = ["--mode", self.mode, "--threads", str(self.threads)]
        if self.jobs > 1:
            out += ["--jobs", str(self.jobs)]
        if self.models:
            out += ["--models", ",".join(self.models)]
        if self.seeds:
            out += ["--seeds", ",".join(str(s) for s in self.seeds)]
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--lr", self.lr),
            ("--text-encoder", self.text_encoder and str(Path(self.text_encoder).expanduser())),
            ("--vit", self.vit and str(Path(self.vit).expanduser())),
            ("--cnn", self.cnn and str(Path(self.cnn).expanduser())),
        ):
            if value:
                out += [flag, str(value)]
        if not self.train_vit:
            out.append("--no-train-vit")
        if self.cross_lingual:
            out.append("--cross-lingual")
            if self.cross_lingual_models:
                out += ["--cross-lingual-models", ",".join(self.cross_lingual_models)]
        return out


class ExecutorConfig(_Section):
    kind: Literal["local", "dask"] = Field("local", description="where shard tasks run")
    address: str = Field(
        "", description='Dask scheduler address (e.g. "tcp://10.0.0.5:8786"); "" = LocalCluster'
    )
    workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1, description="threads per LocalCluster worker")


class PipelineConfig(_Section):
    name: str = Field("sample", description="pipeline name (used in paths and titles)")
    data_dir: Folder = Field(
        "", description='everything this pipeline writes; default "data/<name>"'
    )
    shard_size: int = Field(1000, ge=1, description="records per shard")
    drop_warning: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="a stage that drops more than this share of its input prints a warning "
        "with its main reasons",
    )
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    labelstudio: LabelStudioConfig = Field(default_factory=LabelStudioConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)

    @property
    def root(self) -> Path:
        return Path(self.data_dir or f"data/{self.name}")

    @property
    def export_dir(self) -> Path:
        return Path(self.export.out_dir) if self.export.out_dir else self.root / "export"

    @property
    def report_dir(self) -> Path:
        """Where ``mmnerd benchmark`` writes (``reports/<name>`` unless set): one per pipeline."""
        return Path(self.benchmark.report_dir or f"reports/{self.name}")

    def fingerprint(self, *sections: str) -> str:
        """Stable JSON of the named sections: a stage reruns when its slice changes."""
        dump = self.model_dump(mode="json")
        return json.dumps({s: dump.get(s) for s in sections}, sort_keys=True)


def _apply_override(data: dict[str, Any], dotted: str) -> None:
    if "=" not in dotted:
        raise ConfigError(f"--set {dotted[:80]!r}: expected section.field=value")
    key, raw = dotted.split("=", 1)
    value: Any = raw  # bare strings need no quotes on the command line
    if raw.count("[") + raw.count("{") <= MAX_JSON_DEPTH:  # never recurse to Python's limit
        with contextlib.suppress(ValueError):  # TOMLDecodeError, or an int over 4300 digits
            value = tomllib.loads(f"v = {raw}")["v"]
    node = data
    *parents, leaf = parts = [p.strip() for p in key.split(".")]
    if not all(parts):
        raise ConfigError(f"--set {key[:80]!r}: expected section.field=value (an empty name)")
    for i, p in enumerate(parents):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"--set {key[:80]!r}: {where!r} is a value, not a section")
    node[leaf] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline TOML file; raise :class:`ConfigError` naming the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such pipeline file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the pipeline file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: not valid TOML: {str(e).split(':')[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    given: dict[str, str] = {}  # dotted key -> the --set that gave it
    for o in overrides or []:
        _apply_override(data, o)
        given[o.split("=", 1)[0].strip()] = o
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        from mmnerd.config_doc import explain_validation

        first = sorted(e.errors(), key=lambda err: err.get("type") != "extra_forbidden")[0]
        loc = ".".join(str(p) for p in first["loc"])
        origin = next((f"--set {o[:120]}" for k, o in given.items()
                       if loc == k or loc.startswith(k + ".")), str(path))  # fmt: skip
        raise ConfigError(f"{origin}: {explain_validation(e, PipelineConfig)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: a value is nested too deeply") from None
