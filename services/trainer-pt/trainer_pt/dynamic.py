"""Dynamic input shapes in PyTorch: exports with a dynamic height/width, and their measurement.

    python -m trainer_pt export --run-dir runs/pt --dynamic-sizes 32,48,64
    python -m trainer_pt dynamic-bench --run-dir runs/pt --model-repository model-repository --sizes 32,48,64

Exports (``--dynamic-sizes``): ``onnx_dynamic`` (the dynamo exporter with ``height``/``width`` dims,
served by Triton as ``<model>_dynamic`` with dims -1) and ``torchscript_dynamic`` (traced once at the
training size: a trace keeps no shape guard, so the gate at the other sizes is what proves it). Each is
gated against eager PyTorch on the evaluation split at the training size and at every listed size.

``dynamic-bench``: per size, the dynamic export's accuracy (evaluation images at that size), its
latency per image against a fixed-shape export of the same size (same runtime, same threads, timed
interleaved), and what ``torch.compile(dynamic=True)`` and ``dynamic=False`` compile over the size set.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from imgbench import dynamic_shapes as ds
from imgbench.catalog import get_entry
from imgbench.errors import ImgbenchError
from imgbench.export_pipeline import Evaluation, ExportStep
from imgbench.manifest import ExportRecord, load_manifest
from imgbench.paths import ModelRepository, model_name
from imgbench.trainer_cli import default_val_resize
from imgbench.triton_config import TritonModelSpec

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


# -- data at any size --------------------------------------------------------------------------------
def eval_loader(
    data_path: Path, size: int, training_size: int, val_resize: int | None, batch_size: int = 64
) -> DataLoader:
    """The evaluation split through the trainer's eval transform at ``size`` (the resize side scaled
    with it, so the crop covers the same share of each image)."""
    from trainer_pt.data import load_splits

    resize = round(val_resize * size / training_size) if val_resize else default_val_resize(size)
    splits = load_splits(data_path, size, check=False, val_resize_size=resize)
    return DataLoader(splits.val, batch_size=batch_size, shuffle=False, num_workers=0)


def loader_arrays(loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in loader), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def eager_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return ds.batched(lambda x: model(torch.from_numpy(x)).numpy(), images)


# -- exporters ------------------------------------------------------------------------------------------
def export_onnx_dynamic(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, min_size: int
) -> None:
    """ONNX with dims ``batch``, 3, ``height``, ``width`` (the dynamo exporter's symbolic shapes)."""
    import onnx

    for noisy in ("onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    dims = {
        0: torch.export.Dim("batch", min=1, max=4096),
        2: torch.export.Dim("height", min=min_size, max=ds.MAX_SIZE),
        3: torch.export.Dim("width", min=min_size, max=ds.MAX_SIZE),
    }
    try:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes=(dims,),
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    except Exception as exc:
        raise ImgbenchError(
            f"dynamic-shape ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    onnx.checker.check_model(str(path))
    shape = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    if any(not shape[axis].dim_param for axis in (0, 2, 3)):
        found = [d.dim_param or d.dim_value for d in shape]
        raise ImgbenchError(f"{path}: expected dynamic batch, height and width, got input dims {found}")


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.inference_mode():
        traced = torch.jit.trace(model, example)
    torch.jit.save(torch.jit.freeze(traced.eval()), str(path))


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(path: Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    session = ort_session(path, threads)
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def torchscript_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    module = torch.jit.load(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


# -- export steps -------------------------------------------------------------------------------------------
class SizedEvaluation:
    """The evaluation split and eager PyTorch's logits at each gate size, computed once and shared by
    every dynamic step."""

    def __init__(self, model: nn.Module, data_path: Path, training_size: int, val_resize: int | None) -> None:
        self._model, self._data_path = model, data_path
        self._training_size, self._val_resize = training_size, val_resize
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def at(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, eager logits) at ``size``."""
        if size not in self._cache:
            images, labels = loader_arrays(
                eval_loader(self._data_path, size, self._training_size, self._val_resize)
            )
            self._cache[size] = (images, labels, eager_logits(self._model, images))
        return self._cache[size]


def gated_evaluation(
    label: str,
    run: Callable[[np.ndarray], np.ndarray],
    sized: SizedEvaluation,
    sizes: list[int],
    min_agreement: float,
    max_abs_diff: float | None,
) -> Evaluation:
    """``imgbench.dynamic_shapes.gated_evaluation`` against eager PyTorch, the export run in batches."""
    return ds.gated_evaluation(
        label, lambda images: ds.batched(run, images), sized.at, sizes, min_agreement, max_abs_diff, "PyTorch"
    )


def dynamic_export_plan(
    *,
    args: argparse.Namespace,
    exportable: nn.Module,
    reference_model: nn.Module,
    architecture: str,
    name: str,
    version: int,
    repo: ModelRepository,
    data_path: Path,
    training_size: int,
    val_resize: int | None,
    triton_spec: TritonModelSpec,
) -> tuple[list[ExportStep], dict[str, ExportRecord], list[Path], Callable[[], None]]:
    """(steps, skipped records, version folders that must not exist, config writer returning None) of
    ``--dynamic-sizes``; nothing to do when the flag is not given."""
    sizes = getattr(args, "dynamic_sizes", None)
    if not sizes:
        return [], {}, [], _nothing
    served = ds.served_name(name)
    onnx_path = repo.triton_onnx(served, version)
    torchscript_path = repo.edge_dir(name) / "model_dynamic.pt"
    reason = ds.unsupported_reason(architecture)
    if reason is not None:
        skipped = {
            "onnx_dynamic": ExportRecord(
                format="onnx_dynamic",
                path=onnx_path.relative_to(repo.root).as_posix(),
                status="skipped",
                reason=reason,
            ),
            "torchscript_dynamic": ExportRecord(
                format="torchscript_dynamic",
                path=torchscript_path.relative_to(repo.root).as_posix(),
                status="skipped",
                reason=reason,
            ),
        }
        return [], skipped, [], _nothing
    ds.check_sizes(architecture, sizes)
    gate_sizes = ds.gate_sizes(training_size, sizes)
    sized = SizedEvaluation(reference_model, data_path, training_size, val_resize)
    example = torch.zeros(2, 3, training_size, training_size)
    min_size = get_entry(architecture).min_image_size

    def build_onnx(staging: Path) -> Path:
        export_onnx_dynamic(exportable, example, staging / "model_dynamic.onnx", args.opset, min_size)
        return staging / "model_dynamic.onnx"

    def build_torchscript(staging: Path) -> Path:
        export_torchscript(exportable, example, staging / "model_dynamic.pt")
        return staging / "model_dynamic.pt"

    common = {"dynamic_axes": ["batch", "height", "width"], "traced_at": training_size}
    steps = [
        ExportStep(
            "onnx_dynamic",
            "onnx_dynamic",
            build=build_onnx,
            evaluate=lambda path: gated_evaluation(
                "onnx_dynamic", onnx_runner(path), sized, gate_sizes, args.min_agreement, args.max_abs_diff
            ),
            destination=onnx_path,
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={
                **common,
                "opset": args.opset,
                "runtime": "onnxruntime CPUExecutionProvider",
                "triton_model": served,
                "triton_config": repo.triton_config(served).relative_to(repo.root).as_posix(),
            },
        ),
        ExportStep(
            "torchscript_dynamic",
            "torchscript_dynamic",
            build=build_torchscript,
            evaluate=lambda path: gated_evaluation(
                "torchscript_dynamic",
                torchscript_runner(path),
                sized,
                gate_sizes,
                args.min_agreement,
                args.max_abs_diff,
            ),
            destination=torchscript_path,
            min_agreement=args.min_agreement,
            max_abs_diff=args.max_abs_diff,
            details={**common, "runtime": "torch.jit (frozen trace)"},
        ),
    ]

    def write_configs() -> None:
        ds.write_triton_config(repo, triton_spec, served, layout="NCHW")

    return steps, {}, [repo.triton_version_dir(served, version)], write_configs


def _nothing() -> None:
    """No dynamic export, no config to write."""


# -- dynamic-bench ------------------------------------------------------------------------------------------
def compile_counts(
    model: nn.Module,
    sizes: list[int],
    dynamic: bool | None,
    backend: str,
    references: dict[int, dict[str, np.ndarray]],
) -> ds.CompileCounts:
    """torch.compile(model, dynamic=...) called once per size in order: Dynamo's graph count, the
    recompiles, the time of the calls that compiled, and whether the compiled answers match eager."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    reasons = _RecompileReasons()
    compiled = torch.compile(model, dynamic=dynamic, backend=backend)
    with reasons:
        return _compile_over_sizes(compiled, sizes, dynamic, references, counters, reasons.found)


class _RecompileReasons(logging.Handler):
    """The guard failures Dynamo logs on its ``recompiles`` artifact (``TORCH_LOGS=recompiles``)."""

    LOGGER = "torch._dynamo.guards.__recompiles"

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        failures = [
            line.strip()[2:] for line in record.getMessage().splitlines() if line.strip().startswith("- ")
        ]
        # "0/0: 2 <= x.size()[2] <= 32  # return F.conv2d(...": the guard, without the source comment.
        self.found.append(failures[0].split("  #")[0] if failures else record.getMessage().splitlines()[0])

    def __enter__(self) -> _RecompileReasons:
        torch._logging.set_logs(recompiles=True)
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)
        torch._logging.set_logs()


def _compile_over_sizes(
    compiled: Callable,
    sizes: list[int],
    dynamic: bool | None,
    references: dict[int, dict[str, np.ndarray]],
    counters: Any,
    reasons: list[str],
) -> ds.CompileCounts:
    first_calls: list[float] = []
    compile_seconds, matches, total = 0.0, 0, 0
    try:
        for size in sizes:
            before = counters["stats"]["unique_graphs"]
            reference = references[size]
            batch = torch.from_numpy(reference["images"][:8])
            start = time.perf_counter()
            with torch.inference_mode():
                logits = compiled(batch).numpy()
            elapsed = time.perf_counter() - start
            first_calls.append(round(elapsed, 3))
            if counters["stats"]["unique_graphs"] > before:
                compile_seconds += elapsed
            matches += int((logits.argmax(axis=1) == reference["eager"][:8].argmax(axis=1)).sum())
            total += len(batch)
    except Exception as exc:  # a compiler failure is a result to report, not a crash of the bench
        return ds.CompileCounts(
            dynamic=dynamic,
            frames_compiled=int(counters["stats"]["unique_graphs"]),
            recompiles=max(0, int(counters["stats"]["unique_graphs"]) - 1),
            compile_seconds=compile_seconds,
            first_call_seconds=first_calls,
            recompile_reasons=reasons,
            error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )
    graphs = int(counters["stats"]["unique_graphs"])
    return ds.CompileCounts(
        dynamic=dynamic,
        frames_compiled=graphs,
        recompiles=max(0, graphs - 1),
        compile_seconds=round(compile_seconds, 3),
        first_call_seconds=first_calls,
        recompile_reasons=reasons,
        accuracy_top1_match=matches / total if total else None,
    )


def run_bench(args: argparse.Namespace) -> Path:
    """``dynamic-bench``: measure the dynamic exports of the run's model over ``args.sizes``; returns
    the results file."""
    from trainer_pt.export import environment, load_trained

    torch.set_num_threads(args.threads)
    trained = load_trained(Path(args.run_dir))
    name = model_name("pytorch", trained.architecture)
    repo = ModelRepository(Path(args.model_repository))
    out = Path(args.out) if args.out else repo.root.parent / ds.RESULTS_DIR
    sizes = ds.gate_sizes(trained.image_size, args.sizes)
    result = ds.DynamicBenchResult(
        model=name,
        framework="pytorch",
        architecture=trained.architecture,
        training_size=trained.image_size,
        sizes=sorted(sizes),
        environment={**environment(), "compile_backend": args.compile_backend, "threads": str(args.threads)},
        load_average=ds.load_average(),
    )
    reason = ds.unsupported_reason(trained.architecture)
    if reason is not None:
        result.skipped = reason
        return ds.write_results(out / f"{name}.json", result)
    ds.check_sizes(trained.architecture, sizes)
    manifest = load_manifest(repo.manifest_path(name))
    record = manifest.exports.get("onnx_dynamic")
    if record is None or record.status != "ok":
        raise ImgbenchError(
            f"{repo.manifest_path(name)} has no onnx_dynamic export; export with --dynamic-sizes first"
        )
    dynamic_onnx = repo.root / record.path
    ts_record = manifest.exports.get("torchscript_dynamic")
    data_path = Path(args.data_path or trained.config["data_path"])
    sized = SizedEvaluation(
        trained.model, data_path, trained.image_size, trained.config.get("val_resize_size")
    )
    references: dict[int, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="dynamic-bench-") as scratch:
        for size in sorted(sizes):
            images, labels, eager = sized.at(size)
            if args.limit:
                images, labels, eager = images[: args.limit], labels[: args.limit], eager[: args.limit]
            references[size] = {"images": images, "eager": eager}
            example = torch.zeros(2, 3, size, size)
            fixed_onnx = Path(scratch) / f"fixed_{size}.onnx"
            _export_fixed_onnx(trained.model, example, fixed_onnx, args.opset)
            runtimes: dict[str, tuple[Callable, Callable]] = {
                "onnxruntime": (
                    onnx_runner(dynamic_onnx, args.threads),
                    onnx_runner(fixed_onnx, args.threads),
                )
            }
            if ts_record is not None and ts_record.status == "ok":
                fixed_ts = Path(scratch) / f"fixed_{size}.pt"
                export_torchscript(trained.model, example, fixed_ts)
                runtimes["torchscript"] = (
                    torchscript_runner(repo.root / ts_record.path),
                    torchscript_runner(fixed_ts),
                )
            for runtime, (dynamic_run, fixed_run) in runtimes.items():
                row = ds.measure_size(
                    size, runtime, dynamic_run, fixed_run, images, labels, args.latency_runs, args.threads
                )
                ds.log_size_result(log, row)
                result.rows.append(row)
    # Written now and after each compile mode: inductor on a loaded CPU can take longer than the
    # caller waits, and a killed run keeps what it measured.
    ds.write_results(out / f"{name}.json", result)
    if args.compile_backend != "none":
        for dynamic in (True, False):
            counts = compile_counts(trained.model, sorted(sizes), dynamic, args.compile_backend, references)
            log.info(
                "torch.compile(dynamic=%s, backend=%s) over %s px: %d graph(s), %d recompile(s), "
                "%.1f s compiling%s",
                dynamic,
                args.compile_backend,
                sorted(sizes),
                counts.frames_compiled,
                counts.recompiles,
                counts.compile_seconds,
                f" ({counts.error})" if counts.error else "",
            )
            result.compile.append(counts)
            ds.write_results(out / f"{name}.json", result)
    result.load_average += ds.load_average()
    path = ds.write_results(out / f"{name}.json", result)
    log.info("wrote %s", path)
    return path


def _export_fixed_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    from trainer_pt.export import export_onnx

    export_onnx(model, example, path, opset)
