"""A soak results file (``imgbench.bench.soak``) as Markdown tables for docs/benchmarks.md: a summary
row per server, then every server's windows.

    .venv/core/bin/python -m imgbench.bench.soak --render benchmarks/results/soak-<time>.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgbench.bench.soak_windows import Drift, MemoryGrowth, Window
from imgbench.errors import LoadResultError
from imgbench.load_results import load_load_result

MIB = 2**20


def _mib(value: int | float | None) -> str:
    return "–" if value is None else f"{value / MIB:,.0f}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _load(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _errors(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} {count}" for code, count in codes.items()) or "0"


def client_bound_windows(entry: dict[str, Any]) -> list[int]:
    """Indexes of the windows the load generator said it limited (read from its results file)."""
    try:
        points = load_load_result(Path(entry["loadgen_result"])).points
    except (KeyError, LoadResultError):
        return []
    return [index for index, point in enumerate(points) if point.client_bound]


def _processes(window: Window) -> str:
    """The tree's processes by name with their largest RSS in the window (pids left out)."""
    by_name: dict[str, list[int]] = {}
    for key, rss in window.max_rss_by_process.items():
        by_name.setdefault(key.split(" ", 1)[1], []).append(rss)
    return "; ".join(
        f"{name} {' + '.join(_mib(v) for v in sorted(values, reverse=True))}"
        for name, values in sorted(by_name.items())
    )


def summary_table(record: dict[str, Any]) -> str:
    rows = [
        "| server | model | capacity req/s (p99 ≤ SLO) | rate req/s | minutes (windows × s) | "
        "p99 ms first → last (×) | largest Δp99 between windows ms | errors | RSS MiB before load / "
        "first window / last window (growth) | load avg 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in record["servers"].items():
        if entry.get("status") != "ok":
            rows.append(
                f"| {name} ({entry.get('label')}) | {entry.get('model')} | "
                f"{entry.get('capacity_rps', '–')} | – | – | failed: {entry.get('reason', '')} | | | | |"
            )
            continue
        measured = [Window(**w) for w in entry["windows"]]
        drift, memory = Drift(**entry["p99_drift"]), MemoryGrowth(**entry["memory_growth"])
        errors: dict[str, int] = {}
        for window in measured:
            for code, count in window.errors.items():
                errors[code] = errors.get(code, 0) + count
        loads = [w.load_avg_mean for w in measured if w.load_avg_mean is not None]
        growth = (
            f"{memory.growth_bytes / MIB:+,.0f} MiB, {memory.growth_fraction:+.1%}"
            if memory.growth_bytes is not None and memory.growth_fraction is not None
            else "–"
        )
        step = (
            f"{drift.max_step_change_ms:+.2f} ({drift.max_step_between[0]}→{drift.max_step_between[1]})"
            if drift.max_step_change_ms is not None and drift.max_step_between
            else "–"
        )
        rows.append(
            f"| {name} ({entry.get('server_identity') or entry.get('label')}) | {entry['model']} | "
            f"{entry.get('capacity_rps') or 'not searched'} | {entry['rate']} | "
            f"{entry['minutes']:g} ({len(measured)} × {entry['window_s']:g}) | "
            f"{_ms(drift.first_p99_ms)} → {_ms(drift.last_p99_ms)} (×{drift.last_over_first}) | {step} | "
            f"{_errors(errors)} | {_mib(memory.before_load_bytes)} / {_mib(memory.first_window_max_bytes)} / "
            f"{_mib(memory.last_window_max_bytes)} ({growth}) | "
            f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f} |"
        )
    return "\n".join(rows)


def windows_table(name: str, entry: dict[str, Any]) -> str:
    bound = set(client_bound_windows(entry))
    rows = [
        f"**{name}** ({entry.get('server_identity') or entry.get('label')}, {entry['model']}, "
        f"{entry['rate']} req/s):",
        "",
        "| window | minutes | n | p50 ms | p99 ms | req/s | errors | max RSS MiB (tree) | "
        "load avg 1 min mean / max | client-bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in (Window(**row) for row in entry["windows"]):
        rows.append(
            f"| {w.index} | {w.start_s / 60:.1f}–{w.end_s / 60:.1f} | {w.n:,} | {_ms(w.p50_ms)} | "
            f"{_ms(w.p99_ms)}{'' if w.p99_reliable else ' †'} | {w.throughput_rps or 0:.1f} | "
            f"{_errors(w.errors)} | {_mib(w.max_rss_bytes)} ({w.processes} processes) | "
            f"{_load(w.load_avg_mean)} / {_load(w.load_avg_max)} | {'yes' if w.index in bound else 'no'} |"
        )
    last = Window(**entry["windows"][-1]) if entry["windows"] else None
    if last is not None:
        rows += ["", f"Processes, largest RSS in the last window (MiB): {_processes(last)}."]
    return "\n".join(rows)


def markdown(record: dict[str, Any]) -> str:
    parts = [summary_table(record)]
    parts += [windows_table(n, e) for n, e in record["servers"].items() if e.get("status") == "ok"]
    return "\n\n".join(parts) + "\n"
