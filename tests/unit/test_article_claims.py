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
