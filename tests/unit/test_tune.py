"""`imgbench tune`: the search strategies on a synthetic server whose best batch size is known, the
verdicts when nothing meets the SLO or the server refuses a value, and the configuration files."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from factories import make_manifest

from imgbench.errors import ImgbenchError
from imgbench.load_results import LoadResult, TuneSummary
from imgbench.manifest import write_manifest
from imgbench.paths import ModelRepository
from imgbench.tune.configs import tfserving_batching, triton_config, write_ready_configs
from imgbench.tune.runner import TuneSettings, default_space, defaults_of, scratch_repository
from imgbench.tune.search import KnobRejected, ProbeOutcome, grid, search

BEST_BATCH = 8


def synthetic_server(config: dict) -> ProbeOutcome:
    """Throughput peaks at batch 8; waiting longer for a batch adds latency and nothing else."""
    batch = int(config["max_batch_size"])
    delay_ms = int(config["max_queue_delay_us"]) / 1000
    return ProbeOutcome(
        images_per_second=100.0 * min(batch, BEST_BATCH) - 4.0 * batch, p99_ms=4.0 + batch + delay_ms
    )


DEFAULTS = {"max_batch_size": 1, "max_queue_delay_us": 2000}
SPACE = {"max_batch_size": [1, 2, 4, 8, 16, 32], "max_queue_delay_us": [500, 2000, 5000]}


@pytest.mark.parametrize("strategy", ["hill-climb", "grid"])
def test_the_search_finds_the_known_best_batch_size(strategy: str) -> None:
    result = search(synthetic_server, DEFAULTS, SPACE, slo_ms=50, budget_s=600, strategy=strategy)  # type: ignore[arg-type]
    assert result.best is not None and result.default is not None
    assert result.best.config["max_batch_size"] == BEST_BATCH
    assert result.best.images_per_second >= result.default.images_per_second  # type: ignore[operator]
    assert result.probes[0].config == DEFAULTS  # the default is measured first, as the baseline
    assert "× the default's" in result.verdict
    if strategy == "hill-climb":
        assert len(result.probes) < len(grid(DEFAULTS, SPACE))  # quicker than trying everything


def test_an_slo_no_configuration_meets_gives_a_verdict_not_a_crash() -> None:
    result = search(synthetic_server, DEFAULTS, SPACE, slo_ms=1.0, budget_s=600)
    assert result.best is None
    assert "no configuration met p99 ≤ 1 ms" in result.verdict
    assert "the lowest p99 was 5.50 ms" in result.verdict  # batch 1, 500 µs delay: 4 + 1 + 0.5


def test_a_rejected_value_is_reported_and_skipped() -> None:
    def picky(config: dict) -> ProbeOutcome:
        if config["max_batch_size"] == 16:
            raise KnobRejected("max_batch_size 16 exceeds the model's limit")
        return synthetic_server(config)

    result = search(picky, DEFAULTS, SPACE, slo_ms=50, budget_s=600, strategy="grid")
    rejected = [p for p in result.probes if p.rejected]
    assert rejected and all(p.config["max_batch_size"] == 16 for p in rejected)
    assert "exceeds the model's limit" in rejected[0].rejected and not rejected[0].passed
    assert result.best is not None and result.best.config["max_batch_size"] == BEST_BATCH


def test_the_budget_bounds_the_search() -> None:
    ticks = itertools.count()
    result = search(
        synthetic_server,
        DEFAULTS,
        SPACE,
        slo_ms=50,
        budget_s=3,
        strategy="grid",
        clock=lambda: float(next(ticks)),
    )
    assert len(result.probes) <= 3 and result.budget_exhausted
    assert "time budget" in result.verdict


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ImgbenchError, match=r"unknown knob\(s\) \['batch'\]"):
        search(synthetic_server, DEFAULTS, {"batch": [1]}, slo_ms=50, budget_s=10)
    with pytest.raises(ImgbenchError, match="unknown strategy 'random'"):
        search(synthetic_server, DEFAULTS, SPACE, slo_ms=50, budget_s=10, strategy="random")  # type: ignore[arg-type]
    with pytest.raises(ImgbenchError, match="max_batch_size must be a non-negative integer, got -1"):
        tfserving_batching({"max_batch_size": -1, "batch_timeout_micros": 0, "num_batch_threads": 1})


TRITON_CONFIG = """name: "pt_resnet18"
backend: "python"
max_batch_size: 32
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 2000
}
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
"""


def test_configs_are_the_files_each_server_reads(tmp_path: Path) -> None:
    text = triton_config(
        TRITON_CONFIG,
        {
            "max_batch_size": 16,
            "preferred_batch_size": 8,
            "max_queue_delay_us": 500,
            "instance_count": 2,
            "ort_threads": 2,
        },
    )
    assert "max_batch_size: 16" in text and "preferred_batch_size: [ 4, 8 ]" in text
    assert "max_queue_delay_microseconds: 500" in text and "count: 2" in text
    assert 'key: "intra_op_thread_count"' in text and 'string_value: "2"' in text
    batching = tfserving_batching({"max_batch_size": 8, "batch_timeout_micros": 1000, "num_batch_threads": 2})
    assert "max_batch_size { value: 8 }" in batching and "num_batch_threads { value: 2 }" in batching
    files = write_ready_configs(
        "torchserve",
        "pt_x",
        {"batch_size": 4, "max_batch_delay_ms": 2, "workers": 2, "torch_threads": 1},
        tmp_path,
    )
    assert "batchSize: 4" in files[0].read_text() and "minWorkers: 2" in files[0].read_text()
    # Knobs the search did not vary keep their registry defaults in the ready files.
    batching_file, flags_file = write_ready_configs("tfserving", "tf_x", {"max_batch_size": 8}, tmp_path)
    assert "max_batch_size { value: 8 }" in batching_file.read_text()
    assert "--tensorflow_intra_op_parallelism=1" in flags_file.read_text()


def test_a_probe_repository_holds_the_model_with_the_configuration(tmp_path: Path) -> None:
    source = ModelRepository(tmp_path / "source")
    manifest = make_manifest("pytorch")
    write_manifest(source.manifest_path(manifest.model), manifest)
    (source.triton_dir / manifest.model / "1").mkdir(parents=True)
    (source.triton_dir / manifest.model / "1" / "model.onnx").write_bytes(b"onnx")
    source.triton_config(manifest.model).write_text(TRITON_CONFIG)
    settings = TuneSettings("triton", manifest.model, source.root, tmp_path / "run")
    config = {**defaults_of("triton"), "max_batch_size": 4}
    scratch = ModelRepository(scratch_repository(settings, config, tmp_path / "probe"))
    assert scratch.models() == [manifest.model]
    assert "max_batch_size: 4" in scratch.triton_config(manifest.model).read_text()
    assert (scratch.triton_dir / manifest.model / "1").resolve() == (
        source.triton_dir / manifest.model / "1"
    ).resolve()
    assert "max_batch_size: 32" in source.triton_config(manifest.model).read_text()  # the source is untouched
    assert set(default_space("triton")) == set(defaults_of("triton"))


def test_a_tune_result_is_a_load_result() -> None:
    result = search(synthetic_server, DEFAULTS, SPACE, slo_ms=50, budget_s=600)
    summary = TuneSummary(
        backend="triton",
        model="pt_x",
        strategy=result.strategy,
        slo_ms=50,
        budget_s=600,
        elapsed_s=result.elapsed_s,
        default=result.default,
        best=result.best,
        probes=result.probes,
        verdict=result.verdict,
    )
    document = LoadResult(kind="tune", run_id="tune-triton-pt_x", tune=summary)
    assert LoadResult.model_validate_json(document.model_dump_json()) == document


def test_the_report_shows_each_server_at_its_best(tmp_path: Path) -> None:
    from imgbench.load_results import write_load_result
    from imgbench.report.build import build_report

    result = search(synthetic_server, DEFAULTS, SPACE, slo_ms=50, budget_s=600)
    summary = TuneSummary(
        backend="triton",
        model="pt_x",
        strategy=result.strategy,
        slo_ms=50,
        budget_s=600,
        elapsed_s=result.elapsed_s,
        default=result.default,
        best=result.best,
        probes=result.probes,
        verdict=result.verdict,
    )
    (tmp_path / "run" / "load").mkdir(parents=True)
    write_load_result(
        tmp_path / "run" / "load" / "tune.json", LoadResult(kind="tune", run_id="t", tune=summary)
    )
    report = build_report(tmp_path / "run").read_text()
    assert "## Each server at its best" in report
    assert "max_batch_size=8" in report and "× the default's" in report
    assert (tmp_path / "run" / "report" / "tuning_pareto.png").stat().st_size > 1000


def test_a_server_that_does_not_start_on_a_configuration_rejects_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgbench.errors import StackError
    from imgbench.tune import runner

    class RefusingStack:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.stopped = False

        def up(self, names: list[str]) -> None:
            raise StackError("triton: not ready in 180 s; log tail: max_batch_size 64 > 32 of the model")

        def down(self, names: list[str] | None = None) -> list[str]:
            self.stopped = True
            return []

    monkeypatch.setattr(runner, "Stack", RefusingStack)
    source = ModelRepository(tmp_path / "source")
    manifest = make_manifest("pytorch")
    write_manifest(source.manifest_path(manifest.model), manifest)
    (source.triton_dir / manifest.model).mkdir(parents=True)
    source.triton_config(manifest.model).write_text(TRITON_CONFIG)
    prober = runner.NativeProber(TuneSettings("triton", manifest.model, source.root, tmp_path / "run"))
    with pytest.raises(KnobRejected, match=r"did not start with .*max_batch_size 64 > 32"):
        prober({**defaults_of("triton"), "max_batch_size": 64})


def test_a_probe_is_a_closed_loop_point_or_an_open_loop_one(tmp_path: Path) -> None:
    from imgbench.tune.runner import load_argv

    settings = TuneSettings("triton", "pt_x", tmp_path, tmp_path / "run", users=8)
    closed = load_argv(settings, "127.0.0.1:1", tmp_path, tmp_path / "load", "p1")
    assert closed[closed.index("--users-steps") + 1] == "8" and "--rate" not in closed
    settings.rate = 120.0
    opened = load_argv(settings, "127.0.0.1:1", tmp_path, tmp_path / "load", "p1")
    assert opened[opened.index("--mode") + 1] == "open" and opened[opened.index("--rate") + 1] == "120"
