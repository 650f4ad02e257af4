"""The end-of-run summary for a terminal or an 80-column log: training and serving at a glance.

Servers go by their registry names (``imgbench.servers``: torchserve, triton, tfserving) with a legend
naming each as it identified itself, one serving table per model, so no cell needs to be cut short.
Every percentile comes with its n, and a p99 (p99.9) from too few samples is marked unreliable.

    >>> print(render_summary(read_inputs(Path("runs/demo-x")), width=80))  # doctest: +SKIP
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from imgbench.load_results import LoadPoint
from imgbench.report.inputs import ReportInputs
from imgbench.report.repeats import LoadGroup, load_groups, training_interval
from imgbench.report.serving import points
from imgbench.report.stats import UNRELIABLE_MARK, UNRELIABLE_NOTE, Interval, percentile_reliable

LOG_WIDTH = 80
CLIENT_BOUND_MARK = "*"


def _client_bound(group: LoadGroup) -> bool:
    return any(point.client_bound for point in group.points)


def short_labels(measured: list[LoadPoint]) -> dict[str, str]:
    """Full server label -> its registry name (``point.backend``); a second identity behind the same
    registry name (e.g. the real TF Serving beside the stand-in) gets ``-2``, ``-3``."""
    shorts: dict[str, str] = {}
    for point in measured:
        label = point.server.label
        if label in shorts:
            continue
        short, index = point.backend, 2
        while short in shorts.values():
            short, index = f"{point.backend}-{index}", index + 1
        shorts[label] = short
    return shorts


def _mean(interval: Interval | None, digits: int, mark: str = "") -> str:
    return "–" if interval is None else f"{interval.mean:,.{digits}f}{mark}"


def _with_ci(interval: Interval, digits: int, scale: float = 1.0, unit: str = "") -> str:
    """``'94.5%±6.4'``; the half-width loses its decimals from 100 up, so wide intervals stay narrow."""
    text = f"{interval.mean * scale:.{digits}f}{unit}"
    if interval.half_width is not None:
        half = interval.half_width * scale
        text += f"±{half:.{digits if half < 100 else 0}f}"
    return text


def _table(title: str, columns: list[str]) -> Table:
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
        title_justify="left",
    )
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
    return table


def training_table(inputs: ReportInputs) -> Table:
    table = _table(
        "training (± is the 95% CI across seeds)", ["model", "seeds", "top-1", "s/epoch", "img/s", "ONNX"]
    )
    for name, manifest in sorted(inputs.manifests.items()):
        onnx = manifest.exports.get("onnx")
        agreement = f"{onnx.top1_agreement:.2%}" if onnx and onnx.top1_agreement is not None else "–"
        seeds = len(manifest.training.repeats.per_seed) if manifest.training.repeats else 1
        table.add_row(
            name,
            str(seeds),
            _with_ci(training_interval(manifest, "top1"), 1, 100, "%"),
            _with_ci(training_interval(manifest, "seconds_per_epoch"), 2),
            _with_ci(training_interval(manifest, "images_per_second"), 0),
            agreement,
        )
    return table


def serving_table(model: str, groups: list[LoadGroup], shorts: dict[str, str]) -> Table:
    table = _table(
        f"serving {model} (client-side, mean over repeats)",
        ["server", "load", "reps", "n", "p50 ms", "p99 ms", "req/s", "err", "wrong"],
    )
    for group in groups:
        first = group.first
        mark = "" if percentile_reliable(99.0, group.min_n) else UNRELIABLE_MARK
        table.add_row(
            shorts[first.server.label],
            first.load_label,
            str(group.repeats),
            f"{group.min_n:,}",
            _mean(group.interval("p50_ms"), 2),
            _mean(group.interval("p99_ms"), 2, mark),
            _mean(group.interval("throughput_rps"), 1, CLIENT_BOUND_MARK if _client_bound(group) else ""),
            str(sum(p.errors for p in group.points)),
            str(sum(p.incorrect for p in group.points)),
        )
    return table


def render_summary(inputs: ReportInputs, width: int = LOG_WIDTH) -> str:
    """The summary as plain text no wider than ``width`` columns."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(training_table(inputs))
    measured = points(inputs)
    shorts = short_labels(measured)
    by_model: dict[str, list[LoadGroup]] = {}
    for group in load_groups(measured):
        by_model.setdefault(group.first.model, []).append(group)
    for model, groups in sorted(by_model.items()):
        console.print()
        console.print(serving_table(model, groups, shorts))
    if shorts:
        console.print()
        console.print("servers:", highlight=False)
        for label, short in shorts.items():
            console.print(f"  {short} = {label}", highlight=False, markup=False)
        if any(_client_bound(group) for groups in by_model.values() for group in groups):
            console.print(
                f"{CLIENT_BOUND_MARK} client-bound: the load generator, not the server, limited the point "
                "(see the report's serving section).",
                highlight=False,
                markup=False,
            )
        console.print(
            f"n: requests behind each percentile (the fewest of any repeat). {UNRELIABLE_NOTE}",
            highlight=False,
            markup=False,
        )
    # Rich pads every line to the table's width; a log needs no trailing blanks.
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
