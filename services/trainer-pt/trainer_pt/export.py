"""Exports of a trained run into the model repository, each validated against the PyTorch model.

    python -m trainer_pt export --run-dir runs/trainer-pt --model-repository model-repository

Order of work: build every artifact in a staging folder, run the validation gate on the whole val
split (ONNX Runtime and TorchScript against eager PyTorch), move the artifacts into the repository,
then write the manifest last. A failed gate leaves the repository as it was.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
import yaml
from torch import nn
from torch.utils.data import DataLoader

from imgbench.atomic import atomic_write_text
from imgbench.data.imagefolder import read_dataset_info
from imgbench.errors import ImgbenchError
from imgbench.manifest import (
    DatasetRef,
    EpochRecord,
    ExportRecord,
    InputSpec,
    Manifest,
    TrainingFigures,
    write_manifest,
)
from imgbench.paths import ModelRepository, model_name
from imgbench.training_log import read_epochs
from imgbench.triton_config import TritonModelSpec, render_config
from imgbench.validation import Agreement, compare_logits, enforce_gate
from trainer_pt import checkpoint as ckpt
from trainer_pt.data import load_splits
from trainer_pt.models import build_model, count_parameters
from trainer_pt.quantize import quantize_int8

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
META_NAME = "model_meta.json"
# The TorchServe handler lives with the server-side code; the archive copies it in.
HANDLER_PATH = Path(__file__).resolve().parents[2] / "serving" / "torchserve" / "handler.py"


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module
    architecture: str
    class_names: list[str]
    image_size: int
    config: dict[str, Any]
    checkpoint: dict[str, Any]


def load_trained(run_dir: Path) -> TrainedModel:
    """The best checkpoint of ``run_dir`` as an eval-mode model on the CPU."""
    state = ckpt.load_checkpoint(Path(run_dir) / ckpt.BEST)
    config = state["args"]
    model = build_model(state["architecture"], len(state["class_names"]), config["image_size"])
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedModel(
        model, state["architecture"], state["class_names"], config["image_size"], config, state
    )


def prepare_for_export(model: nn.Module) -> nn.Module:
    """The module the exporters see: an eval-mode copy (tests replace this seam to break an export)."""
    return copy.deepcopy(model).eval()


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.inference_mode():
        traced = torch.jit.trace(model, example)
    traced = torch.jit.freeze(traced.eval())
    torch.jit.save(traced, str(path))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    # The dynamo exporter's optimizer passes log every rewrite at INFO level.
    for noisy in ("onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes=({0: batch},),
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    except Exception as exc:
        raise ImgbenchError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if graph.input[0].name != INPUT_NAME or graph.output[0].name != OUTPUT_NAME or isinstance(dims[0], int):
        raise ImgbenchError(
            f"ONNX export of {path} has input {graph.input[0].name!r} {dims} and output "
            f"{graph.output[0].name!r}; expected {INPUT_NAME!r} with a dynamic batch axis and {OUTPUT_NAME!r}"
        )


def ort_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def write_mar(
    torchscript_path: Path,
    staging: Path,
    name: str,
    version: int,
    meta: dict[str, Any],
    batch_size: int,
    max_batch_delay_ms: int,
) -> Path:
    """Package TorchScript + the batched handler with torch-model-archiver; returns the .mar path."""
    if not HANDLER_PATH.is_file():
        raise ImgbenchError(f"TorchServe handler {HANDLER_PATH} is missing from this checkout/image")
    meta_path = staging / META_NAME
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    config_path = staging / "model-config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "minWorkers": 1,
                "maxWorkers": 1,
                "batchSize": batch_size,
                "maxBatchDelay": max_batch_delay_ms,
                "responseTimeout": 120,
            }
        ),
        encoding="utf-8",
    )
    out_dir = staging / "mar"
    out_dir.mkdir()
    command = [
        sys.executable,
        "-c",
        "from model_archiver.model_packaging import generate_model_archive; generate_model_archive()",
        "--model-name", name,
        "--version", str(version),
        "--serialized-file", str(torchscript_path),
        "--handler", str(HANDLER_PATH),
        "--extra-files", str(meta_path),
        "--config-file", str(config_path),
        "--export-path", str(out_dir),
        "--force",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    mar = out_dir / f"{name}.mar"
    if result.returncode != 0 or not mar.is_file():
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ImgbenchError(f"torch-model-archiver failed for {name}: {last[0]}")
    return mar


def collect_logits(
    reference: nn.Module,
    torchscript: torch.jit.ScriptModule,
    onnx_session: ort.InferenceSession,
    loader: DataLoader,
) -> dict[str, np.ndarray]:
    """Logits of eager PyTorch, TorchScript and ONNX Runtime on every validation image, with labels."""
    outputs: dict[str, list[np.ndarray]] = {"pytorch": [], "torchscript": [], "onnx": [], "labels": []}
    with torch.inference_mode():
        for images, labels in loader:
            outputs["pytorch"].append(reference(images).numpy())
            outputs["torchscript"].append(torchscript(images).numpy())
            outputs["onnx"].append(onnx_session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
            outputs["labels"].append(labels.numpy())
    return {key: np.concatenate(value) for key, value in outputs.items()}


def _record(fmt: str, path: Path, repo: ModelRepository, agreement: Agreement, **extra: Any) -> ExportRecord:
    return ExportRecord(
        format=fmt,
        path=path.relative_to(repo.root).as_posix(),
        size_bytes=path.stat().st_size if path.exists() else None,
        n=agreement.n,
        top1_agreement=agreement.top1_agreement,
        max_abs_logit_diff=agreement.max_abs_logit_diff,
        accuracy=agreement.accuracy,
        **extra,
    )


def training_figures(trained: TrainedModel, history: list[EpochRecord], device: str) -> TrainingFigures:
    if not history:
        raise ImgbenchError("the run has no per-epoch figures (metrics.jsonl is empty); train it first")
    best = max(history, key=lambda r: r.top1)
    return TrainingFigures(
        epochs=len(history),
        best_epoch=best.epoch,
        top1=best.top1,
        top5=best.top5,
        seconds_per_epoch=float(np.mean([r.seconds for r in history])),
        images_per_second=float(np.mean([r.images_per_second for r in history])),
        peak_memory_bytes=max(r.peak_memory_bytes for r in history),
        memory_kind="cuda_max_allocated" if device.startswith("cuda") else "cpu_rss",
        device=device,
        parameters=count_parameters(trained.model),
        recipe=trained.config.get("recipe", trained.config),
        history=history,
    )


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": str(os.cpu_count()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tensorrt_record(repo: ModelRepository, name: str, version: int) -> ExportRecord:
    path = repo.triton_plan(name, version).relative_to(repo.root).as_posix()
    if not torch.cuda.is_available():
        reason = "no CUDA device: TensorRT engines are built on the GPU that serves them"
    else:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            reason = "CUDA is present but the tensorrt package is not installed in this environment"
        else:
            reason = "TensorRT engine building is not implemented in trainer-pt yet"
    log.info("TensorRT export skipped: %s", reason)
    return ExportRecord(format="tensorrt", path=path, status="skipped", reason=reason)


def export_run(args: argparse.Namespace) -> Manifest:
    """Export the best checkpoint of ``args.run_dir``; returns the manifest written last."""
    run_dir = Path(args.run_dir)
    trained = load_trained(run_dir)
    data_path = Path(args.data_path or trained.config["data_path"])
    repo = ModelRepository(Path(args.model_repository))
    name = model_name("pytorch", trained.architecture)
    version = args.version or repo.next_version(name)
    if version < 1:
        raise ImgbenchError(f"--version must be at least 1, got {version}")
    if repo.triton_version_dir(name, version).exists():
        raise ImgbenchError(
            f"{repo.triton_version_dir(name, version)} already exists; pick another --version"
        )
    size = trained.image_size
    shape: list[int | None] = [None, 3, size, size]
    num_classes = len(trained.class_names)
    log.info(
        "exporting %s version %d (%s, %d classes, %d px) into %s",
        name,
        version,
        run_dir,
        num_classes,
        size,
        repo.root,
    )

    exportable = prepare_for_export(trained.model)
    example = torch.zeros(2, 3, size, size)
    repo.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.export.", dir=repo.root))
    try:
        torchscript_path = staging / "model.pt"
        export_torchscript(exportable, example, torchscript_path)
        onnx_path = staging / "model.onnx"
        export_onnx(exportable, example, onnx_path, args.opset)

        # The gate: every validation image through eager PyTorch, TorchScript and ONNX Runtime.
        splits = load_splits(
            data_path, size, check=False, val_resize_size=trained.config.get("val_resize_size")
        )
        if splits.class_names != trained.class_names:
            raise ImgbenchError(
                f"{data_path} has classes {splits.class_names}, the run was trained on {trained.class_names}"
            )
        loader = DataLoader(splits.val, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
        logits = collect_logits(
            trained.model, torch.jit.load(str(torchscript_path)), ort_session(onnx_path), loader
        )
        labels = logits["labels"]
        agreements = {
            fmt: compare_logits(logits["pytorch"], logits[fmt], labels) for fmt in ("torchscript", "onnx")
        }
        for fmt, agreement in agreements.items():
            log.info(
                "%s vs PyTorch on %d val images: top-1 agreement %.4f%%, max |Δlogit| %.3g, accuracy %.2f%%",
                fmt, agreement.n, 100 * agreement.top1_agreement, agreement.max_abs_logit_diff,
                100 * (agreement.accuracy or 0.0),
            )  # fmt: skip
            enforce_gate(fmt, agreement, args.min_agreement, args.max_abs_diff)

        meta = {
            "model": name,
            "version": version,
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "shape": shape,
            "dtype": "float32",
            "num_classes": num_classes,
            "max_rows": max(args.triton_max_batch_size, args.serve_batch_size) * 4,
        }
        mar = write_mar(
            torchscript_path, staging, name, version, meta, args.serve_batch_size, args.serve_max_batch_delay
        )
        int8 = None
        if not args.skip_int8:
            int8 = quantize_int8(
                onnx_path,
                staging / "model_int8.onnx",
                data_path,
                size,
                args.calibration_images,
                loader,
                logits["pytorch"],
            )

        # Gate passed: move the artifacts into the repository layout.
        onnx_dest = repo.triton_onnx(name, version)
        onnx_dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(onnx_path, onnx_dest)
        spec = TritonModelSpec(
            name=name,
            input_name=INPUT_NAME,
            input_dims=[3, size, size],
            output_name=OUTPUT_NAME,
            num_classes=num_classes,
            max_batch_size=args.triton_max_batch_size,
            preferred_batch_sizes=tuple(
                sorted({b for b in (args.serve_batch_size // 2, args.serve_batch_size) if b >= 1})
            ),
        )
        atomic_write_text(repo.triton_config(name), render_config(spec, "onnxruntime"))
        mar_dest = repo.torchserve_mar(name)
        mar_dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(mar, mar_dest)

        torchscript_details = {
            "handler": "services/serving/torchserve/handler.py",
            "batch_size": args.serve_batch_size,
            "max_batch_delay_ms": args.serve_max_batch_delay,
        }
        onnx_details = {
            "opset": args.opset,
            "triton_config": repo.triton_config(name).relative_to(repo.root).as_posix(),
            "triton_backends": ["onnxruntime", "python"],
        }
        exports = {
            "torchscript": _record(
                "torchscript", mar_dest, repo, agreements["torchscript"], details=torchscript_details
            ),
            "onnx": _record("onnx", onnx_dest, repo, agreements["onnx"], details=onnx_details),
            "tensorrt": _tensorrt_record(repo, name, version),
        }
        if int8 is not None:
            int8_dest = repo.edge_dir(name) / "model_int8.onnx"
            int8_dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(int8.path, int8_dest)
            exports["onnx_int8"] = ExportRecord(
                format="onnx_int8",
                path=int8_dest.relative_to(repo.root).as_posix(),
                size_bytes=int8_dest.stat().st_size,
                n=int8.agreement.n,
                top1_agreement=int8.agreement.top1_agreement,
                max_abs_logit_diff=int8.agreement.max_abs_logit_diff,
                accuracy=int8.agreement.accuracy,
                latency_ms_per_image=int8.latency_ms,
                details=int8.details,
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    history = read_epochs(run_dir)
    info = read_dataset_info(data_path)
    manifest = Manifest(
        model=name,
        framework="pytorch",
        framework_version=torch.__version__,
        architecture=trained.architecture,
        version=version,
        input=InputSpec(name=INPUT_NAME, shape=shape, layout="NCHW", dtype="float32"),
        output_names=[OUTPUT_NAME],
        class_names=trained.class_names,
        dataset=DatasetRef(
            name=str(info.get("name", data_path.name)),
            path=str(data_path),
            eval_split="val",
            num_train=len(splits.train),
            num_eval=int(labels.shape[0]),
            image_size=size,
        ),
        training=training_figures(trained, history, str(trained.config.get("device", "cpu"))),
        exports=exports,
        environment=environment(),
    )
    started = time.perf_counter()
    write_manifest(repo.manifest_path(name), manifest)
    log.info("wrote %s (%.2f s)", repo.manifest_path(name), time.perf_counter() - started)
    return manifest
