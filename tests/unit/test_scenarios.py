"""`imgbench demo --scenario case-study`: the plan a dry run validates (data shape, model, stages, the
two served models loaded with identical settings), a clear error for an unknown scenario, and the
report's INT8 and case-study sections from load results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from factories import load_document, load_point, make_manifest

from imgbench.errors import ImgbenchError
from imgbench.load_results import LoadPoint
from imgbench.manifest import write_manifest
from imgbench.paths import ModelRepository, venv_bin
from imgbench.report.build import build_report
from imgbench.report.int8 import int8_pairs
from imgbench.scenarios import plan_scenario, write_scenario_file


def test_the_case_study_plan(tmp_path: Path) -> None:
    plan = plan_scenario("case-study", tmp_path / "run")
    assert plan.stages == ("dataset", "train-pt", "serve", "load", "report")
    assert plan.dataset["classes"] == 3 and plan.dataset["input_shape"] == [3, 512, 512]
    assert plan.dataset["train_images"] >= plan.scenario.calibration_images
    assert plan.model == "pt_resnet50" and plan.served_models == ("pt_resnet50", "pt_resnet50_int8")
    args = plan.train_args
    assert args[args.index("--model") + 1] == "resnet50" and args[args.index("--image-size") + 1] == "512"
    assert args[args.index("--data-path") + 1] == str(plan.data_dir)
    assert "--quantized-min-agreement" in args and "--skip-int8" not in args
    fp32, int8 = plan.load_runs
    assert (fp32.model, int8.model) == plan.served_models
    # The same load for both; only the model and INT8's reference (the fp32 model) differ.
    strip = {"--model", "--run-id", "--reference-model"}

    def settings(run_args: list[str]) -> list[str]:
        return [a for i, a in enumerate(run_args) if a not in strip and run_args[i - 1] not in strip]

    assert settings(fp32.args) == settings(int8.args)
    assert int8.args[int8.args.index("--reference-model") + 1] == "pt_resnet50"
    assert "--keep-misclassified" in fp32.args and "--reference-model" not in fp32.args
    described = plan.describe()
    assert json.loads(json.dumps(described))["article"]["p99_before_ms"] == 1800.0


def test_an_unknown_scenario_is_named_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ImgbenchError, match="unknown scenario 'case_study'; known: case-study"):
        plan_scenario("case_study", tmp_path)


def test_dry_run_from_the_command_line(tmp_path: Path) -> None:
    imgbench = venv_bin("core") / "imgbench"
    if not imgbench.exists():
        pytest.skip("the core venv has no imgbench entry point; run `scripts/setup.sh core`")
    done = subprocess.run(
        [str(imgbench), "demo", "--scenario", "case-study", "--dry-run", "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["served_models"] == ["pt_resnet50", "pt_resnet50_int8"]
    assert not (tmp_path / "r").exists(), "a dry run must not create the run folder"
    bad = subprocess.run(
        [str(imgbench), "demo", "--scenario", "nope", "--dry-run"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0 and "unknown scenario 'nope'; known: case-study" in bad.stderr + bad.stdout


def _points(fp32_p99: float, int8_p99: float) -> list[dict]:
    common: dict[str, object] = {"n": 400}
    return [
        load_point("triton", 1, fp32_p99, model="pt_resnet50", incorrect=20, **common),
        load_point(
            "triton",
            1,
            int8_p99,
            model="pt_resnet50_int8",
            incorrect=30,
            reference_model="pt_resnet50",
            disagreements=12,
            **common,
        ),
        load_point("triton", 4, 900.0, model="pt_resnet50_int8"),  # no fp32 twin: left out
    ]


def test_int8_points_pair_with_their_fp32_twin() -> None:
    (pair,) = int8_pairs(LoadPoint.model_validate(p) for p in _points(1000.0, 250.0))
    assert pair.model == "pt_resnet50" and pair.load == "closed ×1"
    assert pair.p99_change == pytest.approx(-0.75)
    assert pair.accuracy_change == pytest.approx((1 - 30 / 400) - (1 - 20 / 400))
    assert pair.int8.agreement == pytest.approx(1 - 12 / 400)


def test_the_report_puts_the_article_beside_this_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    repo = ModelRepository(run_dir / "model-repository")
    repo.manifests_dir.mkdir(parents=True)
    write_manifest(repo.manifest_path("pt_resnet50"), make_manifest("pytorch", "resnet50"))
    (run_dir / "load").mkdir()
    (run_dir / "load" / "case.json").write_text(json.dumps(load_document(_points(1000.0, 250.0))))
    write_scenario_file(plan_scenario("case-study", run_dir))
    report = build_report(run_dir).read_text()
    assert "## INT8 served beside fp32" in report and "## Case study" in report
    section = report[report.index("## Case study") :]
    assert "| p99 latency | 1.80 s → 210 ms | -88% | 1.00 s → 250 ms (n 400 / 400) | -75% |" in section
    assert "91.2% → 92.9% | +1.7 pts | 95.0% → 92.5% under load" in section
    assert "| ONNX size | −40% | -40% | 46.1 MB → 11.5 MB | -75% |" in section
    assert "97.0% under load" in section  # INT8 agreement with fp32
    assert "did not learn" not in section  # 95% on 3 classes is no chance level


def test_a_model_at_chance_is_said_to_compare_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    repo = ModelRepository(run_dir / "model-repository")
    repo.manifests_dir.mkdir(parents=True)
    manifest = make_manifest("pytorch", "resnet50")
    manifest.exports["onnx"].accuracy = 1 / 3
    write_manifest(repo.manifest_path("pt_resnet50"), manifest)
    write_scenario_file(plan_scenario("case-study", run_dir))
    report = build_report(run_dir).read_text()
    assert "This run's model did not learn: its val accuracy is chance (33.3% for 3 classes)" in report


def test_without_the_scenario_file_there_is_no_case_study(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "load").mkdir(parents=True)
    (run_dir / "load" / "case.json").write_text(json.dumps(load_document(_points(1000.0, 250.0))))
    report = build_report(run_dir).read_text()
    assert "## INT8 served beside fp32" in report and "## Case study" not in report
