"""INT8 served beside fp32: each load point of a ``<model>_int8`` next to the point of ``<model>`` that
ran with the same server, batch, load and seed (``imgbench demo --scenario case-study`` runs them back
to back), with p50/p99 and their n, throughput, accuracy under load and the INT8 answers' agreement
with the fp32 model's on the same images (the load generator's ``--reference-model``).

    >>> pairs = int8_pairs(points)                                   # doctest: +SKIP
    >>> [(p.load, p.p99_change) for p in pairs]                      # doctest: +SKIP
    [('closed ×1', -0.31)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from imgbench.load_results import LoadPoint
from imgbench.paths import split_served_variant
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table

RELIABLE_P99_N = 1_000
"""A p99 from fewer requests rests on fewer than ten beyond it (docs/architecture.md, †)."""


@dataclass(frozen=True)
class Int8Pair:
    backend: str
    model: str
    """The fp32 model; the INT8 one is ``<model>_int8``."""
    load: str
    fp32: LoadPoint
    int8: LoadPoint

    @property
    def p99_change(self) -> float | None:
        """INT8's p99 relative to fp32's: -0.3 is 30% lower."""
        if not self.fp32.p99_ms or self.int8.p99_ms is None:
            return None
        return self.int8.p99_ms / self.fp32.p99_ms - 1.0

    @property
    def accuracy_change(self) -> float | None:
        """INT8's accuracy under load minus fp32's, in fractions (0.017 is +1.7 points)."""
        if self.fp32.accuracy is None or self.int8.accuracy is None:
            return None
        return self.int8.accuracy - self.fp32.accuracy


def _key(point: LoadPoint, model: str) -> tuple[object, ...]:
    return (point.backend, model, point.batch_size, point.mode, point.users, point.target_rate, point.seed)


def int8_pairs(points: Iterable[LoadPoint]) -> list[Int8Pair]:
    """Every INT8 point with its fp32 twin (same server, batch, load and seed); unpaired ones are left out."""
    points = list(points)
    fp32 = {_key(p, p.model): p for p in points if split_served_variant(p.model)[1] is None}
    pairs = []
    for point in points:
        base, variant = split_served_variant(point.model)
        twin = fp32.get(_key(point, base)) if variant == "int8" else None
        if twin is not None:
            pairs.append(Int8Pair(point.backend, base, point.load_label, twin, point))
    return sorted(pairs, key=lambda p: (p.model, p.backend, p.load, p.fp32.seed or 0))


def ms(value: float | None, n: int) -> str | None:
    if value is None:
        return None
    return f"{value:,.1f}{'†' if n < RELIABLE_P99_N else ''}"


def share(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def change(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:+.0f}%"


def int8_section(inputs: ReportInputs) -> str:
    """The report's "INT8 served beside fp32" section; empty when the run served no INT8 model."""
    pairs = int8_pairs(p for result in inputs.load_results for p in result.points)
    if not pairs:
        return ""
    rows = [
        [
            pair.model,
            pair.backend,
            pair.load,
            f"{pair.fp32.n:,} / {pair.int8.n:,}",
            f"{ms(pair.fp32.p50_ms, 0)} → {ms(pair.int8.p50_ms, 0)}".replace("†", ""),
            f"{ms(pair.fp32.p99_ms, pair.fp32.n)} → {ms(pair.int8.p99_ms, pair.int8.n)}",
            change(pair.p99_change),
            f"{pair.fp32.throughput_rps or 0:,.2f} → {pair.int8.throughput_rps or 0:,.2f}",
            f"{share(pair.fp32.accuracy)} → {share(pair.int8.accuracy)}",
            share(pair.int8.agreement),
            f"{pair.fp32.errors} / {pair.int8.errors}",
        ]
        for pair in pairs
    ]
    return (
        "## INT8 served beside fp32\n\n"
        "The same trained model as two Triton models, `<model>` (the ONNX export) and `<model>_int8` (its "
        "INT8 static quantization, served once it passed `--quantized-min-agreement`), each measured with "
        "the same load settings and seed, back to back. Accuracy is the top-1 of every answer under load "
        "against its label (the pool keeps the images the model gets wrong); agreement compares each INT8 "
        "answer with the fp32 model's answer for the same image at rest. † p99 from fewer than "
        f"{RELIABLE_P99_N:,} requests.\n\n"
        + table(
            [
                "model",
                "server",
                "load",
                "n fp32 / int8",
                "p50 ms",
                "p99 ms",
                "p99 change",
                "req/s",
                "accuracy under load",
                "int8 agrees with fp32",
                "errors",
            ],
            rows,
        )
        + "\n"
    )
