"""INT8 post-training static quantization of the ONNX export with ONNX Runtime's tools, calibrated on
training images, and its figures: size, accuracy, agreement with PyTorch, in-process latency.

    >>> result = quantize_int8(Path("model.onnx"), Path("model_int8.onnx"), ...)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch.utils.data import DataLoader, Subset
from torchvision import datasets

from imgbench.validation import Agreement, compare_logits
from trainer_pt.data import eval_transform, load_rgb

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


@dataclass
class Int8Result:
    path: Path
    agreement: Agreement
    latency_ms: float
    details: dict[str, Any] = field(default_factory=dict)
    logits: np.ndarray | None = None  # on the val loader, the rows of reference_logits


class ImageFolderCalibration(CalibrationDataReader):
    """Evenly spaced training images (every class is seen), with the evaluation transform."""

    def __init__(self, data_path: Path, image_size: int, count: int, batch_size: int = 16):
        train = datasets.ImageFolder(
            str(data_path / "train"), transform=eval_transform(image_size), loader=load_rgb
        )
        indices = np.linspace(0, len(train) - 1, num=min(count, len(train))).round().astype(int)
        self.count = len(indices)
        self._loader = DataLoader(Subset(train, indices.tolist()), batch_size=batch_size, shuffle=False)
        self._batches: Iterator[Any] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._batches is None:
            self._batches = iter(self._loader)
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch[0].numpy()}

    def rewind(self) -> None:
        self._batches = None


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # latency per image on one core, like one serving worker
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


LATENCY_RUNS = 50
LATENCY_BUDGET_S = 15.0
"""Per model: a ResNet-50 at 512 px takes seconds per image on one CPU thread, and 50 runs of it would
outlast the rest of the export; after this long the runs so far (at least MIN_LATENCY_RUNS) decide."""
MIN_LATENCY_RUNS = 5


def latency_ms(
    session: ort.InferenceSession,
    image: np.ndarray,
    runs: int = LATENCY_RUNS,
    warmup: int = 5,
    budget_s: float = LATENCY_BUDGET_S,
) -> tuple[float, int]:
    """Median wall time of one single-image inference in milliseconds, and how many runs it rests on:
    ``runs``, or fewer (never under MIN_LATENCY_RUNS) once warm-up and runs took ``budget_s``."""
    started_all = time.perf_counter()
    for _ in range(warmup):
        session.run([OUTPUT_NAME], {INPUT_NAME: image})
        if time.perf_counter() - started_all > budget_s / 2:
            break
    times: list[float] = []
    while len(times) < runs and (
        len(times) < MIN_LATENCY_RUNS or time.perf_counter() - started_all < budget_s
    ):
        started = time.perf_counter()
        session.run([OUTPUT_NAME], {INPUT_NAME: image})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(times)


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    data_path: Path,
    image_size: int,
    calibration_images: int,
    val_loader: DataLoader,
    reference_logits: np.ndarray,
) -> Int8Result:
    """Quantize ``onnx_path`` (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration)."""
    prepared = out_path.with_name("model_preprocessed.onnx")
    try:
        # Shape inference and fusions first, as ONNX Runtime recommends, so Conv+BN quantize as one op.
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=False)
    except Exception as exc:  # pre-processing is an optimization; quantizing the raw graph still works
        log.warning("quant_pre_process failed (%s); quantizing the export as is", exc)
        prepared = onnx_path
    reader = ImageFolderCalibration(data_path, image_size, calibration_images)
    started = time.perf_counter()
    quantize_static(
        str(prepared),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        # Not CalibMaxIntermediateOutputs: ONNX Runtime 1.31 drops the collected outputs unused when it
        # is reached ("No data is collected"), so every calibration image's tensors are held at once.
    )
    seconds = time.perf_counter() - started
    int8_session, fp32_session = _session(out_path), _session(onnx_path)
    logits, labels = [], []
    with torch.inference_mode():
        for images, targets in val_loader:
            logits.append(int8_session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
            labels.append(targets.numpy())
    int8_logits = np.concatenate(logits)
    agreement = compare_logits(reference_logits, int8_logits, np.concatenate(labels))
    one_image = next(iter(val_loader))[0][:1].numpy()
    (int8_ms, int8_runs), (fp32_ms, fp32_runs) = (
        latency_ms(int8_session, one_image),
        latency_ms(fp32_session, one_image),
    )
    fp32_size, int8_size = onnx_path.stat().st_size, out_path.stat().st_size
    log.info(
        "INT8: %.2f MB (fp32 %.2f MB), accuracy %.2f%%, agreement %.2f%%, "
        "%.3f ms/image (fp32 %.3f ms) on 1 thread",
        int8_size / 1e6,
        fp32_size / 1e6,
        100 * (agreement.accuracy or 0.0),
        100 * agreement.top1_agreement,
        int8_ms,
        fp32_ms,
    )
    return Int8Result(
        path=out_path,
        agreement=agreement,
        latency_ms=int8_ms,
        details={
            "method": "onnxruntime quantize_static: QDQ, per-channel int8 weights, uint8 activations",
            "calibration": f"{reader.count} training images, MinMax",
            "quantize_seconds": round(seconds, 2),
            "fp32_size_bytes": fp32_size,
            "fp32_latency_ms_per_image": fp32_ms,
            "latency_measure": f"median of {int8_runs} (fp32: {fp32_runs}) single-image runs, ONNX Runtime "
            "CPU, 1 thread, in-process",
        },
        logits=int8_logits,
    )
