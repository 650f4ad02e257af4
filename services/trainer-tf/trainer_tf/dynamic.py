"""Dynamic input shapes in TensorFlow: exports with a ``None`` height/width, and their measurement.

    python -m trainer_tf export --run-dir runs/tf --dynamic-sizes 32,48,64
    python -m trainer_tf dynamic-bench --run-dir runs/tf --model-repository model-repository --sizes 32,48,64

Exports (``--dynamic-sizes``): ``savedmodel_dynamic`` (signature ``serving_default`` with input
``image`` of shape [None, None, None, 3], served by TF Serving as ``<model>_dynamic``) and
``onnx_dynamic`` (tf2onnx from the same signature, Triton ``<model>_dynamic`` with dims -1). Both come
from the trained weights in a Keras model built with ``image_size=None``, and each is gated against
Keras on the evaluation split at the training size and at every listed size.

``dynamic-bench``: per size, the dynamic export's accuracy (evaluation images at that size) and its
latency per image against a fixed-shape export of that size, same runtime and threads, interleaved.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgbench import dynamic_shapes as ds
from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation, ExportStep
from imgbench.manifest import ExportRecord, load_manifest
from imgbench.paths import ModelRepository
from imgbench.trainer_cli import default_val_resize
from imgbench.triton_config import TritonModelSpec

log = logging.getLogger(__name__)


def resize_for(size: int, training_size: int, val_resize: int | None) -> int:
    """The eval transform's resize side at ``size``: the training run's, scaled with the size."""
    return round(val_resize * size / training_size) if val_resize else default_val_resize(size)


def dynamic_model(architecture: str, trained, num_classes: int):
    """The trained weights in a Keras model that takes any height and width."""
    from trainer_tf.models import build_model

    model = build_model(architecture, num_classes, None)
    model.set_weights(trained.get_weights())
    return model


def keras_logits(model, images: np.ndarray) -> np.ndarray:
    return model.predict(images, batch_size=64, verbose=0)


class SizedEvaluation:
    """The evaluation split and Keras's logits at each gate size, computed once for every step."""

    def __init__(self, model, val_split, training_size: int, val_resize: int | None) -> None:
        self._model, self._split = model, val_split
        self._training_size, self._val_resize = training_size, val_resize
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def at(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from trainer_tf import data

        if size not in self._cache:
            resize = resize_for(size, self._training_size, self._val_resize)
            images, labels = data.eval_arrays(self._split, size, resize)
            self._cache[size] = (images, labels, keras_logits(self._model, images))
        return self._cache[size]


def gated_evaluation(
    label: str,
    run: Callable[[np.ndarray], np.ndarray],
    sized: SizedEvaluation,
    sizes: list[int],
    min_agreement: float,
    max_abs_diff: float | None,
) -> Evaluation:
    """``imgbench.dynamic_shapes.gated_evaluation`` against Keras."""
    return ds.gated_evaluation(label, run, sized.at, sizes, min_agreement, max_abs_diff, "Keras")


def _nothing() -> None:
    """No dynamic export, no config to write."""


def dynamic_export_plan(
    *,
    args: argparse.Namespace,
    model,
    architecture: str,
    num_classes: int,
    name: str,
    version: int,
    repo: ModelRepository,
    val_split,
    training_size: int,
    val_resize: int | None,
) -> tuple[list[ExportStep], dict[str, ExportRecord], list[Path], Callable[[], None]]:
    """(steps, skipped records, version folders that must not exist, Triton config writer returning
    None) of ``--dynamic-sizes``; nothing to do without the flag."""
    from trainer_tf.export import (
        INPUT_NAME,
        SIGNATURE,
        onnx_logits,
        savedmodel_logits,
        write_onnx,
        write_savedmodel,
    )

    sizes = getattr(args, "dynamic_sizes", None)
    if not sizes:
        return [], {}, [], _nothing
    served = ds.served_name(name)
    savedmodel_dir = repo.tfserving_version_dir(served, version)
    onnx_path = repo.triton_onnx(served, version)
    reason = ds.unsupported_reason(architecture)
    if reason is not None:
        skipped = {
            key: ExportRecord(
                format=key, path=path.relative_to(repo.root).as_posix(), status="skipped", reason=reason
            )
            for key, path in (("savedmodel_dynamic", savedmodel_dir), ("onnx_dynamic", onnx_path))
        }
        return [], skipped, [], _nothing
    ds.check_sizes(architecture, sizes)
    gate_sizes = ds.gate_sizes(training_size, sizes)
    flexible = dynamic_model(architecture, model, num_classes)
    sized = SizedEvaluation(flexible, val_split, training_size, val_resize)

    def build_savedmodel(staging: Path) -> Path:
        write_savedmodel(flexible, staging / "savedmodel_dynamic", None)
        return staging / "savedmodel_dynamic"

    def build_onnx(staging: Path) -> Path:
        write_onnx(flexible, staging / "model_dynamic.onnx", None, args.opset)
        return staging / "model_dynamic.onnx"

    common = {
        "input": INPUT_NAME,
        "input_shape": [None, None, None, 3],
        "built_from": "keras image_size=None",
    }
    steps = [
        ExportStep(
            "savedmodel_dynamic",
            "SavedModel (dynamic)",
            build=build_savedmodel,
            evaluate=lambda path: gated_evaluation(
                "savedmodel_dynamic",
                lambda images: savedmodel_logits(path, images),
                sized,
                gate_sizes,
                args.min_agreement,
                args.max_abs_diff,
            ),
            destination=savedmodel_dir,
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={**common, "signature": SIGNATURE, "tfserving_model": served},
        ),
        ExportStep(
            "onnx_dynamic",
            "ONNX (dynamic)",
            build=build_onnx,
            evaluate=lambda path: gated_evaluation(
                "onnx_dynamic",
                lambda images: onnx_logits(path, images),
                sized,
                gate_sizes,
                args.min_agreement,
                args.max_abs_diff,
            ),
            destination=onnx_path,
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={
                **common,
                "opset": args.opset,
                "converter": "tf2onnx",
                "runtime": "onnxruntime CPUExecutionProvider",
                "triton_model": served,
                "triton_config": repo.triton_config(served).relative_to(repo.root).as_posix(),
            },
        ),
    ]

    def write_configs() -> None:
        spec = TritonModelSpec(name, INPUT_NAME, [training_size, training_size, 3], "logits", num_classes)
        ds.write_triton_config(repo, spec, served, layout="NHWC")

    return steps, {}, [savedmodel_dir, repo.triton_version_dir(served, version)], write_configs


# -- dynamic-bench ------------------------------------------------------------------------------------------
def _savedmodel_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    from trainer_tf.export import SIGNATURE

    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    return lambda x: serve(image=tf.constant(x))["logits"].numpy()


def _onnx_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits"], {"image": x})[0]


def run_bench(args: argparse.Namespace) -> Path:
    """``dynamic-bench``: measure the dynamic exports of the run's model over ``args.sizes``; returns
    the results file."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from trainer_tf import data
    from trainer_tf.checkpoint import BEST_WEIGHTS, read_config
    from trainer_tf.export import write_onnx, write_savedmodel
    from trainer_tf.hardware import environment
    from trainer_tf.models import build_model

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.mixed_precision.set_global_policy("float32")
    run_dir = Path(args.run_dir)
    config = read_config(run_dir)
    name, architecture, size = config["model"], config["architecture"], config["image_size"]
    repo = ModelRepository(Path(args.model_repository))
    out = Path(args.out) if args.out else repo.root.parent / ds.RESULTS_DIR
    sizes = sorted(ds.gate_sizes(size, args.sizes))
    result = ds.DynamicBenchResult(
        model=name,
        framework="tensorflow",
        architecture=architecture,
        training_size=size,
        sizes=sizes,
        environment={**environment(), "threads": str(args.threads)},
        load_average=ds.load_average(),
    )
    reason = ds.unsupported_reason(architecture)
    if reason is not None:
        result.skipped = reason
        return ds.write_results(out / f"{name}.json", result)
    ds.check_sizes(architecture, sizes)
    manifest = load_manifest(repo.manifest_path(name))
    records = {key: manifest.exports.get(key) for key in ("savedmodel_dynamic", "onnx_dynamic")}
    if not any(r is not None and r.status == "ok" for r in records.values()):
        raise ImgbenchError(
            f"{repo.manifest_path(name)} has no savedmodel_dynamic or onnx_dynamic export; "
            "export with --dynamic-sizes first"
        )
    num_classes = len(config["class_names"])
    trained = build_model(architecture, num_classes, size)
    trained.load_weights(run_dir / BEST_WEIGHTS)
    flexible = dynamic_model(architecture, trained, num_classes)
    _, val_split = data.list_dataset(Path(args.data_path or config["data"]))
    sized = SizedEvaluation(flexible, val_split, size, config.get("val_resize_size"))
    with tempfile.TemporaryDirectory(prefix="dynamic-bench-") as scratch:
        for current in sizes:
            images, labels, _ = sized.at(current)
            if args.limit:
                images, labels = images[: args.limit], labels[: args.limit]
            fixed = build_model(architecture, num_classes, current)
            fixed.set_weights(trained.get_weights())
            runtimes: dict[str, tuple[Callable, Callable]] = {}
            if records["savedmodel_dynamic"] is not None and records["savedmodel_dynamic"].status == "ok":
                fixed_dir = Path(scratch) / f"savedmodel_{current}"
                write_savedmodel(fixed, fixed_dir, current)
                runtimes["tf.saved_model"] = (
                    _savedmodel_runner(repo.root / records["savedmodel_dynamic"].path),
                    _savedmodel_runner(fixed_dir),
                )
            if records["onnx_dynamic"] is not None and records["onnx_dynamic"].status == "ok":
                fixed_onnx = Path(scratch) / f"fixed_{current}.onnx"
                write_onnx(fixed, fixed_onnx, current, args.opset)
                runtimes["onnxruntime"] = (
                    _onnx_runner(repo.root / records["onnx_dynamic"].path, args.threads),
                    _onnx_runner(fixed_onnx, args.threads),
                )
            for runtime, (dynamic_run, fixed_run) in runtimes.items():
                row = ds.measure_size(
                    current, runtime, dynamic_run, fixed_run, images, labels, args.latency_runs, args.threads
                )
                ds.log_size_result(log, row)
                result.rows.append(row)
    result.load_average += ds.load_average()
    path = ds.write_results(out / f"{name}.json", result)
    log.info("wrote %s", path)
    return path
