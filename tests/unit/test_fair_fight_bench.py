"""`make bench`'s issue-11 benchmarks, without running them: both trainers get the same model, image size
and batch back to back, and their JSON is summarized against the 0.95 goal; the parity summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgbench.bench import fair_fight, suite
from imgbench.demo import DemoSettings, StageFailed

PT_DOCUMENT = {
    "results": [
        {"variant": "fp32", "trainer_images_per_second": 970.0, "bare_images_per_second": 1000.0,
         "trainer_vs_bare": 0.97}
    ]
}  # fmt: skip
TF_DOCUMENT = {
    "results": [
        {"variant": "fp32", "fit_images_per_second": 750.0, "bare_images_per_second": 1000.0,
         "fit_over_bare": 0.75}
    ]
}  # fmt: skip


def test_both_benchmarks_are_in_the_suite() -> None:
    assert suite.BENCHMARKS["trainers"] is fair_fight.bench_trainers
    assert suite.BENCHMARKS["parity"] is fair_fight.bench_parity


def test_trainers_run_interleaved_with_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argvs: list[list[str]] = []

    def fake_run(stage: str, argv: list[str], settings: DemoSettings, env: dict | None = None) -> None:
        argvs.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        document = PT_DOCUMENT if "trainer_pt" in argv else TF_DOCUMENT
        (out / "bench.json").write_text(json.dumps(document))

    monkeypatch.setattr(fair_fight, "run_logged", fake_run)
    fair_fight.bench_trainers(DemoSettings(run_dir=tmp_path), tmp_path / "out", rounds=2)
    assert ["trainer_pt" in argv for argv in argvs] == [True, False, True, False]
    for flag in ("--model", "--image-size", "-b", "--steps", "--variants"):
        assert len({argv[argv.index(flag) + 1] for argv in argvs}) == 1, flag
    summary = json.loads((tmp_path / "out" / "trainers_vs_bare.json").read_text())
    assert [r["trainer_over_bare"] for r in summary["pytorch"]["rounds"]] == [0.97, 0.97]
    assert summary["pytorch"]["goal"] == "met" and summary["tensorflow"]["goal"] == "missed"


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [
        ([0.97, 0.975, 0.98], "met"),
        ([0.74, 0.75, 0.76], "missed"),
        ([0.90, 1.00, 0.95], "not distinguishable at this n"),
        ([0.97], "cannot tell (one round)"),
    ],
)
def test_the_goal_is_judged_on_the_interval_across_rounds(ratios: list[float], verdict: str) -> None:
    assert fair_fight.goal_verdict(ratios) == verdict


def test_a_bench_without_fp32_is_said() -> None:
    with pytest.raises(StageFailed, match="'bf16'"):
        fair_fight.summarize_trainers([{"results": [{"variant": "bf16"}]}], [TF_DOCUMENT])


def test_parity_summary_keeps_the_differences_not_the_losses() -> None:
    replay = {"architecture": "resnet18", "max_abs_loss_diff": 0.01, "pt_losses": [1.0], "tf_losses": [1.0]}
    summary = fair_fight.summarize_parity({"resnet18": replay})
    assert summary["architectures"]["resnet18"] == {"architecture": "resnet18", "max_abs_loss_diff": 0.01}
