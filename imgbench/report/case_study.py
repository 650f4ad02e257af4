"""The seed article's case study beside this run's (``imgbench demo --scenario case-study``): p99 latency,
top-1 accuracy and ONNX size before and after, the article's figures and ours, and how the two differ.

Reads the run folder's ``scenario.json`` (``imgbench.scenarios``), the manifest and the load results.
"""

from __future__ import annotations

from pathlib import Path

from imgbench.report.inputs import ReportInputs, read_inputs
from imgbench.report.int8 import Int8Pair, int8_pairs
from imgbench.report.markdown import table
from imgbench.scenarios import ArticleFigures, get_scenario, read_scenario_file


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _rel(before: float | None, after: float | None) -> str:
    if not before or after is None:
        return "–"
    return f"{100 * (after / before - 1):+.0f}%"


def _pts(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "–"
    return f"{100 * (after - before):+.1f} pts"


def _single_user(pairs: list[Int8Pair], model: str) -> Int8Pair | None:
    """The pair the article's per-request p99 compares with: closed loop at one user."""
    candidates = [p for p in pairs if p.model == model and p.fp32.mode == "closed" and p.fp32.users == 1]
    return candidates[0] if candidates else None


def case_study_rows(inputs: ReportInputs, article: ArticleFigures, model: str) -> list[list[str]]:
    pair = _single_user(int8_pairs(p for r in inputs.load_results for p in r.points), model)
    manifest = inputs.manifests.get(model)
    onnx = manifest.exports.get("onnx") if manifest else None
    int8 = manifest.exports.get("onnx_int8") if manifest else None
    fp32_point, int8_point = (pair.fp32, pair.int8) if pair else (None, None)
    p99 = (fp32_point.p99_ms if fp32_point else None, int8_point.p99_ms if int8_point else None)
    n = f" (n {fp32_point.n:,} / {int8_point.n:,})" if fp32_point and int8_point else ""
    accuracy = (fp32_point.accuracy if fp32_point else None, int8_point.accuracy if int8_point else None)
    offline = (onnx.accuracy if onnx else None, int8.accuracy if int8 else None)
    size = (onnx.size_bytes if onnx else None, int8.size_bytes if int8 else None)
    return [
        [
            "p99 latency",
            f"{_ms(article.p99_before_ms)} → {_ms(article.p99_after_ms)}",
            _rel(article.p99_before_ms, article.p99_after_ms),
            f"{_ms(p99[0])} → {_ms(p99[1])}{n}",
            _rel(*p99),
        ],
        [
            "top-1 accuracy",
            f"{_pct(article.top1_before)} → {_pct(article.top1_after)}",
            _pts(article.top1_before, article.top1_after),
            f"{_pct(accuracy[0])} → {_pct(accuracy[1])} under load "
            f"(val split offline: {_pct(offline[0])} → {_pct(offline[1])})",
            _pts(*accuracy),
        ],
        [
            "ONNX size",
            "−40%",
            f"{100 * article.onnx_size_change:+.0f}%",
            f"{(size[0] or 0) / 1e6:.1f} MB → {(size[1] or 0) / 1e6:.1f} MB" if all(size) else "–",
            _rel(*size),
        ],
        [
            "INT8 agrees with fp32",
            "not stated",
            "–",
            _pct(int8_point.agreement if int8_point else None)
            + f" under load (val split offline: {_pct(int8.top1_agreement if int8 else None)})",
            "–",
        ],
    ]


def _learning_note(inputs: ReportInputs, model: str, classes: int) -> str:
    """What the accuracy row can say: nothing when the short training left the model at chance."""
    manifest = inputs.manifests.get(model)
    onnx = manifest.exports.get("onnx") if manifest else None
    if onnx is not None and onnx.accuracy is not None and onnx.accuracy <= 1.0 / classes + 1e-9:
        return (
            f"This run's model did not learn: its val accuracy is chance ({_pct(onnx.accuracy)} for "
            f"{classes} classes), so the accuracy row compares nothing and INT8's agreement with a "
            "constant answer is trivially high. Latency and size do not depend on what the weights learned."
        )
    return (
        "Synthetic classes are easy to separate: accuracy near 100% says little about medical images; the "
        "comparison that transfers is the latency ratio on the same hardware and the INT8 agreement."
    )


def case_study_section(inputs: ReportInputs) -> str:
    """The report's "Case study" section; empty unless the run folder ran the case-study scenario."""
    described = read_scenario_file(inputs.run_dir)
    if not described or described.get("scenario") != "case-study":
        return ""
    scenario = get_scenario("case-study")
    model = str(described.get("model", ""))
    rows = case_study_rows(inputs, scenario.article, model)
    differences = [
        f"The article: {scenario.article.what}. Here: {scenario.classes}-class synthetic images at "
        f"{scenario.image_size} px ({scenario.train_images} train, {scenario.val_images} val), "
        f"{scenario.architecture} trained {scenario.epochs} epochs on this CPU, served by Triton on the CPU "
        "(natively its python backend running ONNX Runtime).",
        "Our before/after is one trained model served twice, fp32 then INT8 (ONNX Runtime static "
        "quantization); the article's after also retrained (PyTorch 2.4, fused SGD), so its accuracy gain "
        "is a training result that INT8 alone cannot give: expect INT8 to lose a little, not gain.",
        f"torch.compile: {scenario.compile_note}." if not scenario.compile else "",
        _learning_note(inputs, model, scenario.classes),
        "p99 at one user in closed loop, from one run each (no repeats): a p99 from fewer than 1,000 "
        "requests rests on fewer than ten requests beyond it.",
    ]
    return (
        "## Case study (the article's, replayed)\n\n"
        + table(["figure", "article", "article change", "this run: fp32 → INT8", "change"], rows)
        + "\n\n"
        + "".join(f"- {line}\n" for line in differences if line)
        + "\n"
    )


def print_case_study(run_dir: Path) -> None:
    """The scenario's last lines: the case-study table as text."""
    from rich.console import Console

    text = case_study_section(read_inputs(run_dir))
    Console().print(text or "no case-study results in this run folder", markup=False, highlight=False)
