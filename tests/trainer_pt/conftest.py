"""Shared fixtures of the trainer-pt suite: the digits dataset and one trained + exported run, made once
per session and reused. The trainer runs as a subprocess through ``python -m trainer_pt``, exactly as
the container and the stack runner start it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER_ROOT = REPO_ROOT / "services" / "trainer-pt"
if str(TRAINER_ROOT) not in sys.path:
    sys.path.insert(0, str(TRAINER_ROOT))

IMAGE_SIZE = 32
# Measured on 2 shared cores: MobileNetV3-Small at 32 px (batch-norm momentum 0.1, the trainer's default),
# seed 0, reached 92.2% val top-1 after 7 epochs (12-60 s each, depending on the other load); other
# initializations gave 89.4-93.3%, with horizontal flips 91.9%. Seeded, one thread and in-process loading,
# the run is repeatable; the threshold leaves room for another CPU's kernels.
RECIPE = [
    "--model", "mobilenet_v3_small", "--image-size", str(IMAGE_SIZE), "--lr", "0.8",
    "--crop-scale-min", "0.5", "--hflip", "0", "--threads", "1", "-j", "0",
]  # fmt: skip
EPOCHS = 7
MIN_TOP1 = 0.90


def trainer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRAINER_ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_trainer(
    *args: str, timeout: float = 900, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m trainer_pt ARGS`` in a fresh process (cwd elsewhere: the entry point must not care)."""
    return subprocess.run(
        [sys.executable, "-m", "trainer_pt", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=trainer_env(),
        cwd=cwd or Path("/"),
        check=False,
    )


def start_trainer(*args: str, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "trainer_pt", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=trainer_env(),
            cwd="/",
        )


@dataclass(frozen=True)
class TrainedRun:
    data: Path
    run_dir: Path
    repo: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imgbench.data.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("data") / "digits", size=IMAGE_SIZE)


@pytest.fixture(scope="session")
def digits_small(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every third digit (~480 train, ~120 val): for tests about control flow, not accuracy."""
    root = tmp_path_factory.mktemp("data") / "digits-small"
    for class_dir in sorted(digits.glob("*/*")):
        target = root / class_dir.relative_to(digits)
        target.mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[::3]:
            shutil.copy2(image, target / image.name)
    return root


@pytest.fixture(scope="session")
def trained(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One full ``train`` (which exports at the end) for the whole session."""
    base = tmp_path_factory.mktemp("trained")
    run_dir, repo = base / "run", base / "model-repository"
    result = run_trainer(
        "train", "--data-path", str(digits), *RECIPE, "--epochs", str(EPOCHS),
        "--output-dir", str(run_dir), "--model-repository", str(repo), "--calibration-images", "128",
        "--tflite",  # PyTorch → TFLite fp32/int8 (tests/trainer_pt/test_edge.py): ~35 s more on idle cores
        timeout=1800,  # ~2 min on idle cores; a shared machine has taken 8
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedRun(digits, run_dir, repo, result)


HANDLER_PATH = REPO_ROOT / "services" / "serving" / "torchserve" / "handler.py"


@pytest.fixture(scope="session")
def handler_module():
    """The TorchServe handler, imported by path: it is server-side code, not part of any package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("imgbench_torchserve_handler", HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
