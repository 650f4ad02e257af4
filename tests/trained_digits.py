"""Digits models trained once per test session by the real trainers (each in its own venv), shared by
every core-venv suite that needs a model repository (serving, loadgen against real servers, dashboards).

Set IMGBENCH_TEST_MODEL_REPOSITORY (and IMGBENCH_TEST_DATASET) to reuse an already trained repository
instead of training; a fresh copy is used, so tests that add versions cannot spoil it.
Framework-free: only the core is imported here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imgbench.manifest import Manifest, load_manifest
from imgbench.paths import ModelRepository, project_root, venv_bin

ROOT = project_root()
IMAGE_SIZE = 32
TRIMMED_PER_CLASS = {"train": 40, "val": 12}  # 400 training and 120 validation images
TRAINER_VENVS = ("pt", "tf")


@dataclass
class Trained:
    repository: Path
    dataset: Path
    models: dict[str, str]  # framework prefix -> model name
    seconds: dict[str, float] = field(default_factory=dict)

    def manifest(self, prefix: str) -> Manifest:
        return load_manifest(ModelRepository(self.repository).manifest_path(self.models[prefix]))


def _failure(argv: list[str], code: int, log_path: Path) -> AssertionError:
    tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
    return AssertionError(f"{' '.join(argv[:4])} ... exited {code}; log {log_path}:\n{tail}")


def run_logged(
    argv: list[str], log_path: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> None:
    with log_path.open("w") as log:
        result = subprocess.run(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=ROOT,
        )
    if result.returncode != 0:
        raise _failure(argv, result.returncode, log_path)


def _trim(dataset: Path, per_class: dict[str, int]) -> None:
    """Keep the first ``per_class[split]`` images of each class: servers and tools are under test here,
    not accuracy, and one epoch on 1,438 images takes minutes on a shared 2-core machine."""
    for split, keep in per_class.items():
        for class_dir in sorted(p for p in (dataset / split).iterdir() if p.is_dir()):
            for extra in sorted(class_dir.iterdir())[keep:]:
                extra.unlink()


def train_digits(workdir: Path) -> Trained:
    from imgbench.data.digits import write_digits

    dataset = write_digits(workdir / "digits", size=IMAGE_SIZE, force=True)
    _trim(dataset, TRIMMED_PER_CLASS)
    repository = workdir / "model-repository"
    trainers = {
        "pt": [
            str(venv_bin("pt") / "python"), "-m", "trainer_pt", "train", "--data-path", str(dataset),
            "--image-size", str(IMAGE_SIZE), "--epochs", "1", "-j", "0",
            # INT8 served as pt_<arch>_int8 (a few seconds at 32 px); a 1-epoch model's INT8 agreement
            # is noise, so recorded ungated here (trainer-pt's own tests gate it).
            "--calibration-images", "64", "--quantized-min-agreement", "0",
            # Dynamic-shape exports (pt_<arch>_dynamic on Triton), gated at 32 and 48 px: a few seconds.
            "--dynamic-sizes", "48",
            "--output-dir", str(workdir / "run-pt"), "--model-repository", str(repository),
        ],
        "tf": [
            str(venv_bin("tf") / "python"), "-m", "trainer_tf", "train", "--data-path", str(dataset),
            "--image-size", str(IMAGE_SIZE), "--epochs", "1", "--skip-tflite", "--no-progress",
            "--dynamic-sizes", "48",  # tf_<arch>_dynamic on Triton and the TF Serving stand-in
            "--output-dir", str(workdir / "run-tf"), "--model-repository", str(repository),
        ],
    }  # fmt: skip
    # Both trainers at once: each is partly single-threaded (data, export checks), so this saves time.
    running = {}
    for prefix, argv in trainers.items():
        service = "trainer-pt" if prefix == "pt" else "trainer-tf"
        log = (workdir / f"train-{prefix}.log").open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "services" / service), "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        running[prefix] = (process, log, time.monotonic())
    seconds = {}
    for prefix, (process, log, started) in running.items():
        code = process.wait(timeout=1200)
        log.close()
        seconds[prefix] = time.monotonic() - started
        if code != 0:
            raise _failure(trainers[prefix], code, workdir / f"train-{prefix}.log")
    models = {m.split("_", 1)[0]: m for m in ModelRepository(repository).models()}
    assert set(models) == {"pt", "tf"}, f"trainers exported {models}"
    return Trained(repository, dataset, models, seconds)


def trained_or_reused(workdir: Path) -> Trained:
    missing = [name for name in TRAINER_VENVS if not (venv_bin(name) / "python").exists()]
    if missing:
        pytest.skip(f"venvs missing: {missing}; run `scripts/setup.sh {' '.join(missing)}`")
    reuse = os.environ.get("IMGBENCH_TEST_MODEL_REPOSITORY")
    if not reuse:
        return train_digits(workdir)
    repository = workdir / "model-repository"
    shutil.copytree(reuse, repository, symlinks=True, ignore=shutil.ignore_patterns("triton-python"))
    models = {m.split("_", 1)[0]: m for m in ModelRepository(repository).models()}
    return Trained(repository, Path(os.environ["IMGBENCH_TEST_DATASET"]), models)
