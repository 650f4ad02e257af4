""" "What this run says": sentences generated from this run's numbers only, with how sure they are."""

from __future__ import annotations

from imgbench.report.exports import retention
from imgbench.report.inputs import ReportInputs
from imgbench.report.serving import backend_label, points
from imgbench.report.stats import binomial_stderr, clearly_different
from imgbench.report.training import epoch_seconds

UNSTABLE_CV = 0.3  # epoch-time standard deviation over mean beyond which a machine was not steady


def summary_section(inputs: ReportInputs) -> str:
    sentences: list[str] = []
    for architecture, frameworks in inputs.by_architecture().items():
        pt, tf = frameworks.get("pytorch"), frameworks.get("tensorflow")
        if not (pt and tf):
            missing = "TensorFlow" if pt else "PyTorch"
            sentences.append(
                f"{architecture}: only one framework trained ({missing} is missing), no comparison."
            )
            continue
        pt_s, tf_s = epoch_seconds(pt), epoch_seconds(tf)
        if pt_s and tf_s:
            faster, slower = ("PyTorch", "TensorFlow") if pt_s.mean < tf_s.mean else ("TensorFlow", "PyTorch")
            factor = max(pt_s.mean, tf_s.mean) / min(pt_s.mean, tf_s.mean)
            unstable = [s for s in (pt_s, tf_s) if s.mean and s.stdev / s.mean > UNSTABLE_CV]
            if unstable:
                sure = (
                    f"but epoch times varied by more than {UNSTABLE_CV:.0%} of their mean (was the machine "
                    "busy with other work?), so rerun on a quiet machine before trusting the ratio"
                )
            elif clearly_different(pt_s, tf_s):
                sure = "clearly (more than two standard errors apart)"
            else:
                sure = "but the epochs' spread is too wide (or too few epochs) to call it"
            sentences.append(
                f"{architecture}: {faster} trained {factor:.2f}× faster per epoch than {slower} here "
                f"({pt_s.mean:.2f} s vs {tf_s.mean:.2f} s, PT vs TF), {sure}."
            )
        n = pt.dataset.num_eval
        delta = (pt.training.top1 - tf.training.top1) * 100
        noise = 2 * 100 * max(binomial_stderr(pt.training.top1, n), binomial_stderr(tf.training.top1, n))
        verdict = "within" if abs(delta) <= noise else "beyond"
        sentences.append(
            f"{architecture}: top-1 PyTorch {pt.training.top1:.1%} vs TensorFlow {tf.training.top1:.1%} "
            f"({delta:+.1f} points on {n} images; ±{noise:.1f} points is two standard errors, so the gap is "
            f"{verdict} measurement noise)."
        )
    for model, manifest in sorted(inputs.manifests.items()):
        onnx = next((r for r in manifest.exports.values() if r.format == "onnx" and r.status == "ok"), None)
        if onnx and onnx.top1_agreement is not None:
            kept = retention(manifest, onnx)
            kept_text = f", accuracy retention {kept:.2%}" if kept is not None else ""
            sentences.append(
                f"{model}: the ONNX export agreed with the framework on {onnx.top1_agreement:.2%} of "
                f"{onnx.n} images (max |Δlogit| {onnx.max_abs_logit_diff:.1e}){kept_text}."
            )
    single = [p for p in points(inputs) if p.batch_size == 1 and not p.errors and p.p99_ms]
    if single:
        best = min(single, key=lambda p: p.p99_ms or 0.0)
        sentences.append(
            f"Lowest p99 at batch 1: {backend_label(best)} serving {best.model} "
            f"({best.p99_ms:.2f} ms at {best.throughput_rps or 0:.0f} req/s)."
        )
    wrong = sum(p.incorrect for p in points(inputs))
    if points(inputs):
        sentences.append(
            "Every served answer under load matched the label it was checked against."
            if wrong == 0
            else f"{wrong} answers under load had a wrong top-1: see the serving table."
        )
    body = (
        "\n".join(f"- {s}" for s in sentences) if sentences else "Nothing was measured, so nothing is said."
    )
    return "## What this run says\n\nGenerated from this run's measurements only.\n\n" + body + "\n"
