"""imgbench.dynamic_shapes (sizes, served names and manifests, the Triton config with -1 dims, the
results file) and the report's "Dynamic input shapes" section read from a run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories import make_manifest

from imgbench import dynamic_shapes as ds
from imgbench.clients.tensors import batch_problem
from imgbench.errors import ImgbenchError
from imgbench.manifest import ExportRecord, write_manifest
from imgbench.paths import ModelRepository
from imgbench.report.build import build_report
from imgbench.triton_config import TritonModelSpec


def test_sizes_are_parsed_sorted_and_bad_ones_named() -> None:
    assert ds.parse_sizes("64, 32,48,32") == [32, 48, 64]
    with pytest.raises(ImgbenchError, match="'x'"):
        ds.parse_sizes("32,x")
    with pytest.raises(ImgbenchError, match="0"):
        ds.parse_sizes("0")
    with pytest.raises(ImgbenchError, match=r"at least 32 px.*\[16\]"):
        ds.check_sizes("resnet18", [16, 48])
    assert ds.gate_sizes(32, [48, 32, 64]) == [32, 48, 64]


def test_vit_cannot_take_a_dynamic_size_and_conv_nets_can() -> None:
    assert "position embedding" in (ds.unsupported_reason("vit_b_16") or "")
    assert ds.unsupported_reason("resnet18") is None and ds.unsupported_reason("mobilenet_v3_small") is None


def test_the_dynamic_variant_takes_any_height_and_width() -> None:
    for framework, axes in (("pytorch", (2, 3)), ("tensorflow", (1, 2))):
        manifest = make_manifest(framework)
        served = ds.served_manifest(manifest, ds.served_name(manifest.model))
        assert [served.input.shape[a] for a in axes] == [None, None]
        assert ds.served_manifest(manifest, manifest.model) is manifest
        batch = np.zeros(
            [2 if d is None else (48 if i in axes else d) for i, d in enumerate(manifest.input.shape)],
            np.float32,
        )
        assert batch_problem(served, batch) is None and batch_problem(manifest, batch) is not None
        assert ds.at_size(manifest, 48).input.image_size == (48, 48)


def test_scaled_tolerance_grows_with_the_logits_only() -> None:
    assert ds.scaled_tolerance(1e-3, np.array([[200.0]]), np.array([[20.0]])) == pytest.approx(1e-2)
    assert ds.scaled_tolerance(1e-3, np.array([[2.0]]), np.array([[20.0]])) == 1e-3
    assert ds.scaled_tolerance(None, np.ones((1, 1)), np.ones((1, 1))) is None


def test_triton_config_has_minus_one_height_and_width(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    for layout, dims, expected in (
        ("NCHW", [3, 32, 32], "[ 3, -1, -1 ]"),
        ("NHWC", [32, 32, 3], "[ -1, -1, 3 ]"),
    ):
        spec = TritonModelSpec("pt_resnet18", "image", dims, "logits", 10)
        path = ds.write_triton_config(repo, spec, "pt_resnet18_dynamic", layout)
        text = path.read_text()
        assert 'name: "pt_resnet18_dynamic"' in text and f"dims: {expected}" in text and "KIND_CPU" in text
        gpu = (path.parent / "configs" / "gpu.pbtxt").read_text()
        assert "KIND_GPU" in gpu and f"dims: {expected}" in gpu and "tensorrt" not in gpu


def _result() -> ds.DynamicBenchResult:
    rows = [
        ds.SizeResult(
            size=s, runtime=r, n=100, accuracy_dynamic=a, accuracy_fixed=a, agreement_with_fixed=1.0,
            latency_samples=50, latency_ms_dynamic=d, latency_ms_fixed=f, threads=1,
        )
        for s, a in ((32, 0.9), (48, 0.6))
        for r, d, f in (("tf.saved_model", 1.12, 1.0), ("onnxruntime", 0.5, 0.5))
    ]  # fmt: skip
    return ds.DynamicBenchResult(
        model="tf_resnet18", framework="tensorflow", architecture="resnet18", training_size=32,
        sizes=[32, 48], rows=rows, load_average=[1.0, 1.0, 1.0],
    )  # fmt: skip


def test_results_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    path = ds.write_results(tmp_path / "tf_resnet18.json", _result())
    assert ds.load_results(path) == _result()
    assert _result().rows[0].overhead == pytest.approx(0.12)
    (tmp_path / "bad.json").write_text('{"model": "x"}')
    with pytest.raises(ImgbenchError, match=r"bad\.json.*framework"):
        ds.load_results(tmp_path / "bad.json")


def test_report_has_the_dynamic_section_with_the_seed_claims(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "model-repository")
    record = ExportRecord(
        format="savedmodel_dynamic", path="tfserving/tf_resnet18_dynamic/1", n=100, top1_agreement=1.0,
        max_abs_logit_diff=0.0, accuracy=0.9,
        details={"gated_sizes": [32, 48], "sizes": {
            "32": {"n": 100, "top1_agreement": 1.0, "accuracy": 0.9},
            "48": {"n": 100, "top1_agreement": 0.995, "accuracy": 0.6},
        }},
    )  # fmt: skip
    skipped = ExportRecord(format="onnx_dynamic", path="x", status="skipped", reason="ViT's grid")
    write_manifest(
        repo.manifest_path("tf_resnet18"),
        make_manifest("tensorflow", exports={"savedmodel_dynamic": record, "onnx_dynamic": skipped}),
    )
    ds.write_results(ds.results_path(tmp_path, "tf_resnet18"), _result())
    (tmp_path / ds.RESULTS_DIR / "broken.json").write_text("{")
    text = build_report(tmp_path).read_text()
    section = text[text.index("## Dynamic input shapes") :]
    assert "| tf_resnet18 | savedmodel_dynamic | 48 | 100 | 99.50% | 60.00% |" in section
    assert "skipped: ViT's grid" in section
    assert (
        "| tf_resnet18 | tf.saved_model | 48 | 100 | 60.00% | 60.00% | 50 | 1.120 | 1.000 | +12.0% | 1 |"
        in section
    )
    assert "12% (TensorFlow SavedModel)" in section and "median +12.0%" in section
    assert "broken.json" in section
