"""PyTorch → TFLite with LiteRT Torch (``litert-torch``, formerly ai-edge-torch), gated like every export.

    python -m trainer_pt export --run-dir runs/trainer-pt --model-repository model-repository --tflite

Writes ``edge/<model>/model_fp32.tflite`` (the eager model through ``torch.export``, lowered by LiteRT
Torch, no ONNX in between) and ``model_int8.tflite`` (the fp32 flatbuffer statically quantized by
``ai-edge-quantizer``: int8 weights and activations, float32 input and output so clients send the
same tensor as to every other export, calibrated on training images). Both take NCHW ``image`` and
return ``logits`` through the ``serving_default`` signature, run one image at a time by LiteRT's
interpreter on the whole eval split, gated against PyTorch's logits (fp32: ``--min-agreement`` and
``--max-abs-diff``; int8: ``--quantized-min-agreement``), and measured for peak memory in a fresh
process (``imgbench.edge_memory``).

Why LiteRT Torch and not ONNX → TFLite (onnx2tf): it is Google's maintained PyTorch edge path, its
declared requirements hold beside our pins (torch < 2.15, ai-edge-litert 2.3) and it needs no
TensorFlow, while onnx2tf 1.29 pins tensorflow 2.19, numpy 1.26, onnx 1.19 and onnxruntime 1.23.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from imgbench.edge_memory import measure_tflite_memory
from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation, ExportStep
from imgbench.paths import ModelRepository
from trainer_pt.quantize import ImageFolderCalibration

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
SIGNATURE = "serving_default"
VARIANTS = ("fp32", "int8")


class _NamedIO(nn.Module):
    """The signature's names come from the keyword argument and the returned dict."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {OUTPUT_NAME: self.model(image)}


def convert_fp32(model: nn.Module, image_size: int, path: Path) -> Path:
    """``model`` (eval mode) as a float32 TFLite flatbuffer with a batch-1 NCHW input."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # a progress line per pass otherwise
    import litert_torch

    sample = {INPUT_NAME: torch.zeros(1, 3, image_size, image_size)}
    try:
        edge_model = litert_torch.convert(_NamedIO(model).eval(), sample_kwargs=sample)
        edge_model.export(str(path))
    except Exception as exc:  # the converter raises many types; name it and stop the export
        raise ImgbenchError(
            f"PyTorch → TFLite conversion (litert-torch) failed: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}"
        ) from None
    return path


def int8_recipe() -> Any:
    """Static int8 for every op LiteRT quantizes, the graph's input and output left float32."""
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.add_static_config(
        ".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8
    )
    for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(".*", io, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def quantize_int8(fp32_path: Path, calibration: list[np.ndarray], path: Path) -> Path:
    """Statically quantize ``fp32_path`` with ``calibration`` (single NCHW images) into ``path``."""
    from ai_edge_quantizer import quantizer

    if not calibration:
        raise ImgbenchError("int8 TFLite needs calibration images; got none (--calibration-images)")
    tool = quantizer.Quantizer(str(fp32_path))
    tool.load_quantization_recipe(int8_recipe())
    result = tool.calibrate({SIGNATURE: [{INPUT_NAME: image} for image in calibration]})
    path.write_bytes(bytes(tool.quantize(result, enable_progress_report=False).quantized_model))
    return path


def calibration_images(data_path: Path, image_size: int, count: int) -> list[np.ndarray]:
    """Evenly spaced training images with the eval transform (the INT8 ONNX export's sample)."""
    reader = ImageFolderCalibration(data_path, image_size, count, batch_size=1)
    images = []
    while (batch := reader.get_next()) is not None:
        images.append(batch[INPUT_NAME])
    return images


def tflite_logits(path: Path, loader: DataLoader, threads: int) -> tuple[np.ndarray, float]:
    """Every image of ``loader`` one at a time through LiteRT's interpreter (the signature runner),
    and the median latency per image in ms."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner(SIGNATURE)
    outputs, latencies = [], []
    for images, _ in loader:
        for image in images.numpy():
            start = time.perf_counter()
            result = runner(**{INPUT_NAME: image[None]})
            latencies.append(time.perf_counter() - start)
            outputs.append(result[OUTPUT_NAME])
    return np.concatenate(outputs), float(np.median(latencies) * 1000.0)


def tflite_export_steps(
    *,
    exportable: nn.Module,
    name: str,
    repo: ModelRepository,
    loader: DataLoader,
    data_path: Path,
    image_size: int,
    calibration_count: int,
    min_agreement: float,
    max_abs_diff: float,
    quantized_min_agreement: float,
    threads: int = 1,
) -> list[ExportStep]:
    """The two TFLite steps of ``trainer_pt.export`` (fp32, then int8 from the staged fp32)."""
    staged: dict[str, Path] = {}

    def build(variant: str) -> Callable[[Path], Path]:
        def run(staging: Path) -> Path:
            target = staging / f"model_{variant}.tflite"
            if variant == "fp32":
                staged["fp32"] = convert_fp32(exportable, image_size, target)
                return target
            # The fp32 step ran first in the same staging folder (steps run in order).
            images = calibration_images(data_path, image_size, calibration_count)
            return quantize_int8(staged["fp32"], images, target)

        return run

    def evaluate(path: Path) -> Evaluation:
        logits, latency = tflite_logits(path, loader, threads)
        memory = measure_tflite_memory(path, threads=threads)
        return Evaluation(logits, latency_ms=latency, details={"memory": memory.as_details()})

    quantization = {
        "fp32": "none",
        "int8": f"int8 weights and activations (ai-edge-quantizer static_wi8_ai8), float32 input/output, "
        f"calibrated on {calibration_count} training images at most",
    }
    return [
        ExportStep(
            f"tflite_{variant}",
            f"TFLite {variant} (litert-torch)",
            build=build(variant),
            evaluate=evaluate,
            destination=repo.tflite(name, variant),
            # int8 is gated on agreement only, as trainer-tf's quantized TFLite models.
            min_agreement=min_agreement if variant == "fp32" else quantized_min_agreement,
            max_abs_diff=max_abs_diff if variant == "fp32" else None,
            details={
                "converter": "litert-torch" if variant == "fp32" else "litert-torch + ai-edge-quantizer",
                "interpreter": "ai_edge_litert",
                "signature": SIGNATURE,
                "input": INPUT_NAME,
                "layout": "NCHW",
                "threads": threads,
                "batch": 1,
                "quantization": quantization[variant],
            },
        )
        for variant in VARIANTS
    ]
