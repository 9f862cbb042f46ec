"""Learning check on the bundled sample (issues 10 and 18): where a mention's type is decided
only by the picture, 2M-NER must beat the text-only CRF on those posts and lose that gain when
the test images are shuffled (a fusion that ignores images fails here); the gated model must
keep most of the gain with the right images and stay near the text-only model with shuffled
ones.

The export is built from the real :mod:`mmnerd.sources.sample` generator (seeded, in memory;
see :mod:`tests.baselines.sample_export`), its ``image_decided`` column read by the benchmark.
The benchmark CLI trains ``text_crf``, ``mner2m`` and ``mner2m_gated`` (quick mode, seeds 1
and 2, two runs at a time) in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .sample_export import _split_of, write_sample_export

ROOT = Path(__file__).resolve().parents[2]

EPOCHS = 12
BATCH_SIZE = 16
LR = "3e-3"
SEEDS = "1,2"
# F1 margins (fractions), means over SEEDS; measured values in docs/benchmark.md (learning check)
MARGIN = 0.15  # mner2m over text_crf on image-decided posts
SHUFFLE_MARGIN = 0.15  # mner2m with the right images over itself with shuffled ones, same posts
# the gated model's two margins are issue 18's goals (seeds 1, 2 reach 1.17 and +0.009)
GATED_GAIN_SHARE = 0.9  # mner2m_gated keeps at least this share of mner2m's image-decided gain
GATED_SHUFFLED_SLACK = 0.01  # with shuffled images, at most this far below text_crf (all posts)


@pytest.mark.slow
def test_images_matter_and_the_gated_model_ignores_wrong_ones(tmp_path: Path) -> None:
    export = write_sample_export(tmp_path / "export")
    import pyarrow.parquet as pq

    test = pq.read_table(export / "test.parquet", columns=["id", "image_decided"]).to_pylist()
    decided = [r["id"] for r in test if r["image_decided"]]
    assert all(_split_of(i) == "test" for i in decided)
    assert len(decided) >= 20, "too few image-decided posts in test to compare models"
    rep = tmp_path / "reports"
    cmd = [
        sys.executable, "-m", "baselines.benchmark",
        "--export", str(export),
        "--report-dir", str(rep),
        "--mode", "quick",
        "--models", "text_crf,mner2m,mner2m_gated",
        "--epochs", str(EPOCHS),
        "--seeds", SEEDS,
        "--batch-size", str(BATCH_SIZE),
        "--lr", LR,
        "--threads", "1",
        "--jobs", "2",
    ]  # fmt: skip
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((rep / "benchmark.json").read_text())["results"]

    def f1(model: str, part: str = "overall", cond: str = "") -> float:
        t = res[model]["robustness"][cond] if cond else res[model]["test"]
        return float(t[part]["f1"]["mean"])

    text_dec, mm_dec, gated_dec = (f1(m, "image_decided") for m in ("text_crf", "mner2m",
                                                                      "mner2m_gated"))  # fmt: skip
    mm_dec_shuffled = f1("mner2m", "image_decided", "replaced_100")
    text_all, gated_shuffled = f1("text_crf"), f1("mner2m_gated", "overall", "replaced_100")
    gain = mm_dec - text_dec
    print(
        f"\nsample learning check ({len(decided)} image-decided test posts, seeds {SEEDS}, "
        f"{seconds:.0f} s): image-decided F1 text_crf {text_dec:.3f}, mner2m {mm_dec:.3f} "
        f"(shuffled images {mm_dec_shuffled:.3f}), mner2m_gated {gated_dec:.3f}; all posts "
        f"text_crf {text_all:.3f}, mner2m {f1('mner2m'):.3f}, mner2m_gated "
        f"{f1('mner2m_gated'):.3f} (shuffled images {gated_shuffled:.3f})"
    )
    # the image decides: 2M-NER beats the text-only CRF where it must...
    assert gain >= MARGIN, (text_dec, mm_dec)
    # ...and only with the right pictures (shuffled-image control, mean of the seeds)
    assert mm_dec - mm_dec_shuffled >= SHUFFLE_MARGIN, (mm_dec, mm_dec_shuffled)
    # the gated model keeps the image's gain and ignores wrong pictures
    assert gated_dec - text_dec >= GATED_GAIN_SHARE * gain, (text_dec, gated_dec, mm_dec)
    assert gated_shuffled >= text_all - GATED_SHUFFLED_SLACK, (gated_shuffled, text_all)
