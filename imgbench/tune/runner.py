"""One probe of `imgbench tune`, natively: the configuration written into a scratch model repository
(the model's manifest, its exports linked, the server's config files replaced), the server started on
it by the stack runner, one closed-loop point of the load generator (its own process), the server
stopped. A server that fails to start on a configuration rejected it: the probe says so and the
search goes on. Every knob reaches the server through the probe's ready-config folder, the same files
`tune` writes for the best configuration (``imgbench.tune.configs``), which the stack starts the
server with: Triton's config.pbtxt (batching, instances, ORT threads), the stand-in's batching file and
thread flags, TorchServe's environment (torch threads) and, once it is up, its model registered again
with the probe's batching and workers through the management API.

    imgbench tune --server triton --model pt_mobilenet_v3_small --model-repository REPO \\
        --slo-ms 50 --budget-s 300 --knob max_batch_size=1,4,8,16 --knob max_queue_delay_us=500,2000
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from imgbench import servers
from imgbench.errors import ImgbenchError, StackError
from imgbench.load_results import (
    LoadPoint,
    LoadResult,
    LoadResultError,
    TuneSummary,
    load_load_result,
    write_load_result,
)
from imgbench.paths import ModelRepository, project_root, venv_bin
from imgbench.ports import LOOPBACK
from imgbench.stack.model_servers import SERVER_CONFIG_OPTION
from imgbench.stack.ports import free_port_map
from imgbench.stack.runner import Stack
from imgbench.tune.configs import tfserving_batching, triton_config, write_ready_configs
from imgbench.tune.search import Config, KnobRejected, ProbeOutcome, SearchResult, Strategy, search

log = logging.getLogger(__name__)
# Knobs a native probe sets: every one, through the ready-config folder the probe's server starts with
# (`stack up --server-config`): Triton's config.pbtxt (ORT threads among its parameters), the
# stand-in's batching file and thread flags, TorchServe's environment (torch threads) and a
# registration through its management API (batch size, max batch delay, workers).
NATIVE_KNOBS = {
    "triton": (
        "max_batch_size",
        "preferred_batch_size",
        "max_queue_delay_us",
        "instance_count",
        "ort_threads",
    ),
    "tfserving": (
        "max_batch_size",
        "batch_timeout_micros",
        "num_batch_threads",
        "intra_op_threads",
        "inter_op_threads",
    ),
    "torchserve": ("batch_size", "max_batch_delay_ms", "workers", "torch_threads"),
}


@dataclass
class TuneSettings:
    server: str
    model: str
    model_repository: Path
    run_dir: Path
    slo_ms: float = 100.0
    budget_s: float = 300.0
    strategy: Strategy = "hill-climb"
    space: dict[str, list[int | float]] | None = None
    """knob -> values to try; None: every natively settable knob's registry candidates."""
    users: int = 4
    """Closed loop: concurrent users per probe (when ``rate`` is None)."""
    rate: float | None = None
    """Open loop: each probe is a Poisson arrival stream at this many requests/s instead."""
    batch_size: int = 1
    seconds: float = 10.0
    warmup_s: float = 3.0
    dataset: Path | None = None
    loadgen_cpus: frozenset[int] | None = None
    """Pin each probe's load generator to these cores (the bench keeps it off the server's); None: any."""


def default_space(server: str) -> dict[str, list[int | float]]:
    spec = servers.get_server(server)
    settable = NATIVE_KNOBS.get(server, ())
    return {k.name: list(k.candidates or (k.default,)) for k in spec.knobs if k.name in settable}


def defaults_of(server: str) -> Config:
    return {
        k.name: k.default for k in servers.get_server(server).knobs if k.name in NATIVE_KNOBS.get(server, ())
    }


def scratch_repository(settings: TuneSettings, config: Config, root: Path) -> Path:
    """A model repository holding only ``settings.model``, with ``config`` in the server's files."""
    source = ModelRepository(settings.model_repository.resolve())
    target = ModelRepository(root)
    target.manifest_path(settings.model).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.manifest_path(settings.model), target.manifest_path(settings.model))
    model = settings.model
    if settings.server == "triton":
        model_dir = target.triton_dir / model
        model_dir.mkdir(parents=True, exist_ok=True)
        for entry in (source.triton_dir / model).iterdir():
            if entry.name != "config.pbtxt":
                (model_dir / entry.name).symlink_to(entry.resolve())
        text = source.triton_config(model).read_text()
        (model_dir / "config.pbtxt").write_text(triton_config(text, config))
    elif settings.server == "tfserving":
        target.tfserving_dir.mkdir(parents=True, exist_ok=True)
        (target.tfserving_dir / model).symlink_to(source.tfserving_model_dir(model).resolve())
        (target.tfserving_dir / "batching_parameters.txt").write_text(tfserving_batching(config))
    elif settings.server == "torchserve":
        target.torchserve_dir.mkdir(parents=True, exist_ok=True)
        target.torchserve_mar(model).symlink_to(source.torchserve_mar(model).resolve())
    else:
        raise ImgbenchError(
            f"native tuning of {settings.server!r} is not built yet (supported: {', '.join(NATIVE_KNOBS)})"
        )
    return root


def short_stack_dir(probe_dir: Path) -> Path:
    """The probe's stack in a short temporary folder, linked from ``probe_dir/stack``: TorchServe's
    workers bind Unix sockets under the stack folder, and a socket path may not exceed 107 bytes."""
    stack_dir = Path(tempfile.mkdtemp(prefix="imgbench-tune-"))
    link = probe_dir / "stack"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(stack_dir, target_is_directory=True)
    return stack_dir


