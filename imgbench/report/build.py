"""Assemble report.md (and its PNG plots) from a run directory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from imgbench.atomic import atomic_write_text
from imgbench.report import plots
from imgbench.report.article import article_section
from imgbench.report.case_study import case_study_section
from imgbench.report.claims import claims_section
from imgbench.report.compiled import compiled_section
from imgbench.report.cost import cost_section, load_prices
from imgbench.report.dynamic_shapes import dynamic_shapes_section
from imgbench.report.edge import edge_section
from imgbench.report.environment import environment_section
from imgbench.report.exports import exports_section
from imgbench.report.inputs import ReportInputs, read_inputs
from imgbench.report.int8 import int8_section
from imgbench.report.serving import serving_section
from imgbench.report.summary import summary_section
from imgbench.report.training import training_section
from imgbench.report.tuning import tuning_section

REPORT_NAME = "report.md"


def render(inputs: ReportInputs, prices_path: Path | None, figures: list[Path], out_dir: Path) -> str:
    parts = [
        f"# imgbench report: {inputs.run_dir.name}",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from `{inputs.run_dir}`: "
        f"{len(inputs.manifests)} model manifest(s), {len(inputs.load_results)} load result file(s).",
        "",
        summary_section(inputs),
        claims_section(inputs),
        article_section(inputs),
        training_section(inputs),
        exports_section(inputs),
        compiled_section(inputs),
        dynamic_shapes_section(inputs),
        edge_section(inputs),
        serving_section(inputs),
        int8_section(inputs),
        case_study_section(inputs),
        tuning_section(inputs),
        cost_section(inputs, load_prices(prices_path)),
        environment_section(inputs),
    ]
    if figures:
        parts += (
            ["## Plots", ""] + [f"![{f.stem}]({f.relative_to(out_dir).as_posix()})" for f in figures] + [""]
        )
    if inputs.problems:
        parts += ["## Inputs that could not be read", ""] + [f"- {p}" for p in inputs.problems] + [""]
    return "\n".join(parts)


def build_report(run_dir: Path, out_dir: Path | None = None, prices_path: Path | None = None) -> Path:
    """Write ``report.md`` and PNG plots into ``out_dir`` (default ``RUN_DIR/report``); return its path."""
    inputs = read_inputs(run_dir)
    out_dir = Path(out_dir or Path(run_dir) / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [
        *plots.training_curves(inputs, out_dir),
        *plots.latency_percentiles(inputs, out_dir),
        *plots.throughput_vs_load(inputs, out_dir),
        *plots.tuning_pareto(inputs, out_dir),
    ]
    path = out_dir / REPORT_NAME
    atomic_write_text(path, render(inputs, prices_path, figures, out_dir))
    return path
