"""Export a run's best model into the model repository and prove each export agrees with Keras.

    tfserving/<model>/<version>/        SavedModel, signature serving_default: image -> logits, probabilities
    tfserving/{models.config, batching_parameters.txt, monitoring.config}
    triton/<model>/<version>/model.onnx + triton/<model>/config.pbtxt (onnxruntime backend)
    edge/<model>/model_{fp32,dynamic,int8}.tflite
    manifests/<model>.json              last: the model is complete when it exists

Everything is built and validated in a hidden staging folder inside the repository first; only when
every gate passes are the exports renamed into place, then the manifest is written. A failed gate
therefore publishes nothing. Exports are computed in float32 whatever precision training used.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from imgbench.data.imagefolder import read_dataset_info
from imgbench.errors import ImgbenchError
from imgbench.manifest import (
    DatasetRef,
    ExportRecord,
    InputSpec,
    Manifest,
    TrainingFigures,
    write_manifest,
)
from imgbench.paths import ModelRepository
from imgbench.training_log import read_epochs
from imgbench.triton_config import TritonModelSpec, render_config
from imgbench.validation import Agreement, compare_logits, enforce_gate
from trainer_tf import data
from trainer_tf.checkpoint import BEST_STATE, BEST_WEIGHTS, read_config, read_json

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAMES = ["logits", "probabilities"]
EVAL_BATCH = 64
TFLITE_VARIANTS = ("fp32", "dynamic", "int8")


# -- building -----------------------------------------------------------------------------------------
def image_spec(image_size: int):
    import tensorflow as tf

    return tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=INPUT_NAME)


def write_savedmodel(model, path: Path, image_size: int) -> None:
    """A SavedModel whose ``serving_default`` takes ``image`` and returns ``logits`` and ``probabilities``
    (``model.export`` would name the input ``keras_tensor`` and the output ``output_0``)."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(image):
        logits = model(image, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=[image_spec(image_size)])
    archive.write_out(str(path), verbose=False)


def write_onnx(model, path: Path, image_size: int, opset: int) -> None:
    """ONNX through tf2onnx (opset ≤ 18), input ``image`` with a dynamic batch, output ``logits``."""
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=[image_spec(image_size)], opset=opset)
    _rename_output(model_proto, "logits")
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))


def _rename_output(model_proto, name: str) -> None:
    """tf2onnx names outputs after the Keras layer (``logits`` here); rename defensively if not."""
    output = model_proto.graph.output[0]
    old = output.name
    if old == name:
        return
    for node in model_proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    output.name = name


def tflite_models(savedmodel_dir: Path, calibration: np.ndarray) -> dict[str, bytes]:
    """fp32, dynamic-range (int8 weights) and full-int8 (weights and activations, calibrated on
    training images; float32 input/output so clients send the same tensor) flatbuffers."""
    import warnings

    import tensorflow as tf

    # The int8 calibrator runs tf.lite.Interpreter internally and warns that it is deprecated; our own
    # evaluation already uses ai_edge_litert's interpreter.
    warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")

    def converter():
        return tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_dir), signature_keys=[SIGNATURE])

    models = {"fp32": converter().convert()}
    dynamic = converter()
    dynamic.optimizations = [tf.lite.Optimize.DEFAULT]
    models["dynamic"] = dynamic.convert()
    int8 = converter()
    int8.optimizations = [tf.lite.Optimize.DEFAULT]
    int8.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def representative():
        for index in range(len(calibration)):
            yield {INPUT_NAME: calibration[index : index + 1]}

    int8.representative_dataset = representative
    models["int8"] = int8.convert()
    return models


# -- running ------------------------------------------------------------------------------------------
def savedmodel_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """Reload the SavedModel as a server would and run its serving signature."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    return np.concatenate(
        [
            serve(image=tf.constant(images[i : i + EVAL_BATCH]))["logits"].numpy()
            for i in range(0, len(images), EVAL_BATCH)
        ]
    )


def onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [
            session.run(["logits"], {INPUT_NAME: images[i : i + EVAL_BATCH]})[0]
            for i in range(0, len(images), EVAL_BATCH)
        ]
    )


def tflite_logits(model_content: bytes, images: np.ndarray, threads: int) -> tuple[np.ndarray, float]:
    """Logits one image at a time through LiteRT's interpreter, and the median latency per image (ms)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_content, num_threads=threads)
    runner = interpreter.get_signature_runner(SIGNATURE)
    outputs, latencies = [], []
    for index in range(len(images)):
        start = time.perf_counter()
        result = runner(**{INPUT_NAME: images[index : index + 1]})
        latencies.append(time.perf_counter() - start)
        outputs.append(result["logits"])
    return np.concatenate(outputs), float(np.median(latencies) * 1000.0)


