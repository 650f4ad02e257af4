"""Assemble ``triton-python/<model>/`` (python backend + ONNX Runtime) from ``triton/<model>/``
(onnxruntime backend), keeping tensor names and batching, and keep it in sync.

Idempotent and quiet: files are written only when their content changes, so Triton's repository
poll reloads exactly the models (and versions) that really changed.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.triton_config import INTER_OP_KEY, INTRA_OP_KEY, TritonModelSpec, render_config

log = logging.getLogger(__name__)

MODEL_PY = Path(__file__).resolve().parent.parent / "model.py"
TYPE_NAMES = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_UINT8": "uint8"}


@dataclass(frozen=True)
class SyncResult:
    models: list[str]
    changed: list[str]


def python_spec(onnx_config_text: str) -> TritonModelSpec:
    """The python-backend spec with the same names, dims and batching as an onnxruntime config."""
    config = text_format.Parse(onnx_config_text, model_config_pb2.ModelConfig())
    (inp,) = config.input
    (out,) = config.output
    batching = config.dynamic_batching
    # proto3 scalars have no presence: a config *with* a dynamic_batching block means what it says, so
    # a max_queue_delay_microseconds of 0 (no wait) stays 0; only a config without one takes defaults.
    has_batching = config.HasField("dynamic_batching")
    return TritonModelSpec(
        name=config.name,
        input_name=inp.name,
        input_dims=list(inp.dims),
        output_name=out.name,
        num_classes=int(out.dims[-1]),
        input_dtype=TYPE_NAMES[model_config_pb2.DataType.Name(inp.data_type)],
        max_batch_size=config.max_batch_size,
        preferred_batch_sizes=tuple(batching.preferred_batch_size) or TritonModelSpec.preferred_batch_sizes,
        max_queue_delay_us=(
            batching.max_queue_delay_microseconds if has_batching else TritonModelSpec.max_queue_delay_us
        ),
        instance_count=sum(g.count for g in config.instance_group) or 1,
        intra_op_threads=_int_parameter(config, INTRA_OP_KEY, TritonModelSpec.intra_op_threads),
        inter_op_threads=_int_parameter(config, INTER_OP_KEY, TritonModelSpec.inter_op_threads),
    )


def _int_parameter(config: model_config_pb2.ModelConfig, key: str, default: int) -> int:
    value = config.parameters[key].string_value if key in config.parameters else ""
    return int(value) if value else default


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def _link_if_changed(link: Path, target: Path) -> bool:
    if link.is_symlink() and link.resolve() == target.resolve():
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target.resolve())
    return True


def sync(
    repository: ModelRepository, target_root: Path | None = None, config_dir: Path | None = None
) -> SyncResult:
    """Bring ``target_root`` (default: the repository's ``triton-python/``) in line with ``triton/``;
    returns the models and those that changed. A ``config_dir/<model>/config.pbtxt`` (a ready config
    of `imgbench tune`, ``RUN_DIR/best/triton``) replaces the repository's config of that model."""
    source_root = repository.triton_dir
    target_root = target_root or repository.triton_python_dir
    # A model (or version) counts once its manifest is written: trainers write the manifest last. A
    # served variant (<model>_int8, ...) is complete with its base model's manifest and version.
    versions_of = {m: load_manifest(repository.manifest_path(m)).version for m in repository.models()}
    complete = {name: versions_of[base] for name, base in repository.served_triton_models().items()}
    models = sorted(m for m in complete if (source_root / m / "config.pbtxt").is_file())
    model_py = MODEL_PY.read_bytes()
    changed: list[str] = []
    for model in models:
        source, target = source_root / model, target_root / model
        ready = config_dir / model / "config.pbtxt" if config_dir is not None else None
        config_path = ready if ready is not None and ready.is_file() else source / "config.pbtxt"
        touched = _write_if_changed(
            target / "config.pbtxt", render_config(python_spec(config_path.read_text()), "python").encode()
        )
        versions = {
            p.name
            for p in source.iterdir()
            if p.name.isdigit() and int(p.name) <= complete[model] and (p / "model.onnx").exists()
        }
        for version in sorted(versions):
            touched |= _link_if_changed(target / version / "model.onnx", source / version / "model.onnx")
            touched |= _write_if_changed(target / version / "model.py", model_py)
        for stale in [
            p for p in target.iterdir() if p.is_dir() and p.name.isdigit() and p.name not in versions
        ]:
            shutil.rmtree(stale)
            touched = True
        if touched:
            changed.append(model)
    for stale in (
        [p for p in target_root.iterdir() if p.is_dir() and p.name not in models]
        if target_root.is_dir()
        else []
    ):
        shutil.rmtree(stale)
    if changed:
        log.info("triton-python: assembled %s", ", ".join(changed))
    return SyncResult(models, changed)
