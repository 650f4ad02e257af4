"""The per-epoch training records survive crashes: appends are fsynced, a resume's rewrite is
temp-then-rename (a crash in it leaves the old files whole), a torn last line is skipped, and a writer
SIGKILLed at seeded random points always leaves records that read back as epochs 1..n."""

from __future__ import annotations

import csv
import os
import random
import signal
import time
from pathlib import Path

import pytest

from imgbench import atomic, training_log
from imgbench.errors import ImgbenchError
from imgbench.manifest import EpochRecord
from imgbench.training_log import CSV_NAME, JSONL_NAME, append_epoch, read_epochs, truncate_after

KILL_POINTS = 20


def _record(epoch: int) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        train_loss=1.0 / epoch,
        val_loss=1.0,
        top1=0.5,
        top5=0.9,
        seconds=1.0,
        images_per_second=100.0,
        peak_memory_bytes=1,
    )


def _csv_epochs(run_dir: Path) -> list[int]:
    with (run_dir / CSV_NAME).open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_appends_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(training_log.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    append_epoch(tmp_path, _record(1))
    # Each file's data, and the folder once for each new file.
    assert len(synced) == 4
    synced.clear()
    append_epoch(tmp_path, _record(2))
    assert len(synced) == 2


def test_a_crash_while_truncating_leaves_the_old_records_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for epoch in (1, 2, 3):
        append_epoch(tmp_path, _record(epoch))
    before = {name: (tmp_path / name).read_bytes() for name in (JSONL_NAME, CSV_NAME)}

    def crash(source: str, target: str) -> None:
        raise KeyboardInterrupt(f"killed before renaming {source} to {target}")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        truncate_after(tmp_path, 1)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CSV_NAME, JSONL_NAME], "temporary file left"
    monkeypatch.undo()
    truncate_after(tmp_path, 1)
    assert [r.epoch for r in read_epochs(tmp_path)] == [1] and _csv_epochs(tmp_path) == [1]
    truncate_after(tmp_path, 0)
    assert read_epochs(tmp_path) == [] and _csv_epochs(tmp_path) == []


def test_a_torn_last_line_is_skipped_and_a_bad_line_inside_is_named(tmp_path: Path) -> None:
    for epoch in (1, 2):
        append_epoch(tmp_path, _record(epoch))
    path = tmp_path / JSONL_NAME
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[0][:17])
    assert [r.epoch for r in read_epochs(tmp_path)] == [1, 2]
    truncate_after(tmp_path, 2)  # the resume repairs the file
    assert path.read_text() == whole
    path.write_text("not json\n" + whole)
    with pytest.raises(ImgbenchError, match=r"metrics\.jsonl line 1 is not an epoch record"):
        read_epochs(tmp_path)


def _resume_forever(run_dir: Path) -> None:
    """The child: a trainer that resumes over and over: repeat the last epoch, then append two."""
    while True:
        done = len(read_epochs(run_dir))
        truncate_after(run_dir, max(done - 1, 0))
        for epoch in range(max(done, 1), max(done, 1) + 2):
            append_epoch(run_dir, _record(epoch))


def test_sigkill_at_random_points_never_loses_a_finished_epoch(tmp_path: Path) -> None:
    rng = random.Random(16)
    run_dir = tmp_path / "run"
    epochs_seen = 0
    for point in range(KILL_POINTS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _resume_forever(run_dir)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        epochs = [r.epoch for r in read_epochs(run_dir)]
        assert epochs == list(range(1, len(epochs) + 1)), f"kill point {point}: {epochs}"
        # A finished epoch is never lost: a resume repeats only the last one.
        assert len(epochs) >= epochs_seen - 1, f"kill point {point}: {len(epochs)} after {epochs_seen}"
        epochs_seen = len(epochs)
        # The CSV holds the same epochs, or one more row being written (a torn row is not an epoch).
        csv_epochs = _csv_epochs(run_dir) if (run_dir / CSV_NAME).exists() else []
        assert csv_epochs[: len(epochs)] == epochs[: len(csv_epochs)], f"kill point {point}"
    assert epochs_seen > 0
