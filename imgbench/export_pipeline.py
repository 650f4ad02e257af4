"""The one export pipeline of both trainers: stage, gate, publish with rename, manifest last.

    job = ExportJob(model="tf_resnet18", version=3, repository=repo, reference=logits, labels=labels,
                    steps=[ExportStep("onnx", "ONNX", build=..., evaluate=..., destination=...)],
                    manifest=lambda records: Manifest(...))
    manifest = run_export(job)

Order, the same for every framework:

1. every step builds its artifact in one hidden staging folder inside the repository (same filesystem,
   so publishing is a rename) and runs it on the whole eval split; its logits are compared with the
   framework's (``imgbench.validation``) and the gate is enforced; a step may then package the validated
   artifact (TorchScript into a .mar);
2. only when every gate passed, each artifact is renamed into its place in the repository layout;
3. the server configuration files are written (Triton config.pbtxt, TF Serving models.config);
4. the manifest is written last, atomically: the model is complete when it exists.

A failed gate raises ``ExportGateError`` before step 2, so a failed export publishes nothing. Trainers
supply only their writers (``build``) and logit functions (``evaluate``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.errors import ImgbenchError
from imgbench.manifest import ExportRecord, Manifest, write_manifest
from imgbench.paths import ModelRepository
from imgbench.validation import Agreement, compare_logits, enforce_gate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What running one export on the eval split gave: its logits (rows in the reference's order), and
    optionally a single-image latency and details for the manifest."""

    logits: np.ndarray
    latency_ms: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportStep:
    """One export. ``min_agreement=None`` judges it (recorded, never fails the export)."""

    key: str  # the manifest's exports key, e.g. "onnx"
    label: str  # for logs and gate errors, e.g. "ONNX"
    build: Callable[[Path], Path]  # staging folder -> the staged artifact (file or folder)
    evaluate: Callable[[Path], Evaluation | np.ndarray]  # staged artifact -> logits on the eval split
    destination: Path  # where it is published in the repository
    min_agreement: float | None
    max_abs_diff: float | None
    details: Mapping[str, Any] = field(default_factory=dict)
    package: Callable[[Path], Path] | None = None  # validated artifact -> what is published (e.g. .mar)


@dataclass(frozen=True)
class ExportJob:
    model: str
    version: int
    repository: ModelRepository
    reference: np.ndarray  # the framework's own logits on the eval split
    labels: np.ndarray | None
    steps: Sequence[ExportStep]
    manifest: Callable[[dict[str, ExportRecord]], Manifest]  # records -> the manifest to write
    skipped: Mapping[str, ExportRecord] = field(default_factory=dict)  # e.g. TensorRT without a GPU
    write_configs: Callable[[], None] | None = None  # after publishing, before the manifest
    version_dirs: Sequence[Path] = ()  # folders of this version that must not exist yet


@dataclass
class _Staged:
    step: ExportStep
    path: Path
    agreement: Agreement
    evaluation: Evaluation


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _check_destinations(job: ExportJob) -> None:
    keys = [step.key for step in job.steps]
    if len(set(keys)) != len(keys) or set(keys) & set(job.skipped):
        raise ImgbenchError(f"{job.model}: export keys must be unique, got {keys} and {sorted(job.skipped)}")
    for folder in job.version_dirs:
        if folder.exists():
            raise ImgbenchError(
                f"{folder} already exists: {job.model} version {job.version} was exported before; "
                "pick another --version"
            )


def _stage(step: ExportStep, staging: Path, job: ExportJob) -> _Staged:
    path = step.build(staging)
    result = step.evaluate(path)
    evaluation = result if isinstance(result, Evaluation) else Evaluation(logits=np.asarray(result))
    agreement = compare_logits(job.reference, evaluation.logits, job.labels)
    log.info(
        "%s vs the framework on %d eval images: top-1 agreement %.4f%%, max |Δlogit| %.3g, accuracy %.2f%%%s",
        step.label,
        agreement.n,
        100 * agreement.top1_agreement,
        agreement.max_abs_logit_diff,
        100 * (agreement.accuracy or 0.0),
        "" if step.min_agreement is not None else " (judged, not gated)",
    )
    if step.min_agreement is not None:
        enforce_gate(step.label, agreement, step.min_agreement, step.max_abs_diff)
    if step.package is not None:
        path = step.package(path)
    return _Staged(step, path, agreement, evaluation)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(staged: _Staged, repository: ModelRepository) -> ExportRecord:
    """Rename the staged export into place, durably: its files and folders reach the disk before the
    rename and the new folder entries after it (imgbench.atomic's habit), so a power cut leaves the old
    repository or the new export, not a name pointing at unwritten data."""
    step = staged.step
    staged_paths = [staged.path, *staged.path.rglob("*")] if staged.path.is_dir() else [staged.path]
    for path in staged_paths:
        if not path.is_symlink():
            _fsync(path)
    step.destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged.path, step.destination)
    # The entry in its folder, and each folder mkdir created on the way, up to the repository root.
    folder = step.destination.parent
    while True:
        _fsync(folder)
        if folder == repository.root or repository.root not in folder.parents:
            break
        folder = folder.parent
    return ExportRecord(
        format=step.key,
        path=step.destination.relative_to(repository.root).as_posix(),
        size_bytes=tree_size(step.destination),
        n=staged.agreement.n,
        top1_agreement=staged.agreement.top1_agreement,
        max_abs_logit_diff=staged.agreement.max_abs_logit_diff,
        accuracy=staged.agreement.accuracy,
        latency_ms_per_image=staged.evaluation.latency_ms,
        details={**step.details, **staged.evaluation.details},
    )


def run_export(job: ExportJob) -> Manifest:
    """Stage and gate every step, publish them by rename, write the configs, then the manifest."""
    if job.version < 1:
        raise ImgbenchError(f"--version must be at least 1, got {job.version}")
    _check_destinations(job)
    job.repository.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{job.model}-", dir=job.repository.root))
    try:
        staged = [_stage(step, staging, job) for step in job.steps]
        # Every gate passed: publish, in the order given.
        records = {item.step.key: _publish(item, job.repository) for item in staged}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if job.write_configs is not None:
        job.write_configs()
    manifest = job.manifest({**records, **job.skipped})
    write_manifest(job.repository.manifest_path(job.model), manifest)
    for key, record in manifest.exports.items():
        if record.status == "skipped":
            log.info("%-15s skipped: %s", key, record.reason)
            continue
        latency = f"  {record.latency_ms_per_image:.3f} ms/image" if record.latency_ms_per_image else ""
        log.info(
            "%-15s agreement %.2f%%  max|Δ| %.2e  accuracy %.2f%%  %.2f MB%s  %s",
            key,
            100 * (record.top1_agreement or 0),
            record.max_abs_logit_diff or 0,
            100 * (record.accuracy or 0),
            (record.size_bytes or 0) / 1e6,
            latency,
            record.path,
        )
    log.info("wrote %s (version %d)", job.repository.manifest_path(job.model), job.version)
    return manifest
