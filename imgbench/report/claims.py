"""The seed article's claims next to what this run measured for the same quantity, each with a verdict.

The seed measured ImageNet-2026 on 4×H200 with PyTorch 2.4 / TensorFlow 2.17; this run measured its own
dataset and hardware. Only the direction is comparable: a verdict says whether this run's repeats show a
difference in the seed's direction (``supported``), in the other (``contradicted``), neither
(``not distinguishable`` at this n), or cannot say (one run per framework). The test is Welch's t-test on
one value per seed (``imgbench.report.stats``); never the epoch-to-epoch spread inside a run, nor a
binomial error over the evaluation images.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgbench.manifest import Manifest
from imgbench.report.exports import retention
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table
from imgbench.report.repeats import compare_training
from imgbench.report.stats import TEST_NAME, Comparison


@dataclass(frozen=True)
class Claim:
    """One of the seed's PyTorch-vs-TensorFlow claims on a training figure."""

    text: str
    seed: str
    figure: str  # a SeedFigures field
    expected_sign: int  # the sign of PyTorch − TensorFlow the seed claims

    def measured(self, comparison: Comparison, architecture: str) -> str:
        a, b = comparison.a.mean, comparison.b.mean
        if self.figure == "top1":
            value = f"{(a - b) * 100:+.1f} pts"
        else:
            value = f"{(a / b - 1) * 100:+.1f}%" if b else "–"
        return f"{value} ({architecture}, means of {comparison.a.n} vs {comparison.b.n} run(s))"


CLAIMS = (
    Claim("top-1, PyTorch − TensorFlow", "+2.1 pts (ResNet-152)", "top1", +1),
    Claim("time per epoch, PyTorch vs TensorFlow", "−17.9% (ResNet-152)", "seconds_per_epoch", -1),
    Claim("peak training memory, PyTorch vs TensorFlow", "+5.9% (72 vs 68 GB/GPU)", "peak_memory_bytes", +1),
)
RETENTION_CLAIMS = {"pytorch": ("PyTorch", "99.8%"), "tensorflow": ("TensorFlow", "99.4%")}


def claim_rows(pt: Manifest, tf: Manifest, architecture: str) -> list[list[object]]:
    """One row per claim: claim, seed, this run, verdict (with the test it rests on)."""
    rows: list[list[object]] = []
    for claim in CLAIMS:
        if claim.figure == "peak_memory_bytes" and not tf.training.peak_memory_bytes:
            continue
        comparison = compare_training(pt, tf, claim.figure, claim.expected_sign)
        rows.append([claim.text, claim.seed, claim.measured(comparison, architecture), comparison.explain()])
    for manifest in (pt, tf):
        framework, seed = RETENTION_CLAIMS[manifest.framework]
        onnx = next((r for r in manifest.exports.values() if r.format == "onnx" and r.status == "ok"), None)
        kept = retention(manifest, onnx) if onnx else None
        rows.append(
            [
                f"ONNX export accuracy retention, {framework}",
                seed,
                f"{kept:.2%} ({architecture})" if kept is not None else "no ONNX export",
                "cannot tell: one export (the first seed's), no repeats of it",
            ]
        )
    return rows


def claims_section(inputs: ReportInputs) -> str:
    rows: list[list[object]] = []
    for architecture, frameworks in inputs.by_architecture().items():
        pt, tf = frameworks.get("pytorch"), frameworks.get("tensorflow")
        if pt and tf:
            rows += claim_rows(pt, tf, architecture)
    if not rows:
        return (
            "## The seed's claims, measured\n\nNeeds both frameworks trained on the same architecture; "
            "this run has no such pair.\n"
        )
    return (
        "## The seed's claims, measured\n\n"
        "The seed's figures are ImageNet-2026 on 4×H200 (PyTorch 2.4, TensorFlow 2.17); this run's are "
        "its own dataset, models and hardware (see Environment). Compare directions, not values. "
        f"Verdicts: {TEST_NAME} (one value per seed of `--repeats N`): **supported** when the difference "
        "is significant and in the seed's direction, **contradicted** when significant the other way, "
        "**not distinguishable at this n** otherwise; with one run per framework the report cannot tell, "
        "because one run shows no run-to-run variation.\n\n"
        + table(["claim", "seed", "this run", "verdict"], rows)
        + "\n"
    )
