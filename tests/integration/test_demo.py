"""`imgbench demo` end to end at its smallest settings, and its failure path."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from imgbench.demo import DemoSettings, Stage, StageFailed, run_demo, run_logged
from imgbench.stack import Stack
from imgbench.stack.ports import free_port_map

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reports_every_section(tmp_path: Path) -> None:
    settings = DemoSettings(
        run_dir=tmp_path / "demo",
        epochs=1,
        edge_exports=False,
        load_seconds=3.0,
        warmup_seconds=1.0,
        concurrencies=(1, 2),
        open_loop_rate=10.0,
        ports=free_port_map(),
    )
    report_path = run_demo(settings)
    report = report_path.read_text()
    for heading in (
        "## What this run says",
        "## Training",
        "## Exports",
        "## Serving",
        "## Cost",
        "## Environment",
    ):
        assert heading in report
    assert "TF Serving stand-in" in report and "python backend" in report
    # Every server was measured, with numbers, and every answer under load was checked.
    for server in ("TorchServe", "Triton", "TF Serving stand-in"):
        rows = [
            line for line in report.splitlines() if line.startswith(f"| {server}") and "closed ×1" in line
        ]
        assert rows, f"no closed-loop row for {server}"
    assert "Every served answer under load matched the label" in report
    assert (report_path.parent / "training_mobilenet_v3_small.png").exists()
    # The servers are stopped and the stack state is empty.
    assert Stack(settings.run_dir / "stack").status() == []


def test_failing_stage_is_named_and_servers_are_stopped(tmp_path: Path) -> None:
    settings = DemoSettings(run_dir=tmp_path / "demo", ports=free_port_map())

    def serve(s: DemoSettings) -> None:
        s.stack = Stack(s.run_dir / "stack", ports=s.ports)
        s.stack.up(["pushgateway"])

    def broken(s: DemoSettings) -> None:
        run_logged("broken", ["sh", "-c", "echo 'the trainer is unhappy'; exit 7"], s)

    pids: list[int] = []

    def remember(s: DemoSettings) -> None:
        assert s.stack is not None
        pids.extend(status.pid for status in s.stack.status())

    stages = (
        Stage("serve", "pushgateway only", serve),
        Stage("remember", "note the PIDs", remember),
        Stage("broken", "fails", broken),
    )
    with pytest.raises(
        StageFailed, match=r"(?s)stage 'broken' failed \(exit 7\).*broken\.log.*the trainer is unhappy"
    ):
        run_demo(settings, stages)
    assert pids
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
