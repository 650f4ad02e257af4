"""The soak's aggregation (imgbench.bench.soak_windows) on synthetic samples, and its plan checks."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from factories import load_point

from imgbench.bench import soak
from imgbench.bench.soak_sampler import TreeSampler
from imgbench.bench.soak_windows import (
    MemorySample,
    memory_growth,
    p99_drift,
    split_evenly,
    window_bounds,
    windows,
)
from imgbench.errors import ImgbenchError
from imgbench.load_results import LoadPoint

MIB = 2**20


def point(p99: float, n: int = 2000, **fields: object) -> LoadPoint:
    data = load_point("triton", 1, p99, mode="open", target_rate=50.0, window_s=55.0, n=n)
    return LoadPoint.model_validate({**data, "users": 1, "point": "rate=50", **fields})


BOUNDS = [(0.0, 60.0), (60.0, 120.0), (120.0, 180.0)]


def sample(t_s: float, **rss_mib: int) -> MemorySample:
    return MemorySample(t_s, {name: mib * MIB for name, mib in rss_mib.items()}, load_avg_1m=t_s / 60)


def test_samples_and_timeline_fall_into_their_windows() -> None:
    timeline = {
        "3": {"ok": 10},
        "59": {"ok": 8, "UNAVAILABLE": 2},
        "60": {"ok": 9, "incorrect": 1, "DEADLINE_EXCEEDED": 1},
        "179": {"ok": 5, "UNAVAILABLE": 1},
        "200": {"UNAVAILABLE": 7},  # after the last window: no window's
    }
    samples = [
        sample(-5.0, a=100),  # before the load: no window's
        sample(0.0, a=110, b=20),
        sample(59.9, a=120, b=25),
        sample(60.0, a=130),
        sample(125.0, a=140, c=30),
    ]
    points = [point(4.0), point(5.0, incorrect=1), point(6.0)]

    first, second, third = windows(points, BOUNDS, timeline, samples)

    assert (first.requests, first.errors) == (20, {"UNAVAILABLE": 2})
    assert (second.requests, second.errors) == (11, {"DEADLINE_EXCEEDED": 1})
    assert (third.requests, third.errors) == (6, {"UNAVAILABLE": 1})
    assert first.memory_samples == 2 and first.max_rss_bytes == 145 * MIB
    assert first.max_rss_by_process == {"a": 120 * MIB, "b": 25 * MIB}
    assert first.processes == 2
    assert second.max_rss_bytes == 130 * MIB and second.memory_samples == 1
    assert third.max_rss_by_process == {"a": 140 * MIB, "c": 30 * MIB}
    assert first.load_avg_max == round(59.9 / 60, 2)
    assert [w.p99_ms for w in (first, second, third)] == [4.0, 5.0, 6.0]
    assert second.incorrect == 1 and first.measured_s == 55.0


def test_a_window_without_samples_has_no_memory_figure() -> None:
    (only,) = windows([point(4.0)], [(0.0, 60.0)], {}, [sample(61.0, a=1)])
    assert only.max_rss_bytes is None and only.load_avg_mean is None and only.requests == 0


def test_one_point_per_window_or_an_error() -> None:
    with pytest.raises(ImgbenchError, match="2 load points for 3 windows"):
        windows([point(1.0), point(2.0)], BOUNDS, {}, [])


def test_drift_compares_last_with_first_and_finds_the_largest_step() -> None:
    measured = windows([point(10.0), point(30.0), point(12.0)], BOUNDS, {}, [])
    drift = p99_drift(measured)
    assert drift.first_p99_ms == 10.0 and drift.last_p99_ms == 12.0
    assert drift.last_minus_first_ms == 2.0 and drift.last_over_first == 1.2
    # +20 then -18: the largest change is the rise, between windows 0 and 1.
    assert drift.max_step_change_ms == 20.0 and drift.max_step_between == (0, 1)
    assert (drift.min_p99_ms, drift.max_p99_ms, drift.all_reliable) == (10.0, 30.0, True)


def test_drift_keeps_the_sign_of_a_fall_and_flags_thin_windows() -> None:
    measured = windows([point(30.0), point(10.0, n=400), point(9.0)], BOUNDS, {}, [])
    drift = p99_drift(measured)
    assert drift.max_step_change_ms == -20.0 and drift.max_step_between == (0, 1)
    assert not drift.all_reliable and not measured[1].p99_reliable


def test_drift_needs_two_windows_with_a_p99() -> None:
    measured = windows([point(10.0), point(0.0, n=0, p99_ms=None)], BOUNDS[:2], {}, [])
    drift = p99_drift(measured)
    assert drift.windows == 1 and drift.last_minus_first_ms is None


def test_memory_growth_first_and_last_window_per_process_and_per_hour() -> None:
    samples = [
        sample(-1.0, a=90, b=10),
        sample(10.0, a=100, b=20),
        sample(70.0, a=150, b=20),
        sample(130.0, a=160, c=5),
    ]
    measured = windows([point(1.0), point(1.0), point(1.0)], BOUNDS, {}, samples)
    growth = memory_growth(measured, samples)
    assert growth.before_load_bytes == 100 * MIB
    assert (growth.first_window_max_bytes, growth.last_window_max_bytes) == (120 * MIB, 165 * MIB)
    assert growth.growth_bytes == 45 * MIB and growth.growth_fraction == 0.375
    # 45 MiB between the middles of the first and last windows, 120 s apart: 30 times that per hour.
    assert growth.growth_bytes_per_hour == 45 * MIB * 30
    assert growth.by_process_bytes == {"a": 60 * MIB}
    assert (growth.appeared, growth.vanished) == (["c"], ["b"])


def test_memory_growth_without_samples() -> None:
    growth = memory_growth(windows([point(1.0)], BOUNDS[:1], {}, []), [])
    assert growth.growth_bytes is None and growth.before_load_bytes is None


def test_windows_split_the_run_evenly() -> None:
    assert split_evenly(30, 5) == (6, 300.0)
    assert split_evenly(13, 5) == (3, 260.0)
    assert split_evenly(0.3, 0.1) == (3, 6.0)
    assert split_evenly(2, 5) == (1, 120.0)
    with pytest.raises(ImgbenchError, match="must be positive"):
        split_evenly(0, 5)


def test_window_bounds_from_the_load_results_plan() -> None:
    plan = {"steps": [{"start_s": 0, "duration_s": 6.0}, {"start_s": 6.0, "duration_s": 6.0}]}
    assert window_bounds(plan) == [(0.0, 6.0), (6.0, 12.0)]
    with pytest.raises(ImgbenchError, match="no steps"):
        window_bounds({"steps": []})


def test_end_by_shares_what_is_left_among_the_servers() -> None:
    now = datetime(2026, 12, 1, 13, 35, tzinfo=UTC)
    end = soak.parse_end_by("14:20", now)
    assert end == datetime(2026, 12, 1, 14, 20, tzinfo=UTC)
    # 45 min less 2 min of overhead per server, in three: 13 whole minutes each; never above --minutes.
    assert soak.minutes_until(end, now, 3, 30.0) == 13.0
    assert soak.minutes_until(end, now, 1, 30.0) == 30.0
    assert soak.minutes_until(end, now, 1, 0.2) == 0.2
    with pytest.raises(ImgbenchError, match="leaves"):
        soak.minutes_until(end, now, 30, 30.0)
    with pytest.raises(ImgbenchError, match="HH:MM"):
        soak.parse_end_by("later", now)


def _plan(tmp_path, *argv: str) -> soak.Plan:
    return soak.make_plan(soak.get_args_parser().parse_args(["--run-dir", str(tmp_path), *argv]))


def test_plan_names_each_server_and_the_stand_in(tmp_path) -> None:
    plan = _plan(tmp_path, "--minutes", "30", "--window-minutes", "5")
    assert [c.server for c in plan.cases] == ["torchserve", "triton", "tfserving"]
    assert {c.server: c.label for c in plan.cases}["tfserving"] == "TF Serving stand-in"
    assert (plan.windows, plan.window_s, plan.train) == (6, 300.0, True)
    args = soak.get_args_parser().parse_args(["--run-dir", str(tmp_path)])
    argv = soak.loadgen_args(plan.cases[1], plan, args, 123.456)
    assert argv[argv.index("--rate-steps") + 1] == ",".join(["123.46"] * 6)
    assert argv[argv.index("--step-duration") + 1] == "300.0"
    assert argv[argv.index("--model") + 1] == "pt_mobilenet_v3_small"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--servers", "nope"], "unknown server 'nope'; known: torchserve, triton, tfserving"),
        (["--fraction", "1.5"], "at most 1"),
        (["--rate", "-3"], "--rate must be positive"),
        (["--rate", "nope=3"], "is not soaked here"),
        (["--minutes", "1", "--window-minutes", "0.1", "--warmup-seconds", "6"], "shorter than a window"),
        (["--model-repository", "/nonexistent"], "has no pt_mobilenet_v3_small"),
    ],
)
def test_bad_plans_are_refused_with_what_is_wrong(tmp_path, argv: list[str], message: str) -> None:
    with pytest.raises(ImgbenchError, match=message):
        _plan(tmp_path, *argv)


def test_dry_run_prints_the_plan(tmp_path, capsys) -> None:
    assert soak.main(["--run-dir", str(tmp_path), "--servers", "triton", "--rate", "40", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"triton": 40.0' in out and "--rate-steps 40.00,40.00" in out


def test_sampler_reads_a_process_tree() -> None:
    sampler = TreeSampler(os.getpid(), interval_s=0.05).start()
    sampler.stop()
    (first, *_) = sampler.relative_to(0.0)
    assert any(name.startswith(f"{os.getpid()} ") for name in first.rss_bytes)
    assert first.total_bytes > 10 * MIB and first.t_s > 0


def test_markdown_tables_from_a_results_record() -> None:
    from dataclasses import asdict

    from imgbench.bench.soak_report import markdown

    samples = [sample(-1.0, **{"1 java": 500}), sample(10.0, **{"1 java": 600, "2 python worker": 100})]
    samples.append(sample(130.0, **{"1 java": 700, "2 python worker": 100, "3 python worker": 90}))
    measured = windows(
        [point(10.0), point(20.0, n=500), point(15.0)], BOUNDS, {"61": {"CANCELLED": 2}}, samples
    )
    entry = {
        "status": "ok", "label": "TorchServe", "model": "pt_x", "capacity_rps": 50.0, "rate": 35.0,
        "minutes": 3.0, "window_s": 60.0, "windows": [asdict(w) for w in measured],
        "p99_drift": asdict(p99_drift(measured)), "memory_growth": asdict(memory_growth(measured, samples)),
    }  # fmt: skip
    failed = {"status": "failed", "label": "Triton", "model": "pt_x", "reason": "no rate met p99"}
    text = markdown({"servers": {"torchserve": entry, "triton": failed}})
    assert "| torchserve (TorchServe) | pt_x | 50.0 | 35.0 | 3 (3 × 60) | 10.00 → 15.00 (×1.5) |" in text
    assert "| +10.00 (0→1) | CANCELLED 2 | 500 / 700 / 890 (+190 MiB, +27.1%) |" in text
    # † marks a p99 from under 1,000 requests; a window without samples has no memory or load figure.
    assert "| 1 | 1.0–2.0 | 500 | 6.67 | 20.00 † | 100.0 | CANCELLED 2 | – (0 processes) | – / – |" in text
    assert "failed: no rate met p99" in text
    assert "java 700; python worker 100 + 90." in text
