"""Environment section: hardware, OS, versions, and every stand-in named."""

from __future__ import annotations

from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table
from imgbench.report.serving import NATIVE_BACKEND_LABELS, points

STAND_IN_NOTES = {
    "tfserving": "TF Serving is a **stand-in** natively: the real `tensorflow_model_server` binary is in no "
    "registry this machine reaches, so a Python server implementing the same gRPC API (Predict, "
    "GetModelMetadata, GetModelStatus) serves the same SavedModels. Its latencies are not TF Serving's.",
    "triton": "Triton natively runs its **python backend** calling ONNX Runtime (the pip-installable Triton "
    "has no onnxruntime backend); containers use the official image's onnxruntime backend.",
}


def environment_section(inputs: ReportInputs) -> str:
    rows: dict[str, set[str]] = {}
    for manifest in inputs.manifests.values():
        rows.setdefault(f"{manifest.framework} version", set()).add(manifest.framework_version)
        for key, value in manifest.environment.items():
            rows.setdefault(key, set()).add(value)
    for document in inputs.load_results:
        for key, value in (document.get("hardware") or {}).items():
            rows.setdefault(f"load generator {key}", set()).add(str(value))
    parts = ["## Environment", ""]
    if rows:
        parts.append(table(["what", "value"], [[k, "; ".join(sorted(v))] for k, v in sorted(rows.items())]))
    else:
        parts.append("No environment recorded (no manifest, no load result).")
    backends = {str(point.get("backend")) for point in points(inputs)}
    notes = [STAND_IN_NOTES[b] for b in ("tfserving", "triton") if b in backends and _native(inputs, b)]
    if notes:
        parts += ["", "Stand-ins and native differences in this run:", ""] + [f"- {note}" for note in notes]
    parts += [
        "",
        "Absolute times hold for this hardware only; compare the ratios, which come from one run "
        "on one machine.",
    ]
    return "\n".join(parts) + "\n"


def _native(inputs: ReportInputs, backend: str) -> bool:
    """Results say where they ran; native is the default (containers record deployment=compose/k8s)."""
    for point in points(inputs):
        if point.get("backend") == backend and point.get("deployment", "native") == "native":
            return True
    return False


__all__ = ["NATIVE_BACKEND_LABELS", "environment_section"]
