"""Issue 11's benchmarks (not tests), run by `make bench` (``imgbench.bench.suite``):

- ``trainers``: both trainers' images/s against a bare loop on in-memory tensors, back to back on the same
  machine with the same model, image size, batch and precision (fp32): ``trainer_pt bench`` (the trainer's
  loop vs a bare forward/backward/step loop) then ``trainer_tf bench`` (``model.fit`` vs a bare
  ``train_step``). Goal: a trainer keeps at least 95% of its bare loop.
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

GOAL_TRAINER_OVER_BARE = 0.95
TRAINER_MODEL = "mobilenet_v3_small"
BATCH_SIZE = 32
STEPS = 20
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


def summarize_trainers(pt_document: dict[str, Any], tf_document: dict[str, Any]) -> dict[str, Any]:
    """Each trainer's fp32 images/s, its bare loop's and their ratio, against the goal."""

    def fp32(document: dict[str, Any], trainer_key: str, ratio_key: str, framework: str) -> dict[str, Any]:
        row = next((r for r in document.get("results", []) if r.get("variant") == "fp32"), None)
        if row is None:
            variants = [r.get("variant") for r in document.get("results", [])]
            raise StageFailed(f"{framework} bench has no fp32 result; it has variants {variants}")
        ratio = float(row[ratio_key])
        return {
            "trainer_images_per_second": row[trainer_key],
            "bare_images_per_second": row["bare_images_per_second"],
            "trainer_over_bare": ratio,
            "meets_goal": ratio >= GOAL_TRAINER_OVER_BARE,
        }

    return {
        "benchmark": "trainers vs a bare loop on in-memory tensors (fp32), back to back",
        "goal_trainer_over_bare": GOAL_TRAINER_OVER_BARE,
        "model": TRAINER_MODEL,
        "batch_size": BATCH_SIZE,
        "pytorch": fp32(pt_document, "trainer_images_per_second", "trainer_vs_bare", "trainer-pt"),
        "tensorflow": fp32(tf_document, "fit_images_per_second", "fit_over_bare", "trainer-tf"),
    }


def bench_trainers(settings: DemoSettings, out: Path) -> None:
    raw = {"pytorch": out / "raw-pt", "tensorflow": out / "raw-tf"}
    common = ["--model", TRAINER_MODEL, "--image-size", str(settings.image_size), "-b", str(BATCH_SIZE)]
    run_logged(
        "bench-trainers",
        [
            str(venv_bin("pt") / "python"), "-m", "trainer_pt", "bench",
            "--data-path", str(settings.data_dir), *common, "-j", "0", "--steps", str(STEPS),
            "--variants", "fp32", "--out", str(raw["pytorch"]),
        ],
        settings,
        _env("trainer-pt"),
    )  # fmt: skip
    run_logged(
        "bench-trainers",
        [
            str(venv_bin("tf") / "python"), "-m", "trainer_tf", "bench", *common, "--steps", str(STEPS),
            "--variants", "fp32", "--out", str(raw["tensorflow"]),
        ],
        settings,
        _env("trainer-tf", TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    summary = summarize_trainers(
        _only_json(raw["pytorch"], "bench-trainers"), _only_json(raw["tensorflow"], "bench-trainers")
    )
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
