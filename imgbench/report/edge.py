"""Edge models: every TFLite export of both frameworks with its file size, the interpreter's measured
peak memory and latency, and its agreement with the framework, beside the seed's edge claims.

The memory is what ``imgbench.edge_memory`` measured when the export was gated (``details["memory"]``
of each ``tflite_*`` record): the peak RSS growth of a fresh process that loads the model, allocates
its tensors and runs it, so it holds the interpreter's arena, the weights paged in from the file and
any copy a delegate (XNNPACK) packs. The seed's figure is MobileNetV4 on a TPU v5; only the direction
is comparable.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from imgbench.manifest import ExportRecord, Manifest
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import mib, num, pct, table

TFLITE_PREFIX = "tflite_"
BENCH_FILE = "edge-memory.json"
"""``RUN_DIR/edge-memory.json``: ``python -m imgbench.edge_memory bench --output`` there, and the claim
table compares its medians (one venv, every model interleaved, N runs) instead of the export-time figures."""
SEED_MEMORY = "14 MB vs 11 MB, TensorFlow −21.4% (MobileNetV4, Edge TPU v5)"
SEED_PATH = "PyTorch: experimental (ONNX → TFLite); TensorFlow: native (Edge TPU compiler)"
NOT_MEASURED = (
    "Not measured here: Edge TPU compilation and on-device memory. They need Coral's `edgetpu_compiler` "
    "(full-int8 models only; it reports how many ops map to the TPU and the on-chip memory it uses) and "
    "an Edge TPU (a Coral USB/M.2 device, through `libedgetpu` and PyCoral) to run the compiled model; "
    "this machine has neither, so every figure above is LiteRT on the CPU."
)

HEADERS = [
    "model",
    "variant",
    "converter",
    "file size",
    "peak memory",
    "after the run",
    "ms/image",
    "threads",
    "top-1 agreement",
    "max |Δlogit|",
    "accuracy",
]
CLAIM_HEADERS = [
    "architecture",
    "variant",
    "PyTorch peak",
    "TensorFlow peak",
    "TensorFlow vs PyTorch",
    "file size, TF vs PT",
    "ms/image, TF vs PT",
    "measured",
    "seed",
]


def tflite_records(manifest: Manifest) -> dict[str, ExportRecord]:
    """variant (fp32, dynamic, int8) -> the TFLite export record."""
    return {
        key.removeprefix(TFLITE_PREFIX): record
        for key, record in sorted(manifest.exports.items())
        if key.startswith(TFLITE_PREFIX)
    }


def peak_memory(record: ExportRecord) -> int | None:
    """The interpreter's measured peak RSS growth (bytes), or None when it was not measured."""
    memory = record.details.get("memory")
    value = memory.get("peak_growth_bytes") if isinstance(memory, dict) else None
    return int(value) if isinstance(value, (int, float)) else None


def _memory_field(record: ExportRecord, field: str) -> object:
    memory = record.details.get("memory")
    return memory.get(field) if isinstance(memory, dict) else None


def _change(tf: float | None, pt: float | None) -> str | None:
    return None if tf is None or not pt else f"{(tf / pt - 1) * 100:+.1f}%"


def _row(model: str, variant: str, record: ExportRecord) -> list[object]:
    if record.status != "ok":
        return [model, variant, f"{record.status}: {record.reason or 'no reason recorded'}"] + [None] * 8
    steady = _memory_field(record, "steady_growth_bytes")
    return [
        model,
        variant,
        record.details.get("converter"),
        mib(record.size_bytes),
        mib(peak_memory(record)),
        mib(steady if isinstance(steady, (int, float)) else None),
        num(record.latency_ms_per_image, 3),
        record.details.get("threads"),
        pct(record.top1_agreement, 2),
        f"{record.max_abs_logit_diff:.2e}" if record.max_abs_logit_diff is not None else None,
        pct(record.accuracy, 2),
    ]


def bench_medians(run_dir: Path) -> dict[tuple[str, str], tuple[float, int]]:
    """(model, export) -> (median peak growth in bytes, runs) from ``RUN_DIR/edge-memory.json``; empty
    when there is none or it cannot be read (the export-time figures are used then)."""
    try:
        document = json.loads((Path(run_dir) / BENCH_FILE).read_text(encoding="utf-8"))
        return {
            (row["model"], row["export"]): (
                statistics.median(run["peak_growth_bytes"] for run in row["runs"]),
                len(row["runs"]),
            )
            for row in document["models"]
            if row["runs"]
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def claim_rows(inputs: ReportInputs) -> list[list[object]]:
    """Per architecture with both frameworks, per variant both exported: TF against PT."""
    bench = bench_medians(inputs.run_dir)
    rows = []
    for architecture, frameworks in inputs.by_architecture().items():
        if set(frameworks) != {"pytorch", "tensorflow"}:
            continue
        pt, tf = tflite_records(frameworks["pytorch"]), tflite_records(frameworks["tensorflow"])
        for variant in sorted(set(pt) & set(tf)):
            a, b = pt[variant], tf[variant]
            if a.status != "ok" or b.status != "ok":
                continue
            key = TFLITE_PREFIX + variant
            benched = (
                bench.get((frameworks["pytorch"].model, key)),
                bench.get((frameworks["tensorflow"].model, key)),
            )
            if benched[0] and benched[1]:
                (pt_peak, pt_runs), (tf_peak, tf_runs) = benched[0], benched[1]
                measured = f"bench: median of {pt_runs} vs {tf_runs} runs"
            else:
                pt_peak, tf_peak, measured = peak_memory(a), peak_memory(b), "at export: 1 run each"
            rows.append(
                [
                    architecture,
                    variant,
                    mib(pt_peak),
                    mib(tf_peak),
                    _change(tf_peak, pt_peak),
                    _change(b.size_bytes, a.size_bytes),
                    _change(b.latency_ms_per_image, a.latency_ms_per_image),
                    measured,
                    SEED_MEMORY,
                ]
            )
    return rows


def edge_section(inputs: ReportInputs) -> str:
    rows = [
        _row(model, variant, record)
        for model, manifest in sorted(inputs.manifests.items())
        for variant, record in tflite_records(manifest).items()
    ]
    parts = ["## Edge models", ""]
    if not rows:
        parts += [
            "No TFLite export in this run (trainer-tf builds them unless --skip-tflite; trainer-pt with "
            "--tflite).",
            "",
            NOT_MEASURED,
        ]
        return "\n".join(parts) + "\n"
    parts += [
        "Every TFLite model runs in LiteRT's interpreter on the CPU, one image at a time. Peak memory is "
        "the peak RSS growth of a fresh process that loads the model, allocates its tensors and runs it "
        "(`imgbench.edge_memory`); ms/image is the median over the whole evaluation split; agreement and "
        "max |Δlogit| are against the model's own framework on that split. "
        f"The seed: {SEED_PATH}.",
        "",
        table(HEADERS, rows),
        "",
    ]
    claims = claim_rows(inputs)
    if claims:
        parts += [
            "The seed's edge-memory claim beside ours (the direction only: no test across repeats). "
            f"Peak memory from `{BENCH_FILE}` in the run folder where present (`python -m "
            "imgbench.edge_memory bench --repeats N --output RUN_DIR/edge-memory.json`: every model N "
            "times, interleaved, in one venv), else the one figure each export recorded:",
            "",
            table(CLAIM_HEADERS, claims),
            "",
        ]
    else:
        parts += ["No architecture has TFLite exports of both frameworks: no side-by-side.", ""]
    parts.append(NOT_MEASURED)
    return "\n".join(parts) + "\n"
