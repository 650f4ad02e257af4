"""SIGKILL during exports: the one export pipeline both trainers publish through
(imgbench.export_pipeline), killed at 20 seeded random points per trainer's layout (trainer-pt: a .mar
for TorchServe and an ONNX model for Triton; trainer-tf: a SavedModel folder for TF Serving and an ONNX
model), never leaves a manifest pointing at a missing or partial file.

Each artifact is written in chunks and ends with the SHA-256 of what precedes it, so a partial one is
told from a whole one; the writer exports version after version until it is killed.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from factories import make_manifest

from imgbench.export_pipeline import ExportJob, ExportStep, run_export, tree_size
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository

KILL_POINTS = 20
CHUNK = 64 * 1024
REFERENCE = np.eye(4, dtype=np.float32)


def _write_artifact(path: Path, version: int, chunks: int) -> None:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for index in range(chunks):
            chunk = bytes([(version + index) % 251]) * CHUNK
            handle.write(chunk)
            digest.update(chunk)
        handle.write(digest.digest())


def _whole(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]


def _steps(framework: str, repo: ModelRepository, model: str, version: int) -> list[ExportStep]:
    def file_step(key: str, destination: Path, chunks: int) -> ExportStep:
        def build(staging: Path) -> Path:
            path = staging / destination.name
            _write_artifact(path, version, chunks)
            return path

        return ExportStep(key, key, build, lambda p: REFERENCE, destination, 0.99, 1e-3)

    def saved_model(staging: Path) -> Path:
        folder = staging / "saved_model"
        (folder / "variables").mkdir(parents=True)
        _write_artifact(folder / "saved_model.pb", version, 8)
        _write_artifact(folder / "variables" / "variables.data-00000-of-00001", version, 24)
        return folder

    onnx = file_step("onnx", repo.triton_onnx(model, version), 24)
    if framework == "pytorch":
        return [onnx, file_step("torchscript", repo.torchserve_mar(model), 24)]
    destination = repo.tfserving_version_dir(model, version)
    return [
        onnx,
        ExportStep("savedmodel", "SavedModel", saved_model, lambda p: REFERENCE, destination, 0.99, 1e-3),
    ]


def _export_forever(framework: str, root: Path, first_version: int) -> None:
    repo = ModelRepository(root)
    model = make_manifest(framework).model
    version = first_version
    while True:
        steps = _steps(framework, repo, model, version)
        job = ExportJob(
            model=model,
            version=version,
            repository=repo,
            reference=REFERENCE,
            labels=None,
            steps=steps,
            manifest=lambda records, v=version: make_manifest(framework, version=v, exports=records),
            version_dirs=[
                repo.triton_version_dir(model, version),
                repo.tfserving_version_dir(model, version),
            ],
        )
        run_export(job)
        version += 1


def _check_manifests(root: Path, point: int) -> int:
    """The newest version the manifest names (0: none yet); fails on a missing or partial file."""
    repo = ModelRepository(root)
    versions = []
    for model in repo.models():
        manifest = load_manifest(repo.manifest_path(model))  # valid JSON and schema, or it raises
        for key, record in manifest.exports.items():
            if record.status == "skipped":
                continue
            path = root / record.path
            assert path.exists(), f"kill point {point}: {model} v{manifest.version} {key} -> missing {path}"
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            assert files and all(_whole(f) for f in files), f"kill point {point}: {key} {path} is partial"
            if path.is_dir() or key != "torchscript":  # the .mar is republished in place by the next export
                assert tree_size(path) == record.size_bytes, f"kill point {point}: {key} {path}"
        versions.append(manifest.version)
    return max(versions, default=0)


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_sigkill_during_exports_never_leaves_a_manifest_pointing_at_a_partial_file(
    framework: str, tmp_path: Path
) -> None:
    rng = random.Random(f"16-{framework}")
    newest_seen = next_version = advanced = 0
    for point in range(KILL_POINTS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _export_forever(framework, tmp_path, next_version + 1)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        newest = _check_manifests(tmp_path, point)
        assert newest >= newest_seen, (
            f"kill point {point}: manifest went back to v{newest} from v{newest_seen}"
        )
        advanced += newest > newest_seen
        newest_seen = newest
        # The next writer starts after every version folder a killed one may have published.
        folders = [int(p.name) for p in tmp_path.glob("*/*/[0-9]*") if p.is_dir()]
        next_version = max([newest, *folders])
    assert advanced >= KILL_POINTS // 4, f"exports completed between only {advanced} kill points"