def load_argv(
    settings: TuneSettings, target: str, repository: Path, results_dir: Path, run_id: str
) -> list[str]:
    """The load generator's command line for one probe: a closed-loop point, or an open-loop one."""
    s = settings
    load = (
        ["--mode", "open", "--arrivals", "poisson", "--rate", f"{s.rate:g}"]
        if s.rate is not None
        else ["--users-steps", str(s.users)]
    )
    argv = [
        str(venv_bin("loadgen") / "python"), "-m", "loadgen", "--headless", "--only-summary",
        "--backend", s.server, "--target", target, "--model", s.model,
        "--model-repository", str(repository), "--batch-size", str(s.batch_size), *load,
        "--step-duration", f"{s.warmup_s + s.seconds:g}", "--warmup", f"{s.warmup_s:g}",
        "--drain", "2", "--slo", f"{s.slo_ms / 1000:g}",
        "--metrics-port", "0", "--results-dir", str(results_dir), "--run-id", run_id,
    ]  # fmt: skip
    return argv + (["--dataset", str(s.dataset)] if s.dataset is not None else [])


class NativeProber:
    """``measure(config)`` for the search: a fresh server and one load point per configuration."""

    def __init__(self, settings: TuneSettings) -> None:
        self.settings = settings
        self.count = 0
        self.points: list[LoadPoint] = []

    def __call__(self, config: Config) -> ProbeOutcome:
        s = self.settings
        self.count += 1
        probe_dir = s.run_dir / f"probe-{self.count:02d}"
        repository = scratch_repository(s, config, probe_dir / "model-repository")
        # The probe's server starts from the same ready files `tune` writes for the best configuration.
        server_config = probe_dir / "server-config"
        triton_source = (
            ModelRepository(repository).triton_config(s.model).read_text() if s.server == "triton" else ""
        )
        write_ready_configs(s.server, s.model, config, server_config, triton_source)
        ports = free_port_map()
        stack = Stack(
            short_stack_dir(probe_dir),
            ports=ports,
            model_repository=repository,
            options={SERVER_CONFIG_OPTION: str(server_config)},
        )
        try:
            stack.up([s.server])  # TorchServe's registration rejects a configuration it does not apply
        except StackError as exc:
            stack.down()
            raise KnobRejected(f"{s.server} did not start with {config}: {str(exc)[-600:]}") from None
        try:
            point = self._load(probe_dir, f"{LOOPBACK}:{ports[s.server]['grpc']}", repository)
        finally:
            stack.down()
        # What the server reported of its settings, with the probe's knobs over it.
        point = point.model_copy(update={"server_config": {**(point.server_config or {}), **config}})
        self.points.append(point)
        log.info("%s %s: %.1f images/s, p99 %s ms", s.server, config, point.images_per_s, point.p99_ms)
        return ProbeOutcome(point.images_per_s, point.p99_ms, point.errors + point.incorrect)

    def _load(self, probe_dir: Path, target: str, repository: Path) -> LoadPoint:
        s = self.settings
        results_dir = probe_dir / "load"
        run_id = f"tune-{s.server}-{self.count:02d}"
        argv = load_argv(s, target, repository, results_dir, run_id)
        env = {**os.environ, "PYTHONPATH": str(project_root() / "services" / "loadgen")}
        cpus = s.loadgen_cpus
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            timeout=s.seconds + s.warmup_s + 300,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        try:
            (point,) = load_load_result(results_dir / f"{run_id}.json").points
        except LoadResultError as exc:
            raise ImgbenchError(
                f"probe {run_id} wrote no load result (exit {done.returncode}): {exc}\n{done.stderr[-2000:]}"
            ) from None
        return point


def run_tune(settings: TuneSettings) -> tuple[Path, SearchResult]:
    """Search, then write the results file and the best configuration's ready files; return the path."""
    servers.get_server(settings.server)  # an unknown name lists the known ones
    if settings.server not in NATIVE_KNOBS:
        raise ImgbenchError(
            f"native tuning of {settings.server!r} is not built yet (supported: {', '.join(NATIVE_KNOBS)})"
        )
    venv_python = venv_bin("loadgen") / "python"
    if not venv_python.exists():
        raise ImgbenchError(f"the loadgen venv is missing ({venv_python}); run `scripts/setup.sh loadgen`")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    space = settings.space or default_space(settings.server)
    prober = NativeProber(settings)
    started = time.monotonic()
    result = search(
        prober,
        defaults_of(settings.server),
        space,
        slo_ms=settings.slo_ms,
        budget_s=settings.budget_s,
        strategy=settings.strategy,
    )
    files: list[Path] = []
    if result.best is not None:
        source = ModelRepository(settings.model_repository.resolve())
        triton_source = (
            source.triton_config(settings.model).read_text() if settings.server == "triton" else ""
        )
        files = write_ready_configs(
            settings.server, settings.model, result.best.config, settings.run_dir / "best", triton_source
        )
    summary = TuneSummary(
        backend=settings.server,
        model=settings.model,
        strategy=result.strategy,
        slo_ms=settings.slo_ms,
        budget_s=settings.budget_s,
        elapsed_s=round(time.monotonic() - started, 3),
        default=result.default,
        best=result.best,
        probes=result.probes,
        verdict=result.verdict,
        best_config_files=[str(p) for p in files],
    )
    path = settings.run_dir / f"tune-{settings.server}-{settings.model}.json"
    write_load_result(path, LoadResult(kind="tune", run_id=path.stem, points=prober.points, tune=summary))
    return path, result
