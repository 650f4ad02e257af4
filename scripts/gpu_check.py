"""The GPU checks of scripts/gpu-check.sh, one JSON line per check on stdout.

    python scripts/gpu_check.py torch-train --steps 200      # in the pt venv
    python scripts/gpu_check.py tf-train --steps 200         # in the tf venv
    python scripts/gpu_check.py ort --batches 1 32           # pt venv with onnxruntime-gpu
    python scripts/gpu_check.py vit --batch 32               # pt venv
    python scripts/gpu_check.py plan                         # the checks, without running any

Synthetic data (random images and labels at 224 px): the figures measure the device and the framework,
not a dataset. Each line: {"check", "framework", "variant", "status", ...figures}; a check that cannot
run says "skipped" with the reason. The script imports a framework only inside its own check, so each
check runs in the venv that owns that framework (docs/platform-notes.md: never both in one process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

IMAGE_SIZE = 224
NUM_CLASSES = 1000
TORCH_VARIANTS = ("fp32", "amp_bf16", "amp_bf16_channels_last", "amp_bf16_channels_last_compile")
TF_VARIANTS = ("fp32", "mixed_bfloat16", "mixed_bfloat16_xla")


def emit(**fields: Any) -> None:
    print(json.dumps(fields, sort_keys=False), flush=True)


# -- PyTorch training ---------------------------------------------------------------------------------
def torch_train(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    import torch

    for variant in args.variants or TORCH_VARIANTS:
        yield _torch_variant(variant, args)
        torch.cuda.empty_cache()


def _torch_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torchvision

    device = torch.device("cuda")
    torch.manual_seed(0)
    torch.cuda.reset_peak_memory_stats(device)
    memory_format = torch.channels_last if "channels_last" in variant else torch.contiguous_format
    model = torchvision.models.resnet50(num_classes=NUM_CLASSES).to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step_model = torch.compile(model) if variant.endswith("compile") else model
    images = torch.randn(args.batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, device=device).to(
        memory_format=memory_format
    )
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)
    amp = variant.startswith("amp_bf16")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(step_model(images), labels)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(args.warmup_steps):
        step()
    torch.cuda.synchronize(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "check": "train",
        "framework": "pytorch",
        "variant": variant,
        "status": "ok",
        "model": "resnet50",
        "image_size": IMAGE_SIZE,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "images_per_second": args.steps * args.batch_size / seconds,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device),
        "warmup_seconds": warmup_s,
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


# -- TensorFlow training ------------------------------------------------------------------------------
def tf_train(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        yield {"check": "train", "framework": "tensorflow", "status": "skipped", "reason": "no GPU visible"}
        return
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    for variant in args.variants or TF_VARIANTS:
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if "bfloat16" in variant else "float32")
        tf.config.experimental.reset_memory_stats("GPU:0")
        keras.utils.set_random_seed(0)
        model = keras.applications.ResNet50(weights=None, classes=NUM_CLASSES)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False),
            jit_compile=variant.endswith("xla"),
        )
        images = tf.random.normal((args.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3))
        labels = tf.random.uniform((args.batch_size,), 0, NUM_CLASSES, dtype=tf.int32)
        data = tf.data.Dataset.from_tensors((images, labels)).repeat()
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=args.warmup_steps, epochs=1, verbose=0)
        warmup_s = time.perf_counter() - start
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        yield {
            "check": "train",
            "framework": "tensorflow",
            "variant": variant,
            "status": "ok",
            "model": "resnet50",
            "image_size": IMAGE_SIZE,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "images_per_second": args.steps * args.batch_size / seconds,
            "peak_memory_bytes": tf.config.experimental.get_memory_info("GPU:0")["peak"],
            "warmup_seconds": warmup_s,
            "device": name,
            "tensorflow": tf.__version__,
            "cuda": tf.sysconfig.get_build_info().get("cuda_version"),
        }


# -- ONNX Runtime: CUDA and TensorRT execution providers vs PyTorch ---------------------------------
def _latency_ms(run: Callable[[], object], repeats: int) -> float:
    for _ in range(5):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def ort_parity(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    import numpy as np
    import onnxruntime as ort
    import torch
    import torchvision

    available = ort.get_available_providers()
    model = torchvision.models.resnet50(num_classes=NUM_CLASSES).eval().cuda()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet50.onnx"
        batch = torch.export.Dim("batch", min=1, max=max(args.batches))
        torch.onnx.export(
            model.cpu(),
            (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            external_data=False,
        )
        model.cuda()
        providers = {
            "cuda": [("CUDAExecutionProvider", {})],
            "tensorrt_fp16": [
                (
                    "TensorrtExecutionProvider",
                    {
                        "trt_fp16_enable": True,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": folder,
                    },
                ),
                ("CUDAExecutionProvider", {}),
            ],
        }
        for variant, chain in providers.items():
            if chain[0][0] not in available:
                yield {
                    "check": "ort",
                    "variant": variant,
                    "status": "skipped",
                    "reason": f"{chain[0][0]} not in onnxruntime {ort.__version__} ({', '.join(available)})",
                }
                continue
            session = ort.InferenceSession(str(path), providers=chain)
            if session.get_providers()[0] != chain[0][0]:
                yield {
                    "check": "ort",
                    "variant": variant,
                    "status": "skipped",
                    "reason": f"{chain[0][0]} did not start (session: {session.get_providers()})",
                }
                continue
            for size in args.batches:
                rng = np.random.default_rng(size)
                images = rng.standard_normal((size, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
                with torch.inference_mode():
                    reference = model(torch.from_numpy(images).cuda()).float().cpu().numpy()
                logits = session.run(["logits"], {"image": images})[0]
                yield {
                    "check": "ort",
                    "variant": variant,
                    "status": "ok",
                    "model": "resnet50",
                    "batch_size": size,
                    "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
                    "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                    "latency_ms_p50": _latency_ms(
                        lambda session=session, images=images: session.run(["logits"], {"image": images}), 50
                    ),
                    "framework_latency_ms_p50": _torch_latency(model, torch.from_numpy(images).cuda()),
                    "onnxruntime": ort.__version__,
                }


def _torch_latency(model: Any, images: Any) -> float:
    import torch

    def run() -> None:
        with torch.inference_mode():
            model(images)
        torch.cuda.synchronize()

    return _latency_ms(run, 50)


# -- ViT-B/16 inference latency ----------------------------------------------------------------------
def vit_latency(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    import torch
    import torchvision

    model = torchvision.models.vit_b_16().eval().cuda()
    images = torch.randn(args.batch, 3, IMAGE_SIZE, IMAGE_SIZE, device="cuda")
    for variant, dtype in (("fp32", None), ("amp_bf16", torch.bfloat16)):

        def run(dtype: Any = dtype) -> None:
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype=dtype or torch.float32, enabled=bool(dtype)),
            ):
                model(images)
            torch.cuda.synchronize()

        yield {
            "check": "vit_latency",
            "framework": "pytorch",
            "variant": variant,
            "status": "ok",
            "model": "vit_b_16",
            "batch_size": args.batch,
            "latency_ms_p50": _latency_ms(run, 30),
            "device": torch.cuda.get_device_name(0),
        }


def plan(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    for variant in TORCH_VARIANTS:
        yield {"check": "train", "framework": "pytorch", "variant": variant, "status": "planned"}
    for variant in TF_VARIANTS:
        yield {"check": "train", "framework": "tensorflow", "variant": variant, "status": "planned"}
    for variant in ("cuda", "tensorrt_fp16"):
        yield {"check": "ort", "variant": variant, "batches": [1, 32], "status": "planned"}
    yield {"check": "vit_latency", "framework": "pytorch", "batch_size": 32, "status": "planned"}


CHECKS: dict[str, Callable[[argparse.Namespace], Iterator[dict[str, Any]]]] = {
    "torch-train": torch_train,
    "tf-train": tf_train,
    "ort": ort_parity,
    "vit": vit_latency,
    "plan": plan,
}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("check", choices=sorted(CHECKS), help="which check to run")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=20, help="untimed steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (default: %(default)s)")
    parser.add_argument("--variants", nargs="*", default=None, help="a subset of variants (default: all)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="ORT batches (default: 1 32)")
    parser.add_argument("--batch", type=int, default=32, help="ViT batch (default: %(default)s)")
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        for line in CHECKS[args.check](args):
            emit(**line)
    except Exception as exc:  # a failed check is one line, and the next check still runs
        emit(check=args.check, status="failed", reason=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
