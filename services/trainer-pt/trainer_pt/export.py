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
import subprocess
import sys
from collections.abc import Callable
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

from imgbench.compiled_check import read_check
from imgbench.data.imagefolder import read_dataset_info
from imgbench.devices import gpu_environment
from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation, ExportJob, ExportStep, run_export
from imgbench.manifest import (
    CompiledCheck,
    DatasetRef,
    EpochRecord,
    ExportRecord,
    InputSpec,
    Manifest,
    TrainingFigures,
)
from imgbench.onnx_gpu import cuda_provider_details
from imgbench.paths import ModelRepository, model_name, served_variant
from imgbench.trainer_cli import usable_cores
from imgbench.training_log import read_epochs, training_repeats
from imgbench.triton_config import (
    TritonModelSpec,
    gpu_config,
    tensorrt_record,
    write_served_variant,
    write_triton_configs,
)
from trainer_pt import checkpoint as ckpt
from trainer_pt.compiled import check_run
from trainer_pt.data import load_splits
from trainer_pt.dynamic import dynamic_export_plan
from trainer_pt.edge import tflite_export_steps
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


def loader_logits(run: Callable[[torch.Tensor], np.ndarray], loader: DataLoader) -> np.ndarray:
    """``run`` on every batch of ``loader`` (in order), concatenated."""
    with torch.inference_mode():
        return np.concatenate([run(images) for images, _ in loader])


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
        **gpu_environment(torch.cuda.device_count() if torch.cuda.is_available() else 0, torch.version.cuda),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_compiled(
    run_dir: Path, args: argparse.Namespace, stage: str, trained: TrainedModel | None = None, val: Any = None
) -> CompiledCheck:
    """``--compile MODE``: the best checkpoint compiled vs eager on the val split under the export gate,
    recorded in the run folder; raises ``CompiledGateError`` (exit 1, nothing published) when it fails."""
    trained = trained or load_trained(run_dir)
    if val is None:
        data_path = Path(getattr(args, "data_path", None) or trained.config["data_path"])
        val = load_splits(
            data_path, trained.image_size, check=False, val_resize_size=trained.config.get("val_resize_size")
        ).val
    return check_run(
        run_dir,
        trained.model,
        val,
        args.compile,
        args.min_agreement,
        args.max_abs_diff,
        stage,
        batch_size=args.batch_size,
        images=getattr(args, "compile_check_images", None),
    )


