"""A real gRPC server speaking Triton's KServe-v2 protocol for the load generator's tests, with a
tiny real model (nearest class mean over the training split, preprocessed as the manifest says) and
an optional fixed service time on one serial worker, so it can be made deliberately slow.

    python tests/loadgen/fake_triton.py --port 50071 --model-repository R --model pt_centroid \\
        --dataset data/digits [--service-time 0.02]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from loadgen.images import preprocess
from PIL import Image
from tritonclient.grpc import service_pb2, service_pb2_grpc

from imgbench.data.imagefolder import IMAGE_SUFFIXES
from imgbench.manifest import Manifest, load_manifest
from imgbench.paths import ModelRepository


def class_means(manifest: Manifest, dataset: Path) -> np.ndarray:
    rows = []
    for label, name in enumerate(manifest.class_names):
        folder = dataset / "train" / name
        images = [f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        stacked = []
        for path in images:
            with Image.open(path) as image:
                stacked.append(preprocess(image, manifest))
        rows.append(np.mean(stacked, axis=0).reshape(-1))
        assert rows[-1].size, f"no training images for class {label}"
    return np.stack(rows).astype(np.float32)


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, manifest: Manifest, means: np.ndarray, service_time: float) -> None:
        self.manifest = manifest
        self.means = means
        self.service_time = service_time
        self.serial = threading.Lock()  # one request at a time: a queue builds when load > capacity
        self.count = 0
        self.queue_ns = 0
        self.infer_ns = 0
        self.stats_lock = threading.Lock()

    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)

    def ModelStatistics(self, request, context):
        """The statistics API's per-request queue and compute times, as Triton reports them."""
        self._check_model(request.name, context)
        answer = service_pb2.ModelStatisticsResponse()
        stats = answer.model_stats.add(name=self.manifest.model, version="1", inference_count=self.count)
        with self.stats_lock:
            stats.inference_stats.success.count = self.count
            stats.inference_stats.queue.count = self.count
            stats.inference_stats.queue.ns = self.queue_ns
            stats.inference_stats.compute_infer.count = self.count
            stats.inference_stats.compute_infer.ns = self.infer_ns
        return answer

    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name="fake_triton", version="0.0-test")

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=request.name == self.manifest.model)

    def _check_model(self, name: str, context) -> None:
        if name != self.manifest.model:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{name}' is not found")

    def ModelMetadata(self, request, context):
        self._check_model(request.name, context)
        spec = self.manifest.input
        return service_pb2.ModelMetadataResponse(
            name=self.manifest.model,
            versions=["1"],
            platform="nearest_mean",
            inputs=[
                {"name": spec.name, "datatype": "FP32", "shape": [-1 if d is None else d for d in spec.shape]}
            ],
            outputs=[{"name": self.manifest.logits_name, "datatype": "FP32", "shape": [-1, len(self.means)]}],
        )

    def ModelInfer(self, request, context):
        self._check_model(request.model_name, context)
        arrived = time.perf_counter_ns()
        shape = list(request.inputs[0].shape)
        batch = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(shape)
        flat = batch.reshape(shape[0], -1)
        with self.serial if self.service_time else contextlib.nullcontext():
            started = time.perf_counter_ns()
            logits = -((flat[:, None, :] - self.means[None, :, :]) ** 2).sum(axis=2)
            if self.service_time:
                time.sleep(self.service_time)
            done = time.perf_counter_ns()
        with self.stats_lock:
            self.count += 1
            self.queue_ns += started - arrived
            self.infer_ns += done - started
        response = service_pb2.ModelInferResponse(model_name=self.manifest.model, model_version="1")
        response.outputs.add(name=self.manifest.logits_name, datatype="FP32", shape=list(logits.shape))
        response.raw_output_contents.append(logits.astype(np.float32).tobytes())
        return response


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--service-time", type=float, default=0.0, help="Seconds per request, serially.")
    parser.add_argument("--threads", type=int, default=64)
    return parser


def main(args: argparse.Namespace) -> None:
    manifest = load_manifest(ModelRepository(args.model_repository).manifest_path(args.model))
    # Cached beside the manifests: a restarted server (the fault tests) is back within a second.
    cache = args.model_repository / f"{args.model}-class-means.npy"
    if not cache.exists():
        np.save(cache, class_means(manifest, args.dataset))
    servicer = Servicer(manifest, np.load(cache), args.service_time)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    print(f"fake triton serving {manifest.model} on 127.0.0.1:{args.port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
