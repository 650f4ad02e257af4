"""Export section: each export's agreement with its framework model (the seed's "ONNX export
accuracy retention" row) and the edge formats (size, accuracy, latency)."""

from __future__ import annotations

from imgbench.manifest import ExportRecord, Manifest
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import mib, num, pct, table

EDGE_PREFIXES = ("tflite", "onnx_int8", "int8")


def is_edge(name: str, record: ExportRecord) -> bool:
    return any(name.startswith(p) or record.format.startswith(p) for p in EDGE_PREFIXES)


def retention(manifest: Manifest, record: ExportRecord) -> float | None:
    """Export accuracy as a share of the framework model's accuracy on the same split."""
    if record.accuracy is None or not manifest.training.top1:
        return None
    return record.accuracy / manifest.training.top1


def _row(model: str, name: str, manifest: Manifest, record: ExportRecord) -> list[object]:
    if record.status != "ok":
        return [model, name, f"{record.status}: {record.reason or 'no reason recorded'}"] + [None] * 6
    return [
        model,
        name,
        "ok",
        record.n,
        pct(record.top1_agreement, 2),
        f"{record.max_abs_logit_diff:.2e}" if record.max_abs_logit_diff is not None else None,
        pct(retention(manifest, record), 2),
        mib(record.size_bytes),
        num(record.latency_ms_per_image, 3),
    ]


HEADERS = [
    "model",
    "export",
    "status",
    "n",
    "top-1 agreement",
    "max |Δlogit|",
    "accuracy retention",
    "size",
    "ms/image",
]


def exports_section(inputs: ReportInputs) -> str:
    if not inputs.manifests:
        return "## Exports\n\nNo manifest, so no export to report.\n"
    full_rows, edge_rows, missing_onnx = [], [], []
    for model, manifest in sorted(inputs.manifests.items()):
        if not any(r.format == "onnx" and r.status == "ok" for r in manifest.exports.values()):
            missing_onnx.append(model)
        for name, record in sorted(manifest.exports.items()):
            (edge_rows if is_edge(name, record) else full_rows).append(_row(model, name, manifest, record))
    parts = [
        "## Exports",
        "",
        "Every export is compared with its framework model on the whole evaluation split: top-1 agreement, "
        "max |Δlogit|, and accuracy retention (export accuracy ÷ framework accuracy, the seed's "
        '"ONNX export accuracy retention").',
        "",
        table(HEADERS, full_rows) if full_rows else "No full-precision export recorded.",
    ]
    if missing_onnx:
        parts += ["", f"No ONNX export for: {', '.join(missing_onnx)} (Triton cannot serve these)."]
    parts += ["", "### Edge and INT8", ""]
    parts.append(table(HEADERS, edge_rows) if edge_rows else "No INT8 or TFLite export in this run.")
    return "\n".join(parts) + "\n"
