"""Across repeats: one value per repeat of every figure the report compares, and their confidence
intervals and verdicts (``imgbench.report.stats``).

Training repeats are the seeds of ``--repeats N`` (``Manifest.training.repeats``); a manifest without
them is one run, one value. Load-point repeats are the points that measured the same server, model,
batch size, mode and load (each with its own ``--seed``, in its own load result file).
"""

from __future__ import annotations

from dataclasses import dataclass

from imgbench.errors import ImgbenchError
from imgbench.load_results import LoadPoint
from imgbench.manifest import SEED_FIGURES, Manifest
from imgbench.report.markdown import MISSING, table
from imgbench.report.stats import (
    UNRELIABLE_MARK,
    UNRELIABLE_NOTE,
    Comparison,
    Interval,
    ci95,
    compare,
    percentile_reliable,
    steady_state,
)

TRAINING_FIGURES = SEED_FIGURES  # top1, seconds_per_epoch, images_per_second, peak_memory_bytes


def single_run_value(manifest: Manifest, figure: str) -> float:
    """``figure`` of the manifest's own run, defined as ``SeedFigures`` defines it: best top-1, mean
    s/epoch and img/s over the epochs after the first, peak memory."""
    training = manifest.training
    history = training.history
    if figure == "top1":
        return training.top1
    if figure == "peak_memory_bytes":
        return float(training.peak_memory_bytes)
    if figure == "seconds_per_epoch":
        values = steady_state([r.seconds for r in history])
        return sum(values) / len(values) if values else training.seconds_per_epoch
    if figure == "images_per_second":
        values = steady_state([r.images_per_second for r in history])
        return sum(values) / len(values) if values else training.images_per_second
    raise ImgbenchError(f"unknown training figure {figure!r}; known: {', '.join(TRAINING_FIGURES)}")


def training_values(manifest: Manifest, figure: str) -> list[float]:
    """One value of ``figure`` per seed (``--repeats N``), or the single run's value."""
    if manifest.training.repeats is not None:
        return manifest.training.repeats.values(figure)
    return [single_run_value(manifest, figure)]


def training_interval(manifest: Manifest, figure: str) -> Interval:
    return ci95(training_values(manifest, figure))


def compare_training(pt: Manifest, tf: Manifest, figure: str, expected_sign: int) -> Comparison:
    """PyTorch − TensorFlow on ``figure`` across seeds; ``expected_sign`` is the claim's direction."""
    return compare(training_values(pt, figure), training_values(tf, figure), expected_sign)


@dataclass(frozen=True)
class LoadGroup:
    """Every repeat of one load point (same server, model, batch size, mode and load)."""

    points: list[LoadPoint]

    @property
    def first(self) -> LoadPoint:
        return self.points[0]

    @property
    def repeats(self) -> int:
        return len(self.points)

    @property
    def min_n(self) -> int:
        """The fewest samples behind any repeat's percentiles: what their reliability rests on."""
        return min(p.n for p in self.points)

    def interval(self, field: str) -> Interval | None:
        """Mean ± 95% CI of a ``LoadPoint`` field across the repeats that have it."""
        values = [getattr(p, field) for p in self.points if getattr(p, field) is not None]
        return ci95([float(v) for v in values]) if values else None


def load_key(point: LoadPoint) -> tuple[object, ...]:
    return (
        point.server.label,
        point.model,
        point.batch_size,
        point.mode,
        point.arrivals,
        point.users or 0,
        point.target_rate or 0.0,
    )


def load_groups(points: list[LoadPoint]) -> list[LoadGroup]:
    """``points`` grouped into repeats of the same point, in a stable order."""
    grouped: dict[tuple[object, ...], list[LoadPoint]] = {}
    for point in points:
        grouped.setdefault(load_key(point), []).append(point)
    return [
        LoadGroup(sorted(group, key=lambda p: (p.seed is None, p.seed or 0, p.run_id)))
        for _, group in sorted(grouped.items(), key=lambda item: repr(item[0]))
    ]


def _interval_cell(interval: Interval | None, digits: int) -> str | None:
    if interval is None:
        return None
    return interval.format(digits) if interval.half_width is not None else f"{interval.mean:,.{digits}f}"


def across_repeats(measured: list[LoadPoint]) -> list[str]:
    """Markdown for each load point repeated with ``--repeats N`` (its own seed each time): p50, p99 and
    throughput as the mean over the repeats ± the half-width of its 95% confidence interval."""
    groups = [g for g in load_groups(measured) if g.repeats > 1]
    if not groups:
        if not measured:
            return []
        return [
            "",
            "Each load point ran once: no confidence interval across repeats (`imgbench demo --repeats N`, "
            "or the load generator again with another `--seed`).",
        ]
    rows = [
        [
            g.first.server.label,
            g.first.model,
            g.first.batch_size,
            g.first.load_label,
            g.repeats,
            f"{g.min_n:,}",
            _interval_cell(g.interval("p50_ms"), 2),
            (_interval_cell(g.interval("p99_ms"), 2) or MISSING)
            + ("" if percentile_reliable(99.0, g.min_n) else f" {UNRELIABLE_MARK}"),
            _interval_cell(g.interval("throughput_rps"), 1),
        ]
        for g in groups
    ]
    return [
        "",
        "Across repeats (each repeat with its own `--seed`): mean ± the half-width of the 95% confidence "
        "interval (Student t) over the repeats; `n per repeat` is the fewest requests any repeat's "
        "percentiles rest on. " + UNRELIABLE_NOTE,
        "",
        table(
            ["server", "model", "batch", "load", "repeats", "n per repeat", "p50 ms", "p99 ms", "req/s"], rows
        ),
    ]
