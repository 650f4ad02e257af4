"""Issue 17's benchmark (not a test), run by `make bench` (``imgbench.bench.suite --only fusion``):

- PyTorch: ``trainer_pt bench`` with the default SGD kernels (``fp32``) and with ``--fused-sgd``
  (``fused_sgd``: ``torch.optim.SGD(fused=True)``, the seed's case study), trainer loop and bare loop;
- TensorFlow: ``trainer_tf bench`` without and with XLA (``fp32`` / ``fp32_xla``: ``jit_compile`` on the
  train step, the closest thing Keras has to the seed's Tip 2 "XLA fused optimizer"; Keras has no
  ``SGD(use_xla=True)``), images/s and peak RSS.

Each variant runs in a process of its own (peak RSS is per process), in rounds whose order alternates
(A B, B A, ...), so a load that comes and goes hits both sides. Per side: every round's figure, the mean
± 95% CI, and Welch's test against the article's direction (``imgbench.report.stats.compare``).

    .venv/core/bin/python -m imgbench.bench.suite --only fusion
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imgbench.atomic import atomic_write_text
from imgbench.demo import DemoSettings, StageFailed, run_logged
from imgbench.paths import project_root, venv_bin
from imgbench.report.stats import Comparison, Interval, compare

MODEL = "mobilenet_v3_small"
RESULT = Path("results") / "fusion" / "fusion.json"  # in a `make bench` run folder
BATCH_SIZE = 32
ROUNDS = 3
PT_STEPS, PT_WARMUP = 20, 5
# XLA's fit runs at a few images/s on this CPU after minutes of compilation: fewer steps keep a round
# within minutes.
TF_STEPS, TF_WARMUP = 10, 2
SIDES = {
    "pytorch": {"off": "fp32", "on": "fused_sgd"},
    "tensorflow": {"off": "fp32", "on": "fp32_xla"},
}
# The article's direction for each figure, as "on − off": +1 expects more, −1 less.
CLAIMS = {
    "pytorch": {
        "optimizer_step_ms": (-1, "case study: fused SGD; the median optimizer.step() of the bare loop"),
        "bare_images_per_second": (+1, "case study: fused SGD among the changes that made training faster"),
        "trainer_images_per_second": (
            +1,
            "case study: fused SGD among the changes that made training faster",
        ),
    },
    "tensorflow": {
        "peak_rss_bytes": (-1, "tip 2: XLA fusion cuts training memory by up to 22%"),
        "bare_images_per_second": (-1, "tip 2: XLA fusion adds ~5% training time at batch < 128"),
        "fit_images_per_second": (-1, "tip 2: XLA fusion adds ~5% training time at batch < 128"),
    },
}


def _only_json(folder: Path) -> dict[str, Any]:
    found = sorted(folder.glob("*.json"))
    if len(found) != 1:
        raise StageFailed(
            f"stage 'bench-fusion' should write one JSON in {folder}, found {[p.name for p in found]}"
        )
    return json.loads(found[0].read_text(encoding="utf-8"))


def _row(document: dict[str, Any], variant: str) -> dict[str, Any]:
    row = next((r for r in document.get("results", []) if r.get("variant") == variant), None)
    if row is None:
        raise StageFailed(
            f"bench result has no {variant!r} row: {[r.get('variant') for r in document['results']]}"
        )
    return row


def _comparison(result: Comparison) -> dict[str, Any]:
    def side(interval: Interval) -> dict[str, Any]:
        return {"n": interval.n, "mean": interval.mean, "ci95_half_width": interval.half_width}

    return {
        "on": side(result.a),
        "off": side(result.b),
        "on_over_off": result.a.mean / result.b.mean if result.b.mean else None,
        "difference": result.difference,
        "p_value": result.p_value,
        "verdict": result.verdict,
    }


def summarize(rows: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per framework and figure: each round's value on both sides, and the comparison on − off."""
    summary: dict[str, Any] = {
        "benchmark": "optimizer fusion: trainer-pt --fused-sgd; trainer-tf XLA (jit_compile)",
        "model": MODEL,
        "batch_size": BATCH_SIZE,
        "variants": SIDES,
    }
    for framework, claims in CLAIMS.items():
        if framework not in rows:
            continue
        figures = {}
        for figure, (sign, claim) in claims.items():
            on = [float(r[figure]) for r in rows[framework]["on"]]
            off = [float(r[figure]) for r in rows[framework]["off"]]
            figures[figure] = {
                "claim": claim,
                "expected": "on > off" if sign > 0 else "on < off",
                "rounds_on": on,
                "rounds_off": off,
                **_comparison(compare(on, off, sign)),
            }
        summary[framework] = figures
    return summary


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A ``make bench`` run folder's fusion summary, or None when that benchmark did not run there."""
    path = Path(run_dir) / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def bench_fusion(
    settings: DemoSettings, out: Path, rounds: int = ROUNDS, frameworks: tuple[str, ...] = tuple(SIDES)
) -> None:
    """``rounds`` rounds, each side of each framework in a process of its own, the order alternating."""
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {f: {"on": [], "off": []} for f in frameworks}
    common = ["--model", MODEL, "--image-size", str(settings.image_size), "-b", str(BATCH_SIZE)]
    for index in range(rounds):
        order = ("off", "on") if index % 2 == 0 else ("on", "off")
        for side in order if "pytorch" in frameworks else ():
            variant = SIDES["pytorch"][side]
            raw = out / "raw-pt" / f"round-{index}-{variant}"
            run_logged(
                "bench-fusion",
                [
                    str(venv_bin("pt") / "python"), "-m", "trainer_pt", "bench",
                    "--data-path", str(settings.data_dir), *common, "-j", "0", "--threads", "1",
                    "--steps", str(PT_STEPS), "--warmup-steps", str(PT_WARMUP), "--variants", variant,
                    "--out", str(raw),
                ],
                settings,
                {"PYTHONPATH": str(project_root() / "services" / "trainer-pt")},
            )  # fmt: skip
            rows["pytorch"][side].append(_row(_only_json(raw), variant))
        for side in order if "tensorflow" in frameworks else ():
            variant = SIDES["tensorflow"][side]
            raw = out / "raw-tf" / f"round-{index}-{variant}"
            run_logged(
                "bench-fusion",
                [
                    str(venv_bin("tf") / "python"), "-m", "trainer_tf", "bench", *common,
                    "--steps", str(TF_STEPS), "--warmup-steps", str(TF_WARMUP), "--variants", variant,
                    "--out", str(raw),
                ],
                settings,
                {"PYTHONPATH": str(project_root() / "services" / "trainer-tf"), "TF_CPP_MIN_LOG_LEVEL": "2"},
            )  # fmt: skip
            rows["tensorflow"][side].append(_row(_only_json(raw), variant))
        # After every round: a run cut short by a time limit keeps the rounds it finished.
        atomic_write_text(out / "fusion.json", json.dumps(summarize(rows), indent=2) + "\n")
