"""The report's "Dynamic input shapes" section: the dynamic exports' gate at each size (manifests), and
``dynamic-bench``'s results (``RUN_DIR/dynamic/*.json``): accuracy per size, dynamic vs fixed-shape
latency per runtime with its n, torch.compile's graph and recompile counts, beside the seed article's
claims (PyTorch: "<3% accuracy drop" over 224–512 px with ``torch.compile(dynamic=True)``; TensorFlow:
"12% inference overhead" for a SavedModel shape signature with dynamic inputs)."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from imgbench.dynamic_shapes import FORMATS, RESULTS_DIR, DynamicBenchResult, load_results
from imgbench.errors import ImgbenchError
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import num, pct, table

SEED_ACCURACY_DROP = 0.03
SEED_TF_OVERHEAD = 0.12


def read_results(run_dir: Path) -> tuple[list[DynamicBenchResult], list[str]]:
    """Every results file under ``RUN_DIR/dynamic/`` (recursively), and the problems of unreadable ones."""
    folder = Path(run_dir) / RESULTS_DIR
    results, problems = [], []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            results.append(load_results(path))
        except ImgbenchError as exc:
            problems.append(str(exc))
    return results, problems


def _gate_rows(inputs: ReportInputs) -> list[list[object]]:
    rows = []
    for model, manifest in sorted(inputs.manifests.items()):
        for key in FORMATS:
            record = manifest.exports.get(key)
            if record is None:
                continue
            if record.status != "ok":
                rows.append([model, key, None, f"{record.status}: {record.reason}", None, None, None])
                continue
            sizes = record.details.get("sizes")
            for size, figures in (
                sorted(sizes.items(), key=lambda kv: int(kv[0])) if isinstance(sizes, dict) else []
            ):
                rows.append(
                    [
                        model,
                        key,
                        size,
                        figures.get("n"),
                        pct(figures.get("top1_agreement"), 2),
                        pct(figures.get("accuracy"), 2),
                        pct(figures.get("framework_accuracy"), 2),
                    ]
                )
    return rows


def _accuracy_drop(result: DynamicBenchResult) -> float | None:
    """Largest accuracy drop of the dynamic export at any size vs the fixed-shape export of that size."""
    drops = [r.accuracy_fixed - r.accuracy_dynamic for r in result.rows if r.accuracy_fixed is not None]
    return max(drops) if drops else None


def _overheads(results: list[DynamicBenchResult], framework: str, runtime: str) -> list[float]:
    return [
        row.overhead
        for result in results
        if result.framework == framework
        for row in result.rows
        if row.runtime == runtime and row.overhead is not None
    ]


def dynamic_shapes_section(inputs: ReportInputs) -> str:
    results, problems = read_results(inputs.run_dir)
    gates = _gate_rows(inputs)
    if not results and not gates:
        return ""
    parts = ["## Dynamic input shapes", ""]
    if gates:
        parts += [
            "Dynamic exports (trainers' `--dynamic-sizes`), each gated against its framework on the whole "
            "evaluation split at every size; the accuracy at a size is that of images resized to it.",
            "",
            table(["model", "export", "px", "n", "top-1 agreement", "accuracy", "framework accuracy"], gates),
            "",
        ]
    measured = [r for r in results if not r.skipped]
    for result in results:
        if result.skipped:
            parts += [f"- {result.model}: not measured: {result.skipped}", ""]
    if measured:
        rows = [
            [
                result.model,
                row.runtime,
                row.size,
                row.n,
                pct(row.accuracy_dynamic, 2),
                pct(row.accuracy_fixed, 2),
                row.latency_samples,
                num(row.latency_ms_dynamic, 3),
                num(row.latency_ms_fixed, 3),
                None if row.overhead is None else f"{row.overhead * 100:+.1f}%",
                row.threads,
            ]
            for result in measured
            for row in result.rows
        ]
        parts += [
            "`dynamic-bench`: the dynamic export against a fixed-shape export of the same size (same "
            "runtime, same threads, single images timed interleaved; medians of n runs, one run of the "
            "bench: no run-to-run variation, so no verdict on small differences).",
            "",
            table(
                [
                    "model",
                    "runtime",
                    "px",
                    "images",
                    "accuracy dynamic",
                    "accuracy fixed",
                    "n (latency)",
                    "ms dynamic",
                    "ms fixed",
                    "overhead",
                    "threads",
                ],
                rows,
            ),
            "",
        ]
        compile_rows = [
            [
                result.model,
                f"dynamic={c.dynamic}",
                ", ".join(map(str, result.sizes)),
                result.environment.get("compile_backend"),
                c.frames_compiled,
                c.recompiles,
                num(c.compile_seconds, 1),
                pct(c.accuracy_top1_match, 1),
                "; ".join(c.recompile_reasons) or c.error,
            ]
            for result in measured
            for c in result.compile
        ]
        if compile_rows:
            parts += [
                "torch.compile over the size set (one batch per size, in order; Dynamo's counters):",
                "",
                table(
                    [
                        "model",
                        "mode",
                        "sizes",
                        "backend",
                        "graphs",
                        "recompiles",
                        "s compiling",
                        "top-1 = eager",
                        "guard that failed",
                    ],
                    compile_rows,
                ),
                "",
            ]
        parts += _claims(measured)
        loads = sorted({f"{r.model}: {', '.join(f'{v:.1f}' for v in r.load_average)}" for r in measured})
        parts += [f"Load average (1/5/15 min) at the start and end of each bench: {'; '.join(loads)}.", ""]
    parts += [f"- {p}" for p in problems]
    return "\n".join(parts) + "\n"


def _claims(measured: list[DynamicBenchResult]) -> list[str]:
    rows = []
    pt = [r for r in measured if r.framework == "pytorch"]
    if pt:
        drops = [d for d in (_accuracy_drop(r) for r in pt) if d is not None]
        training = [
            row.accuracy_dynamic - next_row.accuracy_dynamic
            for r in pt
            for row in r.rows
            if row.size == r.training_size
            for next_row in r.rows
            if next_row.runtime == row.runtime and next_row.size != r.training_size
        ]
        rows.append(
            [
                "accuracy drop, dynamic vs fixed input sizes (PyTorch)",
                "<3% (224–512 px, torch.compile dynamic=True)",
                f"{max(drops) * 100:+.2f} pts at most, dynamic vs fixed export of the same size"
                if drops
                else None,
                "the runtime changes nothing; the drop from the training size to other sizes "
                f"(up to {max(training) * 100:.1f} pts here) is the model's, not the export's"
                if training
                else None,
            ]
        )
    for framework, runtime in (
        ("tensorflow", "tf.saved_model"),
        ("tensorflow", "onnxruntime"),
        ("pytorch", "onnxruntime"),
    ):
        overheads = _overheads(measured, framework, runtime)
        if overheads:
            rows.append(
                [
                    f"inference overhead of dynamic inputs ({framework}, {runtime})",
                    "12% (TensorFlow SavedModel)" if runtime == "tf.saved_model" else "–",
                    f"median {median(overheads) * 100:+.1f}% (range {min(overheads) * 100:+.1f}% to "
                    f"{max(overheads) * 100:+.1f}%, {len(overheads)} size(s))",
                    "one bench run: a difference of a few percent is within run-to-run noise",
                ]
            )
    if not rows:
        return []
    return [
        "The seed article's dynamic-shape claims beside ours:",
        "",
        table(["claim", "seed", "this run", "note"], rows),
        "",
    ]
