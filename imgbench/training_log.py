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
from imgbench.manifest import EpochRecord

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
