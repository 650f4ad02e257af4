"""Configuration search under a p99 SLO: a quick hill-climb (the default) or an exhaustive grid over
the values given, both bounded by a time budget. ``measure(config)`` runs one probe; a configuration
the server refuses raises ``KnobRejected`` and is reported and skipped.

    >>> best_batch = 8
    >>> def measure(config):  # a synthetic server whose throughput peaks at batch 8
    ...     b = config["max_batch_size"]
    ...     return ProbeOutcome(images_per_second=100 * min(b, best_batch) - 5 * b, p99_ms=5.0 + b)
    >>> space = {"max_batch_size": [1, 2, 4, 8, 16, 32]}
    >>> result = search(measure, {"max_batch_size": 1}, space, slo_ms=50, budget_s=60)
    >>> result.best.config
    {'max_batch_size': 8}
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from imgbench.errors import ImgbenchError
from imgbench.load_results import ConfigValue, TuneProbe

Config = dict[str, ConfigValue]
Strategy = Literal["hill-climb", "grid"]
STRATEGIES: tuple[Strategy, ...] = ("hill-climb", "grid")


class KnobRejected(ImgbenchError):
    """The server refused a configuration (it did not start, or said the value is invalid)."""


@dataclass(frozen=True)
class ProbeOutcome:
    images_per_second: float | None
    p99_ms: float | None
    errors: int = 0


@dataclass
class SearchResult:
    strategy: Strategy
    slo_ms: float
    budget_s: float
    elapsed_s: float
    probes: list[TuneProbe]
    default: TuneProbe | None
    best: TuneProbe | None
    budget_exhausted: bool

    @property
    def verdict(self) -> str:
        tried = [p for p in self.probes if not p.rejected]
        if not tried:
            return f"no configuration could be measured ({len(self.probes)} rejected by the server)"
        if self.best is None:
            lowest = min(
                (p for p in tried if p.p99_ms is not None), key=lambda p: p.p99_ms or 0.0, default=None
            )
            where = f"; the lowest p99 was {lowest.p99_ms:.2f} ms with {lowest.config}" if lowest else ""
            return (
                f"no configuration met p99 ≤ {self.slo_ms:g} ms without errors in {len(tried)} "
                f"probe(s){where}: relax the SLO, lower the load, or give the search more values"
            )
        gain = ""
        if self.default is not None and self.default.passed and self.default.images_per_second:
            gain = f", {self.best.images_per_second / self.default.images_per_second:.2f}× the default's"
        cut = " (the time budget ended the search)" if self.budget_exhausted else ""
        return (
            f"best {self.best.config}: {self.best.images_per_second:.1f} images/s at p99 "
            f"{self.best.p99_ms:.2f} ms{gain}{cut}"
        )


def check_space(defaults: Mapping[str, ConfigValue], space: Mapping[str, Sequence[ConfigValue]]) -> None:
    unknown = sorted(set(space) - set(defaults))
    if unknown:
        raise ImgbenchError(f"unknown knob(s) {unknown}; this server's knobs: {sorted(defaults)}")
    empty = [name for name, values in space.items() if not values]
    if empty:
        raise ImgbenchError(f"knob(s) {empty} have no value to try")


def grid(defaults: Mapping[str, ConfigValue], space: Mapping[str, Sequence[ConfigValue]]) -> list[Config]:
    """Every combination of the listed values; knobs not listed keep their default."""
    names = list(space)
    return [
        {**defaults, **dict(zip(names, values, strict=True))} for values in itertools.product(*space.values())
    ]


def neighbours(config: Config, space: Mapping[str, Sequence[ConfigValue]]) -> list[Config]:
    """One knob one step up or down its list of values."""
    result = []
    for name, values in space.items():
        ordered = sorted(set(values) | {config[name]})
        index = ordered.index(config[name])
        for step in (-1, 1):
            if 0 <= index + step < len(ordered):
                result.append({**config, name: ordered[index + step]})
    return result


def _better(candidate: TuneProbe, incumbent: TuneProbe | None) -> bool:
    if not candidate.passed:
        return False
    return incumbent is None or (candidate.images_per_second or 0.0) > (incumbent.images_per_second or 0.0)


def search(
    measure: Callable[[Config], ProbeOutcome],
    defaults: Mapping[str, ConfigValue],
    space: Mapping[str, Sequence[ConfigValue]],
    *,
    slo_ms: float,
    budget_s: float,
    strategy: Strategy = "hill-climb",
    clock: Callable[[], float] = time.monotonic,
    on_probe: Callable[[TuneProbe], None] | None = None,
) -> SearchResult:
    """Measure the default first (the baseline), then search; no probe starts once ``budget_s`` is spent."""
    if strategy not in STRATEGIES:
        raise ImgbenchError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if slo_ms <= 0 or budget_s <= 0:
        raise ImgbenchError(
            f"the SLO and the budget must be positive, got slo_ms={slo_ms}, budget_s={budget_s}"
        )
    check_space(defaults, space)
    started = clock()
    probes: list[TuneProbe] = []
    seen: dict[tuple, TuneProbe] = {}
    exhausted = False

    def probe(config: Config) -> TuneProbe | None:
        nonlocal exhausted
        key = tuple(sorted(config.items()))
        if key in seen:
            return seen[key]
        if clock() - started >= budget_s:
            exhausted = True
            return None
        try:
            outcome = measure(dict(config))
            passed = (
                outcome.errors == 0
                and outcome.p99_ms is not None
                and outcome.p99_ms <= slo_ms
                and bool(outcome.images_per_second)
            )
            result = TuneProbe(
                config=dict(config),
                images_per_second=outcome.images_per_second,
                p99_ms=outcome.p99_ms,
                errors=outcome.errors,
                passed=passed,
            )
        except KnobRejected as exc:
            result = TuneProbe(config=dict(config), rejected=str(exc))
        seen[key] = result
        probes.append(result)
        if on_probe is not None:
            on_probe(result)
        return result

    default = probe(dict(defaults))
    best = default if default is not None and default.passed else None
    if strategy == "grid":
        for config in grid(defaults, space):
            result = probe(config)
            if result is None:
                break
            if _better(result, best):
                best = result
    else:
        current = dict(defaults)
        improved = True
        while improved and not exhausted:
            improved = False
            for config in neighbours(current, space):
                result = probe(config)
                if result is None:
                    break
                if _better(result, best):
                    best, current, improved = result, config, True
            # A failing start (default over the SLO) climbs towards the lowest p99 until one passes.
            if best is None and not improved and not exhausted:
                measured = [p for p in probes if p.p99_ms is not None and not p.rejected]
                lowest = min(measured, key=lambda p: p.p99_ms or 0.0, default=None)
                if lowest is not None and lowest.config != current:
                    current, improved = dict(lowest.config), True
    return SearchResult(
        strategy=strategy,
        slo_ms=slo_ms,
        budget_s=budget_s,
        elapsed_s=round(clock() - started, 3),
        probes=probes,
        default=default,
        best=best,
        budget_exhausted=exhausted,
    )
