"""The model manifest: everything a server, the load generator or the report needs about one model.

A trainer writes it last and atomically, so a manifest on disk means every export it lists is complete.
Readers get a ``ManifestError`` naming the file and the field for anything missing or malformed.

    >>> from imgbench.manifest import load_manifest
    >>> manifest = load_manifest(repo.manifest_path("pt_resnet18"))   # doctest: +SKIP
    >>> manifest.input.shape                                          # doctest: +SKIP
    [None, 3, 64, 64]
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imgbench.atomic import atomic_write_text
from imgbench.errors import ManifestError
from imgbench.paths import FRAMEWORK_PREFIXES, MODEL_NAME_PATTERN

SCHEMA_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Strict(BaseModel):
    # Unknown keys are a writer's bug or a newer schema: fail loudly instead of dropping data.
    model_config = ConfigDict(extra="forbid", frozen=False)


class InputSpec(_Strict):
    name: str = Field(min_length=1, description="Input tensor name every server expects, e.g. 'image'.")
    shape: list[int | None] = Field(
        description="With the batch dimension first as null, e.g. [null, 3, 64, 64]."
    )
    layout: Literal["NCHW", "NHWC"]
    dtype: Literal["float32", "float16", "uint8"] = "float32"

    @field_validator("shape")
    @classmethod
    def _batch_first_and_dims_positive(cls, shape: list[int | None]) -> list[int | None]:
        if len(shape) != 4:
            raise ValueError(f"image input shape must have 4 dimensions, got {shape}")
        if any(d is not None and d <= 0 for d in shape):
            raise ValueError(f"dimensions must be positive or null (dynamic), got {shape}")
        return shape

    @model_validator(mode="after")
    def _channels_match_layout(self) -> InputSpec:
        channels = self.shape[1] if self.layout == "NCHW" else self.shape[3]
        if channels not in (1, 3):
            raise ValueError(
                f"layout {self.layout} puts {channels} channels at the channel axis of {self.shape}"
            )
        return self

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of one image."""
        h, w = (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])
        if h is None or w is None:
            raise ManifestError(f"input {self.name!r} has a dynamic image size {self.shape}")
        return h, w


class Normalization(_Strict):
    """x = (pixel / 255 - mean) / std, per channel."""

    mean: list[float] = Field(default_factory=lambda: list(IMAGENET_MEAN), min_length=1, max_length=3)
    std: list[float] = Field(default_factory=lambda: list(IMAGENET_STD), min_length=1, max_length=3)

    @field_validator("std")
    @classmethod
    def _std_positive(cls, std: list[float]) -> list[float]:
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std}")
        return std


class DatasetRef(_Strict):
    name: str
    path: str = Field(description="ImageFolder root as the trainer saw it.")
    eval_split: str = "val"
    num_train: int = Field(ge=0)
    num_eval: int = Field(ge=0)
    image_size: int = Field(gt=0, description="Side length the model was trained at.")


class EpochRecord(_Strict):
    epoch: int = Field(ge=1)
    train_loss: float
    val_loss: float
    top1: float = Field(ge=0, le=1)
    top5: float = Field(ge=0, le=1)
    seconds: float = Field(ge=0)
    images_per_second: float = Field(ge=0)
    peak_memory_bytes: int = Field(ge=0)
    lr: float | None = None


REPEATS_SCHEMA_VERSION = 1


class SeedFigures(_Strict):
    """One seed's run of ``--repeats N``: the figures the report compares across seeds."""

    seed: int
    epochs: int = Field(ge=0)
    top1: float = Field(ge=0, le=1, description="Best validation top-1 of this seed's run.")
    seconds_per_epoch: float = Field(ge=0, description="Mean over epochs after the first (warm-up).")
    images_per_second: float = Field(ge=0, description="Mean over epochs after the first.")
    peak_memory_bytes: int = Field(ge=0)


class TrainingRepeats(_Strict):
    """``--repeats N``: the same recipe trained once per seed (``<output-dir>/seed-<seed>``); the
    manifest's model is the first seed's. Versioned on its own, so it can grow without the manifest's."""

    schema_version: Literal[1] = REPEATS_SCHEMA_VERSION
    per_seed: list[SeedFigures] = Field(min_length=1)

    @field_validator("per_seed")
    @classmethod
    def _seeds_unique(cls, per_seed: list[SeedFigures]) -> list[SeedFigures]:
        seeds = [row.seed for row in per_seed]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"each seed once, got seeds {seeds}")
        return per_seed

    def values(self, figure: str) -> list[float]:
        """One value per seed of ``figure`` (a ``SeedFigures`` field), in seed order."""
        if figure not in SeedFigures.model_fields or figure == "seed":
            raise ManifestError(f"unknown repeat figure {figure!r}; known: {', '.join(SEED_FIGURES)}")
        return [float(getattr(row, figure)) for row in self.per_seed]


SEED_FIGURES = ("top1", "seconds_per_epoch", "images_per_second", "peak_memory_bytes")


