"""Issue 11's benchmarks (not tests), run by `make bench` (``imgbench.bench.suite``):

- ``trainers``: both trainers' images/s against a bare loop on in-memory tensors, back to back on the same
  machine with the same model, image size, batch and precision (fp32): ``trainer_pt bench`` (the trainer's
  loop vs a bare forward/backward/step loop) then ``trainer_tf bench`` (``model.fit`` vs a bare
  ``train_step``), three rounds interleaved. Goal: a trainer keeps at least 95% of its bare loop, judged
  on the 95% CI of the ratio across rounds.
- ``parity``: the recipe-parity replay (``trainer_pt.parity`` then ``trainer_tf.parity``): the same
  initial weights and batches for 50 SGD steps; records the step-0 and trajectory differences.

    .venv/core/bin/python -m imgbench.bench.suite --only trainers parity
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imgbench.atomic import atomic_write_text
from imgbench.demo import DemoSettings, StageFailed, run_logged
from imgbench.paths import project_root, venv_bin
from imgbench.report.stats import ci95

GOAL_TRAINER_OVER_BARE = 0.95
TRAINER_MODEL = "mobilenet_v3_small"
BATCH_SIZE = 32
STEPS = 20
ROUNDS = 3
PARITY_ARCHITECTURES = ("mobilenet_v3_small", "resnet18")
PARITY_STEPS = 50


def _env(service: str, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(project_root() / "services" / service), **extra}


def _only_json(folder: Path, stage: str) -> dict[str, Any]:
    found = sorted(folder.glob("*.json"))
    if len(found) != 1:
        names = [p.name for p in found]
        raise StageFailed(f"stage '{stage}' should write one JSON in {folder}, found {names}")
    return json.loads(found[0].read_text(encoding="utf-8"))


def _fp32_row(document: dict[str, Any], framework: str) -> dict[str, Any]:
    row = next((r for r in document.get("results", []) if r.get("variant") == "fp32"), None)
    if row is None:
        variants = [r.get("variant") for r in document.get("results", [])]
        raise StageFailed(f"{framework} bench has no fp32 result; it has variants {variants}")
    return row


def goal_verdict(ratios: list[float]) -> str:
    """'met' when the 95% CI of the ratio across rounds lies at or above the goal, 'missed' when below,
    else 'not distinguishable at this n' (one round: 'cannot tell')."""
    interval = ci95(ratios)
    if interval.low is None or interval.high is None:
        return "cannot tell (one round)"
    if interval.low >= GOAL_TRAINER_OVER_BARE:
        return "met"
    if interval.high < GOAL_TRAINER_OVER_BARE:
        return "missed"
    return "not distinguishable at this n"


def summarize_trainers(
    pt_documents: list[dict[str, Any]], tf_documents: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each trainer's fp32 images/s, its bare loop's and their ratio per round, the ratio's mean ± 95% CI
    across rounds, and the verdict against the goal."""
    keys = {"pytorch": ("trainer_images_per_second", "trainer_vs_bare", "trainer-pt"),
            "tensorflow": ("fit_images_per_second", "fit_over_bare", "trainer-tf")}  # fmt: skip
    summary: dict[str, Any] = {
        "benchmark": "trainers vs a bare loop on in-memory tensors (fp32), rounds interleaved PT, TF, ...",
        "goal_trainer_over_bare": GOAL_TRAINER_OVER_BARE,
        "model": TRAINER_MODEL,
        "batch_size": BATCH_SIZE,
        "steps": STEPS,
    }
    for framework, documents in (("pytorch", pt_documents), ("tensorflow", tf_documents)):
        trainer_key, ratio_key, name = keys[framework]
        rows = [_fp32_row(document, name) for document in documents]
        ratios = [float(row[ratio_key]) for row in rows]
        interval = ci95(ratios)
        summary[framework] = {
            "rounds": [
                {
                    "trainer_images_per_second": row[trainer_key],
                    "bare_images_per_second": row["bare_images_per_second"],
                    "trainer_over_bare": ratio,
                }
                for row, ratio in zip(rows, ratios, strict=True)
            ],
            "trainer_over_bare_mean": round(interval.mean, 4),
            "trainer_over_bare_ci95": None if interval.half_width is None else round(interval.half_width, 4),
            "goal": goal_verdict(ratios),
        }
    return summary


def bench_trainers(settings: DemoSettings, out: Path, rounds: int = ROUNDS) -> None:
    """``rounds`` rounds of trainer-pt's then trainer-tf's bench, interleaved, so both see the same
    machine (a load that comes and goes hits both, and shows as spread across rounds)."""
    common = ["--model", TRAINER_MODEL, "--image-size", str(settings.image_size), "-b", str(BATCH_SIZE)]
    documents: dict[str, list[dict[str, Any]]] = {"pytorch": [], "tensorflow": []}
    for index in range(rounds):
        raw_pt, raw_tf = out / "raw-pt" / f"round-{index}", out / "raw-tf" / f"round-{index}"
        run_logged(
            "bench-trainers",
            [
                str(venv_bin("pt") / "python"), "-m", "trainer_pt", "bench",
                "--data-path", str(settings.data_dir), *common, "-j", "0", "--steps", str(STEPS),
                "--variants", "fp32", "--out", str(raw_pt),
            ],
            settings,
            _env("trainer-pt"),
        )  # fmt: skip
        run_logged(
            "bench-trainers",
            [
                str(venv_bin("tf") / "python"), "-m", "trainer_tf", "bench", *common, "--steps", str(STEPS),
                "--variants", "fp32", "--out", str(raw_tf),
            ],
            settings,
            _env("trainer-tf", TF_CPP_MIN_LOG_LEVEL="2"),
        )  # fmt: skip
        documents["pytorch"].append(_only_json(raw_pt, "bench-trainers"))
        documents["tensorflow"].append(_only_json(raw_tf, "bench-trainers"))
    summary = summarize_trainers(documents["pytorch"], documents["tensorflow"])
    atomic_write_text(out / "trainers_vs_bare.json", json.dumps(summary, indent=2) + "\n")


def summarize_parity(replays: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per architecture, the replay's differences without its loss lists (those stay in the raw files)."""
    return {
        "benchmark": "recipe parity: same weights and batches, PyTorch vs TensorFlow",
        "steps": PARITY_STEPS,
        "architectures": {
            architecture: {k: v for k, v in replay.items() if not k.endswith("_losses")}
            for architecture, replay in replays.items()
        },
    }


def bench_parity(settings: DemoSettings, out: Path) -> None:
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    replays = {}
    for architecture in PARITY_ARCHITECTURES:
        npz, replay = raw / f"pt-{architecture}.npz", raw / f"parity-{architecture}.json"
        run_logged(
            "bench-parity",
            [
                str(venv_bin("pt") / "python"), "-m", "trainer_pt.parity", "--model", architecture,
                "--steps", str(PARITY_STEPS), "--threads", "1", "--out", str(npz),
            ],
            settings,
            _env("trainer-pt", CUDA_VISIBLE_DEVICES=""),
        )  # fmt: skip
        run_logged(
            "bench-parity",
            [str(venv_bin("tf") / "python"), "-m", "trainer_tf.parity", str(npz), "--json", str(replay)],
            settings,
            _env("trainer-tf", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        )
        replays[architecture] = json.loads(replay.read_text(encoding="utf-8"))
    atomic_write_text(out / "parity.json", json.dumps(summarize_parity(replays), indent=2) + "\n")
