"""Valid manifests and load results for tests of their readers (the report, the contracts)."""

from __future__ import annotations

from imgbench.manifest import DatasetRef, EpochRecord, ExportRecord, InputSpec, Manifest, TrainingFigures


def epoch(n: int, seconds: float, top1: float) -> EpochRecord:
    return EpochRecord(
        epoch=n,
        train_loss=2.0 / n,
        val_loss=1.5 / n,
        top1=top1,
        top5=min(1.0, top1 + 0.05),
        seconds=seconds,
        images_per_second=1438 / seconds,
        peak_memory_bytes=900 * 2**20,
    )


def make_manifest(
    framework: str = "pytorch", architecture: str = "resnet18", **overrides: object
) -> Manifest:
    prefix = "pt" if framework == "pytorch" else "tf"
    shape = [None, 3, 32, 32] if framework == "pytorch" else [None, 32, 32, 3]
    history = [epoch(1, 12.0, 0.6), epoch(2, 10.0, 0.9), epoch(3, 10.2, 0.95)]
    fields: dict[str, object] = {
        "model": f"{prefix}_{architecture}",
        "framework": framework,
        "framework_version": "2.14.1" if framework == "pytorch" else "2.21.0",
        "architecture": architecture,
        "version": 1,
        "input": InputSpec(name="image", shape=shape, layout="NCHW" if framework == "pytorch" else "NHWC"),
        "output_names": ["logits"],
        "class_names": [str(i) for i in range(10)],
        "dataset": DatasetRef(
            name="digits", path="/data/digits", num_train=1438, num_eval=359, image_size=32
        ),
        "training": TrainingFigures(
            epochs=3,
            best_epoch=3,
            top1=0.95,
            top5=1.0,
            seconds_per_epoch=10.7,
            images_per_second=140.0,
            peak_memory_bytes=900 * 2**20,
            device="cpu",
            parameters=11_181_642,
            recipe={"optimizer": "sgd", "lr": 0.1},
            history=history,
        ),
        "exports": {
            "onnx": ExportRecord(
                format="onnx",
                path=f"triton/{prefix}_{architecture}/1/model.onnx",
                n=359,
                top1_agreement=1.0,
                max_abs_logit_diff=2e-6,
                accuracy=0.95,
                size_bytes=44 * 2**20,
            ),
            "onnx_int8": ExportRecord(
                format="onnx_int8",
                path=f"triton/{prefix}_{architecture}/int8.onnx",
                n=359,
                top1_agreement=0.99,
                accuracy=0.94,
                size_bytes=11 * 2**20,
                latency_ms_per_image=0.8,
            ),
        },
        "environment": {"cpu": "test CPU", "os": "Linux"},
    }
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


# How each native server identifies itself (what the load generator records from its metadata answer).
SERVER_IDENTITIES = {
    "torchserve": {"backend": "torchserve", "implementation": "TorchServe", "stand_in": False},
    "triton": {
        "backend": "triton",
        "implementation": "Triton",
        "version": "2.51.0",
        "stand_in": False,
        "runtime": "python backend",
    },
    "tfserving": {
        "backend": "tfserving",
        "implementation": "TF Serving stand-in",
        "stand_in": True,
        "runtime": "TensorFlow 2.21.0",
    },
}


def load_point(backend: str, users: int, p99_ms: float, **overrides: object) -> dict:
    """One valid ``imgbench.load_results.LoadPoint``, as JSON data."""
    point = {
        "run_id": f"{backend}-run",
        "backend": backend,
        "server": dict(SERVER_IDENTITIES[backend]),
        "model": "pt_resnet18",
        "batch_size": 1,
        "mode": "closed",
        "point": f"users={users}",
        "users": users,
        "n": 500,
        "p50_ms": p99_ms / 3,
        "p90_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "p999_ms": p99_ms * 1.5,
        "throughput_rps": 100.0 * users,
        "errors": 0,
        "incorrect": 0,
        "percentiles": {"50": p99_ms / 3, "90": p99_ms / 2, "99": p99_ms, "99.9": p99_ms * 1.5},
    }
    point.update(overrides)
    return point


def load_document(points: list[dict], **fields: object) -> dict:
    """One valid ``imgbench.load_results.LoadResult``, as JSON data."""
    return {"schema_version": 1, "run_id": "run", "points": points, **fields}
