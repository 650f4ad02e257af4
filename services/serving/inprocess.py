"""The in-process reference for each server: the same runtime the server uses, called directly.

Run from the matching venv (frameworks stay in separate processes, docs/platform-notes.md):

    .venv/triton/bin/python services/serving/inprocess.py predict onnx MODEL.onnx in.npy out.npy
    .venv/torchserve/bin/python services/serving/inprocess.py predict torchscript MODEL.mar in.npy out.npy
    .venv/tfserving/bin/python services/serving/inprocess.py predict savedmodel VERSION_DIR in.npy out.npy
    ... inprocess.py bench KIND PATH in.npy --seconds 5 --batch-sizes 1,8,16,32 --out result.json

``bench`` measures latency at batch 1 (per-call, HdrHistogram when installed, else sorted samples)
and throughput (images/s) at each batch size, with one intra-op thread as the servers use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def onnx_runner(path: Path) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def torchscript_runner(path: Path) -> Predict:
    """``path`` is a TorchScript file or a .mar holding one (its MANIFEST names the serialized file)."""
    import torch

    torch.set_num_threads(1)
    if path.suffix == ".mar":
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
            serialized = manifest["model"]["serializedFile"]
            extracted = Path(tempfile.mkdtemp()) / Path(serialized).name
            extracted.write_bytes(archive.read(serialized))
        path = extracted
    model = torch.jit.load(str(path), map_location="cpu").eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return predict


def savedmodel_runner(path: Path) -> Predict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    loaded = tf.saved_model.load(str(path))
    function = loaded.signatures["serving_default"]
    _, inputs = function.structured_input_signature
    (input_name,) = inputs

    def predict(batch: np.ndarray) -> np.ndarray:
        return function(**{input_name: tf.constant(batch)})["logits"].numpy()

    predict.keepalive = loaded  # type: ignore[attr-defined]
    return predict


RUNNERS: dict[str, Callable[[Path], Predict]] = {
    "onnx": onnx_runner,
    "torchscript": torchscript_runner,
    "savedmodel": savedmodel_runner,
}


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    try:
        from hdrh.histogram import HdrHistogram

        histogram = HdrHistogram(1, 60_000_000, 3)  # microseconds, 3 significant digits
        for sample in samples_s:
            histogram.record_value(max(1, round(sample * 1e6)))
        return {
            **{f"p{q:g}": histogram.get_value_at_percentile(q) / 1000 for q in (50, 90, 99)},
            "mean": histogram.get_mean_value() / 1000,
        }
    except ImportError:
        ordered = sorted(samples_s)
        return {
            **{
                f"p{q:g}": ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000
                for q in (50, 90, 99)
            },
            "mean": sum(ordered) / max(1, len(ordered)) * 1000,
        }


def bench(predict: Predict, images: np.ndarray, seconds: float, batch_sizes: list[int]) -> dict[str, object]:
    one = images[:1]
    for _ in range(20):
        predict(one)
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        predict(one)
        samples.append(time.perf_counter() - started)
    throughput = {}
    for size in batch_sizes:
        batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
        predict(batch)
        count, end = 0, time.perf_counter() + seconds / 2
        started = time.perf_counter()
        while time.perf_counter() < end:
            predict(batch)
            count += size
        throughput[str(size)] = count / (time.perf_counter() - started)
    best = max(throughput, key=throughput.__getitem__)
    return {
        "latency_batch1_ms": {"n": len(samples), **percentiles_ms(samples)},
        "throughput_images_per_s": throughput,
        "best_batch_size": int(best),
        "best_throughput_images_per_s": throughput[best],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["predict", "bench"])
    parser.add_argument("kind", choices=sorted(RUNNERS))
    parser.add_argument("path", type=Path, help="model file, .mar or SavedModel version folder")
    parser.add_argument("input", type=Path, help=".npy batch in the model's layout")
    parser.add_argument("output", type=Path, nargs="?", help="predict: .npy logits to write")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="bench: seconds per measurement (default 5)"
    )
    parser.add_argument("--batch-sizes", default="1,4,8,16,32", help="bench: default 1,4,8,16,32")
    parser.add_argument("--out", type=Path, help="bench: JSON result file (default stdout)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    predict = RUNNERS[args.kind](args.path)
    images = np.load(args.input)
    if args.command == "predict":
        if args.output is None:
            parser.error("predict needs OUTPUT")
        np.save(args.output, predict(images).astype(np.float32))
        return 0
    result = bench(predict, images, args.seconds, [int(b) for b in args.batch_sizes.split(",")])
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
