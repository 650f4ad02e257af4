"""Dynamic input shapes: the facts both trainers, the servers and the report share.

A dynamic export takes any height and width (ONNX dims ``height``/``width``, a SavedModel signature
with ``None`` height and width, TorchScript traced once). It is an extra export record of the model's
manifest (``onnx_dynamic``, ``savedmodel_dynamic``, ``torchscript_dynamic``), built only with the
trainers' ``--dynamic-sizes`` flag, and served under its own name, ``<model>_dynamic``.

``dynamic-bench`` (each trainer) measures it over a set of sizes and writes one
``DynamicBenchResult`` per model (``RUN_DIR/dynamic/<model>.json``), which the report reads:

    >>> parse_sizes("32,48,64")
    [32, 48, 64]
    >>> served_name("pt_resnet18")
    'pt_resnet18_dynamic'
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imgbench.atomic import atomic_write_text
from imgbench.catalog import get_entry
from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation
from imgbench.manifest import Manifest
from imgbench.paths import ModelRepository, served_variant, split_served_variant
from imgbench.triton_config import TritonModelSpec, gpu_config, render_config
from imgbench.validation import compare_logits, enforce_gate

log = logging.getLogger(__name__)

FORMATS = ("onnx_dynamic", "savedmodel_dynamic", "torchscript_dynamic")
RESULTS_DIR = "dynamic"
"""``RUN_DIR/dynamic/<model>.json``: where ``dynamic-bench`` writes and the report reads."""
RESULTS_SCHEMA_VERSION = 1
MAX_SIZE = 1024


def served_name(model: str) -> str:
    """The name a server serves the dynamic export of ``model`` under (a served variant,
    ``imgbench.paths.SERVED_VARIANTS``: its manifest is the model's)."""
    return served_variant(model, "dynamic")


def served_manifest(manifest: Manifest, served: str) -> Manifest:
    """``manifest`` as a client of the served name ``served`` sees it: the dynamic variant
    (``<model>_dynamic``) takes any height and width, so they are None in its input shape."""
    if split_served_variant(served)[1] != "dynamic":
        return manifest
    shape = list(manifest.input.shape)
    for axis in (2, 3) if manifest.input.layout == "NCHW" else (1, 2):
        shape[axis] = None
    return manifest.model_copy(update={"input": manifest.input.model_copy(update={"shape": shape})})


def at_size(manifest: Manifest, size: int) -> Manifest:
    """``manifest`` with its input at ``size`` × ``size`` px: what a client preprocesses images to when
    it sends that size to the dynamic export."""
    shape = list(manifest.input.shape)
    for axis in (2, 3) if manifest.input.layout == "NCHW" else (1, 2):
        shape[axis] = size
    return manifest.model_copy(update={"input": manifest.input.model_copy(update={"shape": shape})})


def parse_sizes(text: str) -> list[int]:
    """``"32,48,64"`` -> ``[32, 48, 64]`` (sorted, unique); a bad entry is named."""
    sizes: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        try:
            size = int(part)
        except ValueError:
            raise ImgbenchError(f"sizes must be comma-separated integers, got {part!r} in {text!r}") from None
        if not 1 <= size <= MAX_SIZE:
            raise ImgbenchError(f"an image size must be within 1..{MAX_SIZE} px, got {size} in {text!r}")
        sizes.add(size)
    return sorted(sizes)


def unsupported_reason(architecture: str) -> str | None:
    """Why ``architecture`` cannot take a dynamic spatial size, or None when it can (global pooling)."""
    if get_entry(architecture).family == "vit":
        return (
            "ViT's learned position embedding fixes the patch grid to the training size: "
            "no dynamic height/width"
        )
    return None


def check_sizes(architecture: str, sizes: list[int]) -> None:
    """Every size at least the architecture's minimum; the error names the size."""
    minimum = get_entry(architecture).min_image_size
    small = [s for s in sizes if s < minimum]
    if small:
        raise ImgbenchError(
            f"{architecture} needs images of at least {minimum} px, got --dynamic-sizes {small}"
        )


def gate_sizes(training_size: int, sizes: list[int]) -> list[int]:
    """The sizes a dynamic export is gated at: the training size first, then every other listed size."""
    return [training_size, *(s for s in sizes if s != training_size)]


def scaled_tolerance(
    max_abs_diff: float | None, reference: np.ndarray, at_training_size: np.ndarray
) -> float | None:
    """The |Δlogit| tolerance at another size: the gate's, scaled by how much larger the framework's own
    logits are there than at the training size. A model shown a scale it never saw can answer with far
    larger logits (MobileNetV3 trained at 32 px: ×12 at 48 px), and float32 rounding grows with them: a
    fixed-shape export of that size differs from the framework by as much as the dynamic one does."""
    if max_abs_diff is None:
        return None
    base = float(np.abs(at_training_size).max()) or 1.0
    return max_abs_diff * max(1.0, float(np.abs(reference).max()) / base)


# -- the results file of dynamic-bench --------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SizeResult(_Strict):
    """One runtime at one image size: the dynamic export against a fixed-shape export of that size."""

    size: int = Field(gt=0)
    runtime: str = Field(description="e.g. onnxruntime, torchscript, tf.saved_model.")
    n: int = Field(ge=0, description="Evaluation images (resized to the size) behind the accuracies.")
    accuracy_dynamic: float = Field(ge=0, le=1)
    accuracy_fixed: float | None = Field(default=None, ge=0, le=1)
    agreement_with_fixed: float | None = Field(default=None, ge=0, le=1)
    latency_samples: int = Field(ge=0, description="Timed single-image runs per side (interleaved).")
    latency_ms_dynamic: float = Field(ge=0, description="Median per image, batch 1.")
    latency_ms_fixed: float | None = Field(default=None, ge=0)
    threads: int = Field(ge=1)

    @property
    def overhead(self) -> float | None:
        """Dynamic vs fixed median latency, e.g. 0.12 for 12% slower."""
        if not self.latency_ms_fixed:
            return None
        return self.latency_ms_dynamic / self.latency_ms_fixed - 1.0


class CompileCounts(_Strict):
    """torch.compile over the size set, one image per size, in order: what Dynamo compiled."""

    dynamic: bool | None = Field(description="torch.compile(dynamic=...): True, False or None (automatic).")
    frames_compiled: int = Field(ge=0, description="Graphs Dynamo compiled (the first one included).")
    recompiles: int = Field(ge=0, description="Compilations after the first one.")
    compile_seconds: float = Field(ge=0, description="Wall time of the calls that compiled.")
    first_call_seconds: list[float] = Field(description="Wall time of the first call at each size.")
    recompile_reasons: list[str] = Field(
        default_factory=list, description="The guard that failed at each recompile (torch._logging)."
    )
    accuracy_top1_match: float | None = Field(
        default=None, ge=0, le=1, description="Top-1 agreement of the compiled model with eager at each size."
    )
    error: str | None = None


class DynamicBenchResult(_Strict):
    schema_version: Literal[1] = RESULTS_SCHEMA_VERSION
    kind: Literal["dynamic_shapes"] = "dynamic_shapes"
    model: str
    framework: Literal["pytorch", "tensorflow"]
    architecture: str
    training_size: int = Field(gt=0)
    sizes: list[int] = Field(min_length=1)
    rows: list[SizeResult] = Field(default_factory=list)
    compile: list[CompileCounts] = Field(default_factory=list)
    skipped: str | None = Field(default=None, description="Why nothing was measured (e.g. ViT).")
    environment: dict[str, str] = Field(default_factory=dict)
    load_average: list[float] = Field(default_factory=list, description="/proc/loadavg at the start and end.")


def results_path(run_dir: Path, model: str) -> Path:
    return Path(run_dir) / RESULTS_DIR / f"{model}.json"


def write_results(path: Path, result: DynamicBenchResult) -> Path:
    validated = DynamicBenchResult.model_validate(result.model_dump())
    atomic_write_text(Path(path), validated.model_dump_json(indent=2) + "\n")
    return Path(path)


def load_results(path: Path) -> DynamicBenchResult:
    """Read one results file; ``ImgbenchError`` names the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ImgbenchError(f"cannot read dynamic-shape results {path}: {exc}") from None
    try:
        return DynamicBenchResult.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ImgbenchError(f"dynamic-shape results {path} are malformed: {problems}") from None


# -- measuring ---------------------------------------------------------------------------------------------
def batched(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits of ``images`` through ``run``, ``batch`` at a time."""
    return np.concatenate([run(images[i : i + batch]) for i in range(0, len(images), batch)])


def measure_size(
    size: int,
    runtime: str,
    dynamic_run: Callable[[np.ndarray], np.ndarray],
    fixed_run: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    latency_runs: int,
    threads: int,
) -> SizeResult:
    """The dynamic export against a fixed-shape export of ``size`` in one runtime: accuracy of each on
    the evaluation images at that size, their top-1 agreement and interleaved single-image latency."""
    dynamic_logits, fixed_logits = batched(dynamic_run, images), batched(fixed_run, images)
    latency = interleaved_latency({"dynamic": dynamic_run, "fixed": fixed_run}, images, latency_runs)
    return SizeResult(
        size=size,
        runtime=runtime,
        n=len(labels),
        accuracy_dynamic=float((dynamic_logits.argmax(axis=1) == labels).mean()),
        accuracy_fixed=float((fixed_logits.argmax(axis=1) == labels).mean()),
        agreement_with_fixed=float((dynamic_logits.argmax(axis=1) == fixed_logits.argmax(axis=1)).mean()),
        latency_samples=latency_runs,
        latency_ms_dynamic=latency["dynamic"],
        latency_ms_fixed=latency["fixed"],
        threads=threads,
    )


def gated_evaluation(
    label: str,
    logits_of: Callable[[np.ndarray], np.ndarray],
    at: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    sizes: list[int],
    min_agreement: float,
    max_abs_diff: float | None,
    framework: str,
) -> Evaluation:
    """The export's logits at the first size (the pipeline gates them against its reference) and the
    gate enforced here at every other size, against the framework's own model at that size (``at``
    gives images, labels and its logits); the |Δlogit| tolerance scales with the logits there
    (``scaled_tolerance``)."""
    per_size: dict[str, dict[str, float | int | None]] = {}
    first: np.ndarray | None = None
    first_reference = np.zeros(1)
    for size in sizes:
        images, labels, reference = at(size)
        logits = logits_of(images)
        agreement = compare_logits(reference, logits, labels)
        per_size[str(size)] = {
            "n": agreement.n,
            "top1_agreement": agreement.top1_agreement,
            "max_abs_logit_diff": agreement.max_abs_logit_diff,
            "accuracy": agreement.accuracy,
            "framework_accuracy": float((reference.argmax(axis=1) == labels).mean()),
        }
        if first is None:
            first, first_reference = logits, reference
            continue
        tolerance = scaled_tolerance(max_abs_diff, reference, first_reference)
        per_size[str(size)]["max_abs_diff_tolerance"] = tolerance
        enforce_gate(f"{label} at {size} px", agreement, min_agreement, tolerance)
        log.info(
            "%s at %d px vs %s: agreement %.2f%%, max |Δlogit| %.3g, accuracy %.2f%%",
            label,
            size,
            framework,
            100 * agreement.top1_agreement,
            agreement.max_abs_logit_diff,
            100 * (agreement.accuracy or 0.0),
        )
    if first is None:
        raise ImgbenchError(f"{label}: no size to gate at")
    return Evaluation(first, details={"gated_sizes": sizes, "sizes": per_size})


def log_size_result(log: logging.Logger, row: SizeResult) -> None:
    log.info(
        "%s %3d px: accuracy dynamic %.2f%% fixed %.2f%%, %.3f vs %.3f ms/image (%+.1f%%)",
        row.runtime,
        row.size,
        100 * row.accuracy_dynamic,
        100 * (row.accuracy_fixed or 0),
        row.latency_ms_dynamic,
        row.latency_ms_fixed or 0,
        100 * (row.overhead or 0),
    )


def interleaved_latency(
    runners: dict[str, Callable[[np.ndarray], object]], images: np.ndarray, runs: int, warmup: int = 20
) -> dict[str, float]:
    """Median ms per single image of each runner, the runners alternating image by image (and which
    one goes first, round by round), so a change of machine load hits every side alike. ``warmup``
    untimed rounds first: TorchScript's profiling executor re-optimizes for each new input shape it
    meets (batch 1 after the batched accuracy runs)."""
    times: dict[str, list[float]] = {key: [] for key in runners}
    order = list(runners)
    for index in range(warmup + runs):
        row = images[index % len(images)][None]
        # Who goes first alternates: the second call of a pair finds the caches warm.
        for key in order if index % 2 == 0 else order[::-1]:
            run = runners[key]
            start = time.perf_counter()
            run(row)
            if index >= warmup:
                times[key].append((time.perf_counter() - start) * 1000.0)
    return {key: float(np.median(values)) for key, values in times.items()}


def load_average() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


# -- serving ------------------------------------------------------------------------------------------------
def write_triton_config(repo: ModelRepository, spec: TritonModelSpec, served: str, layout: str) -> Path:
    """``triton/<served>/config.pbtxt`` (CPU) and ``configs/gpu.pbtxt``: ``spec`` (the fixed model's)
    with height and width -1. The GPU variant runs ONNX Runtime's CUDA provider without the TensorRT
    accelerator: a TensorRT optimization profile needs concrete image shapes."""
    channels = spec.input_dims[0] if layout == "NCHW" else spec.input_dims[-1]
    dims = [channels, -1, -1] if layout == "NCHW" else [-1, -1, channels]
    dynamic = replace(spec, name=served, input_dims=dims)
    path, gpu = repo.triton_config(served), gpu_config(repo, served)
    for target, device in ((path, "cpu"), (gpu, "gpu")):
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, render_config(dynamic, "onnxruntime", device))
    return path
