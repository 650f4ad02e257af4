"""The one export pipeline (imgbench.export_pipeline): stage and gate everything, publish by rename,
configs, manifest last; a failed gate publishes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories import make_manifest

from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation, ExportJob, ExportStep, run_export
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.validation import ExportGateError

MODEL = "pt_resnet18"
REFERENCE = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.5]], dtype=np.float32)
LABELS = np.array([0, 1, 0])


def _step(repo: ModelRepository, key: str, logits: np.ndarray, gated: bool = True, **extra) -> ExportStep:
    def build(staging: Path) -> Path:
        path = staging / f"{key}.bin"
        path.write_bytes(b"x" * 10)
        return path

    return ExportStep(
        key,
        key.upper(),
        build=build,
        evaluate=lambda path: Evaluation(logits, latency_ms=1.5) if key == "int8" else logits,
        destination=repo.edge_dir(MODEL) / f"{key}.bin",
        min_agreement=0.999 if gated else None,
        max_abs_diff=1e-3 if gated else None,
        **extra,
    )


def _job(repo: ModelRepository, steps: list[ExportStep], events: list[str]) -> ExportJob:
    def manifest(records):
        events.append("manifest:" + ",".join(sorted(records)))
        return make_manifest(exports=records)

    return ExportJob(
        model=MODEL,
        version=1,
        repository=repo,
        reference=REFERENCE,
        labels=LABELS,
        steps=steps,
        manifest=manifest,
        write_configs=lambda: events.append(
            "configs:" + ",".join(sorted(p.name for p in repo.edge_dir(MODEL).iterdir()))
        ),
        version_dirs=[repo.triton_version_dir(MODEL, 1)],
    )


def test_publishes_every_export_then_configs_then_the_manifest(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    events: list[str] = []
    steps = [_step(repo, "onnx", REFERENCE + 1e-5), _step(repo, "int8", REFERENCE[:, ::-1], gated=False)]
    manifest = run_export(_job(repo, steps, events))
    # Configs see every artifact in place; the manifest comes last with every record.
    assert events == ["configs:int8.bin,onnx.bin", "manifest:int8,onnx"]
    assert load_manifest(repo.manifest_path(MODEL)).exports["onnx"].size_bytes == 10
    assert manifest.exports["int8"].top1_agreement == 0.0  # judged, not gated
    assert manifest.exports["int8"].latency_ms_per_image == 1.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_a_failed_gate_publishes_nothing(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    events: list[str] = []
    steps = [_step(repo, "onnx", REFERENCE), _step(repo, "tflite", REFERENCE[:, ::-1])]
    with pytest.raises(ExportGateError, match="TFLITE: top-1 agreement"):
        run_export(_job(repo, steps, events))
    assert events == [] and not repo.edge_dir(MODEL).exists()
    assert not repo.manifest_path(MODEL).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the staging folder is gone too


def test_an_existing_version_is_refused_before_any_work(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    repo.triton_version_dir(MODEL, 1).mkdir(parents=True)
    with pytest.raises(ImgbenchError, match="pick another --version"):
        run_export(_job(repo, [_step(repo, "onnx", REFERENCE)], []))


def test_published_files_and_their_folder_entries_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durable against a power cut, not only a killed process: every published file is fsynced before
    its rename, and its folder (up to the repository root) after it."""
    import os

    repo = ModelRepository(tmp_path / "repo")
    synced: list[tuple[str, bool]] = []  # (path, renamed into place already)
    renamed: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, any(path == dst or Path(path) in Path(dst).parents for dst in renamed)))
        real_fsync(fd)

    def replace(src, dst) -> None:
        real_replace(src, dst)
        renamed.append(str(dst))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run_export(_job(repo, [_step(repo, "fp32", REFERENCE), _step(repo, "int8", REFERENCE)], []))
    edge = repo.edge_dir(MODEL)
    for key in ("fp32", "int8"):
        staged = [path for path, _ in synced if path.endswith(f"/{key}.bin") and ".staging-" in path]
        assert staged, f"{key}.bin was not fsynced before its rename: {synced}"
    after_rename = {path for path, after in synced if after}
    for folder in (edge, edge.parent, repo.root):
        assert str(folder) in after_rename, (folder, synced)
