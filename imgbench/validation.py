"""The export validation gate both trainers apply: an export must agree with its framework model
on the evaluation split, or the export fails and no manifest claims it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgbench.errors import ImgbenchError

DEFAULT_MIN_AGREEMENT = 0.999
DEFAULT_MAX_ABS_DIFF = 1e-3


class ExportGateError(ImgbenchError):
    """An export disagrees with the model it was exported from."""


@dataclass(frozen=True)
class Agreement:
    n: int
    top1_agreement: float
    max_abs_logit_diff: float
    accuracy: float | None = None


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None
) -> Agreement:
    """Top-1 agreement and max |Δlogit| of ``candidate`` against ``reference`` (both N×classes).

    >>> compare_logits(np.array([[1.0, 0.0]]), np.array([[0.9, 0.1]])).top1_agreement
    1.0
    """
    if reference.shape != candidate.shape:
        raise ExportGateError(f"logit shapes differ: reference {reference.shape}, export {candidate.shape}")
    if reference.ndim != 2 or reference.shape[0] == 0:
        raise ExportGateError(f"expected N×classes logits with N > 0, got shape {reference.shape}")
    ref_top1 = reference.argmax(axis=1)
    cand_top1 = candidate.argmax(axis=1)
    accuracy = float((cand_top1 == labels).mean()) if labels is not None else None
    return Agreement(
        n=int(reference.shape[0]),
        top1_agreement=float((ref_top1 == cand_top1).mean()),
        max_abs_logit_diff=float(np.abs(reference.astype(np.float64) - candidate.astype(np.float64)).max()),
        accuracy=accuracy,
    )


def enforce_gate(
    export_name: str,
    agreement: Agreement,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_abs_diff: float | None = DEFAULT_MAX_ABS_DIFF,
) -> None:
    """Raise ``ExportGateError`` if the export falls below the gate. ``max_abs_diff=None`` skips the
    logit check (quantized exports are judged on agreement only)."""
    if agreement.top1_agreement < min_agreement:
        raise ExportGateError(
            f"{export_name}: top-1 agreement {agreement.top1_agreement:.4%} on {agreement.n} images "
            f"is below the gate {min_agreement:.4%}"
        )
    if max_abs_diff is not None and agreement.max_abs_logit_diff > max_abs_diff:
        raise ExportGateError(
            f"{export_name}: max |Δlogit| {agreement.max_abs_logit_diff:.3g} "
            f"exceeds the tolerance {max_abs_diff:.3g}"
        )
