from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import load_document, load_point, make_manifest
from typer.testing import CliRunner

from imgbench.cli import app
from imgbench.manifest import write_manifest
from imgbench.paths import ModelRepository
from imgbench.report.build import build_report

SECTIONS = [
    "## What this run says",
    "## The seed's claims, measured",
    "## Training",
    "## Exports",
    "## Serving",
    "## Cost",
    "## Environment",
]


def _write_run(run_dir: Path, manifests: list, load_documents: list[dict]) -> Path:
    repo = ModelRepository(run_dir / "model-repository")
    for manifest in manifests:
        write_manifest(repo.manifest_path(manifest.model), manifest)
    for i, document in enumerate(load_documents):
        path = run_dir / "load" / f"run{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
    return run_dir


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    slow_tf = make_manifest("tensorflow")
    slow_tf.training.top1 = 0.90
    for record in slow_tf.training.history:
        record.seconds *= 2
    document = load_document(
        [load_point(b, u, p99) for b, u, p99 in [("torchserve", 1, 30.0), ("torchserve", 4, 60.0),
                                                 ("triton", 1, 8.0), ("tfserving", 1, 12.0)]],
        hardware={"cpu": "test CPU", "cores": 2},
        slo_search=[{"backend": "triton", "model": "pt_resnet18", "slo_ms": 100, "max_rate": 250.0,
                     "p99_ms": 80.0, "step_s": 20}],
    )  # fmt: skip
    return _write_run(tmp_path / "run", [make_manifest("pytorch"), slow_tf], [document])


def test_full_report_has_every_section_with_numbers(full_run: Path) -> None:
    report = build_report(full_run).read_text()
    for heading in SECTIONS:
        assert heading in report
    # Training: PT epochs after the first average 10.1 s, TF's 20.2 s: PyTorch 2.00× faster.
    assert "PyTorch trained 2.00× faster per epoch than TensorFlow" in report
    assert "+5.0 pts" in report  # 95% vs 90%
    assert "99.8%" in report and "100.00%" in report  # seed's retention claim next to the measured one
    assert "TF Serving stand-in" in report and "python backend" in report
    assert "| 250.0 |" in report  # SLO search row
    assert "Lowest p99 at batch 1: Triton" in report
    for png in ("training_resnet18.png", "latency_percentiles.png", "throughput_vs_concurrency.png"):
        assert (full_run / "report" / png).stat().st_size > 1000
        assert f"]({png})" in report


def test_tfserving_is_never_named_without_stand_in(full_run: Path) -> None:
    report = build_report(full_run).read_text()
    for line in report.splitlines():
        if "TF Serving" in line:
            assert "stand-in" in line, line


def test_missing_pieces_are_said_not_crashed(tmp_path: Path) -> None:
    no_onnx = make_manifest("pytorch", exports={})
    failed_backend = load_document(
        [load_point("torchserve", 1, 30.0, errors=500, n=0, throughput_rps=0.0, percentiles={})],
        failures=["torchserve: connection refused after 3 s (server died?)"],
    )
    run = _write_run(tmp_path / "run", [no_onnx], [failed_backend])
    (run / "load" / "broken.json").write_text("{truncated")
    report = build_report(run).read_text()
    assert "No ONNX export for: pt_resnet18" in report
    assert "only one framework trained (TensorFlow is missing)" in report
    assert "connection refused" in report
    assert "broken.json is unreadable" in report
    assert "no ONNX export" in report or "Needs both frameworks" in report


def test_empty_run_directory_gives_a_report_that_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = build_report(tmp_path / "empty").read_text()
    assert "No trained model in this run" in report
    assert "No load result in this run" in report
    assert "Nothing was measured" in report


def test_report_cli_and_bad_price_table(full_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(full_run)])
    assert result.exit_code == 0, result.output
    assert (full_run / "report" / "report.md").exists()
    bad = tmp_path / "prices.yaml"
    bad.write_text("machine: nowhere\nper_hour: {}\n")
    from imgbench.errors import ImgbenchError

    with pytest.raises(ImgbenchError, match="price table"):
        build_report(full_run, prices_path=bad)


def test_a_one_epoch_run_gets_a_report(tmp_path: Path) -> None:
    """One epoch leaves no epoch after the warm-up one to judge steadiness on: no crash, no claim."""
    manifests = [make_manifest("pytorch"), make_manifest("tensorflow")]
    for manifest in manifests:
        manifest.training.history = manifest.training.history[:1]
    report = build_report(_write_run(tmp_path / "run", manifests, []))
    text = report.read_text()
    assert "## Training" in text and "varied by more than" not in text
