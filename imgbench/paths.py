"""The model repository layout (docs/architecture.md), in one place.

Trainers write it, servers and the load generator read it; nobody builds these paths by hand.

    model-repository/
      manifests/<model>.json                 written last: the model is complete when this exists
      torchserve/<model>.mar
      tfserving/<model>/<version>/           SavedModel
      triton/<model>/config.pbtxt            onnxruntime backend on the CPU (containers)
      triton/<model>/configs/gpu.pbtxt       the GPU server's (--model-config-name=gpu): KIND_GPU, TensorRT EP
      triton/<model>/<version>/model.onnx    (model.plan: reserved; no TensorRT plan is built)
      triton/<model>_<variant>/...           a served variant of the same model (e.g. ``_int8``): its own
                                             Triton model, read with the base model's manifest
      triton-python/<model>/...              python-backend variant native Triton serves
      edge/<model>/{model_fp32,model_dynamic,model_int8}.tflite
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from imgbench.errors import ImgbenchError

MODEL_NAME_PATTERN = re.compile(r"^(pt|tf)_[a-z0-9][a-z0-9_]*$")
FRAMEWORK_PREFIXES = {"pytorch": "pt", "tensorflow": "tf"}
SERVED_VARIANTS = {
    "int8": "the INT8 ONNX export (ONNX Runtime static quantization)",
    "dynamic": "the ONNX export with dynamic image height and width",
}
"""Suffixes of served variants: ``<model>_<variant>`` is another Triton model of the same trained model
(same input spec and classes, hence the same manifest), written by the trainer's export when that
export passed its gate."""


def project_root() -> Path:
    """The checkout this core was installed from (editable installs), or ``IMGBENCH_ROOT``."""
    env = os.environ.get("IMGBENCH_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def venv_bin(service_venv: str) -> Path:
    """``bin/`` of a service's virtual environment, e.g. ``venv_bin("pt") / "python"``."""
    return project_root() / ".venv" / service_venv / "bin"


def model_name(framework: str, architecture: str) -> str:
    """``pt_resnet18`` for ``("pytorch", "resnet18")``."""
    try:
        prefix = FRAMEWORK_PREFIXES[framework]
    except KeyError:
        raise ImgbenchError(
            f"unknown framework {framework!r}; expected one of {sorted(FRAMEWORK_PREFIXES)}"
        ) from None
    return f"{prefix}_{architecture}"


def served_variant(model: str, variant: str) -> str:
    """``pt_resnet18_int8`` for ``("pt_resnet18", "int8")``."""
    if variant not in SERVED_VARIANTS:
        raise ImgbenchError(f"unknown served variant {variant!r}; known: {', '.join(SERVED_VARIANTS)}")
    return f"{check_model_name(model)}_{variant}"


def split_served_variant(name: str) -> tuple[str, str | None]:
    """(base model, variant) of a served name: ``("pt_resnet18", "int8")`` for ``pt_resnet18_int8``,
    ``("pt_resnet18", None)`` for ``pt_resnet18``."""
    for variant in SERVED_VARIANTS:
        base = name.removesuffix(f"_{variant}")
        if base != name and MODEL_NAME_PATTERN.match(base):
            return base, variant
    return name, None


def check_model_name(name: str) -> str:
    if not MODEL_NAME_PATTERN.match(name):
        raise ImgbenchError(
            f"model name {name!r} is not '<pt|tf>_<architecture>' in lower case, e.g. 'pt_resnet18'"
        )
    return name


@dataclass(frozen=True)
class ModelRepository:
    """Paths inside one model repository folder.

    >>> repo = ModelRepository(Path("/tmp/models"))
    >>> repo.triton_onnx("pt_resnet18", 1).as_posix()
    '/tmp/models/triton/pt_resnet18/1/model.onnx'
    """

    root: Path

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    def manifest_path(self, model: str) -> Path:
        """A served variant (``pt_resnet18_int8``) reads its base model's manifest."""
        base, _ = split_served_variant(check_model_name(model))
        return self.manifests_dir / f"{base}.json"

    @property
    def torchserve_dir(self) -> Path:
        return self.root / "torchserve"

    def torchserve_mar(self, model: str) -> Path:
        return self.torchserve_dir / f"{check_model_name(model)}.mar"

    @property
    def tfserving_dir(self) -> Path:
        return self.root / "tfserving"

    def tfserving_model_dir(self, model: str) -> Path:
        return self.tfserving_dir / check_model_name(model)

    def tfserving_version_dir(self, model: str, version: int) -> Path:
        return self.tfserving_model_dir(model) / str(version)

    @property
    def triton_dir(self) -> Path:
        return self.root / "triton"

    def triton_model_dir(self, model: str) -> Path:
        return self.triton_dir / check_model_name(model)

    def triton_config(self, model: str) -> Path:
        return self.triton_model_dir(model) / "config.pbtxt"

    def triton_version_dir(self, model: str, version: int) -> Path:
        return self.triton_model_dir(model) / str(version)

    def triton_onnx(self, model: str, version: int) -> Path:
        return self.triton_version_dir(model, version) / "model.onnx"

    def triton_plan(self, model: str, version: int) -> Path:
        return self.triton_version_dir(model, version) / "model.plan"

    def served_triton_models(self) -> dict[str, str]:
        """Triton model name -> its base model, for every complete model (manifest written) and each of
        its served variants that has a ``triton/<model>_<variant>/config.pbtxt``."""
        served: dict[str, str] = {}
        for model in self.models():
            served[model] = model
            for variant in SERVED_VARIANTS:
                name = f"{model}_{variant}"
                if (self.triton_dir / name / "config.pbtxt").is_file():
                    served[name] = model
        return served

    @property
    def triton_python_dir(self) -> Path:
        """Repository native Triton serves: python-backend models running ONNX Runtime."""
        return self.root / "triton-python"

    def triton_python_model_dir(self, model: str) -> Path:
        return self.triton_python_dir / check_model_name(model)

    def edge_dir(self, model: str) -> Path:
        return self.root / "edge" / check_model_name(model)

    def tflite(self, model: str, variant: str) -> Path:
        """``variant`` is ``fp32``, ``dynamic`` or ``int8``."""
        if variant not in {"fp32", "dynamic", "int8"}:
            raise ImgbenchError(f"unknown TFLite variant {variant!r}; expected fp32, dynamic or int8")
        return self.edge_dir(model) / f"model_{variant}.tflite"

    def versions(self, model: str) -> list[int]:
        """Integer versions present for ``model`` in any versioned layout, ascending."""
        found: set[int] = set()
        for parent in (self.tfserving_model_dir(model), self.triton_model_dir(model)):
            if parent.is_dir():
                found.update(int(p.name) for p in parent.iterdir() if p.is_dir() and p.name.isdigit())
        return sorted(found)

    def next_version(self, model: str) -> int:
        """The version a new training run of ``model`` exports as: one past the newest."""
        existing = self.versions(model)
        return existing[-1] + 1 if existing else 1

    def models(self) -> list[str]:
        """Complete models: those whose manifest exists."""
        if not self.manifests_dir.is_dir():
            return []
        return sorted(p.stem for p in self.manifests_dir.glob("*.json") if MODEL_NAME_PATTERN.match(p.stem))
