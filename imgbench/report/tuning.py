"""Tuning section: each `imgbench tune` search (a load result of kind ``tune``): the default and the
best configuration under the SLO side by side, the verdict, and every probe."""

from __future__ import annotations

from imgbench.load_results import TuneProbe, TuneSummary
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import num, table
from imgbench.report.stats import UNRELIABLE_NOTE, percentile_cell


def searches(inputs: ReportInputs) -> list[TuneSummary]:
    return [result.tune for result in inputs.load_results if result.tune is not None]


def _config(probe: TuneProbe | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in probe.config.items()) if probe else "–"


def _best_p99(inputs: ReportInputs, search: TuneSummary) -> str | None:
    """The best probe's p99 with the n behind it (from its point, matched by configuration), marked
    unreliable below 1,000 requests."""
    best = search.best
    if best is None or best.p99_ms is None:
        return None
    for result in inputs.load_results:
        if result.tune is not search:
            continue
        for point in result.points:
            config = point.server_config or {}
            if all(config.get(k) == v for k, v in best.config.items()):
                return f"{percentile_cell(best.p99_ms, 99.0, point.n)} (n={point.n:,})"
    return f"{best.p99_ms:.2f} (n unknown)"


def tuning_section(inputs: ReportInputs) -> str:
    found = searches(inputs)
    if not found:
        return ""
    parts = [
        "## Each server at its best",
        "",
        "`imgbench tune`: the server's knobs searched under a p99 SLO (closed loop, one fresh server per "
        "probe); the default configuration is measured first, in the same session. " + UNRELIABLE_NOTE,
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
                    _best_p99(inputs, s),
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
