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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.compiled_check import read_check
from imgbench.data.imagefolder import read_dataset_info
from imgbench.edge_memory import measure_tflite_memory
from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation, ExportJob, ExportStep, run_export
from imgbench.manifest import (
    CompiledCheck,
    DatasetRef,
    ExportRecord,
    InputSpec,
    Manifest,
    TrainingFigures,
)
from imgbench.onnx_gpu import cuda_provider_details
from imgbench.paths import ModelRepository
from imgbench.training_log import read_epochs, training_repeats
from imgbench.triton_config import TritonModelSpec, gpu_config, tensorrt_record, write_triton_configs
from trainer_tf import data
from trainer_tf.checkpoint import BEST_STATE, BEST_WEIGHTS, read_config, read_json
from trainer_tf.dynamic import dynamic_export_plan

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAMES = ["logits", "probabilities"]
EVAL_BATCH = 64
TFLITE_VARIANTS = ("fp32", "dynamic", "int8")


# -- building -----------------------------------------------------------------------------------------
def image_spec(image_size: int | None):
    """NHWC float32 with any batch; ``image_size=None``: any height and width too (dynamic exports)."""
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

    return session_logits(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), images)


def session_logits(session: Any, images: np.ndarray) -> np.ndarray:
    """The eval images through an ONNX Runtime session, in batches."""
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


# -- the whole export ---------------------------------------------------------------------------------
def check_xla(
    run_dir: Path, args: argparse.Namespace, stage: str, model=None, images=None, labels=None
) -> CompiledCheck:
    """``--jit-compile``: the best weights under XLA vs Keras without XLA on the val split, judged by the
    export gate, recorded in the run folder; raises ``CompiledGateError`` (nothing published) on failure."""
    from trainer_tf.compiled import check_run

    if model is None:
        config = read_config(run_dir)
        _, val_split = data.list_dataset(Path(getattr(args, "data_path", None) or config["data"]))
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        from trainer_tf.models import build_model

        keras.mixed_precision.set_global_policy("float32")
        model = build_model(config["architecture"], len(config["class_names"]), config["image_size"])
        model.load_weights(Path(run_dir) / BEST_WEIGHTS)
        images, labels = data.eval_arrays(val_split, config["image_size"], config["val_resize_size"])
    return check_run(
        Path(run_dir),
        model,
        images,
        labels,
        args.min_agreement,
        args.max_abs_diff,
        stage,
        batch_size=EVAL_BATCH,
        limit=getattr(args, "compile_check_images", None),
    )