def _record(fmt: str, path: str, agreement: Agreement, size_bytes: int, **extra) -> ExportRecord:
    return ExportRecord(
        format=fmt,
        path=path,
        size_bytes=size_bytes,
        n=agreement.n,
        top1_agreement=agreement.top1_agreement,
        max_abs_logit_diff=agreement.max_abs_logit_diff,
        accuracy=agreement.accuracy,
        **extra,
    )


def _tree_size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


# -- the whole export ---------------------------------------------------------------------------------
def export_run(run_dir: Path, args: argparse.Namespace) -> Manifest:
    """Export the best weights of ``run_dir``; returns the manifest it wrote."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if not (run_dir / BEST_STATE).is_file() or not (run_dir / BEST_WEIGHTS).is_file():
        raise ImgbenchError(f"{run_dir} has no best model yet (no epoch finished); train first")
    best = read_json(run_dir / BEST_STATE)
    history = read_epochs(run_dir)
    data_root = Path(getattr(args, "data_path", None) or config["data"])
    train_split, val_split = data.list_dataset(data_root)
    if train_split.class_names != config["class_names"]:
        raise ImgbenchError(
            f"{data_root} has classes {train_split.class_names}, the run in {run_dir} was trained on "
            f"{config['class_names']}; export against the run's own dataset"
        )
    repo = ModelRepository(Path(args.model_repository))
    model_name = config["model"]
    size = config["image_size"]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from trainer_tf.hardware import environment, usable_cores
    from trainer_tf.models import build_model, count_parameters

    keras.mixed_precision.set_global_policy("float32")
    model = build_model(config["architecture"], len(config["class_names"]), size)
    model.load_weights(run_dir / BEST_WEIGHTS)
    images, labels = data.eval_arrays(val_split, size, config["val_resize_size"])
    reference = model.predict(images, batch_size=EVAL_BATCH, verbose=0)
    reference_accuracy = float((reference.argmax(axis=1) == labels).mean())
    log.info(
        "Keras best model (epoch %d): val top-1 %.2f%% on %d images",
        best["epoch"],
        100 * reference_accuracy,
        len(labels),
    )

    version = args.version or repo.next_version(model_name)
    if version in repo.versions(model_name):
        raise ImgbenchError(
            f"{model_name} version {version} already exists in {repo.root}; pick another --version"
        )
    repo.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{model_name}-", dir=repo.root))
    try:
        records: dict[str, ExportRecord] = {}
        gate = {"min_agreement": args.min_agreement, "max_abs_diff": args.max_abs_diff}
        quantized_gate = {"min_agreement": args.quantized_min_agreement, "max_abs_diff": None}

        savedmodel_dir = staging / "savedmodel"
        write_savedmodel(model, savedmodel_dir, size)
        agreement = compare_logits(reference, savedmodel_logits(savedmodel_dir, images), labels)
        enforce_gate("SavedModel", agreement, **gate)
        records["savedmodel"] = _record(
            "savedmodel",
            f"tfserving/{model_name}/{version}",
            agreement,
            _tree_size(savedmodel_dir),
            details={"signature": SIGNATURE, "input": INPUT_NAME, "outputs": OUTPUT_NAMES},
        )

        onnx_path = staging / "model.onnx"
        write_onnx(model, onnx_path, size, args.opset)
        agreement = compare_logits(reference, onnx_logits(onnx_path, images), labels)
        enforce_gate("ONNX", agreement, **gate)
        records["onnx"] = _record(
            "onnx",
            f"triton/{model_name}/{version}/model.onnx",
            agreement,
            onnx_path.stat().st_size,
            details={
                "opset": args.opset,
                "converter": "tf2onnx",
                "runtime": "onnxruntime CPUExecutionProvider",
            },
        )

        tflite_bytes: dict[str, bytes] = {}
        if not args.skip_tflite:
            calibration_split = data.representative_sample(
                train_split, args.calibration_images, config["seed"]
            )
            calibration, _ = data.eval_arrays(calibration_split, size, config["val_resize_size"])
            tflite_bytes = tflite_models(savedmodel_dir, calibration)
            threads = usable_cores()
            for variant, content in tflite_bytes.items():
                logits, latency = tflite_logits(content, images, threads)
                agreement = compare_logits(reference, logits, labels)
                enforce_gate(
                    f"TFLite {variant}", agreement, **(gate if variant == "fp32" else quantized_gate)
                )
                records[f"tflite_{variant}"] = _record(
                    f"tflite_{variant}",
                    f"edge/{model_name}/model_{variant}.tflite",
                    agreement,
                    len(content),
                    latency_ms_per_image=latency,
                    details={
                        "interpreter": "ai_edge_litert",
                        "threads": threads,
                        "batch": 1,
                        "quantization": {
                            "fp32": "none",
                            "dynamic": "int8 weights, float activations",
                            "int8": f"int8 weights and activations, float32 input/output, "
                            f"calibrated on {len(calibration)} training images",
                        }[variant],
                    },
                )

        # Every gate passed: publish, newest version last so servers never see half a version.
        version_dir = repo.tfserving_version_dir(model_name, version)
        version_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(savedmodel_dir, version_dir)
        onnx_target = repo.triton_onnx(model_name, version)
        onnx_target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(onnx_path, onnx_target)
        spec = TritonModelSpec(model_name, INPUT_NAME, [size, size, 3], "logits", len(config["class_names"]))
        _atomic_text(repo.triton_config(model_name), render_config(spec, "onnxruntime"))
        for variant, content in tflite_bytes.items():
            _atomic_bytes(repo.tflite(model_name, variant), content)

        from trainer_tf.tfserving_config import write_tfserving_configs

        write_tfserving_configs(repo, args.tfserving_base_path, num_batch_threads=usable_cores())

        manifest = _manifest(
            config, best, history, model_name, version, data_root, records, count_parameters(model)
        )
        manifest.framework_version = tf.__version__
        manifest.environment = environment()
        write_manifest(repo.manifest_path(model_name), manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log_summary(repo, manifest)
    return manifest


def _atomic_text(path: Path, text: str) -> None:
    from imgbench.atomic import atomic_write_text

    atomic_write_text(path, text)


def _atomic_bytes(path: Path, content: bytes) -> None:
    from imgbench.atomic import atomic_write_bytes

    atomic_write_bytes(path, content)


def _manifest(config, best, history, model_name, version, data_root, records, parameters) -> Manifest:
    size = config["image_size"]
    info = read_dataset_info(data_root)
    recipe_keys = (
        "epochs",
        "batch_size",
        "global_batch",
        "lr",
        "peak_lr",
        "lr_min",
        "lr_schedule",
        "lr_warmup_decay",
        "momentum",
        "weight_decay",
        "weight_decay_kind",
        "label_smoothing",
        "warmup_epochs",
        "warmup_steps",
        "steps_per_epoch",
        "total_steps",
        "seed",
        "jit_compile",
        "precision_policy",
        "bn_momentum",
        "bn_momentum_keras",
        "crop_scale_min",
        "hflip",
        "replicas",
        "val_resize_size",
    )
    return Manifest(
        model=model_name,
        framework="tensorflow",
        framework_version="set by the caller",
        architecture=config["architecture"],
        version=version,
        input=InputSpec(name=INPUT_NAME, shape=[None, size, size, 3], layout="NHWC", dtype="float32"),
        output_names=OUTPUT_NAMES,
        class_names=config["class_names"],
        dataset=DatasetRef(
            name=str(info.get("name", data_root.name)),
            path=str(data_root),
            eval_split="val",
            num_train=config["num_train"],
            num_eval=config["num_eval"],
            image_size=size,
        ),
        training=TrainingFigures(
            epochs=len(history),
            best_epoch=int(best["epoch"]),
            top1=float(best["top1"]),
            top5=float(best["top5"]),
            seconds_per_epoch=float(np.mean([r.seconds for r in history])) if history else 0.0,
            images_per_second=float(np.mean([r.images_per_second for r in history])) if history else 0.0,
            peak_memory_bytes=max((r.peak_memory_bytes for r in history), default=0),
            memory_kind=config.get("memory_kind", "cpu_rss"),
            device=config.get("device", "unknown"),
            parameters=parameters,
            recipe=config.get("recipe") or {key: config.get(key) for key in recipe_keys},
            history=history,
        ),
        exports=records,
    )


def _log_summary(repo: ModelRepository, manifest: Manifest) -> None:
    for name, record in manifest.exports.items():
        latency = (
            f"  {record.latency_ms_per_image:.3f} ms/image" if record.latency_ms_per_image is not None else ""
        )
        log.info(
            "%-15s agreement %.2f%%  max|Δ| %.2e  accuracy %.2f%%  %.2f MB%s  %s",
            name,
            100 * (record.top1_agreement or 0),
            record.max_abs_logit_diff or 0,
            100 * (record.accuracy or 0),
            (record.size_bytes or 0) / 1e6,
            latency,
            record.path,
        )
    log.info("wrote %s (version %d)", repo.manifest_path(manifest.model), manifest.version)
