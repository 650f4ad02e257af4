"""Scenarios of `imgbench demo --scenario NAME`: a story of the seed article, replayed natively.

    .venv/core/bin/imgbench demo --scenario case-study --dry-run     # the plan, validated; runs nothing
    .venv/core/bin/imgbench demo --scenario case-study               # ~20 min on 2 CPU cores

``case-study`` is the article's migration story (3-class medical images at 512×512, p99 1.8 s → 210 ms
with INT8 and torch.compile, top-1 91.2% → 92.9%, ONNX size −40%) on what this machine has: synthetic
3-class 512 px images, ResNet-50 trained briefly by trainer-pt, its ONNX export and the INT8 export
(gated by ``--quantized-min-agreement``) served by Triton as ``pt_resnet50`` and ``pt_resnet50_int8``,
both loaded back to back with the same settings and seed, the INT8 answers compared with fp32's.
The report's "Case study" section puts the article's figures beside this run's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from imgbench.catalog import get_entry
from imgbench.errors import ImgbenchError
from imgbench.paths import model_name, served_variant

SCENARIO_FILE = "scenario.json"
"""Written into the run folder first: the report reads which scenario (and whose figures) it ran."""


@dataclass(frozen=True)
class ArticleFigures:
    """The case study's figures as the article states them (its production system, not this one)."""

    p99_before_ms: float = 1800.0
    p99_after_ms: float = 210.0
    top1_before: float = 0.912
    top1_after: float = 0.929
    onnx_size_change: float = -0.40
    what: str = (
        "3-class medical images at 512×512 on the article's GPUs: PyTorch 2.4 migration, torch.compile "
        "(max-autotune) in training, fused SGD, INT8 (PyTorch FX) validation pipeline"
    )


ARTICLE_CASE_STUDY = ArticleFigures()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    classes: int
    image_size: int
    per_class: int
    """Images per class, train and val together (``imgbench data synthetic --per-class``)."""
    val_fraction: float
    architecture: str
    epochs: int
    batch_size: int
    lr: str
    calibration_images: int
    quantized_min_agreement: float
    server: str
    variant: str
    """The served variant measured beside the fp32 model (``imgbench.paths.SERVED_VARIANTS``)."""
    users: tuple[int, ...]
    load_seconds: float
    warmup_seconds: float
    compile: str | None = None
    """trainer-pt ``--compile`` mode; None: eager (see ``compile_note``)."""
    compile_note: str = ""
    article: ArticleFigures = ARTICLE_CASE_STUDY

    @property
    def train_images(self) -> int:
        return self.classes * (self.per_class - round(self.per_class * self.val_fraction))

    @property
    def val_images(self) -> int:
        return self.classes * round(self.per_class * self.val_fraction)


SCENARIOS: dict[str, Scenario] = {
    "case-study": Scenario(
        name="case-study",
        description="the article's case study: 3 classes at 512 px, ResNet-50, fp32 vs INT8 served on Triton",
        classes=3,
        image_size=512,
        # 36 train + 12 val images: a ResNet-50 training step at 512 px took 35-56 s for 8 images on this
        # machine's 2 shared cores (5 s per image forward and backward, 6-7 s per image forward alone),
        # so the scenario's ~20 min hold 2 epochs of 36 images, two exports' checks and two load runs.
        per_class=16,
        val_fraction=0.25,
        architecture="resnet50",
        epochs=2,
        batch_size=4,
        # 0.00625 at batch 4 (the trainers scale --lr from a global batch of 256; 4× the standard 0.1),
        # stepped per optimizer step. Measured: 0.04 (--lr 2.56) diverged (train loss 21, val top-1 at
        # chance, logits so large that TorchScript's max |Δlogit| of 8 failed the export gate).
        lr="0.4",
        # The calibrator holds every tensor of every calibration image (hundreds of MB each at 512 px).
        calibration_images=12,
        # Gated like any INT8 export, a little lower than the default 0.9: 12 val images make each
        # disagreement 8 points, and two would fail a barely trained model's export at 0.9.
        quantized_min_agreement=0.8,
        server="triton",
        variant="int8",
        users=(1,),
        load_seconds=60.0,
        warmup_seconds=5.0,
        compile=None,
        compile_note=(
            "eager: torch.compile of a training step did not finish within 7 min on these cores "
            "(docs/benchmarks.md, trainer-pt bench), longer than this scenario's whole training; "
            "the article compiled its training (max-autotune, GPUs), which changes training speed, "
            "not the served models measured here"
        ),
    ),
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ImgbenchError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}") from None


