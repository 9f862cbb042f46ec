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
