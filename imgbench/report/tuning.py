"""Tuning section: each `imgbench tune` search (a load result of kind ``tune``): the default and the
best configuration under the SLO side by side, the verdict, and every probe."""

from __future__ import annotations

from imgbench.load_results import TuneProbe, TuneSummary
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import num, table


def searches(inputs: ReportInputs) -> list[TuneSummary]:
    return [result.tune for result in inputs.load_results if result.tune is not None]


def _config(probe: TuneProbe | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in probe.config.items()) if probe else "–"


def tuning_section(inputs: ReportInputs) -> str:
    found = searches(inputs)
    if not found:
        return ""
    parts = [
        "## Each server at its best",
        "",
        "`imgbench tune`: the server's knobs searched under a p99 SLO (closed loop, one fresh server per "
        "probe); the default configuration is measured first, in the same session.",
        "",
        table(
            [
                "server",
                "model",
                "SLO ms",
                "default",
                "default img/s",
                "best",
                "best img/s",
                "best p99 ms",
                "probes",
            ],
            [
                [
                    s.backend,
                    s.model,
                    num(s.slo_ms, 0),
                    _config(s.default),
                    num(s.default.images_per_second if s.default else None, 1),
                    _config(s.best),
                    num(s.best.images_per_second if s.best else None, 1),
                    num(s.best.p99_ms if s.best else None, 2),
                    len(s.probes),
                ]
                for s in found
            ],
        ),
    ]
    for s in found:
        parts += ["", f"- {s.backend} {s.model} ({s.strategy}): {s.verdict}"]
        parts += [f"  - rejected {_config(p)}: {p.rejected}" for p in s.probes if p.rejected]
    return "\n".join(parts) + "\n"
