"""The load generator says when it, not the server, limited a point (loadgen.client_cpu): its own CPU
per request and utilisation on every point, ``client_bound`` when a process saturates its core or,
open loop, when its sends slip behind the schedule."""

from __future__ import annotations

from pathlib import Path

from lg_helpers import HERE, MODEL, run_loadgen
from loadgen.client_cpu import LATE_SHARE, SATURATED_SHARE, ClientFacts, verdict


def test_an_idle_point_is_not_client_bound(start_fake_triton, fake_repository: Path, tmp_path: Path) -> None:
    """One user against a 20 ms server: the generator is idle almost all the time."""
    server = start_fake_triton(service_time=0.02)
    run = run_loadgen(
        tmp_path, "--backend", "triton", "--target", server.target, "--model", MODEL,
        "--model-repository", str(fake_repository), "-u", "1", "--step-duration", "4", "--warmup", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    row = run.row()
    client = row["client"]
    assert row["client_bound"] is False, client
    assert client["processes"] == 1 and client["reasons"] == [] and client["advice"] == ""
    assert 0 < client["max_process_utilisation"] < SATURATED_SHARE, client
    # Some CPU per request, and far less than the 20 ms the server takes for each.
    assert 0 < row["client_cpu_ms_per_request"] < 20, row
    assert "client_bound" in run.csv.splitlines()[0]
    assert "client ok" in run.output


def test_a_cpu_starved_generator_is_client_bound(health_server, tmp_path: Path) -> None:
    """Users that burn 4 ms of CPU per request cannot keep a 400/s open-loop schedule on one process:
    the sends slip, and the point says so, with what to do."""
    run = run_loadgen(
        tmp_path, "-f", str(HERE / "slow_locustfile.py"), "--backend", "health",
        "--target", health_server.target, "--mode", "open", "--arrivals", "constant", "--rate", "400",
        "--step-duration", "4", "--warmup", "1", "--drain", "2",
        env={"IMGBENCH_TEST_SPIN_S": "0.004"},
    )  # fmt: skip
    assert run.results is not None, run.output[-3000:]
    row = run.row()
    client = row["client"]
    assert row["client_bound"] is True, client
    assert client["late_share"] >= LATE_SHARE and client["late_sends"] > 0, client
    assert client["lateness_ms"]["99"] > 1.0, client
    assert "--processes" in client["advice"] and any("schedule" in r for r in client["reasons"])
    assert "CLIENT-BOUND" in run.output


def test_saturated_process_is_client_bound_and_its_cost_is_summed() -> None:
    facts = ClientFacts()
    facts.add_process(0, cpu_s=0.95, wall_s=1.0, host_busy_s=1.9, host_s=2.0)  # a saturated worker
    facts.add_process(0, cpu_s=0.05, wall_s=1.0)  # the master
    load, cpu_ms, bound = verdict(facts, requests=2000, window_s=2.0, mode="closed")
    assert bound is True and load is not None
    assert load.processes == 2 and load.max_process_utilisation == 0.95
    assert load.utilisation == 1.0 and cpu_ms == 1.0  # 1 core for 2 s over 2000 requests
    assert load.host_utilisation == 0.95 and "95% of a core" in load.reasons[0]
    # Below the threshold: not bound; no samples (a run cut short): not measured, not guessed.
    idle = ClientFacts()
    idle.add_process(0, cpu_s=0.3, wall_s=1.0)
    assert verdict(idle, requests=100, window_s=1.0, mode="closed")[2] is False
    assert verdict(ClientFacts(), requests=100, window_s=1.0, mode="closed") == (None, None, None)


def test_worker_facts_merge_on_the_master() -> None:
    worker, master = ClientFacts(), ClientFacts()
    worker.add_process(1, cpu_s=0.5, wall_s=1.0)
    for lateness_s in (0.0001, 0.0002, 0.01):
        worker.late(1, lateness_s)
    master.add_process(1, cpu_s=0.1, wall_s=1.0)
    master.merge(worker.drain())
    assert worker.processes == {} and worker.lateness == {}
    load, _, bound = verdict(master, requests=10, window_s=1.0, mode="open", step=1)
    assert load is not None and load.processes == 2 and load.late_sends == 1
    assert load.late_share == round(1 / 3, 4) and bound is True


def test_several_load_processes_are_measured_together(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    """A master and two forked workers: the point's CPU is all three processes', its counts all of them."""
    server = start_fake_triton(service_time=0.005)
    run = run_loadgen(
        tmp_path, "--processes", "2", "--backend", "triton", "--target", server.target, "--model", MODEL,
        "--model-repository", str(fake_repository), "-u", "4", "--step-duration", "5", "--warmup", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    row = run.row()
    assert row["client"]["processes"] == 3, row["client"]
    assert row["n"] > 50 and row["errors"] == 0 and row["incorrect"] == 0, row
    assert row["client_cpu_ms_per_request"] > 0 and row["client_bound"] is not None


def test_a_local_run_forks_one_load_process_per_core_unless_told() -> None:
    from loadgen.__main__ import with_defaults

    assert with_defaults(["--headless"], environ={}, cores=4)[4:7] == ["--headless", "--processes", "4"]
    assert "--processes" not in with_defaults(["--headless"], environ={}, cores=1)
    for chosen in (["--processes", "0"], ["--processes=3"], ["--master"], ["--worker"]):
        assert with_defaults(chosen, environ={}, cores=4).count("--processes") == chosen.count("--processes")
    assert "--processes" not in with_defaults([], environ={"LOCUST_PROCESSES": "0"}, cores=4)
    # Its own workers meet its master on a free loopback port, never Locust's shared 5557.
    forked = with_defaults(["--processes", "2"], environ={}, cores=4, port=5601)
    assert forked[-6:] == [
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        "5601",
        "--master-port",
        "5601",
    ]
    assert "--master-bind-port" not in with_defaults(["--processes", "2", "--worker"], environ={}, cores=4)
    assert "--master-bind-port" not in with_defaults(["--processes", "0"], environ={}, cores=4)


def test_closed_loop_cpu_in_the_latency_is_client_bound() -> None:
    """No process saturated, but 250 µs of generator CPU per 0.5 ms request: half the latency is ours."""
    facts = ClientFacts()
    facts.add_process(0, cpu_s=0.5, wall_s=1.0)
    load, cpu_ms, bound = verdict(facts, requests=2000, window_s=1.0, mode="closed", mean_latency_ms=0.5)
    assert cpu_ms == 0.25 and bound is True and load is not None
    assert "50% of the 0.50 ms mean latency" in load.reasons[0]
    # The same cost under a 20 ms server is 1.25% of the latency: not bound.
    assert verdict(facts, requests=2000, window_s=1.0, mode="closed", mean_latency_ms=20.0)[2] is False
