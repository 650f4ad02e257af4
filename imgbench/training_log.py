"""Per-epoch training figures, written the same way by both trainers (same files, same field names)
so the report can put them side by side: ``metrics.jsonl`` and ``metrics.csv`` in the run folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from imgbench.manifest import EpochRecord

JSONL_NAME = "metrics.jsonl"
CSV_NAME = "metrics.csv"
FIELDS = list(EpochRecord.model_fields)


def append_epoch(run_dir: Path, record: EpochRecord) -> None:
    """Append one epoch to both files (flushed, so a killed trainer keeps every finished epoch)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    row = record.model_dump()
    with (run_dir / JSONL_NAME).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    csv_path = run_dir / CSV_NAME
    new_file = not csv_path.exists()
    with csv_path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def read_epochs(run_dir: Path) -> list[EpochRecord]:
    path = run_dir / JSONL_NAME
    if not path.exists():
        return []
    return [
        EpochRecord.model_validate_json(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line
    ]


def truncate_after(run_dir: Path, last_epoch: int) -> None:
    """Drop epochs after ``last_epoch`` (a resumed run repeats the epoch that was in progress)."""
    kept = [r for r in read_epochs(run_dir) if r.epoch <= last_epoch]
    for name in (JSONL_NAME, CSV_NAME):
        (run_dir / name).unlink(missing_ok=True)
    for record in kept:
        append_epoch(run_dir, record)
