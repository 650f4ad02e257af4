"""Dynamic-shape exports of trainer-pt (``--dynamic-sizes``): onnx_dynamic and torchscript_dynamic
gated against eager PyTorch on the whole val split at the training size and at 48 px, the Triton
config with -1 height/width, and ``dynamic-bench``'s results (accuracy per size, dynamic vs fixed
latency, torch.compile graph counts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import pytest
from conftest import IMAGE_SIZE, TrainedRun, run_trainer

from imgbench.dynamic_shapes import load_results, served_name
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository

MODEL = "pt_mobilenet_v3_small"
OTHER = 48


@pytest.fixture(scope="module")
def dynamic_repo(trained: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    repo = tmp_path_factory.mktemp("dynamic") / "model-repository"
    result = run_trainer(
        "export", "--run-dir", str(trained.run_dir), "--model-repository", str(repo),
        "--skip-int8", "--dynamic-sizes", str(OTHER),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return ModelRepository(repo)


def test_dynamic_exports_are_gated_at_every_size(dynamic_repo: ModelRepository) -> None:
    manifest = load_manifest(dynamic_repo.manifest_path(MODEL))
    for key in ("onnx_dynamic", "torchscript_dynamic"):
        record = manifest.exports[key]
        assert record.status == "ok" and (dynamic_repo.root / record.path).exists(), record
        assert record.details["gated_sizes"] == [IMAGE_SIZE, OTHER]
        assert record.n == manifest.dataset.num_eval and record.top1_agreement >= 0.999
        for size in (IMAGE_SIZE, OTHER):
            figures = record.details["sizes"][str(size)]
            assert figures["n"] == manifest.dataset.num_eval and figures["top1_agreement"] >= 0.999, figures
        # A model trained at 32 px answers 48 px images differently: the accuracy there is its own.
        assert record.details["sizes"][str(IMAGE_SIZE)]["accuracy"] == pytest.approx(record.accuracy)


def test_onnx_dynamic_has_symbolic_height_width_and_a_triton_config(dynamic_repo: ModelRepository) -> None:
    manifest = load_manifest(dynamic_repo.manifest_path(MODEL))
    served = served_name(MODEL)
    assert manifest.exports["onnx_dynamic"].path == f"triton/{served}/{manifest.version}/model.onnx"
    graph = onnx.load(str(dynamic_repo.root / manifest.exports["onnx_dynamic"].path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3])), dims
    config = dynamic_repo.triton_config(served).read_text()
    assert f'name: "{served}"' in config and "dims: [ 3, -1, -1 ]" in config
    # The fixed model keeps its fixed dims.
    assert f"dims: [ 3, {IMAGE_SIZE}, {IMAGE_SIZE} ]" in dynamic_repo.triton_config(MODEL).read_text()


def test_dynamic_bench_writes_accuracy_latency_and_compile_counts(
    trained: TrainedRun, dynamic_repo: ModelRepository, tmp_path: Path
) -> None:
    result = run_trainer(
        "dynamic-bench", "--run-dir", str(trained.run_dir), "--model-repository", str(dynamic_repo.root),
        "--sizes", f"{IMAGE_SIZE},{OTHER}", "--latency-runs", "5", "--limit", "64",
        "--compile-backend", "eager", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    bench = load_results(tmp_path / f"{MODEL}.json")
    assert bench.sizes == [IMAGE_SIZE, OTHER] and bench.training_size == IMAGE_SIZE
    assert {(r.runtime, r.size) for r in bench.rows} == {
        (runtime, size) for runtime in ("onnxruntime", "torchscript") for size in (IMAGE_SIZE, OTHER)
    }
    for row in bench.rows:
        assert (
            row.n == 64 and row.latency_samples == 5 and row.latency_ms_dynamic > 0 and row.latency_ms_fixed
        )
        # The same weights and runtime: the dynamic export answers as the fixed one of that size.
        assert row.agreement_with_fixed == 1.0 and row.accuracy_dynamic == row.accuracy_fixed
    counts = {c.dynamic: c for c in bench.compile}
    # dynamic=False compiles one graph per size; dynamic=True never more.
    assert counts[False].frames_compiled == 2 and counts[False].recompiles == 1
    assert len(counts[False].recompile_reasons) == 1 and "size mismatch" in counts[False].recompile_reasons[0]
    assert 1 <= counts[True].frames_compiled <= counts[False].frames_compiled
    assert all(c.accuracy_top1_match == 1.0 and c.error is None for c in bench.compile)
    assert json.loads((tmp_path / f"{MODEL}.json").read_text())["kind"] == "dynamic_shapes"


def test_vit_records_why_it_has_no_dynamic_export(tmp_path: Path) -> None:
    from trainer_pt.dynamic import dynamic_export_plan

    repo = ModelRepository(tmp_path)
    steps, skipped, dirs, _ = dynamic_export_plan(
        args=argparse.Namespace(dynamic_sizes=[224, 256]), exportable=None, reference_model=None,
        architecture="vit_b_16", name="pt_vit_b_16", version=1, repo=repo, data_path=tmp_path,
        training_size=224, val_resize=None, triton_spec=None,
    )  # fmt: skip
    assert steps == [] and dirs == []
    assert {k: r.status for k, r in skipped.items()} == {
        "onnx_dynamic": "skipped",
        "torchscript_dynamic": "skipped",
    }
    assert all("position embedding" in r.reason for r in skipped.values())


def test_bad_sizes_are_named() -> None:
    result = run_trainer("export", "--run-dir", "/nonexistent", "--dynamic-sizes", "32,big")
    assert result.returncode == 2 and "'big'" in result.stderr
