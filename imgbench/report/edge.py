"""Edge models: every TFLite export of both frameworks with its file size, the interpreter's measured
peak memory and latency, and its agreement with the framework, beside the seed's edge claims.

The memory is what ``imgbench.edge_memory`` measured when the export was gated (``details["memory"]``
of each ``tflite_*`` record): the peak RSS growth of a fresh process that loads the model, allocates
its tensors and runs it, so it holds the interpreter's arena, the weights paged in from the file and
any copy a delegate (XNNPACK) packs. The seed's figure is MobileNetV4 on a TPU v5; only the direction
is comparable.
"""

from __future__ import annotations

from imgbench.manifest import ExportRecord, Manifest
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import mib, num, pct, table

TFLITE_PREFIX = "tflite_"
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


def claim_rows(inputs: ReportInputs) -> list[list[object]]:
    """Per architecture with both frameworks, per variant both exported: TF against PT."""
    rows = []
    for architecture, frameworks in inputs.by_architecture().items():
        if set(frameworks) != {"pytorch", "tensorflow"}:
            continue
        pt, tf = tflite_records(frameworks["pytorch"]), tflite_records(frameworks["tensorflow"])
        for variant in sorted(set(pt) & set(tf)):
            a, b = pt[variant], tf[variant]
            if a.status != "ok" or b.status != "ok":
                continue
            rows.append(
                [
                    architecture,
                    variant,
                    mib(peak_memory(a)),
                    mib(peak_memory(b)),
                    _change(peak_memory(b), peak_memory(a)),
                    _change(b.size_bytes, a.size_bytes),
                    _change(b.latency_ms_per_image, a.latency_ms_per_image),
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
            "The seed's edge-memory claim beside ours (one measurement per side: the direction only; "
            "`python -m imgbench.edge_memory bench --repeats N` measures every model N times, interleaved):",
            "",
            table(CLAIM_HEADERS, claims),
            "",
        ]
    else:
        parts += ["No architecture has TFLite exports of both frameworks: no side-by-side.", ""]
    parts.append(NOT_MEASURED)
    return "\n".join(parts) + "\n"
