"""Compiled models: each model whose trainer ran a compiler (trainer-pt ``--compile``, trainer-tf
``--jit-compile``), the compiled model against eager on the evaluation split, under the export gate,
beside the seed's Tip 1 ("validate compiled model accuracy against eager", "lose 0.8% accuracy")."""

from __future__ import annotations

from imgbench.manifest import CompiledCheck
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import pct, table

HEADERS = [
    "model",
    "compiler",
    "checked",
    "n",
    "top-1 agreement",
    "max |Δlogit|",
    "accuracy eager → compiled",
    "gate",
    "verdict",
    "first batch s",
]


def _row(model: str, check: CompiledCheck) -> list[object]:
    gate = f"≥ {check.min_agreement:.2%}" + (
        f", ≤ {check.max_abs_diff:.0e}" if check.max_abs_diff is not None else ""
    )
    accuracy = None
    if check.eager_accuracy is not None and check.compiled_accuracy is not None:
        change = (check.compiled_accuracy - check.eager_accuracy) * 100
        accuracy = f"{check.eager_accuracy:.2%} → {check.compiled_accuracy:.2%} ({change:+.2f} pts)"
    return [
        model,
        check.compiler,
        f"after {check.stage}" if check.stage == "train" else "by export",
        check.n,
        pct(check.top1_agreement, 2),
        f"{check.max_abs_logit_diff:.2e}",
        accuracy,
        gate,
        "passed" if check.passed else f"**failed**: {check.reason}",
        f"{check.compile_seconds:.1f}" if check.compile_seconds is not None else None,
    ]


def compiled_rows(inputs: ReportInputs) -> list[list[object]]:
    return [
        _row(model, manifest.training.compiled_check)
        for model, manifest in sorted(inputs.manifests.items())
        if manifest.training.compiled_check is not None
    ]


def compiled_section(inputs: ReportInputs) -> str:
    rows = compiled_rows(inputs)
    intro = (
        "## Compiled models\n\n"
        'The article\'s Tip 1: torch.compile max-autotune has "no accuracy loss", yet "always validate '
        'compiled model accuracy against eager mode": teams that skipped it lost 0.8% accuracy. Each '
        "trainer run with a compiler (`--compile MODE`, `--jit-compile`) compares the compiled model with "
        "eager (for XLA: Keras without XLA) on the evaluation split under the export gate; a failed check "
        "fails the run or the export.\n\n"
    )
    if not rows:
        return intro + "No model in this run was trained or exported with a compiler.\n"
    return intro + table(HEADERS, rows) + "\n"
