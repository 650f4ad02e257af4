"""Loaded SavedModels by name and version, kept current by polling each model's base path the way
tensorflow_model_server does (policy: latest version only): a new integer version folder is loaded
while the old one keeps serving, then the old one is unloaded. No restart."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfserving_standin.batching import Batcher
from tfserving_standin.config import Batching, ModelEntry
from tfserving_standin.metrics import Metrics

log = logging.getLogger(__name__)
SIGNATURE = "serving_default"

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto)
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: list[int | None]


@dataclass
class Servable:
    name: str
    version: int
    path: Path
    function: object
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    batcher: Batcher | None = None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        (input_name,) = self.inputs
        result = self.function(**{input_name: tf.constant(batch)})  # type: ignore[operator]
        return {name: value.numpy() for name, value in result.items()}


def _specs(structure: dict[str, tf.TensorSpec]) -> dict[str, TensorSpec]:
    return {
        name: TensorSpec(name, np.dtype(spec.dtype.as_numpy_dtype), list(spec.shape.as_list()))
        for name, spec in structure.items()
    }


def load_servable(name: str, version: int, path: Path) -> Servable:
    loaded = tf.saved_model.load(str(path))
    if SIGNATURE not in loaded.signatures:
        raise ValueError(f"{path} has no '{SIGNATURE}' signature (found {sorted(loaded.signatures)})")
    function = loaded.signatures[SIGNATURE]
    _, input_structure = function.structured_input_signature
    servable = Servable(
        name, version, path, function, _specs(input_structure), _specs(function.structured_outputs)
    )
    servable._keepalive = loaded  # type: ignore[attr-defined]  # the function needs its object alive
    if len(servable.inputs) != 1:
        raise ValueError(
            f"{path}: the stand-in serves single-input signatures, found {sorted(servable.inputs)}"
        )
    return servable


@dataclass
class ModelState:
    entry: ModelEntry
    current: Servable | None = None
    states: dict[int, int] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


def version_dirs(base_path: Path) -> dict[int, Path]:
    """Integer version folders that hold a complete SavedModel."""
    if not base_path.is_dir():
        return {}
    return {
        int(p.name): p
        for p in base_path.iterdir()
        if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").exists()
    }


class ModelManager:
    def __init__(self, entries: list[ModelEntry], batching: Batching | None, metrics: Metrics) -> None:
        self._models = {entry.name: ModelState(entry) for entry in entries}
        self._batching = batching
        self._metrics = metrics
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def model(self, name: str) -> ModelState | None:
        return self._models.get(name)

    def servable(self, name: str, version: int | None) -> Servable | None:
        state = self._models.get(name)
        current = state.current if state else None
        if current is None or (version is not None and current.version != version):
            return None
        return current

    def refresh(self) -> None:
        """Load each model's newest version if it is not the one serving (one poll)."""
        for state in self._models.values():
            versions = version_dirs(state.entry.base_path)
            if not versions:
                continue
            newest = max(versions)
            if state.current is not None and state.current.version >= newest:
                continue
            if state.errors.get(newest):
                continue  # failed once: don't retry a broken export every poll
            self._load(state, newest, versions[newest])

    def _load(self, state: ModelState, version: int, path: Path) -> None:
        name = state.entry.name
        state.states[version] = LOADING
        started = time.monotonic()
        try:
            servable = load_servable(name, version, path)
        except Exception as exc:
            state.states[version] = END
            state.errors[version] = f"{type(exc).__name__}: {exc}"
            log.error("%s version %s failed to load from %s: %s", name, version, path, exc)
            return
        if self._batching is not None:
            servable.batcher = Batcher(
                servable.run, self._batching, lambda rows: self._metrics.observe_batch(name, rows)
            )
        with self._lock:
            previous, state.current = state.current, servable
            state.states[version] = AVAILABLE
        log.info("%s version %s AVAILABLE (%s) in %.1f s", name, version, path, time.monotonic() - started)
        if previous is not None:
            state.states[previous.version] = END
            if previous.batcher is not None:
                previous.batcher.close()
            log.info("%s version %s unloaded (superseded by %s)", name, previous.version, version)

    def poll_forever(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.refresh()
            except Exception:  # a broken folder must not stop the poller
                log.exception("model poll failed")

    def start_polling(self, interval_s: float) -> None:
        if interval_s > 0:
            threading.Thread(target=self.poll_forever, args=(interval_s,), name="poller", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
