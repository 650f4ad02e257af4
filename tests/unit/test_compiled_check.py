"""The compiled-vs-eager record: the gate's verdict, the run-folder file, the manifest field (optional,
so older manifests still read), the report's Compiled models section and the article's rows, and the
fusion benchmark's summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from factories import make_manifest

from imgbench.bench import fusion
from imgbench.compiled_check import CHECK_NAME, CompiledGateError, judge, read_check, record_and_enforce
from imgbench.manifest import Manifest, load_manifest, write_manifest
from imgbench.report.article import article_rows
from imgbench.report.compiled import compiled_section
from imgbench.report.inputs import ReportInputs
from imgbench.validation import ExportGateError

EAGER = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
LABELS = np.array([0, 1, 2, 1])


def _check(compiled: np.ndarray, stage: str = "train"):
    return judge("torch.compile(mode=max-autotune)", stage, EAGER, compiled, LABELS, 0.999, 1e-3, 12.5)


def test_an_identical_compiled_model_passes_with_both_accuracies() -> None:
    check = _check(EAGER + 1e-6)
    assert check.passed and check.reason is None and check.n == 4
    assert check.top1_agreement == 1.0 and check.max_abs_logit_diff == pytest.approx(1e-6)
    assert check.eager_accuracy == check.compiled_accuracy == 0.75


def test_a_changed_answer_fails_with_the_gate_message_and_the_accuracy_it_cost() -> None:
    wrong = EAGER.copy()
    wrong[0] = [0.0, 0.0, 2.0]  # a right answer turned wrong: the article's silent accuracy loss
    check = _check(wrong)
    assert not check.passed
    assert check.reason.startswith("torch.compile(mode=max-autotune) vs eager: top-1 agreement 75.0000%")
    assert (check.eager_accuracy, check.compiled_accuracy) == (0.75, 0.5)


def test_the_record_is_written_also_when_it_fails(tmp_path: Path) -> None:
    failed = _check(EAGER + 0.01)
    with pytest.raises(
        CompiledGateError, match=r"max \|Δlogit\| 0.01 exceeds the tolerance 0.001.*recorded in"
    ):
        record_and_enforce(tmp_path, failed)
    assert read_check(tmp_path) == failed
    assert read_check(tmp_path / "elsewhere") is None
    (tmp_path / CHECK_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ExportGateError, match="is not a compiled-model check"):
        read_check(tmp_path)


def test_the_manifest_field_is_optional_and_round_trips(tmp_path: Path) -> None:
    manifest = make_manifest("pytorch")
    path = tmp_path / "pt_resnet18.json"
    data = json.loads(manifest.model_dump_json())
    del data["training"]["compiled_check"]  # a manifest written before the field existed
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_manifest(path).training.compiled_check is None
    manifest.training.compiled_check = _check(EAGER)
    write_manifest(path, manifest)
    assert load_manifest(path).training.compiled_check == manifest.training.compiled_check


def _inputs(*manifests: Manifest, run_dir: Path = Path("run")) -> ReportInputs:
    inputs = ReportInputs(run_dir=run_dir)
    for manifest in manifests:
        inputs.manifests[manifest.model] = manifest
    return inputs


def test_report_section_and_article_row_show_the_check() -> None:
    pt, tf = make_manifest("pytorch"), make_manifest("tensorflow")
    pt.training.compiled_check = _check(EAGER)
    section = compiled_section(_inputs(pt, tf))
    assert section.startswith("## Compiled models") and "lost 0.8% accuracy" in section
    row = next(line for line in section.splitlines() if line.startswith("| pt_resnet18"))
    assert "torch.compile(mode=max-autotune)" in row and "100.00%" in row and "passed" in row
    assert "75.00% → 75.00% (+0.00 pts)" in row and "tf_resnet18" not in section
    rows = {r[1]: r[3] for r in article_rows(_inputs(pt, tf))}
    claim = "torch.compile max-autotune: no accuracy loss, but validate against eager (teams lost accuracy)"
    assert rows[claim].startswith("pt_resnet18 torch.compile(mode=max-autotune): agreement 100.00%")
    assert "No model in this run" in compiled_section(_inputs(make_manifest("tensorflow")))


def _rounds(figures: tuple[str, ...], values: tuple[float, ...]) -> list[dict[str, float]]:
    return [dict.fromkeys(figures, value) for value in values]


def test_fusion_summary_judges_each_figure_against_the_article(tmp_path: Path) -> None:
    pt_figures = ("optimizer_step_ms", "bare_images_per_second", "trainer_images_per_second")
    tf_speed = ("bare_images_per_second", "fit_images_per_second")
    rows = {
        "pytorch": {"on": _rounds(pt_figures, (110, 112, 111)), "off": _rounds(pt_figures, (100, 101, 99))},
        "tensorflow": {
            "on": [
                {**r, "peak_rss_bytes": m}
                for r, m in zip(_rounds(tf_speed, (1,) * 3), (3, 3.1, 2.9), strict=True)
            ],
            "off": [
                {**r, "peak_rss_bytes": m}
                for r, m in zip(_rounds(tf_speed, (2,) * 3), (2, 2.1, 1.9), strict=True)
            ],
        },
    }
    summary = fusion.summarize(rows)
    assert summary["pytorch"]["bare_images_per_second"]["verdict"] == "supported"
    assert summary["pytorch"]["bare_images_per_second"]["on_over_off"] == pytest.approx(1.11)
    # XLA used more memory: the article's −22% is contradicted; its slowdown is supported.
    assert summary["tensorflow"]["peak_rss_bytes"]["verdict"] == "contradicted"
    assert summary["tensorflow"]["fit_images_per_second"]["verdict"] == "supported"
    result = tmp_path / fusion.RESULT
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps(summary), encoding="utf-8")
    measured = {r[1]: r[3] for r in article_rows(_inputs(run_dir=tmp_path))}
    assert measured["XLA-fused optimizer: training memory"].startswith("+50.0% (3 rounds a side")
    assert measured["XLA-fused optimizer: training memory"].endswith("contradicted)")
    assert fusion.summarize({"pytorch": rows["pytorch"]}).keys() >= {"pytorch"}
