import pytest

from mmnerd.config import load_config
from mmnerd.errors import ConfigError


def write(tmp_path, text: str):
    p = tmp_path / "p.toml"
    p.write_text(text)
    return p


def test_defaults(tmp_path):
    cfg = load_config(write(tmp_path, 'name = "x"\n'))
    assert cfg.language.targets == ["en", "fr", "de", "es"]
    assert cfg.export.ratios == (0.8, 0.1, 0.1)
    assert str(cfg.root) == "data/x"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[dedup]\nthreshold = 99\n", "dedup.threshold"),
        ("[dedup]\ntext_threshold = 0\n", "dedup.text_threshold"),
        ("[dedup]\nmemory_mb = 1\n", "dedup.memory_mb"),
        ("[export]\nratios = [0.5, 0.5, 0.5]\n", "export.ratios"),
        ("[images]\ntimeout = -1\n", "images.timeout"),
        ("[language]\ntargets = ['xx']\n", "language"),
        ("[labelstudio]\nprot = 1\n", "labelstudio.prot"),
    ],
)
def test_bad_values_name_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        load_config(write(tmp_path, text))


def test_overrides_and_errors(tmp_path):
    p = write(tmp_path, "")
    assert load_config(p, ["dedup.threshold=4", "name=demo"]).dedup.threshold == 4
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config(p, ["dedup.threshold"])
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[dedup\n"))
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load_config(tmp_path / "missing.toml")


def test_benchmark_section_builds_the_command_line(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('name = "x"\n')
    cfg = load_config(p)
    assert str(cfg.report_dir) == "reports/x"  # one report folder per pipeline
    assert cfg.benchmark.args() == ["--mode", "quick", "--threads", "1"]  # the mode decides
    enc = tmp_path / "mbert"
    enc.mkdir()
    full = load_config(
        p,
        [
            'benchmark.mode="full"',
            f'benchmark.text_encoder="{enc}"',
            'benchmark.vit="/nowhere/clip"',
            "benchmark.train_vit=false",
            "benchmark.cross_lingual=true",
            'benchmark.cross_lingual_models=["text_crf"]',
            "benchmark.lr=5e-5",
            'benchmark.report_dir="out/r"',
        ],
    )
    args = full.benchmark.args()
    assert args[:2] == ["--mode", "full"] and "--seeds" not in args and "--models" not in args
    assert args[args.index("--text-encoder") + 1] == str(enc) and "--no-train-vit" in args
    assert args[args.index("--lr") + 1] == "5e-05"
    assert args[-3:] == ["--cross-lingual", "--cross-lingual-models", "text_crf"]
    assert str(full.report_dir) == "out/r"
    assert full.benchmark.missing_encoders() == ["benchmark.vit: /nowhere/clip"]


def test_benchmark_with_a_missing_encoder_fails_in_one_line(tmp_path):
    from mmnerd.stages import run_benchmark

    p = tmp_path / "x.toml"
    p.write_text(f'name = "x"\n[export]\nout_dir = "{tmp_path}"\n[benchmark]\ncnn = "/no/resnet"\n')
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a local folder: benchmark.cnn: /no/resnet"):
        run_benchmark(load_config(p))
