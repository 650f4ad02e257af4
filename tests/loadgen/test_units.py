"""The load generator's pieces without a server: the plan's windows, lossless merging of worker
histograms, the exporter's buckets against the HdrHistogram, error bursts, options, preprocessing."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest
from loadgen.arrivals import ConstantArrivals, PoissonArrivals
from loadgen.exporter import LoadgenCollector
from loadgen.images import preprocess
from loadgen.plan import LoadPlan
from loadgen.recorder import Recorder
from loadgen.results import error_bursts
from loadgen.sweep import Probe, search_max_rate
from PIL import Image

from imgbench import observability as obs
from imgbench.errors import ImgbenchError
from imgbench.manifest import DatasetRef, InputSpec, Manifest, TrainingFigures


def test_plan_steps_warmup_and_drain() -> None:
    plan = LoadPlan.open([10, 20], step_s=10, warmup_s=3, schedulers=2, drain_s=4)
    assert [s.label for s in plan.steps] == ["rate=10", "rate=20"]
    assert plan.load_s == 20 and plan.total_s == 24
    assert plan.point_at(12).index == 1 and plan.point_at(25).index == 1
    assert not plan.measured(2.9) and plan.measured(3.0) and not plan.measured(12.0) and plan.measured(13.5)
    assert not plan.measured(20.5), "requests of the drain phase are not part of any step"
    with pytest.raises(ImgbenchError, match="shorter than a step"):
        LoadPlan.closed([1], step_s=5, warmup_s=5)
    with pytest.raises(ImgbenchError, match="positive"):
        LoadPlan.closed([0, 2], step_s=5, warmup_s=1)


def test_poisson_arrivals_have_the_rate_and_constant_ones_are_exact() -> None:
    arrivals = PoissonArrivals(random.Random(1))
    gaps = [arrivals.gap(200.0) for _ in range(20_000)]
    assert np.mean(gaps) == pytest.approx(1 / 200, rel=0.03)
    assert np.std(gaps) == pytest.approx(1 / 200, rel=0.05)  # exponential: std = mean
    assert ConstantArrivals().gap(40.0) == 0.025


def test_merged_worker_histograms_equal_one_histogram_of_everything() -> None:
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(mean=-5, sigma=1.0, size=6000)
    single, master = Recorder(), Recorder()
    workers = [Recorder(), Recorder(), Recorder()]
    for i, latency in enumerate(latencies):
        for recorder in (single, workers[i % 3]):
            recorder.record(
                0, measured=True, elapsed_s=i / 1000, latency_s=float(latency), outcome="ok", images=2
            )
    for worker in workers:
        # Two reports per worker, as Locust sends them every few seconds.
        master.merge(worker.drain())
        master.merge(worker.drain())
    for q in (50, 90, 99, 99.9, 100):
        assert master.points[0].histogram.get_value_at_percentile(q) == single.points[
            0
        ].histogram.get_value_at_percentile(q)
    assert master.points[0].requests == 6000 and master.points[0].images == 12000
    assert master.timeline == single.timeline


def test_exporter_buckets_count_exactly_what_the_histogram_holds() -> None:
    recorder = Recorder(edges=obs.latency_buckets(0.1))
    latencies = [0.0004, 0.0009, 0.003, 0.0042, 0.05, 0.0999, 0.1, 0.1003, 0.3, 2.0, 20.0]
    for latency in latencies:
        recorder.record(
            0,
            measured=True,
            elapsed_s=0,
            latency_s=latency,
            outcome="ok",
            images=1,
            labels=("triton", "pt_x", "1"),
        )
    recorder.record(
        0,
        measured=True,
        elapsed_s=0,
        latency_s=None,
        outcome="error",
        images=1,
        code="UNAVAILABLE",
        labels=("triton", "pt_x", "1"),
    )
    collector = LoadgenCollector(lambda: recorder, lambda: (("triton", "pt_x", "1"), 3, 0.0))
    families = {f.name: f for f in collector.collect()}
    buckets = {
        s.labels["le"]: s.value for s in families[obs.REQUEST_LATENCY].samples if s.name.endswith("_bucket")
    }
    for edge in obs.latency_buckets(0.1):
        assert buckets[repr(edge)] == sum(1 for latency in latencies if latency <= edge), edge
    assert buckets["+Inf"] == len(latencies)
    assert buckets["0.1"] == 7  # the SLO edge: 0.0999 and exactly 0.1 in, 0.1003 out
    errors = [s for s in families["imgbench_request_errors"].samples if s.name.endswith("_total")]
    assert [(s.labels["code"], s.value) for s in errors] == [("UNAVAILABLE", 1)]
    users = families[obs.USERS].samples[0]
    assert users.value == 3 and users.labels == {"backend": "triton", "model": "pt_x", "batch_size": "1"}


def test_error_bursts_say_when_and_whether_answers_came_back() -> None:
    timeline = {
        0: {"ok": 10},
        1: {"ok": 3, "UNAVAILABLE": 5},
        2: {"UNAVAILABLE": 9},
        3: {"ok": 12},
        6: {"DROPPED": 1},
    }
    first, second = error_bursts(timeline)
    assert (first["from_s"], first["to_s"], first["errors"], first["recovered"]) == (1, 3, 14, True)
    assert (second["from_s"], second["codes"], second["recovered"]) == (6, {"DROPPED": 1}, False)


def test_slo_search_finds_the_boundary_within_tolerance() -> None:
    capacity = 137.0
    seen: list[float] = []

    def measure(rate: float) -> Probe:
        seen.append(rate)
        return Probe(rate, 5.0 if rate <= capacity else 900.0, 0, 2000, rate, rate <= capacity)

    result = search_max_rate(measure, start_rate=10, max_rate=5000, tolerance=0.05, max_probes=20)
    assert result.max_rate is not None and capacity / 1.05 <= result.max_rate <= capacity
    assert seen[:5] == [10, 20, 40, 80, 160]  # doubling until the first failure
    failing_first = search_max_rate(measure, start_rate=500, max_rate=5000)
    assert failing_first.max_rate is None and len(failing_first.probes) == 1


def _manifest(layout: str, shape: list[int | None]) -> Manifest:
    zero = dict.fromkeys(
        (
            "epochs",
            "best_epoch",
            "top1",
            "top5",
            "seconds_per_epoch",
            "images_per_second",
            "peak_memory_bytes",
        ),
        0,
    )
    framework, prefix = ("pytorch", "pt") if layout == "NCHW" else ("tensorflow", "tf")
    return Manifest(
        model=f"{prefix}_m", framework=framework, framework_version="0", architecture="m", version=1,
        input=InputSpec(name="image", shape=shape, layout=layout), output_names=["logits"],
        class_names=["a", "b"],
        dataset=DatasetRef(name="d", path="/nowhere", num_train=1, num_eval=1, image_size=8),
        training=TrainingFigures(**zero, device="cpu", parameters=0),
    )  # fmt: skip


def test_preprocessing_follows_the_manifest_layout_and_normalisation() -> None:
    pixels = np.zeros((20, 10, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red, portrait 10×20
    image = Image.fromarray(pixels)
    nchw = preprocess(image, _manifest("NCHW", [None, 3, 8, 8]))
    nhwc = preprocess(image, _manifest("NHWC", [None, 8, 8, 3]))
    assert nchw.shape == (3, 8, 8) and nhwc.shape == (8, 8, 3) and nchw.dtype == np.float32
    expected_red = (1.0 - 0.485) / 0.229
    expected_green = (0.0 - 0.456) / 0.224
    assert np.allclose(nchw[0], expected_red, atol=1e-5) and np.allclose(nchw[1], expected_green, atol=1e-5)
    assert np.allclose(np.transpose(nchw, (1, 2, 0)), nhwc)


def test_options_name_the_offending_value(tmp_path: Path) -> None:
    from loadgen.options import LoadOptions, add_arguments
    from locust.argument_parser import LocustArgumentParser

    parser = LocustArgumentParser(add_help=False)
    add_arguments(parser)
    parser.add_argument("-u", dest="num_users", type=int, default=1)

    def parse(*argv: str) -> argparse.Namespace:
        return parser.parse_args(["--model", "pt_x", *argv])

    assert LoadOptions.from_parsed(parse("--users-steps", "1, 2 ,4")).users_steps == (1, 2, 4)
    with pytest.raises(ImgbenchError, match="'1,x'"):
        LoadOptions.from_parsed(parse("--users-steps", "1,x"))
    with pytest.raises(ImgbenchError, match="--batch-size must be at least 1, got 0"):
        LoadOptions.from_parsed(parse("--batch-size", "0"))
    with pytest.raises(ImgbenchError, match="--model is required"):
        LoadOptions.from_parsed(parser.parse_args(["--backend", "tfserving"]))
    key_file = tmp_path / "key_file.json"
    key_file.write_text('{"inference": {"key": "abc"}, "management": {"key": "m"}}')
    options = LoadOptions.from_parsed(
        parse("--backend", "torchserve", "--torchserve-key-file", str(key_file))
    )
    # The key is re-read from the file (TorchServe renews it), not copied once.
    assert options.auth_key_file == str(key_file) and options.auth_token == ""
    from loadgen.options import torchserve_token

    assert torchserve_token(options.auth_key_file) == "abc"
    # Met half written while TorchServe renews a key: read again, not failed at once.
    key_file.write_text("")
    with pytest.raises(ImgbenchError, match="Expecting value"):
        torchserve_token(str(key_file), attempts=2)
    with pytest.raises(ImgbenchError, match="cannot read TorchServe's inference key"):
        LoadOptions.from_parsed(
            parse("--backend", "torchserve", "--torchserve-key-file", str(tmp_path / "missing.json"))
        )


def test_web_ui_binds_loopback_unless_asked_otherwise() -> None:
    from loadgen.__main__ import DEFAULT_WEB_HOST, with_defaults

    assert with_defaults(["--headless"], environ={})[:2] == ["--web-host", DEFAULT_WEB_HOST]
    # compose and k8s ask for every interface, by flag or by Locust's variable: that is kept.
    assert with_defaults(["--master", "--web-host=0.0.0.0"], environ={}).count("--web-host=0.0.0.0") == 1
    assert "--web-host" not in with_defaults(["--master"], environ={"LOCUST_WEB_HOST": "0.0.0.0"})
    assert with_defaults(["--web-host", "::1"], environ={}).count("--web-host") == 1
