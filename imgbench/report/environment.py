"""Environment section: hardware, OS, versions, and every stand-in named."""

from __future__ import annotations

from imgbench import servers
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table
from imgbench.report.serving import points


def environment_section(inputs: ReportInputs) -> str:
    rows: dict[str, set[str]] = {}
    for manifest in inputs.manifests.values():
        rows.setdefault(f"{manifest.framework} version", set()).add(manifest.framework_version)
        for key, value in manifest.environment.items():
            rows.setdefault(key, set()).add(value)
    for result in inputs.load_results:
        for key, value in result.hardware.items():
            rows.setdefault(f"load generator {key}", set()).add(str(value))
    parts = ["## Environment", ""]
    if rows:
        parts.append(table(["what", "value"], [[k, "; ".join(sorted(v))] for k, v in sorted(rows.items())]))
    else:
        parts.append("No environment recorded (no manifest, no load result).")
    notes = [
        spec.native_note
        for name, spec in servers.SERVERS.items()
        if spec.native_note and _native(inputs, name)
    ]
    if notes:
        parts += ["", "Stand-ins and native differences in this run:", ""] + [f"- {note}" for note in notes]
    parts += [
        "",
        "Absolute times hold for this hardware only; compare the ratios, which come from one run "
        "on one machine.",
    ]
    return "\n".join(parts) + "\n"


def _native(inputs: ReportInputs, backend: str) -> bool:
    """Results say where they ran (containers record deployment=compose/k8s)."""
    return any(p.backend == backend and p.deployment == "native" for p in points(inputs))


__all__ = ["environment_section"]
