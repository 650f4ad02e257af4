"""Small contracts of the core: ports, catalog, validation gate, Triton config, training log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgbench.catalog import CATALOG, CPU_DEFAULT_ARCHITECTURE, get_entry
from imgbench.errors import ImgbenchError
from imgbench.manifest import EpochRecord
from imgbench.ports import DEFAULT_PORTS, default_port
from imgbench.stack.ports import free_port_map
from imgbench.training_log import append_epoch, read_epochs, truncate_after
from imgbench.triton_config import TritonModelSpec, render_config
from imgbench.validation import ExportGateError, compare_logits, enforce_gate


def test_default_ports_are_the_documented_ones_and_distinct() -> None:
    assert default_port("torchserve", "grpc") == 7070
    assert default_port("tfserving", "grpc") == 8500
    assert default_port("triton", "grpc") == 8001
    assert default_port("loadgen", "metrics") == 9646
    numbers = [p for ports in DEFAULT_PORTS.values() for p in ports.values()]
    assert len(numbers) == len(set(numbers))
    with pytest.raises(KeyError, match="no port 'grpc' for service 'grafana'"):
        default_port("grafana", "grpc")


def test_free_port_map_covers_every_port_without_collisions() -> None:
    ports = free_port_map()
    assert {s: set(p) for s, p in ports.items()} == {s: set(p) for s, p in DEFAULT_PORTS.items()}
    numbers = [p for service in ports.values() for p in service.values()]
    assert len(numbers) == len(set(numbers))


def test_catalog_unknown_name_lists_known_ones() -> None:
    assert get_entry(CPU_DEFAULT_ARCHITECTURE).cpu_friendly
    with pytest.raises(ImgbenchError, match=r"resnet18.*vit_l_16"):
        get_entry("resnet19")
    assert {"resnet18", "resnet50", "resnet152", "mobilenet_v3_small", "vit_b_16"} <= set(CATALOG)


def test_gate_passes_identical_and_fails_disagreeing_logits() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(100, 10)).astype(np.float32)
    labels = reference.argmax(axis=1)
    same = compare_logits(reference, reference + 1e-6, labels)
    assert same.top1_agreement == 1.0 and same.accuracy == 1.0 and same.max_abs_logit_diff < 1e-5
    enforce_gate("onnx", same)

    broken = reference.copy()
    broken[:5] = broken[:5, ::-1]  # five rows now predict another class
    result = compare_logits(reference, broken, labels)
    assert result.top1_agreement < 1.0
    with pytest.raises(ExportGateError, match="top-1 agreement"):
        enforce_gate("onnx", result)
    with pytest.raises(ExportGateError, match="max \\|Δlogit\\|"):
        enforce_gate("onnx", compare_logits(reference, reference + 0.01))
    with pytest.raises(ExportGateError, match="shapes differ"):
        compare_logits(reference, reference[:, :5])


def test_triton_configs_share_tensor_names_across_backends() -> None:
    spec = TritonModelSpec("tf_resnet18", "image", [32, 32, 3], "logits", 10, max_batch_size=8)
    onnx = render_config(spec, "onnxruntime")
    python = render_config(spec, "python")
    assert 'platform: "onnxruntime_onnx"' in onnx and 'backend: "python"' in python
    for text in (onnx, python):
        assert 'name: "image"' in text and "dims: [ 32, 32, 3 ]" in text and "dims: [ 10 ]" in text
        assert "max_batch_size: 8" in text and "preferred_batch_size: [ 4, 8 ]" in text


def test_training_log_append_read_truncate(tmp_path: Path) -> None:
    for epoch in (1, 2, 3):
        append_epoch(
            tmp_path,
            EpochRecord(
                epoch=epoch,
                train_loss=1.0 / epoch,
                val_loss=1.0,
                top1=0.5,
                top5=0.9,
                seconds=1.0,
                images_per_second=100.0,
                peak_memory_bytes=1,
            ),
        )
    assert [r.epoch for r in read_epochs(tmp_path)] == [1, 2, 3]
    truncate_after(tmp_path, 1)
    assert [r.epoch for r in read_epochs(tmp_path)] == [1]
    header, *rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert header.startswith("epoch,train_loss,val_loss,top1,top5,seconds,images_per_second")
    assert len(rows) == 1
