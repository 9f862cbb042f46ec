"""The runner: shards, completion markers, resume after a crash, exclusions, staleness."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.errors import StageError
from mmnerd.pipeline import (
    Runner,
    Stage,
    StageContext,
    iter_excluded,
    iter_stage,
    side_dir,
    stage_dir,
)
from mmnerd.records import Post


class Numbers(Stage):
    name = "numbers"
    input = None
    count = 25

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        for i in range(self.count):
            yield Post(id=f"t:{i:03d}", source="t", source_id=str(i), text=f"post {i}")


class DropOdd(Stage):
    name = "drop_odd"
    input = "numbers"
    calls: list[str] = []
    crash_on: str | None = None

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        DropOdd.calls.append(ctx.shard)
        if ctx.shard == DropOdd.crash_on:
            raise RuntimeError("simulated crash")
        for p in records:
            if int(p.source_id) % 2:
                yield p.drop(f"odd: {p.source_id} is odd")
            else:
                p.text = p.text.upper()
                yield p


@pytest.fixture
def cfg(tmp_path) -> PipelineConfig:
    DropOdd.calls, DropOdd.crash_on = [], None
    return PipelineConfig(data_dir=str(tmp_path), shard_size=10)


def test_shards_outputs_and_exclusions(cfg):
    stats = Runner(cfg).run([Numbers(), DropOdd()])
    assert [s.items_out for s in stats] == [25, 13]
    assert stats[1].items_in == 25 and stats[1].dropped == {"odd": 12}
    kept = list(iter_stage(cfg, "drop_odd"))
    assert [p.text for p in kept[:2]] == ["POST 0", "POST 2"]
    excluded = list(iter_excluded(cfg, "drop_odd"))
    assert len(excluded) == 12 and excluded[0].reason == "odd: 1 is odd"
    assert len(list(stage_dir(cfg, "drop_odd").glob("shard-*.jsonl"))) == 3


def test_rerun_skips_done_stages(cfg):
    Runner(cfg).run([Numbers(), DropOdd()])
    DropOdd.calls = []
    stats = Runner(cfg).run([Numbers(), DropOdd()])
    assert all(s.skipped for s in stats) and DropOdd.calls == []
    assert stats[1].items_out == 13


def test_crash_mid_stage_resumes_only_missing_shards(cfg):
    Runner(cfg).run_stage(Numbers())
    DropOdd.crash_on = "00001"
    with pytest.raises(RuntimeError):
        Runner(cfg).run_stage(DropOdd())
    assert DropOdd.calls == ["00000", "00001"]
    DropOdd.calls, DropOdd.crash_on = [], None
    stats = Runner(cfg).run_stage(DropOdd())
    assert DropOdd.calls == ["00001", "00002"]  # shard 00000 was not redone
    ids = [p.id for p in iter_stage(cfg, "drop_odd")]
    assert len(ids) == len(set(ids)) == 13 and stats.items_in == 25


def test_redone_input_makes_downstream_stale(cfg):
    Runner(cfg).run([Numbers(), DropOdd()])
    Runner(cfg).run_stage(Numbers(), force=True)
    DropOdd.calls = []
    assert not Runner(cfg).run_stage(DropOdd()).skipped
    assert DropOdd.calls == ["00000", "00001", "00002"]


def test_config_change_invalidates(cfg):
    class Configured(DropOdd):
        config_sections = ("dedup",)

    Runner(cfg).run([Numbers(), Configured()])
    cfg.dedup.threshold = 3
    DropOdd.calls = []
    Runner(cfg).run_stage(Configured())
    assert len(DropOdd.calls) == 3


def test_missing_input_is_a_clear_error(cfg):
    with pytest.raises(StageError, match="needs stage 'numbers'"):
        Runner(cfg).run_stage(DropOdd())


def test_no_temp_files_left(cfg):
    Runner(cfg).run([Numbers(), DropOdd()])
    assert not list(cfg.root.rglob("*.tmp"))


def test_crash_while_writing_a_shards_stats_redoes_that_shard(cfg, monkeypatch):
    """kill -9 can land between a shard's files: the rerun must neither trust a shard whose
    stats are missing nor lose count (CI caught a rerun crashing on a missing stats file)."""
    import mmnerd.pipeline as pipeline

    Runner(cfg).run_stage(Numbers())
    real_write_json = pipeline.write_json

    def dies_at_shard_1_stats(path, data):  # type: ignore[no-untyped-def]
        if path.name == "stats-00001.json":
            raise KeyboardInterrupt("killed while writing shard 00001's stats")
        return real_write_json(path, data)

    monkeypatch.setattr(pipeline, "write_json", dies_at_shard_1_stats)
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg).run_stage(DropOdd())
    monkeypatch.setattr(pipeline, "write_json", real_write_json)
    DropOdd.calls = []
    stats = Runner(cfg).run_stage(DropOdd())
    assert DropOdd.calls == ["00001", "00002"]  # 00001 counts as not done
    assert stats.items_in == 25 and stats.items_out == 13 and stats.dropped == {"odd": 12}
    assert len([p.id for p in iter_stage(cfg, "drop_odd")]) == 13


class Broken(Numbers):
    """A source whose input went bad: fails half-way."""

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        for i, p in enumerate(super().run(records, ctx)):
            if i == 15:
                raise StageError("dump.jsonl:16: not valid JSON")
            yield p


def test_forced_rerun_that_fails_keeps_the_previous_output(cfg):
    """Issue 20.7: `--force` deleted the old output before reading the input, so a bad line
    left the stage empty.  Now the old output is kept aside until the new one is complete."""
    Runner(cfg).run([Numbers(), DropOdd()])
    before = [p.to_json() for p in iter_stage(cfg, "numbers")]
    for force in (True, False):  # forced, or redone because the config changed
        stage = Broken()
        if not force:
            stage.config_sections = ("normalize",)  # another fingerprint: the stage is stale
        with pytest.raises(StageError):
            Runner(cfg).run_stage(stage, force=force)
        assert [p.to_json() for p in iter_stage(cfg, "numbers")] == before
        assert Runner(cfg).run_stage(Numbers()).skipped  # still the finished output
    DropOdd.crash_on = "00001"  # a sharded stage too
    with pytest.raises(RuntimeError):
        Runner(cfg).run_stage(DropOdd(), force=True)
    assert len(list(iter_stage(cfg, "drop_odd"))) == 13
    DropOdd.crash_on = None
    assert Runner(cfg).run_stage(DropOdd()).skipped
    # success replaces the old output and leaves nothing aside
    Numbers.count = 5
    try:
        assert Runner(cfg).run_stage(Numbers(), force=True).items_out == 5
    finally:
        Numbers.count = 25
    assert [p.name for p in (cfg.root / "stages").iterdir() if p.name.startswith(".")] == []


def test_a_run_killed_after_moving_the_old_output_aside_gets_it_back(cfg):
    Runner(cfg).run_stage(Numbers())
    folder = stage_dir(cfg, "numbers")
    folder.rename(folder.with_name(".numbers.old"))  # what a kill at that moment leaves
    assert Runner(cfg).run_stage(Numbers()).skipped
    assert len(list(iter_stage(cfg, "numbers"))) == 25


class Remembers(Stage):
    """A global stage keeping a run counter and a report in its side folder."""

    name = "remembers"
    input = "numbers"
    scope = "global"

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        state = ctx.side / "state.json"
        runs = int(state.read_text()) + 1 if state.exists() else 1
        state.write_text(str(runs))
        (ctx.side / "reports").mkdir(exist_ok=True)
        (ctx.side / "reports" / "report.md").write_text(f"run {runs}")
        yield from records


def test_side_folder_survives_reruns_and_force(cfg):
    """The runner moves the stage folder aside on --force; the side folder stays, and temp
    files a killed run left in it (at any depth) are removed before the next run."""
    Runner(cfg).run([Numbers(), Remembers()])
    side = side_dir(cfg, "remembers")
    assert side == cfg.root / "side" / "remembers" and Remembers().side(cfg) == side
    stale = side / "reports" / ".report.md.k9x2.tmp"
    stale.write_text("half")
    Runner(cfg).run_stage(Remembers(), force=True)
    Runner(cfg).run_stage(Numbers(), force=True)  # a redone input: the stage is stale
    Runner(cfg).run_stage(Remembers())
    assert (side / "state.json").read_text() == "3"
    assert (side / "reports" / "report.md").read_text() == "run 3"
    assert not stale.exists()
    assert len(list(iter_stage(cfg, "remembers"))) == 25


def test_a_data_dir_from_before_side_folders_keeps_its_pull_state_and_dedup_report(cfg):
    """Issue 17: pull's state lived in ``annotation/``, dedup's report in ``reports/dedup/``;
    the side folder takes them over (moved, not copied), and never overwrites a newer one."""
    from mmnerd.labelstudio.pull import state_path
    from mmnerd.pipeline import side_file

    old_state = cfg.root / "annotation" / "pull-state.json"
    old_report = cfg.root / "reports" / "dedup" / "report.json"
    for path, text in ((old_state, '{"projects": {"3": {}}}'), (old_report, '{"clusters": 2}')):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    assert state_path(cfg) == cfg.root / "side" / "pull" / "pull-state.json"
    assert state_path(cfg).read_text() == '{"projects": {"3": {}}}' and not old_state.exists()
    assert side_file(cfg, "dedup", "report.json").read_text() == '{"clusters": 2}'
    assert not old_report.exists()
    old_state.write_text("{}")  # an older copy appearing later never replaces the state
    assert state_path(cfg).read_text() == '{"projects": {"3": {}}}'
