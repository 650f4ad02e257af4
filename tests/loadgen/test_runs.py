"""Headless runs of the real load generator process against real gRPC servers on 127.0.0.1: results,
correctness under load, coordinated omission, distributed merging, faults and preflight errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from lg_helpers import MODEL, PYTHON, ROOT, free_port, loadgen_argv, run_loadgen

from imgbench.load_results import SCHEMA_VERSION, load_load_result

pytestmark = pytest.mark.integration


def test_closed_loop_run_reports_percentiles_and_checks_every_answer(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    server = start_fake_triton()
    run = run_loadgen(
        tmp_path, "--backend", "triton", "--target", server.target, "--model", MODEL,
        "--model-repository", str(fake_repository), "--batch-size", "4", "-u", "2",
        "--step-duration", "4", "--warmup", "1", "--drain", "1", "--seed", "3",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    row = run.row()
    assert row["n"] > 50
    assert row["seed"] == 3  # repeats of a point differ in their seed (the report groups them)
    assert row["errors"] == 0 and row["incorrect"] == 0, row
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["p999_ms"] <= row["max_ms"]
    assert row["images_per_second"] == pytest.approx(4 * row["throughput_rps"], rel=0.01)
    assert row["window_s"] == pytest.approx(3.0, abs=0.5)
    facts = run.results["preflight"]
    # The idle pass kept exactly the images the model gets right, so any wrong answer would be a fault.
    assert 0 < facts["pool_kept"] <= facts["pool_images"]
    assert facts["pool_kept"] == facts["pool_images"] - facts["misclassified_at_rest"]
    assert run.results["hardware"]["cores"] >= 1 and run.results["config"]["backend"] == "triton"
    # The file is a typed load result, and names the server as the server identified itself.
    result = load_load_result(tmp_path / "results" / "run.json")
    assert result.schema_version == SCHEMA_VERSION and result.points[0].n == row["n"]
    # The server's own view of the same window (the statistics API), inside the client's latency.
    timings = row["server_timings"]
    assert timings["source"] == "triton statistics API" and timings["requests"] >= row["n"] * 0.8, timings
    assert 0 <= timings["total_ms"] <= row["mean_ms"], (timings, row["mean_ms"])
    assert row["server"] == {
        "backend": "triton",
        "implementation": "fake_triton",
        "version": "0.0-test",
        "stand_in": False,
        "runtime": "nearest_mean backend",
    }
    header = run.csv.splitlines()[0].split(",")
    assert {"n", "p99_ms", "p999_ms", "incorrect", "errors", "throughput_rps", "cpu"} <= set(header)
    assert len(run.csv.splitlines()) == 2


def test_open_loop_latency_shows_the_backlog_that_closed_loop_hides(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    """A serial server with a fixed service time: capacity μ. Open loop at λ > μ must keep its
    schedule, so request i waits for the i·(1 - μ/λ) requests queued before it: latency grows linearly
    and the last ones wait about T·(λ/μ - 1). A closed-loop user at the same server never sees that."""
    server = start_fake_triton(service_time=0.02)
    common = (
        "--backend", "triton", "--target", server.target, "--model", MODEL,
        "--model-repository", str(fake_repository), "--step-duration", "4", "--warmup", "0",
    )  # fmt: skip
    closed = run_loadgen(tmp_path, *common, "-u", "1", "--drain", "1", run_id="closed")
    assert closed.returncode == 0, closed.output[-3000:]
    capacity = closed.row()["throughput_rps"]  # μ, measured on this machine now
    rate = round(1.4 * capacity)  # λ
    duration = 4.0
    opened = run_loadgen(
        tmp_path, *common, "--mode", "open", "--arrivals", "constant", "--rate", str(rate), "--drain", "8",
        run_id="open",
    )  # fmt: skip
    assert opened.returncode == 0, opened.output[-3000:]
    row = opened.row()
    # The schedule was kept: every due request was sent, none skipped or dropped.
    assert row["requests"] == pytest.approx(rate * duration, rel=0.05)
    assert row["errors"] == 0 and row["incorrect"] == 0, row
    predicted_max_s = duration * (rate / capacity - 1)
    closed_row = closed.row()
    print(
        f"\ncapacity {capacity:.1f}/s, open loop at {rate}/s: predicted max {predicted_max_s:.2f} s, "
        f"measured p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, max {row['max_ms']:.0f} ms; "
        f"closed loop p50 {closed_row['p50_ms']:.1f} ms, p99 {closed_row['p99_ms']:.1f} ms"
    )
    assert 0.5 * predicted_max_s <= row["max_ms"] / 1000 <= 1.5 * predicted_max_s + 0.1, (row, capacity)
    # Median request is about half-way up the backlog.
    assert row["p50_ms"] / 1000 >= 0.25 * predicted_max_s, (row, capacity)
    # The closed-loop user at the same server saw only the service time.
    assert closed_row["p99_ms"] < 0.2 * row["p50_ms"], (closed_row, row)
    assert closed_row["p99_ms"] < 100
    # Latency grows with the backlog second by second (the schedule's prediction), not at random.
    timeline = opened.results["timeline"]
    assert sum(c.get("ok", 0) for c in timeline.values()) == row["n"]


def test_distributed_master_merges_the_workers_histograms(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    server = start_fake_triton()
    master_port = free_port()
    results_dir = tmp_path / "results"
    # Workers take the same imgbench options (compose and k8s give both the same environment), so
    # their preflight runs before the test; the master still sends its options with each test.
    imgbench_options = [
        "--backend", "triton", "--target", server.target, "--model", MODEL,
        "--model-repository", str(fake_repository), "--step-duration", "4", "--warmup", "1", "--drain", "1",
    ]  # fmt: skip
    workers = [
        subprocess.Popen(
            loadgen_argv(
                "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port), *imgbench_options
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    master = subprocess.Popen(
        loadgen_argv(
            "--master", "--headless", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(master_port), *imgbench_options, "-u", "2", "--metrics-port", "0",
            "--results-dir", str(results_dir), "--run-id", "distributed", "--csv", str(tmp_path / "locust"),
            "--only-summary",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        output, _ = master.communicate(timeout=120)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=10)
    assert master.returncode == 0, output[-3000:]
    results = json.loads((results_dir / "distributed.json").read_text())
    (row,) = results["points"]
    assert row["n"] > 20 and row["errors"] == 0 and row["incorrect"] == 0, row
    # Every request Locust counted (its stats, merged on the master) is in the merged HdrHistograms:
    # the measured window's plus the warm-up's, which the timeline keeps second by second.
    with (tmp_path / "locust_stats.csv").open() as handle:
        aggregated = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    timeline_total = sum(sum(counts.values()) for counts in results["timeline"].values())
    assert timeline_total == int(aggregated["Request Count"])
    assert row["requests"] <= timeline_total  # the warm-up second is left out of the row
    assert row["users"] == 2
    assert row["window_s"] == pytest.approx(3.0, abs=0.5)


def test_killed_server_counts_errors_and_recovers(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    server = start_fake_triton()
    results_dir = tmp_path / "results"
    process = subprocess.Popen(
        loadgen_argv(
            "--headless", "--backend", "triton", "--target", server.target, "--model", MODEL,
            "--model-repository", str(fake_repository), "-u", "2", "--step-duration", "12", "--warmup", "0",
            "--drain", "1", "--deadline", "2", "--metrics-port", "0", "--results-dir", str(results_dir),
            "--run-id", "killed", "--only-summary",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if "All users spawned" in line:
            break
    time.sleep(1.5)
    server.kill()
    time.sleep(1.0)
    server.start()  # same port; returns once it listens
    output, _ = process.communicate(timeout=60)
    output = "".join(lines) + output
    # Locust's exit code 1 means "there were failures"; the run itself went to its bound.
    assert process.returncode == 1, output[-3000:]
    results = json.loads((results_dir / "killed.json").read_text())
    assert results["stop_reason"] == "plan completed"
    assert results["elapsed_s"] >= 12
    (row,) = results["points"]
    assert row["errors"] > 0 and set(row["error_codes"]) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, row
    assert row["incorrect"] == 0 and row["n"] > 0
    (burst,) = results["faults"]["error_bursts"]
    assert burst["recovered"] and burst["answers_after"] > 0, burst
    faults = results["faults"]
    assert faults["lost"] == 0 and faults["issued"] == faults["answered"] + faults["errors"], faults
    assert 1 <= burst["to_s"] - burst["from_s"] <= 6, burst


@pytest.mark.parametrize("case", ["unreachable", "unknown_model", "malformed_manifest", "missing_manifest"])
def test_preflight_errors_stop_before_any_load(
    case: str, start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(fake_repository, repository)
    manifests = repository / "manifests"
    model, target = MODEL, f"127.0.0.1:{free_port()}"
    expected = "did not answer"
    if case == "unknown_model":
        target, model = start_fake_triton().target, "pt_other"
        text = (manifests / f"{MODEL}.json").read_text().replace(f'"{MODEL}"', f'"{model}"')
        (manifests / f"{model}.json").write_text(text.replace('"centroid"', '"other"'))
        expected = "does not serve model 'pt_other'"
    elif case == "malformed_manifest":  # the manifest is checked before the server
        (manifests / f"{MODEL}.json").write_text('{"model": "pt_centroid", "input": ')
        expected = "is not valid JSON"
    elif case == "missing_manifest":
        model, expected = "pt_absent", "no manifest at"
    run = run_loadgen(
        tmp_path, "--backend", "triton", "--target", target, "--model", model, "--model-repository",
        str(repository), "--preflight-timeout", "1", "-u", "1", "--step-duration", "2", "--warmup", "0",
    )  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]
    assert expected in run.output, run.output[-3000:]
    assert run.results is None
    assert "Ramping" not in run.output and "users spawned" not in run.output


def test_slo_search_finds_a_rate_below_the_servers_capacity(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    """A serial server with a 20 ms service time serves at most ~50 req/s: the highest Poisson rate
    whose p99 stays under 100 ms must be below that, and a probe above it must have failed."""
    server = start_fake_triton(service_time=0.02)
    argv = [
        PYTHON, "-m", "loadgen.sweep", "--case", f"triton:{MODEL}", "--target", f"triton={server.target}",
        "--model-repository", str(fake_repository), "--slo", "0.1", "--start-rate", "10", "--max-rate", "400",
        "--tolerance", "0.3", "--max-probes", "5", "--step-duration", "3", "--min-samples", "60",
        "--warmup", "1", "--drain", "2", "--results-dir", str(tmp_path / "sweep"), "--run-id", "sweep",
        "--", "--images", "64",  # passed to every probe: a smaller pool, a shorter idle pass
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    (search,) = summary["slo_search"]
    print("\n" + done.stdout)
    assert search["max_rate"] is not None and 10 <= search["max_rate"] <= 1.0 / 0.02, search
    assert search["p99_ms"] <= 100
    failed = [p for p in search["probes"] if not p["passed"]]
    assert failed and min(p["rate"] for p in failed) > search["max_rate"], search["probes"]
    assert len(summary["points"]) == len(search["probes"])  # every probe's result point, for the report


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process and its children listen on."""
    import psutil

    process = psutil.Process(pid)
    return {
        (conn.laddr.ip, conn.laddr.port)
        for member in (process, *process.children(recursive=True))
        for conn in member.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN
    }


def test_started_directly_the_web_ui_and_exporter_bind_loopback_only(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    server = start_fake_triton()
    web_port, metrics_port = free_port(), free_port()
    # No --web-host: Locust alone would bind every interface; `python -m loadgen` binds 127.0.0.1.
    process = subprocess.Popen(
        loadgen_argv(
            "--backend", "triton", "--target", server.target, "--model", MODEL,
            "--model-repository", str(fake_repository), "--web-port", str(web_port),
            "--metrics-port", str(metrics_port), "--results-dir", str(tmp_path / "results"),
        ),
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "LOCUST_WEB_HOST"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        listening: set[tuple[str, int]] = set()
        while time.monotonic() < deadline and {web_port, metrics_port} - {p for _, p in listening}:
            assert process.poll() is None, f"loadgen exited {process.returncode}"
            time.sleep(0.5)
            listening = listening_addresses(process.pid)
        assert {web_port, metrics_port} <= {p for _, p in listening}, listening
        assert {address for address, _ in listening} == {"127.0.0.1"}, listening
    finally:
        process.kill()
        process.wait(timeout=10)
