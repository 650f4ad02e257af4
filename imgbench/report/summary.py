""" "What this run says": sentences generated from this run's numbers only, with how sure they are."""

from __future__ import annotations

import statistics

from imgbench.report.exports import retention
from imgbench.report.inputs import ReportInputs
from imgbench.report.repeats import compare_training, load_groups, training_values
from imgbench.report.serving import backend_label, points
from imgbench.report.stats import UNRELIABLE_MARK, UNRELIABLE_NOTE, Comparison, percentile_reliable

UNSTABLE_CV = 0.3  # epoch-time standard deviation over mean beyond which a machine was not steady


def _how_sure(comparison: Comparison) -> str:
    """What the repeats say about a difference, never the spread inside one run."""
    if comparison.verdict == "cannot tell":
        return (
            f"but with {comparison.a.n} vs {comparison.b.n} run(s) the report cannot tell whether that is "
            "real: run-to-run variation needs `--repeats 2` or more"
        )
    test = f"Welch's t-test p={comparison.p_value:.3f} across {comparison.a.n} vs {comparison.b.n} seeds"
    if comparison.verdict == "not distinguishable":
        return f"not distinguishable from run-to-run variation at this n ({test})"
    return f"a real difference ({test})"


def _unsteady(values: list[float]) -> bool:
    """Epoch times that vary by more than UNSTABLE_CV of their mean; a run of one or two epochs (no
    epoch, or one, after the warm-up epoch) has nothing to vary."""
    if len(values) < 2:
        return False
    mean = statistics.fmean(values)
    return mean > 0 and statistics.stdev(values) / mean > UNSTABLE_CV


def _lowest_p99_at_batch_1(inputs: ReportInputs) -> str | None:
    """The batch-1 point with the lowest mean p99 across its repeats, with its n and reliability."""
    candidates = []
    for group in load_groups(points(inputs)):
        p99 = group.interval("p99_ms")
        if group.first.batch_size == 1 and p99 is not None and not any(p.errors for p in group.points):
            candidates.append((p99.mean, group))
    if not candidates:
        return None
    p99_ms, best = min(candidates, key=lambda item: item[0])
    rps = best.interval("throughput_rps")
    over = f" per repeat, {best.repeats} repeats" if best.repeats > 1 else ""
    note = UNRELIABLE_NOTE.removeprefix(f"{UNRELIABLE_MARK} ").rstrip(".")
    trust = "" if percentile_reliable(99.0, best.min_n) else f"; {note}"
    return (
        f"Lowest p99 at batch 1: {backend_label(best.first)} serving {best.first.model} "
        f"({p99_ms:.2f} ms at {rps.mean if rps else 0:.0f} req/s; p99 of n={best.min_n:,} requests{over}"
        f"{trust})."
    )


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
        if pt.training.history and tf.training.history:
            seconds = compare_training(pt, tf, "seconds_per_epoch", -1)
            pt_s, tf_s = seconds.a.mean, seconds.b.mean
            faster, slower = ("PyTorch", "TensorFlow") if pt_s < tf_s else ("TensorFlow", "PyTorch")
            factor = max(pt_s, tf_s) / min(pt_s, tf_s) if min(pt_s, tf_s) > 0 else float("inf")
            sentences.append(
                f"{architecture}: {faster} trained {factor:.2f}× faster per epoch than {slower} here "
                f"({pt_s:.2f} s vs {tf_s:.2f} s, PT vs TF, mean over {seconds.a.n} vs {seconds.b.n} "
                f"seed(s)), {_how_sure(seconds)}."
            )
            busy = [
                label
                for label, manifest in (("PyTorch", pt), ("TensorFlow", tf))
                if _unsteady([r.seconds for r in manifest.training.history[1:]])
            ]
            if busy:
                sentences.append(
                    f"{architecture}: {' and '.join(busy)} epoch times varied by more than {UNSTABLE_CV:.0%} "
                    "of their mean within a run (was the machine busy with other work?): rerun on a quiet "
                    "machine before trusting the times."
                )
        top1 = compare_training(pt, tf, "top1", +1)
        sentences.append(
            f"{architecture}: top-1 PyTorch {top1.a.mean:.1%} vs TensorFlow {top1.b.mean:.1%} "
            f"({top1.difference * 100:+.1f} points on {pt.dataset.num_eval} images, mean over "
            f"{len(training_values(pt, 'top1'))} vs {len(training_values(tf, 'top1'))} seed(s)), "
            f"{_how_sure(top1)}."
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
    lowest = _lowest_p99_at_batch_1(inputs)
    if lowest:
        sentences.append(lowest)
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
    return (
        "## What this run says\n\nGenerated from this run's measurements only; a difference is called real "
        "only from the variation across repeats (seeds), never from the spread inside one run.\n\n"
        + body
        + "\n"
    )
