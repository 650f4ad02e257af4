"""`imgbench demo`: the whole pipeline natively, one stage after another, on the digits dataset.

    dataset → train-pt → train-tf → serve (TorchServe, Triton, TF Serving stand-in, Prometheus,
    Pushgateway) → load (each backend) → report → everything stopped

Each stage's output goes to RUN_DIR/logs/<stage>.log and is echoed with the stage's name; a failing stage
stops the demo with the stage named, the servers stopped and the log's path and tail printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from imgbench import servers
from imgbench.errors import ImgbenchError
from imgbench.paths import project_root, venv_bin
from imgbench.stack.ports import PortMap
from imgbench.stack.runner import Stack, log_tail

console = Console()
PROGRESS_ECHO_S = 5.0  # a progress bar's latest state, at most this often


class StageFailed(ImgbenchError):
    """A demo stage failed; the message names it and its log."""


@dataclass
class DemoSettings:
    run_dir: Path
    architecture: str = "mobilenet_v3_small"
    image_size: int = 32
    epochs: int = 6
    batch_size: int = 32
    backends: tuple[str, ...] = field(default_factory=servers.server_names)
    load_seconds: float = 15.0
    warmup_seconds: float = 2.0
    concurrencies: tuple[int, ...] = (1, 4)
    open_loop_rate: float = 20.0
    repeats: int = 1
    """Trainings per framework (seeds 0..N-1) and runs of every load point (load seeds 0..N-1): the
    report's confidence intervals and verdicts need at least 2."""
    edge_exports: bool = True
    """INT8 ONNX and TFLite; off in the smallest test run, whose one-epoch model is too unsettled for
    the quantized exports' agreement gate."""
    dynamic_sizes: str | None = None
    """Also export each model with a dynamic image size, gated at these sizes (``--dynamic-sizes``)."""
    lr: str = "0.16"
    """At a global batch of 256 (both trainers scale it linearly). Measured: Keras diverges on digits at
    trainer-pt's test rate (1.6, peak 0.2); 0.16 trains both."""
    ports: PortMap | None = None
    """None: the standard ports (so a local Grafana/Prometheus setup finds them); tests pass free ports."""
    stack: Stack | None = field(default=None, repr=False)
    report_path: Path | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data" / "digits"

    @property
    def model_repository(self) -> Path:
        return self.run_dir / "model-repository"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[DemoSettings], None]


