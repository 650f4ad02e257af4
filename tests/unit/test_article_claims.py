"""The article's claim list: every claim gets a row that is measured, or says how or why not."""

from __future__ import annotations

from pathlib import Path

from factories import make_manifest

from imgbench.manifest import SeedFigures, TrainingRepeats
from imgbench.report.article import ARTICLE_CLAIMS, article_rows, article_section
from imgbench.report.inputs import ReportInputs

NOT_MEASURED = ("cannot be measured here", "not measured in this run")


def _inputs(*manifests) -> ReportInputs:
    inputs = ReportInputs(run_dir=Path("run"))
    for manifest in manifests:
        inputs.manifests[manifest.model] = manifest
    return inputs


def test_every_claim_says_how_it_is_measured_or_why_not() -> None:
    for claim in ARTICLE_CLAIMS:
        assert claim.how.strip(), claim.text
        assert claim.measurable == (claim.evidence is not None), claim.text


def test_an_empty_run_measures_nothing_and_says_so() -> None:
    rows = article_rows(_inputs())
    assert len(rows) == len(ARTICLE_CLAIMS)
    assert all(row[3] in NOT_MEASURED for row in rows)


def test_a_trained_pair_fills_the_training_rows_by_family() -> None:
    pt, tf = make_manifest("pytorch", "resnet18"), make_manifest("tensorflow", "resnet18")
    tf.training.top1 = 0.90
    rows = {row[1]: row[3] for row in article_rows(_inputs(pt, tf))}
    assert rows["ResNet-152 top-1, PyTorch − TensorFlow"].startswith("+5.0 pts (resnet18")
    # No MobileNet pair: the row says so instead of passing a ResNet off as a MobileNet.
    assert rows["MobileNetV4 top-1, PyTorch − TensorFlow"].startswith("no mobilenet pair trained")
    assert "pt_resnet18: 100.00% (n=359)" in rows["ONNX export accuracy retention"]
    assert rows["framework versions compared"] == "pytorch 2.14.1; tensorflow 2.21.0"
    assert rows["share of new projects defaulting to PyTorch by 2027"] == "cannot be measured here"


def test_repeats_give_the_coefficient_of_variation() -> None:
    pt = make_manifest("pytorch")
    pt.training.repeats = TrainingRepeats(
        per_seed=[
            SeedFigures(seed=s, epochs=3, top1=t, seconds_per_epoch=10.0 + s, images_per_second=140.0,
                        peak_memory_bytes=1)
            for s, t in [(0, 0.90), (1, 0.92)]
        ]
    )  # fmt: skip
    rows = {row[1]: row[3] for row in article_rows(_inputs(pt))}
    # top-1 0.90/0.92: population sd 0.01 over mean 0.91; s/epoch 10/11: sd 0.5 over 10.5.
    assert rows["reproducibility: 5 seeded runs, coefficient of variation"] == (
        "pt_resnet18 over 2 seeds: top-1 CV 1.1%, s/epoch CV 4.8%"
    )


def test_section_counts_what_it_measured() -> None:
    text = article_section(_inputs(make_manifest("pytorch"), make_manifest("tensorflow")))
    assert text.startswith("## Every claim of the article")
    measured = sum(1 for row in article_rows(_inputs(make_manifest("pytorch"), make_manifest("tensorflow")))
                   if row[3] not in NOT_MEASURED)  # fmt: skip
    assert f"{measured} measured in this run" in text and measured >= 6


def test_dynamic_bench_results_fill_the_dynamic_shape_rows(tmp_path: Path) -> None:
    from imgbench.dynamic_shapes import DynamicBenchResult, SizeResult, results_path, write_results

    rows = [
        SizeResult(size=size, runtime="tf.saved_model", n=359, accuracy_dynamic=dyn, accuracy_fixed=fixed,
                   latency_samples=100, latency_ms_dynamic=ms_dyn, latency_ms_fixed=1.0, threads=1)
        for size, dyn, fixed, ms_dyn in [(32, 0.95, 0.95, 1.05), (48, 0.78, 0.80, 0.98)]
    ]  # fmt: skip
    result = DynamicBenchResult(
        model="tf_resnet18", framework="tensorflow", architecture="resnet18", training_size=32,
        sizes=[32, 48], rows=rows,
    )  # fmt: skip
    write_results(results_path(tmp_path, "tf_resnet18"), result)
    inputs = ReportInputs(run_dir=tmp_path)
    measured = {row[1]: row[3] for row in article_rows(inputs)}
    assert measured["variable input sizes (224–512): accuracy drop of the dynamic model"] == (
        "tf_resnet18: largest drop 2.0 pts (sizes 32,48)"
    )
    assert measured["TensorFlow SavedModel shape signatures: inference overhead for dynamic inputs"] == (
        "tf.saved_model: -2.0% to +5.0% (n=100 a side per size)"
    )