def export_run(run_dir: Path, args: argparse.Namespace) -> Manifest:
    """Export the best weights of ``run_dir`` through the shared pipeline (``imgbench.export_pipeline``:
    stage, gate, publish, manifest last); returns the manifest it wrote."""
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
    from trainer_tf.tfserving_config import write_tfserving_configs

    keras.mixed_precision.set_global_policy("float32")
    model = build_model(config["architecture"], len(config["class_names"]), size)
    model.load_weights(run_dir / BEST_WEIGHTS)
    images, labels = data.eval_arrays(val_split, size, config["val_resize_size"])
    reference = model.predict(images, batch_size=EVAL_BATCH, verbose=0)
    log.info(
        "Keras best model (epoch %d): val top-1 %.2f%% on %d images",
        best["epoch"],
        100 * float((reference.argmax(axis=1) == labels).mean()),
        len(labels),
    )
    # --jit-compile: XLA must pass the gate before anything is published; without it, the check a
    # training run recorded (if any) goes into the manifest as it is.
    compiled = (
        check_xla(run_dir, args, _stage(args), model, images, labels)
        if getattr(args, "jit_compile", False)
        else read_check(run_dir)
    )
    version = args.version or repo.next_version(model_name)
    threads = usable_cores()

    def build_savedmodel(staging: Path) -> Path:
        write_savedmodel(model, staging / "savedmodel", size)
        return staging / "savedmodel"

    def build_onnx(staging: Path) -> Path:
        write_onnx(model, staging / "model.onnx", size, args.opset)
        return staging / "model.onnx"

    tflite_cache: dict[str, bytes] = {}

    def build_tflite(variant: str) -> Callable[[Path], Path]:
        def build(staging: Path) -> Path:
            if not tflite_cache:
                # One conversion of the staged SavedModel gives all three variants.
                calibration_split = data.representative_sample(
                    train_split, args.calibration_images, config["seed"]
                )
                calibration, _ = data.eval_arrays(calibration_split, size, config["val_resize_size"])
                tflite_cache.update(tflite_models(staging / "savedmodel", calibration))
            path = staging / f"model_{variant}.tflite"
            path.write_bytes(tflite_cache[variant])
            return path

        return build

    def evaluate_tflite(path: Path) -> Evaluation:
        logits, latency = tflite_logits(path.read_bytes(), images, threads)
        # The interpreter's peak memory, in a fresh process per model (imgbench.edge_memory).
        memory = measure_tflite_memory(path, threads=threads)
        return Evaluation(logits, latency_ms=latency, details={"memory": memory.as_details()})

    steps = [
        ExportStep(
            "savedmodel",
            "SavedModel",
            build=build_savedmodel,
            evaluate=lambda path: savedmodel_logits(path, images),
            destination=repo.tfserving_version_dir(model_name, version),
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={"signature": SIGNATURE, "input": INPUT_NAME, "outputs": OUTPUT_NAMES},
        ),
        ExportStep(
            "onnx",
            "ONNX",
            build=build_onnx,
            evaluate=lambda path: Evaluation(
                onnx_logits(path, images),
                details=cuda_provider_details(
                    path, lambda session: session_logits(session, images), reference, labels
                ),
            ),
            destination=repo.triton_onnx(model_name, version),
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={
                "opset": args.opset,
                "converter": "tf2onnx",
                "runtime": "onnxruntime CPUExecutionProvider",
                "triton_config": repo.triton_config(model_name).relative_to(repo.root).as_posix(),
                "triton_gpu_config": gpu_config(repo, model_name).relative_to(repo.root).as_posix(),
            },
        ),
    ]
    quantization = {
        "fp32": "none",
        "dynamic": "int8 weights, float activations",
        "int8": f"int8 weights and activations, float32 input/output, calibrated on "
        f"{min(args.calibration_images, len(train_split))} training images",
    }
    if not args.skip_tflite:
        for variant in TFLITE_VARIANTS:
            steps.append(
                ExportStep(
                    f"tflite_{variant}",
                    f"TFLite {variant}",
                    build=build_tflite(variant),
                    evaluate=evaluate_tflite,
                    destination=repo.tflite(model_name, variant),
                    # The quantized models are gated on agreement only.
                    min_agreement=args.min_agreement if variant == "fp32" else args.quantized_min_agreement,
                    max_abs_diff=args.max_abs_diff if variant == "fp32" else None,
                    details={
                        "converter": "tf.lite.TFLiteConverter (from the SavedModel)",
                        "interpreter": "ai_edge_litert",
                        "threads": threads,
                        "batch": 1,
                        "quantization": quantization[variant],
                    },
                )
            )

    # --dynamic-sizes: savedmodel_dynamic and onnx_dynamic, gated at every size (trainer_tf.dynamic).
    dynamic_steps, dynamic_skipped, dynamic_dirs, write_dynamic_config = dynamic_export_plan(
        args=args,
        model=model,
        architecture=config["architecture"],
        num_classes=len(config["class_names"]),
        name=model_name,
        version=version,
        repo=repo,
        val_split=val_split,
        training_size=size,
        val_resize=config["val_resize_size"],
    )
    steps += dynamic_steps

    def write_configs() -> None:
        spec = TritonModelSpec(model_name, INPUT_NAME, [size, size, 3], "logits", len(config["class_names"]))
        write_triton_configs(repo, spec)  # config.pbtxt (CPU) and configs/gpu.pbtxt (GPU server)
        write_dynamic_config()  # triton/<model>_dynamic/config.pbtxt with -1 height/width, if exported
        write_tfserving_configs(repo, args.tfserving_base_path, num_batch_threads=threads)

    def manifest(records: dict[str, ExportRecord]) -> Manifest:
        result = _manifest(
            config, best, history, model_name, version, data_root, records, count_parameters(model)
        )
        result.framework_version = tf.__version__
        result.environment = environment()
        result.training.repeats = training_repeats(run_dir)  # --repeats N: every seed's figures
        result.training.compiled_check = compiled
        return result

    return run_export(
        ExportJob(
            model=model_name,
            version=version,
            repository=repo,
            reference=reference,
            labels=labels,
            steps=steps,
            manifest=manifest,
            skipped={"tensorrt": tensorrt_record(repo, model_name, version), **dynamic_skipped},
            write_configs=write_configs,
            version_dirs=[
                repo.tfserving_version_dir(model_name, version),
                repo.triton_version_dir(model_name, version),
                *dynamic_dirs,
            ],
        )
    )


def _stage(args: argparse.Namespace) -> str:
    # train exports at its end: a check there is the training run's.
    return "train" if getattr(args, "command", None) == "train" else "export"


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