def default_run_dir() -> Path:
    return Path("runs") / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def run_logged(
    stage: str, argv: list[str], settings: DemoSettings, env: dict[str, str] | None = None
) -> None:
    """Run ``argv``, echo its lines prefixed with the stage, keep them in the stage's log, fail clearly."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"{stage}.log"
    last_progress_echo = 0.0
    with log_path.open("ab") as log_file:
        log_file.write(f"$ {' '.join(argv)}\n".encode())
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=project_root(),
            env={**os.environ, **(env or {})},
        )
        assert process.stdout is not None
        pending = b""
        # Read raw chunks, not lines: progress bars redraw with \r and never end a line mid-epoch.
        while chunk := os.read(process.stdout.fileno(), 65536):
            log_file.write(chunk)
            log_file.flush()
            pieces = re.split(rb"(\r|\n)", pending + chunk)
            pending = pieces.pop()
            for text, terminator in zip(pieces[::2], pieces[1::2], strict=True):
                line = text.decode(errors="replace").strip()
                now = time.monotonic()
                if not line or (terminator == b"\r" and now - last_progress_echo < PROGRESS_ECHO_S):
                    continue
                if terminator == b"\r":
                    last_progress_echo = now
                console.print(Text.assemble((f"{stage:>9} | ", "dim"), line), soft_wrap=True)
        returncode = process.wait()
    if returncode != 0:
        raise StageFailed(
            f"stage '{stage}' failed (exit {returncode}); log {log_path}, last lines:\n"
            f"{log_tail(log_path, 15)}"
        )


def _python(venv: str) -> str:
    python = venv_bin(venv) / "python"
    if not python.exists():
        raise StageFailed(f"venv {venv!r} is missing ({python}): run `make setup`")
    return str(python)


def _trainer_env(service: str) -> dict[str, str]:
    return {"PYTHONPATH": str(project_root() / "services" / service), "PYTHONUNBUFFERED": "1"}


# One recipe for both frameworks, so the comparison is of frameworks: crops keep at least half of a
# 32-px digit (smaller crops are stroke fragments), no flips (digits are not mirror-symmetric),
# batch-norm momentum 0.1 in PyTorch's convention, the same learning rate and seed.
SHARED_RECIPE = ["--crop-scale-min", "0.5", "--hflip", "0", "--bn-momentum", "0.1", "--seed", "0"]


def stage_dataset(settings: DemoSettings) -> None:
    from imgbench.data.digits import write_digits

    write_digits(settings.data_dir, size=settings.image_size, force=True)
    console.print(f"[dim]  dataset |[/dim] digits written to {settings.data_dir}")


def stage_train_pt(settings: DemoSettings) -> None:
    run_logged(
        "train-pt",
        [
            _python("pt"), "-m", "trainer_pt", "train", "--data-path", str(settings.data_dir),
            "--model", settings.architecture, "--image-size", str(settings.image_size),
            "--epochs", str(settings.epochs), "-b", str(settings.batch_size), "--lr", settings.lr,
            "-j", "0", *SHARED_RECIPE, "--repeats", str(settings.repeats),
            # Edge exports: INT8 ONNX (default) and TFLite fp32/int8 (--tflite, litert-torch).
            *(["--tflite"] if settings.edge_exports else ["--skip-int8"]),
            *(["--dynamic-sizes", settings.dynamic_sizes] if settings.dynamic_sizes else []),
            "--output-dir", str(settings.run_dir / "train" / "pt"),
            "--model-repository", str(settings.model_repository),
        ],
        settings,
        _trainer_env("trainer-pt"),
    )  # fmt: skip


def stage_train_tf(settings: DemoSettings) -> None:
    run_logged(
        "train-tf",
        [
            _python("tf"), "-m", "trainer_tf", "train", "--data-path", str(settings.data_dir),
            "--model", settings.architecture, "--image-size", str(settings.image_size),
            "--epochs", str(settings.epochs), "-b", str(settings.batch_size), "--lr", settings.lr,
            *SHARED_RECIPE, "--repeats", str(settings.repeats),
            *([] if settings.edge_exports else ["--skip-tflite"]),
            *(["--dynamic-sizes", settings.dynamic_sizes] if settings.dynamic_sizes else []),
            "--output-dir", str(settings.run_dir / "train" / "tf"),
            "--model-repository", str(settings.model_repository),
        ],
        settings,
        {**_trainer_env("trainer-tf"), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip


SUPPORT_SERVICES = ("prometheus", "pushgateway")


def stack_services() -> tuple[str, ...]:
    """What the demo starts: Prometheus, the Pushgateway and every registered model server."""
    return (*SUPPORT_SERVICES, *servers.server_names())


def load_cases() -> dict[str, tuple[str, ...]]:
    """Which models each server is measured with: the frameworks its registry entry serves
    (TorchServe PyTorch, the TF Serving stand-in SavedModels, Triton the ONNX export of both)."""
    return {name: spec.frameworks for name, spec in servers.SERVERS.items()}


SERVERS = stack_services()
LOAD_CASES = load_cases()


def stage_serve(settings: DemoSettings) -> None:
    settings.stack = Stack(
        settings.run_dir / "stack", ports=settings.ports, model_repository=settings.model_repository
    )
    settings.stack.up(list(stack_services()))
    for status in settings.stack.status():
        ports = ", ".join(f"{name} {port}" for name, port in status.ports.items())
        console.print(
            f"[dim]    serve |[/dim] {status.name} ready (pid {status.pid}; {ports})", highlight=False
        )


def stage_load(settings: DemoSettings) -> None:
    from imgbench.stack import loadgen as loadgen_service

    stack = settings.stack
    if stack is None:
        raise StageFailed("stage 'load' needs the servers of stage 'serve'")
    users = ",".join(str(u) for u in settings.concurrencies)
    step = settings.load_seconds + settings.warmup_seconds
    cases = load_cases()
    if settings.repeats < 1:
        raise StageFailed(f"stage 'load': repeats must be at least 1, got {settings.repeats}")
    for backend in settings.backends:
        for prefix in cases[backend]:
            model = f"{prefix}_{settings.architecture}"
            for mode_args, label in (
                (f"--users-steps {users}", "closed"),
                (f"--mode open --arrivals poisson --rate {settings.open_loop_rate}", "open"),
            ):
                # --repeats N: each point N times back to back, each with its own seed (image sample,
                # order, Poisson arrivals) and result file; the report's intervals are across them.
                for seed in range(settings.repeats):
                    run_id = f"{backend}-{model}-{label}" + (f"-seed{seed}" if settings.repeats > 1 else "")
                    stack.options[loadgen_service.BACKEND_OPTION] = backend
                    stack.options[loadgen_service.ARGS_OPTION] = (
                        f"--headless --model {model} {mode_args} --step-duration {step} "
                        f"--warmup {settings.warmup_seconds} --drain 2 --images 128 --seed {seed} "
                        f"--results-dir {settings.run_dir / 'load'} --run-id {run_id} --only-summary"
                    )
                    plan = loadgen_service.build(stack.context())
                    run_logged("load", plan.argv, settings, plan.env)


def stage_report(settings: DemoSettings) -> None:
    from imgbench.report.build import build_report

    settings.report_path = build_report(settings.run_dir)


STAGES = (
    Stage("dataset", "digits as an ImageFolder tree", stage_dataset),
    Stage(
        "train-pt", "PyTorch: train, export (TorchScript .mar, ONNX, INT8), validation gates", stage_train_pt
    ),
    Stage(
        "train-tf", "TensorFlow: train, export (SavedModel, ONNX, TFLite), validation gates", stage_train_tf
    ),
    Stage("serve", "TorchServe, Triton, TF Serving stand-in, Prometheus, Pushgateway", stage_serve),
    Stage("load", "Locust: closed loop at each concurrency, then an open-loop rate, per server", stage_load),
    Stage("report", "report.md and plots from manifests and load results", stage_report),
)


def run_demo(settings: DemoSettings, stages: tuple[Stage, ...] = STAGES) -> Path:
    """Run every stage in order; always stop the servers; return the report's path."""
    started = time.monotonic()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    console.rule(f"imgbench demo → {settings.run_dir}")
    try:
        for index, stage in enumerate(stages, start=1):
            console.print(f"[bold]\\[{index}/{len(stages)}] {stage.name}[/bold]: {stage.description}")
            stage_started = time.monotonic()
            try:
                stage.run(settings)
            except StageFailed:
                raise
            except ImgbenchError as exc:
                raise StageFailed(f"stage '{stage.name}' failed: {exc}") from None
            console.print(f"[green]  done[/green] {stage.name} in {time.monotonic() - stage_started:.0f} s")
    finally:
        if settings.stack is not None:
            stopped = settings.stack.down()
            console.print(
                f"stopped: {', '.join(stopped) or 'nothing'} (logs in {settings.stack.run_dir / 'logs'})"
            )
    console.rule(f"demo finished in {time.monotonic() - started:.0f} s")
    return settings.report_path


def print_summary(run_dir: Path) -> None:
    """The demo's last lines: training and serving at a glance, readable in an 80-column log (the
    report has the rest; ``imgbench.report.terminal``)."""
    from imgbench.report.inputs import read_inputs
    from imgbench.report.terminal import LOG_WIDTH, render_summary

    text = render_summary(read_inputs(run_dir), width=min(console.width, LOG_WIDTH))
    console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
