"""The seed article's claims next to what this run measured for the same quantity.

The seed measured ImageNet-2026 on 4×H200 with PyTorch 2.4 / TensorFlow 2.17; this run measured its own
dataset and hardware. Only the direction and relative size are comparable, which the table says.
"""

from __future__ import annotations

from imgbench.report.exports import retention
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table
from imgbench.report.training import epoch_seconds


def claims_section(inputs: ReportInputs) -> str:
    rows: list[list[object]] = []
    for architecture, frameworks in inputs.by_architecture().items():
        pt, tf = frameworks.get("pytorch"), frameworks.get("tensorflow")
        if not (pt and tf):
            continue
        rows.append(
            [
                "top-1, PyTorch − TensorFlow",
                "+2.1 pts (ResNet-152)",
                f"{(pt.training.top1 - tf.training.top1) * 100:+.1f} pts ({architecture})",
            ]
        )
        pt_s, tf_s = epoch_seconds(pt), epoch_seconds(tf)
        if pt_s and tf_s and tf_s.mean:
            rows.append(
                [
                    "time per epoch, PyTorch vs TensorFlow",
                    "−17.9% (ResNet-152)",
                    f"{(pt_s.mean / tf_s.mean - 1) * 100:+.1f}% ({architecture})",
                ]
            )
        if tf.training.peak_memory_bytes:
            rows.append(
                [
                    "peak training memory, PyTorch vs TensorFlow",
                    "+5.9% (72 vs 68 GB/GPU)",
                    f"{(pt.training.peak_memory_bytes / tf.training.peak_memory_bytes - 1) * 100:+.1f}%"
                    f" ({architecture})",
                ]
            )
        for framework, manifest, seed in (("PyTorch", pt, "99.8%"), ("TensorFlow", tf, "99.4%")):
            onnx = next(
                (r for r in manifest.exports.values() if r.format == "onnx" and r.status == "ok"), None
            )
            kept = retention(manifest, onnx) if onnx else None
            rows.append(
                [
                    f"ONNX export accuracy retention, {framework}",
                    seed,
                    f"{kept:.2%} ({architecture})" if kept is not None else "no ONNX export",
                ]
            )
    if not rows:
        return (
            "## The seed's claims, measured\n\nNeeds both frameworks trained on the same architecture; "
            "this run has no such pair.\n"
        )
    return (
        "## The seed's claims, measured\n\n"
        "The seed's figures are ImageNet-2026 on 4×H200 (PyTorch 2.4, TensorFlow 2.17); this run's are "
        "its own dataset, models and hardware (see Environment). Compare directions and relative sizes, "
        "not values.\n\n" + table(["claim", "seed", "this run"], rows) + "\n"
    )
