"""The pinned serving benchmark's plumbing (its figures are not asserted: a benchmark is not a test):
`make bench` runs it, every knob it varies exists, and its tables show failures and load averages."""

from __future__ import annotations

import json
from pathlib import Path

from imgbench import servers
from imgbench.bench import pinned, suite


def test_make_bench_runs_it_with_the_models() -> None:
    assert "pinned" in suite.BENCHMARKS and "pinned" in suite.NEEDS_MODELS


def test_every_varied_knob_is_a_registry_knob() -> None:
    for server, space in pinned.TUNE_SPACE.items():
        knobs = {k.name for k in servers.get_server(server).knobs}
        assert set(space) <= knobs and pinned.DELAY_KNOB[server] in knobs


def test_the_tables_show_figures_failures_and_load() -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    documents = sorted(path.glob("pinned-*.json"))
    report = json.loads(documents[0].read_text()) if documents else {"added": {}, "tuned": {}}
    report["tuned"]["nope"] = {"status": "failed", "reason": "ImgbenchError: disk full"}
    text = pinned.markdown(report)
    assert "| nope | failed: ImgbenchError: disk full" in text
    for entry in report["added"].values():
        if entry.get("status") != "failed":
            assert f"{entry['load_average_1m']['start']} / {entry['load_average_1m']['end']}" in text