@dataclass(frozen=True)
class LoadRun:
    run_id: str
    model: str
    args: list[str]
    """The load generator's arguments (after the stack runner's target and repository)."""


@dataclass(frozen=True)
class ScenarioPlan:
    """Everything a scenario will do, resolved against a run folder (what ``--dry-run`` prints)."""

    scenario: Scenario
    run_dir: Path
    stages: tuple[str, ...]
    dataset: dict[str, object]
    model: str
    served_models: tuple[str, ...]
    train_args: list[str]
    load_runs: tuple[LoadRun, ...]

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data" / "synthetic"

    @property
    def model_repository(self) -> Path:
        return self.run_dir / "model-repository"

    def describe(self) -> dict[str, object]:
        return {
            "scenario": self.scenario.name,
            "run_dir": str(self.run_dir),
            "stages": list(self.stages),
            "dataset": self.dataset,
            "model": self.model,
            "served_models": list(self.served_models),
            "train_args": self.train_args,
            "load_runs": [asdict(run) for run in self.load_runs],
            "settings": {k: v for k, v in asdict(self.scenario).items() if k != "article"},
            "article": asdict(self.scenario.article),
        }


STAGES = ("dataset", "train-pt", "serve", "load", "report")


def plan_scenario(name: str, run_dir: Path) -> ScenarioPlan:
    """The validated plan of scenario ``name`` in ``run_dir``; raises ``ImgbenchError`` naming what is
    wrong (an unknown scenario, an architecture not in the catalog, a split without images)."""
    scenario = get_scenario(name)
    get_entry(scenario.architecture)  # an unknown architecture fails here, before anything runs
    if scenario.train_images < scenario.classes or scenario.val_images < scenario.classes:
        raise ImgbenchError(
            f"scenario {name!r}: {scenario.per_class} images per class at val fraction "
            f"{scenario.val_fraction} leaves a split without every class"
        )
    if scenario.calibration_images > scenario.train_images:
        raise ImgbenchError(
            f"scenario {name!r}: {scenario.calibration_images} calibration images, only "
            f"{scenario.train_images} training images"
        )
    run_dir = Path(run_dir)
    model = model_name("pytorch", scenario.architecture)
    variant = served_variant(model, scenario.variant)
    data_dir = run_dir / "data" / "synthetic"
    train_args = [
        "train", "--data-path", str(data_dir), "--model", scenario.architecture,
        "--image-size", str(scenario.image_size), "--epochs", str(scenario.epochs),
        "-b", str(scenario.batch_size), "--lr", scenario.lr, "--lr-schedule", "step",
        "--crop-scale-min", "0.5", "-j", "0", "--seed", "0",
        "--calibration-images", str(scenario.calibration_images),
        "--quantized-min-agreement", str(scenario.quantized_min_agreement),
        *(["--compile", scenario.compile] if scenario.compile else []),
        "--output-dir", str(run_dir / "train" / "pt"),
        "--model-repository", str(run_dir / "model-repository"),
    ]  # fmt: skip
    users = ",".join(str(u) for u in scenario.users)
    step = scenario.load_seconds + scenario.warmup_seconds
    # Identical settings for both: the same pool (every val image, the misclassified kept, so accuracy
    # under load is measured), the same seed, closed loop; INT8's answers also checked against fp32's.
    common = (
        f"--headless --users-steps {users} --step-duration {step:g} --warmup {scenario.warmup_seconds:g} "
        f"--drain 2 --images {scenario.val_images} --keep-misclassified --seed 0 "
        f"--results-dir {run_dir / 'load'} --only-summary"
    ).split()
    load_runs = (
        LoadRun(f"case-study-{model}", model, ["--model", model, *common, "--run-id", f"case-study-{model}"]),
        LoadRun(
            f"case-study-{variant}",
            variant,
            ["--model", variant, "--reference-model", model, *common, "--run-id", f"case-study-{variant}"],
        ),
    )
    dataset = {
        "kind": "synthetic",
        "classes": scenario.classes,
        "image_size": scenario.image_size,
        "input_shape": [3, scenario.image_size, scenario.image_size],
        "train_images": scenario.train_images,
        "val_images": scenario.val_images,
        "path": str(data_dir),
    }
    return ScenarioPlan(scenario, run_dir, STAGES, dataset, model, (model, variant), train_args, load_runs)


def write_scenario_file(plan: ScenarioPlan) -> Path:
    path = plan.run_dir / SCENARIO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.describe(), indent=2) + "\n", encoding="utf-8")
    return path


def read_scenario_file(run_dir: Path) -> dict[str, object] | None:
    path = Path(run_dir) / SCENARIO_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ImgbenchError(f"{path} is not a scenario file: {exc}") from None