def export_run(args: argparse.Namespace) -> Manifest:
    """Export the best checkpoint of ``args.run_dir`` through the shared pipeline
    (``imgbench.export_pipeline``: stage, gate, publish, manifest last); returns the manifest."""
    run_dir = Path(args.run_dir)
    trained = load_trained(run_dir)
    data_path = Path(args.data_path or trained.config["data_path"])
    repo = ModelRepository(Path(args.model_repository))
    name = model_name("pytorch", trained.architecture)
    version = args.version or repo.next_version(name)
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
    splits = load_splits(data_path, size, check=False, val_resize_size=trained.config.get("val_resize_size"))
    if splits.class_names != trained.class_names:
        raise ImgbenchError(
            f"{data_path} has classes {splits.class_names}, the run was trained on {trained.class_names}"
        )
    # --compile: the compiled model must pass the gate before anything is published; without it, the
    # check a training run recorded (if any) goes into the manifest as it is.
    compiled = (
        check_compiled(run_dir, args, _stage(args), trained, splits.val)
        if getattr(args, "compile", None)
        else read_check(run_dir)
    )
    loader = DataLoader(splits.val, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    labels = np.concatenate([targets.numpy() for _, targets in loader])
    reference = loader_logits(lambda images: trained.model(images).numpy(), loader)
    exportable = prepare_for_export(trained.model)
    example = torch.zeros(2, 3, size, size)
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

    def build_torchscript(staging: Path) -> Path:
        export_torchscript(exportable, example, staging / "model.pt")
        return staging / "model.pt"

    def build_onnx(staging: Path) -> Path:
        export_onnx(exportable, example, staging / "model.onnx", args.opset)
        return staging / "model.onnx"

    def build_int8(staging: Path) -> Path:
        result = quantize_int8(
            staging / "model.onnx",
            staging / "model_int8.onnx",
            data_path,
            size,
            args.calibration_images,
            loader,
            reference,
        )
        int8_results[result.path] = result
        return result.path

    def evaluate_int8(path: Path) -> Evaluation:
        result = int8_results[path]
        return Evaluation(result.logits, latency_ms=result.latency_ms, details=result.details)

    int8_results: dict[Path, Any] = {}
    steps = [
        ExportStep(
            "torchscript",
            "torchscript",
            build=build_torchscript,
            evaluate=lambda path: loader_logits(torch.jit.load(str(path)).__call__, loader),
            package=lambda path: write_mar(
                path, path.parent, name, version, meta, args.serve_batch_size, args.serve_max_batch_delay
            ),
            destination=repo.torchserve_mar(name),
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={
                "handler": "services/serving/torchserve/handler.py",
                "batch_size": args.serve_batch_size,
                "max_batch_delay_ms": args.serve_max_batch_delay,
            },
        ),
        ExportStep(
            "onnx",
            "onnx",
            build=build_onnx,
            evaluate=lambda path: Evaluation(
                _onnx_logits(path, loader),
                details=cuda_provider_details(
                    path, lambda session: _session_logits(session, loader), reference, labels
                ),
            ),
            destination=repo.triton_onnx(name, version),
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={
                "opset": args.opset,
                "triton_config": repo.triton_config(name).relative_to(repo.root).as_posix(),
                "triton_gpu_config": gpu_config(repo, name).relative_to(repo.root).as_posix(),
                "triton_backends": ["onnxruntime", "python"],
            },
        ),
    ]
    int8_model = served_variant(name, "int8")
    if not args.skip_int8:
        # Gated on top-1 agreement only (--quantized-min-agreement, as trainer-tf's TFLite int8); once
        # it passed, Triton serves it as its own model, <model>_int8 (written with the configs).
        steps.append(
            ExportStep(
                "onnx_int8",
                "INT8 ONNX (--quantized-min-agreement)",
                build=build_int8,
                evaluate=evaluate_int8,
                destination=repo.edge_dir(name) / "model_int8.onnx",
                min_agreement=args.quantized_min_agreement,
                max_abs_diff=None,
                details={
                    "gate": {"min_agreement": args.quantized_min_agreement, "max_abs_diff": None},
                    "served": {
                        "server": "triton",
                        "model": int8_model,
                        "path": repo.triton_onnx(int8_model, version).relative_to(repo.root).as_posix(),
                        "triton_config": repo.triton_config(int8_model).relative_to(repo.root).as_posix(),
                    },
                },
            )
        )
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
    # --dynamic-sizes: onnx_dynamic and torchscript_dynamic, gated at every size (trainer_pt.dynamic).
    dynamic_steps, dynamic_skipped, dynamic_dirs, write_dynamic_config = dynamic_export_plan(
        args=args,
        exportable=exportable,
        reference_model=trained.model,
        architecture=trained.architecture,
        name=name,
        version=version,
        repo=repo,
        data_path=data_path,
        training_size=size,
        val_resize=trained.config.get("val_resize_size"),
        triton_spec=spec,
    )
    steps += dynamic_steps
    if getattr(args, "tflite", False):
        # --tflite: PyTorch → TFLite fp32 and int8 (litert-torch, trainer_pt.edge), gated like the rest.
        steps += tflite_export_steps(
            exportable=exportable,
            name=name,
            repo=repo,
            loader=loader,
            data_path=data_path,
            image_size=size,
            calibration_count=args.calibration_images,
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            quantized_min_agreement=args.quantized_min_agreement,
            threads=usable_cores(),  # trainer-tf's TFLite threads: the two frameworks side by side
        )
    history = read_epochs(run_dir)
    info = read_dataset_info(data_path)

    def manifest(records: dict[str, ExportRecord]) -> Manifest:
        return Manifest(
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
            training=training_figures(trained, history, str(trained.config.get("device", "cpu"))).model_copy(
                update={"repeats": training_repeats(run_dir), "compiled_check": compiled}
            ),
            exports=records,
            environment=environment(),
        )

    return run_export(
        ExportJob(
            model=name,
            version=version,
            repository=repo,
            reference=reference,
            labels=labels,
            steps=steps,
            manifest=manifest,
            skipped={"tensorrt": tensorrt_record(repo, name, version), **dynamic_skipped},
            # CPU config.pbtxt and the GPU server's configs/gpu.pbtxt (imgbench.triton_config).
            write_configs=lambda: (
                write_dynamic_config()
                or _write_triton_configs(
                    repo, spec, None if args.skip_int8 else repo.edge_dir(name) / "model_int8.onnx", version
                )
            ),
            version_dirs=[
                repo.triton_version_dir(name, version),
                *dynamic_dirs,
                *([] if args.skip_int8 else [repo.triton_version_dir(int8_model, version)]),
            ],
        )
    )


def _stage(args: argparse.Namespace) -> str:
    # train exports at its end: a check there is the training run's.
    return "train" if getattr(args, "command", None) == "train" else "export"


def _write_triton_configs(
    repo: ModelRepository, spec: TritonModelSpec, int8_onnx: Path | None, version: int
) -> None:
    write_triton_configs(repo, spec)
    if int8_onnx is not None:  # it passed its gate: the pipeline got this far
        write_served_variant(repo, spec, "int8", int8_onnx, version)


def _onnx_logits(path: Path, loader: DataLoader) -> np.ndarray:
    return _session_logits(ort_session(path), loader)


def _session_logits(session: ort.InferenceSession, loader: DataLoader) -> np.ndarray:
    return loader_logits(lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0], loader)
