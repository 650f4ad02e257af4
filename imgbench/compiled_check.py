"""Compiled model vs eager on the evaluation split: the export gate applied to a compiler.

The seed article's Tip 1 warns that ``torch.compile(mode="max-autotune")`` can lose accuracy silently
("validate compiled model accuracy against eager"); the same question stands for XLA. Both trainers run
the compiled and the eager model on the same evaluation images, compare the logits with the export
gate (``imgbench.validation``: top-1 agreement and max |Δlogit|, thresholds from ``--min-agreement`` and
``--max-abs-diff``), write the result into the run folder (``compiled_check.json``, also when it fails)
and raise ``CompiledGateError`` when it fails, so the run or the export stops with one clear line.

    >>> import numpy as np
    >>> check = judge("torch.compile(mode=default)", "train", np.eye(3), np.eye(3), np.arange(3), 0.999, 1e-3)
    >>> check.passed, check.top1_agreement
    (True, 1.0)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imgbench.atomic import atomic_write_text
from imgbench.manifest import CompiledCheck
from imgbench.validation import ExportGateError, compare_logits, enforce_gate

CHECK_NAME = "compiled_check.json"


class CompiledGateError(ExportGateError):
    """The compiled model disagrees with the eager one beyond the export gate."""


def evenly_spaced(total: int, limit: int | None) -> list[int]:
    """Indices of at most ``limit`` items spread over ``total`` (every class of a sorted ImageFolder
    split, not the first class only); all of them when ``limit`` is None or not smaller.

    >>> evenly_spaced(10, 4)
    [0, 3, 6, 9]
    """
    if limit is not None and limit < 1:
        raise ExportGateError(f"--compile-check-images must be at least 1, got {limit}")
    if limit is None or limit >= total:
        return list(range(total))
    return sorted(set(np.linspace(0, total - 1, limit).round().astype(int).tolist()))


def judge(
    compiler: str,
    stage: str,
    eager: np.ndarray,
    compiled: np.ndarray,
    labels: np.ndarray | None,
    min_agreement: float,
    max_abs_diff: float | None,
    compile_seconds: float | None = None,
) -> CompiledCheck:
    """The record of one comparison; ``passed`` says whether it cleared the gate (nothing is raised)."""
    agreement = compare_logits(eager, compiled, labels)
    eager_accuracy = float((eager.argmax(axis=1) == labels).mean()) if labels is not None else None
    reason = None
    try:
        enforce_gate(f"{compiler} vs eager", agreement, min_agreement, max_abs_diff)
    except ExportGateError as exc:
        reason = str(exc)
    return CompiledCheck(
        compiler=compiler,
        stage=stage,
        n=agreement.n,
        top1_agreement=agreement.top1_agreement,
        max_abs_logit_diff=agreement.max_abs_logit_diff,
        eager_accuracy=eager_accuracy,
        compiled_accuracy=agreement.accuracy,
        min_agreement=min_agreement,
        max_abs_diff=max_abs_diff,
        passed=reason is None,
        reason=reason,
        compile_seconds=compile_seconds,
    )


def record_and_enforce(run_dir: Path, check: CompiledCheck) -> CompiledCheck:
    """Write ``check`` into the run folder, then raise ``CompiledGateError`` if it failed."""
    write_check(run_dir, check)
    if not check.passed:
        raise CompiledGateError(
            f"{check.reason}; the compiled model is not trustworthy on this data (recorded in "
            f"{Path(run_dir) / CHECK_NAME}). Export without the compiler, or loosen --min-agreement/"
            "--max-abs-diff knowingly"
        )
    return check


def write_check(run_dir: Path, check: CompiledCheck) -> Path:
    path = Path(run_dir) / CHECK_NAME
    atomic_write_text(path, check.model_dump_json(indent=2) + "\n")
    return path


def read_check(run_dir: Path) -> CompiledCheck | None:
    """The run's recorded check, or None when it was trained and exported without a compiler."""
    path = Path(run_dir) / CHECK_NAME
    if not path.is_file():
        return None
    try:
        return CompiledCheck.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError) as exc:
        raise ExportGateError(f"{path} is not a compiled-model check: {str(exc).splitlines()[0]}") from None
