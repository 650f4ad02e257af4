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


def test_trainers_run_back_to_back_with_the_same_settings(
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
    fair_fight.bench_trainers(DemoSettings(run_dir=tmp_path), tmp_path / "out")
    assert ["trainer_pt" in argv for argv in argvs] == [True, False]
    for flag in ("--model", "--image-size", "-b", "--steps", "--variants"):
        assert len({argv[argv.index(flag) + 1] for argv in argvs}) == 1, flag
    summary = json.loads((tmp_path / "out" / "trainers_vs_bare.json").read_text())
    assert summary["pytorch"]["trainer_over_bare"] == 0.97 and summary["pytorch"]["meets_goal"]
    assert summary["tensorflow"]["trainer_over_bare"] == 0.75 and not summary["tensorflow"]["meets_goal"]


def test_a_bench_without_fp32_is_said() -> None:
    with pytest.raises(StageFailed, match="'bf16'"):
        fair_fight.summarize_trainers({"results": [{"variant": "bf16"}]}, TF_DOCUMENT)


def test_parity_summary_keeps_the_differences_not_the_losses() -> None:
    replay = {"architecture": "resnet18", "max_abs_loss_diff": 0.01, "pt_losses": [1.0], "tf_losses": [1.0]}
    summary = fair_fight.summarize_parity({"resnet18": replay})
    assert summary["architectures"]["resnet18"] == {"architecture": "resnet18", "max_abs_loss_diff": 0.01}
