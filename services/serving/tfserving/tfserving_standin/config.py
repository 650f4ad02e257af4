"""The stand-in's configuration in TF Serving's own formats: models.config (ModelServerConfig text
proto) and the batching parameters file (BatchingParameters text proto)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclass(frozen=True)
class ModelEntry:
    name: str
    base_path: Path


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 1
    max_enqueued_batches: int = 64


def models_config_text(models: dict[str, Path]) -> str:
    """models.config listing ``{name: base_path}``, exactly as tensorflow_model_server reads it."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in sorted(models.items()):
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = str(base_path)
        entry.model_platform = "tensorflow"
        entry.model_version_policy.latest.num_versions = 1
    return text_format.MessageToString(config)


def read_models_config(path: Path) -> list[ModelEntry]:
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    entries = []
    for entry in config.model_config_list.config:
        base = Path(entry.base_path)
        # Relative base paths are relative to the config file (tensorflow_model_server: to its cwd).
        entries.append(ModelEntry(entry.name, base if base.is_absolute() else (path.parent / base).resolve()))
    if not entries:
        raise SystemExit(f"{path} lists no model (model_config_list.config is empty)")
    return entries


# BatchingParameters is not in tensorflow-serving-api; its text format is flat wrappers:
# ``max_batch_size { value: 32 }``.
_WRAPPED_INT = re.compile(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}")


def read_batching(path: Path | None) -> Batching:
    if path is None:
        return Batching()
    found = {key: int(value) for key, value in _WRAPPED_INT.findall(path.read_text())}
    known = {f.name for f in fields(Batching)}
    # Fields TF Serving has that the stand-in does not use (e.g. pad_variable_length_inputs) are ignored.
    return Batching(**{key: value for key, value in found.items() if key in known})