class CompiledCheck(_Strict):
    """The compiled model against the eager one, on the evaluation split (``imgbench.compiled_check``):
    ``torch.compile`` (trainer-pt ``--compile``) or XLA (trainer-tf ``--jit-compile``), judged by the
    export gate's thresholds. Optional in ``TrainingFigures``: runs without a compiler have none."""

    compiler: str = Field(
        description="What ran, e.g. 'torch.compile(mode=max-autotune)', 'XLA (jit_compile)'."
    )
    stage: Literal["train", "export"] = Field(description="Checked after training or by the export command.")
    n: int = Field(ge=1, description="Evaluation images compared.")
    top1_agreement: float = Field(ge=0, le=1)
    max_abs_logit_diff: float = Field(ge=0)
    eager_accuracy: float | None = Field(default=None, ge=0, le=1)
    compiled_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_agreement: float = Field(ge=0, le=1, description="The gate: least top-1 agreement.")
    max_abs_diff: float | None = Field(default=None, ge=0, description="The gate: largest |Δlogit|.")
    passed: bool
    reason: str | None = Field(default=None, description="The gate's message when it failed.")
    compile_seconds: float | None = Field(
        default=None, ge=0, description="The compiled model's first batch: compilation plus one run."
    )


class TrainingFigures(_Strict):
    epochs: int = Field(ge=0)
    best_epoch: int = Field(ge=0)
    top1: float = Field(ge=0, le=1, description="Best validation top-1 (the exported weights).")
    top5: float = Field(ge=0, le=1)
    seconds_per_epoch: float = Field(ge=0, description="Mean over epochs.")
    images_per_second: float = Field(ge=0, description="Mean training throughput.")
    peak_memory_bytes: int = Field(ge=0)
    memory_kind: Literal["cpu_rss", "cuda_max_allocated", "gpu_peak"] = "cpu_rss"
    device: str
    parameters: int = Field(ge=0)
    recipe: dict[str, object] = Field(default_factory=dict, description="Resolved training configuration.")
    history: list[EpochRecord] = Field(default_factory=list)
    repeats: TrainingRepeats | None = Field(
        default=None, description="Every seed's figures when trained with --repeats N (N ≥ 2); else None."
    )
    compiled_check: CompiledCheck | None = Field(
        default=None,
        description="Compiled vs eager on the eval split (--compile / --jit-compile); else None.",
    )


class ExportRecord(_Strict):
    """One export and its validation against the framework model on the evaluation split."""

    format: str = Field(description="e.g. torchscript, onnx, onnx_int8, savedmodel, tflite_fp32, tensorrt.")
    path: str = Field(description="Relative to the model repository root.")
    status: Literal["ok", "skipped", "failed"] = "ok"
    reason: str | None = Field(default=None, description="Why it was skipped or failed.")
    size_bytes: int | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=0, description="Images compared.")
    top1_agreement: float | None = Field(default=None, ge=0, le=1)
    max_abs_logit_diff: float | None = Field(default=None, ge=0)
    accuracy: float | None = Field(default=None, ge=0, le=1)
    latency_ms_per_image: float | None = Field(default=None, ge=0)
    details: dict[str, object] = Field(default_factory=dict)


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    model: str
    framework: Literal["pytorch", "tensorflow"]
    framework_version: str
    architecture: str
    version: int = Field(ge=1)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    input: InputSpec
    output_names: list[str] = Field(min_length=1, description="First one is the logits.")
    class_names: list[str] = Field(min_length=2)
    normalization: Normalization = Field(default_factory=Normalization)
    dataset: DatasetRef
    training: TrainingFigures
    exports: dict[str, ExportRecord] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict, description="Versions, hardware.")

    @field_validator("model")
    @classmethod
    def _model_name(cls, model: str) -> str:
        if not MODEL_NAME_PATTERN.match(model):
            raise ValueError(f"model name {model!r} is not '<pt|tf>_<architecture>'")
        return model

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        expected = f"{FRAMEWORK_PREFIXES[self.framework]}_{self.architecture}"
        if self.model != expected:
            raise ValueError(f"model {self.model!r} does not match framework/architecture ({expected!r})")
        expected_layout = "NCHW" if self.framework == "pytorch" else "NHWC"
        if self.input.layout != expected_layout:
            raise ValueError(
                f"{self.framework} models take {expected_layout}, manifest says {self.input.layout}"
            )
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def logits_name(self) -> str:
        return self.output_names[0]


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Validate and write atomically (temp file, then rename)."""
    validated = Manifest.model_validate(manifest.model_dump())
    atomic_write_text(Path(path), validated.model_dump_json(indent=2) + "\n")


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest; ``ManifestError`` names the file and what is wrong."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"no manifest at {path}: the model was never exported there, or its export did not finish"
        ) from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ManifestError(
            f"manifest {path} has schema_version={data.get('schema_version')!r}; "
            f"this imgbench reads version {SCHEMA_VERSION}"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ManifestError(f"manifest {path} is malformed: {problems}") from None
