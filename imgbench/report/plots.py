"""PNG plots for the report: training curves (PT vs TF on one chart), latency percentile curves,
throughput against load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display here or in CI
import matplotlib.pyplot as plt

from imgbench.load_results import LoadPoint
from imgbench.report.inputs import ReportInputs
from imgbench.report.repeats import LoadGroup, load_groups
from imgbench.report.serving import backend_label, images_per_second, load_label, points
from imgbench.report.stats import percentile_reliable
from imgbench.report.training import FRAMEWORK_LABEL


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    written = []
    for architecture, frameworks in inputs.by_architecture().items():
        fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
        for framework, manifest in sorted(frameworks.items()):
            history = manifest.training.history
            epochs = [r.epoch for r in history]
            label = FRAMEWORK_LABEL[framework]
            acc_ax.plot(epochs, [r.top1 * 100 for r in history], marker="o", label=f"{label} val top-1")
            loss_ax.plot(epochs, [r.train_loss for r in history], marker="o", label=f"{label} train")
            loss_ax.plot(
                epochs, [r.val_loss for r in history], marker="x", linestyle="--", label=f"{label} val"
            )
        acc_ax.set(xlabel="epoch", ylabel="top-1 (%)", title=f"{architecture}: validation accuracy")
        loss_ax.set(xlabel="epoch", ylabel="loss", title=f"{architecture}: loss")
        for ax in (acc_ax, loss_ax):
            ax.grid(alpha=0.3)
            ax.legend()
        path = _save(fig, out_dir / f"training_{architecture}.png")
        written.append(path)
    return written


def _model_axes(models: list[str], title: str) -> tuple[plt.Figure, dict[str, plt.Axes]]:
    """One panel per model, stacked, each with room on the right for its legend."""
    fig, axes = plt.subplots(len(models), 1, figsize=(11, 4 * len(models)), squeeze=False)
    fig.suptitle(title)
    return fig, {model: axes[i][0] for i, model in enumerate(models)}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _group_label(group: LoadGroup) -> str:
    point = group.first
    runs = f", median of {group.repeats} runs" if group.repeats > 1 else ""
    return f"{backend_label(point)} b{point.batch_size} {load_label(point)} (n={group.min_n:,}{runs})"


def latency_percentiles(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Latency against percentile (a CDF on its side, with the tail stretched): one line per load
    point, the median over its repeats, one panel per model."""
    groups = [g for g in load_groups(points(inputs)) if len(_percentiles(g.first)) >= 2]
    if not groups:
        return []
    models = sorted({g.first.model for g in groups})
    fig, axes = _model_axes(models, "Client-side latency by percentile (dotted: under 10 requests beyond it)")
    for group in groups:
        ax = axes[group.first.model]
        curves = [dict(_percentiles(p)) for p in group.points]
        shared = sorted(set.intersection(*(set(c) for c in curves)))
        by_pct = [(q, _median([c[q] for c in curves])) for q in shared]
        # x as 1/(1-q) spreads p90, p99, p99.9 evenly, as HdrHistogram plots do.
        xs = [1.0 / (1.0 - q / 100.0) if q < 100 else 1e4 for q, _ in by_pct]
        # Solid where n carries the percentile, dotted beyond (fewer than ten requests in the tail).
        trusted = sum(1 for q, _ in by_pct if percentile_reliable(q, group.min_n))
        (line,) = ax.plot(xs[:trusted], [ms for _, ms in by_pct][:trusted], label=_group_label(group))
        if trusted < len(xs):
            ax.plot(
                xs[max(trusted - 1, 0) :], [ms for _, ms in by_pct][max(trusted - 1, 0) :],
                linestyle=":", color=line.get_color(),
            )  # fmt: skip
    ticks = [50, 90, 99, 99.9]
    for model, ax in axes.items():
        ax.set_xscale("log")
        ax.set_xticks([1.0 / (1.0 - t / 100.0) for t in ticks], [f"p{t:g}" for t in ticks])
        ax.set(ylabel="latency (ms)", title=model)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = _save(fig, out_dir / "latency_percentiles.png")
    return [path]


PERCENTILE_FIELDS = {"p50_ms": 50.0, "p90_ms": 90.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}


def _percentiles(point: LoadPoint) -> list[tuple[float, float]]:
    """(percentile, ms) pairs: the point's full distribution if it has one, else its summary fields."""
    if point.percentiles:
        return sorted((float(q), float(ms)) for q, ms in point.percentiles.items())
    summary = ((q, getattr(point, f)) for f, q in PERCENTILE_FIELDS.items())
    return sorted((q, float(ms)) for q, ms in summary if ms is not None)


def throughput_vs_load(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Images/s against closed-loop users, one line per server and batch size (the mean over repeats,
    bars from the slowest to the fastest repeat), one panel per model."""
    groups = [g for g in load_groups(points(inputs)) if g.first.mode == "closed" and g.first.users]
    if not groups:
        return []
    models = sorted({g.first.model for g in groups})
    fig, axes = _model_axes(models, "Throughput against concurrency")
    series: dict[tuple[str, str], list[tuple[int, list[float]]]] = {}
    for group in groups:
        point = group.first
        key = (point.model, f"{backend_label(point)} b{point.batch_size}")
        series.setdefault(key, []).append((point.users or 0, [images_per_second(p) for p in group.points]))
    for (model, label), values in sorted(series.items()):
        values.sort()
        means = [sum(v) / len(v) for _, v in values]
        spans = [[m - min(v) for m, (_, v) in zip(means, values, strict=True)],
                 [max(v) - m for m, (_, v) in zip(means, values, strict=True)]]  # fmt: skip
        axes[model].errorbar([u for u, _ in values], means, yerr=spans, marker="o", capsize=3, label=label)
    for model, ax in axes.items():
        ax.set(xlabel="concurrent users (closed loop)", ylabel="images/s", title=model)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = _save(fig, out_dir / "throughput_vs_concurrency.png")
    return [path]


def tuning_pareto(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Throughput against p99 of every tuning probe, the Pareto front drawn, the SLO as a line."""
    found = [result.tune for result in inputs.load_results if result.tune is not None]
    if not found:
        return []
    fig, ax = plt.subplots(figsize=(8, 5))
    for search in found:
        measured = [p for p in search.probes if p.p99_ms is not None and p.images_per_second is not None]
        if not measured:
            continue
        label = f"{search.backend} {search.model}"
        ax.scatter(
            [p.p99_ms for p in measured], [p.images_per_second for p in measured], label=label, alpha=0.6
        )
        front, best = [], -1.0
        for probe in sorted(measured, key=lambda p: p.p99_ms or 0.0):
            if (probe.images_per_second or 0.0) > best:
                best = probe.images_per_second or 0.0
                front.append(probe)
        ax.plot([p.p99_ms for p in front], [p.images_per_second for p in front], drawstyle="steps-post")
        ax.axvline(search.slo_ms, linestyle="--", linewidth=0.8, color="grey")
    ax.set(xlabel="p99 latency (ms)", ylabel="images/s", title="Tuning: throughput against p99 (SLO dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return [_save(fig, out_dir / "tuning_pareto.png")]
