"""Per-epoch training figures, written the same way by both trainers (same files, same field names)
so the report can put them side by side: ``metrics.jsonl`` and ``metrics.csv`` in the run folder.

Crash-safe: each epoch is appended and fsynced before the trainer goes on (a killed trainer keeps
every finished epoch; at worst the line being written is torn, and readers skip a torn last line);
a resume rewrites both files by writing a new file and renaming it over the old one, so a kill during
the rewrite leaves the old file or the new one, never neither."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError
from imgbench.manifest import EpochRecord, SeedFigures, TrainingRepeats

log = logging.getLogger(__name__)

JSONL_NAME = "metrics.jsonl"
CSV_NAME = "metrics.csv"
FIELDS = list(EpochRecord.model_fields)


def _csv_text(rows: Iterable[dict], header: bool) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _append_durably(path: Path, text: str) -> None:
    """Append ``text`` and fsync; a file this call creates also gets its folder entry fsynced."""
    created = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def append_epoch(run_dir: Path, record: EpochRecord) -> None:
    """Append one epoch to both files, each fsynced before this returns."""
    run_dir.mkdir(parents=True, exist_ok=True)
    row = record.model_dump()
    _append_durably(run_dir / JSONL_NAME, json.dumps(row) + "\n")
    csv_path = run_dir / CSV_NAME
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    _append_durably(csv_path, _csv_text([row], header=new_file))


def read_epochs(run_dir: Path) -> list[EpochRecord]:
    """Every epoch of ``run_dir/metrics.jsonl``; a torn last line (killed mid-append) is skipped."""
    path = run_dir / JSONL_NAME
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(EpochRecord.model_validate_json(line))
        except ValidationError as exc:
            if number == len(lines) and not text.endswith("\n"):
                log.warning("%s: skipping the torn last line %d (%r)", path, number, line[:80])
                break
            raise ImgbenchError(f"{path} line {number} is not an epoch record: {exc}") from None
    return records


def truncate_after(run_dir: Path, last_epoch: int) -> None:
    """Drop epochs after ``last_epoch`` (a resumed run repeats the epoch that was in progress).

    Both files are rewritten atomically (temporary file, fsync, rename), JSON lines first: the CSV is
    derived from the same records, so a kill between the two renames is repaired by the next resume.
    """
    kept = [r.model_dump() for r in read_epochs(run_dir) if r.epoch <= last_epoch]
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / JSONL_NAME, "".join(json.dumps(row) + "\n" for row in kept))
    atomic_write_text(run_dir / CSV_NAME, _csv_text(kept, header=True))


# -- repeats (--repeats N: one run per seed) --------------------------------------------------------------
REPEATS_NAME = "repeats.json"
# Two-sided 95% Student t quantiles by degrees of freedom (scipy.stats.t.ppf(0.975, df)); the normal's
# 1.96 beyond the table.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci95(values: list[float]) -> dict[str, float | int | None]:
    """Mean and the half-width of its 95% confidence interval across repeats (Student t); with one
    value the half-width is None: one run cannot tell run-to-run noise.

    >>> mean_ci95([1.0, 2.0, 3.0])["ci95"]
    2.484...
    """
    import statistics

    n = len(values)
    mean = statistics.fmean(values) if values else float("nan")
    if n < 2:
        return {"n": n, "mean": mean, "ci95": None}
    half = _T975.get(n - 1, 1.96) * statistics.stdev(values) / n**0.5
    return {"n": n, "mean": mean, "ci95": half}


def summarize_repeats(runs: dict[int, Path]) -> dict[str, object]:
    """Per seed: best top-1, mean s/epoch and img/s after the first epoch, peak memory; then mean ± 95%
    CI across seeds for each. ``runs`` maps seed -> run folder."""
    per_seed = []
    for seed, run_dir in sorted(runs.items()):
        history = read_epochs(run_dir)
        if not history:
            raise ValueError(f"{run_dir} (seed {seed}) has no finished epoch; train it first")
        steady = history[1:] if len(history) > 1 else history
        per_seed.append(
            {
                "seed": seed,
                "run_dir": str(run_dir),
                "epochs": len(history),
                "top1": max(r.top1 for r in history),
                "seconds_per_epoch": sum(r.seconds for r in steady) / len(steady),
                "images_per_second": sum(r.images_per_second for r in steady) / len(steady),
                "peak_memory_bytes": max(r.peak_memory_bytes for r in history),
            }
        )
    figures = ("top1", "seconds_per_epoch", "images_per_second", "peak_memory_bytes")
    return {
        "seeds": [row["seed"] for row in per_seed],
        "per_seed": per_seed,
        "across_seeds": {name: mean_ci95([float(row[name]) for row in per_seed]) for name in figures},
    }


def write_repeats(base: Path, runs: dict[int, Path]) -> Path:
    """``base/repeats.json``: :func:`summarize_repeats` of every seed's run folder."""
    path = Path(base) / REPEATS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summarize_repeats(runs), indent=2) + "\n", encoding="utf-8")
    return path


def training_repeats(run_dir: Path) -> TrainingRepeats | None:
    """The manifest's ``training.repeats`` for the run in ``run_dir``: every seed of the
    ``repeats.json`` beside it when ``run_dir`` is one of its ``seed-<seed>`` folders; None for a
    single run. Both trainers' exports call this, so both record repeats the same way."""
    run_dir = Path(run_dir)
    path = run_dir.parent / REPEATS_NAME
    if not run_dir.name.startswith("seed-") or not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        rows = document["per_seed"]
        per_seed = [SeedFigures.model_validate({k: row[k] for k in SeedFigures.model_fields}) for row in rows]
        repeats = TrainingRepeats(per_seed=per_seed)
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ImgbenchError(f"{path} is not a repeats summary ({exc}); train again with --repeats") from None
    if Path(run_dir).resolve() not in {Path(row.get("run_dir", "")).resolve() for row in rows}:
        log.warning("%s does not list %s: its repeats are not recorded in the manifest", path, run_dir)
        return None
    return repeats
