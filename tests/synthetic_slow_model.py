"""A synthetic slow model for real servers: a model repository with one TorchServe archive whose
handler (tests/synthetic_slow_handler.py) sleeps a fixed time per batch execution plus a small time
per image, so its throughput at each batch size, and hence the best batch size, is known in advance:

    images/s ≤ workers × batch / (fixed_ms + per_image_ms × batch) × 1000

Its answers follow the images' brightness, and the dataset beside it has dark images in class 0 and
bright ones in class 1, so the load generator checks every answer as it does for a trained model.
Framework-free: only the core is imported here (the archive is built by the torchserve venv).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgbench.manifest import DatasetRef, ExportRecord, InputSpec, Manifest, TrainingFigures, write_manifest
from imgbench.paths import ModelRepository, venv_bin

HANDLER = Path(__file__).resolve().parent / "synthetic_slow_handler.py"
MODEL = "pt_synthetic_slow"
IMAGE_SIZE = 16
IMAGES_PER_CLASS = 16


@dataclass(frozen=True)
class SlowModel:
    repository: Path
    dataset: Path
    model: str
    fixed_ms: float
    per_image_ms: float

    def execution_ms(self, images: int) -> float:
        """What one execution of a batch of ``images`` costs the server."""
        return self.fixed_ms + self.per_image_ms * images

    def max_images_per_s(self, batch: int, workers: int = 1) -> float:
        """The most a server can deliver with batches of ``batch`` (every batch full)."""
        return workers * batch / self.execution_ms(batch) * 1000


def write_dataset(root: Path) -> Path:
    """An ImageFolder with a ``val`` split: class 0 dark, class 1 bright, some noise in each."""
    rng = np.random.default_rng(0)
    for label, level in (("0", 40), ("1", 215)):
        folder = root / "val" / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(IMAGES_PER_CLASS):
            pixels = np.clip(level + rng.normal(0, 20, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:03d}.png")
    return root


def manifest(dataset: Path) -> Manifest:
    return Manifest(
        model=MODEL,
        framework="pytorch",
        framework_version="synthetic",
        architecture="synthetic_slow",
        version=1,
        input=InputSpec(name="image", shape=[None, 3, IMAGE_SIZE, IMAGE_SIZE], layout="NCHW"),
        output_names=["logits"],
        class_names=["0", "1"],
        normalization={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},  # type: ignore[arg-type]
        dataset=DatasetRef(
            name="synthetic-brightness",
            path=str(dataset),
            num_train=0,
            num_eval=2 * IMAGES_PER_CLASS,
            image_size=IMAGE_SIZE,
        ),
        training=TrainingFigures(
            epochs=0,
            best_epoch=0,
            top1=1.0,  # by construction: the answers follow the brightness the classes differ in
            top5=1.0,
            seconds_per_epoch=0,
            images_per_second=0,
            peak_memory_bytes=0,
            device="cpu",
            parameters=0,
        ),
        exports={"torchserve": ExportRecord(format="mar", path=f"torchserve/{MODEL}.mar")},
    )


def build_slow_model(
    workdir: Path, fixed_ms: float = 50.0, per_image_ms: float = 1.0, record: Path | None = None
) -> SlowModel:
    """The dataset, the archive (torch-model-archiver of the torchserve venv) and the manifest;
    ``record``: where the handler appends "<batchSize> <requests>" per execution."""
    dataset = write_dataset(workdir / "dataset")
    repository = ModelRepository(workdir / "model-repository")
    repository.torchserve_dir.mkdir(parents=True, exist_ok=True)
    staging = workdir / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    cost = staging / "cost.json"
    cost.write_text(
        json.dumps({"fixed_ms": fixed_ms, "per_image_ms": per_image_ms, "record": str(record or "")})
    )
    config = staging / "model-config.yaml"
    config.write_text("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nmaxBatchDelay: 5\nresponseTimeout: 60\n")
    archiver = [
        str(venv_bin("torchserve") / "torch-model-archiver"),
        "--model-name", MODEL, "--version", "1", "--handler", str(HANDLER),
        "--extra-files", str(cost), "--config-file", str(config),
        "--export-path", str(repository.torchserve_dir), "--force",
    ]  # fmt: skip
    subprocess.run(
        archiver,
        check=True,
        capture_output=True,
        text=True,
    )
    write_manifest(repository.manifest_path(MODEL), manifest(dataset))
    return SlowModel(repository.root, dataset, MODEL, fixed_ms, per_image_ms)
