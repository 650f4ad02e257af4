"""`imgbench`: dataset tools and the native stack runner (more commands join as services land).

imgbench data digits --out data/digits
imgbench data check data/digits
imgbench stack up prometheus pushgateway --run-dir runs/stack
imgbench stack down --run-dir runs/stack
imgbench load run --headless --backend triton --model pt_resnet18 --mode open --rate 50
imgbench load sweep --case triton:pt_resnet18 --slo 0.1
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from imgbench.errors import ImgbenchError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train and serve image classifiers, measured.",
)
data_app = typer.Typer(no_args_is_help=True, help="Write and check ImageFolder datasets.")
stack_app = typer.Typer(no_args_is_help=True, help="Run services natively on 127.0.0.1.")
app.add_typer(data_app, name="data")
app.add_typer(stack_app, name="stack")
load_app = typer.Typer(
    no_args_is_help=True,
    help="The load generator (Locust, in its own venv): `load run --help`, `load sweep --help`.",
)
app.add_typer(load_app, name="load")

console = Console()
err_console = Console(stderr=True)

DEFAULT_STACK_DIR = Path("runs/stack")
RunDirOption = Annotated[Path, typer.Option("--run-dir", help="Where logs and the stack's state live.")]


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
    )


# -- data ------------------------------------------------------------------------------------------
# Options both dataset writers take.
ValFraction = Annotated[float, typer.Option(help="Share of each class kept for val (default 0.2).")]
Force = Annotated[bool, typer.Option(help="Replace an existing non-empty folder (= --if-exists overwrite).")]
IfExists = Annotated[
    str,
    typer.Option(
        help="An existing non-empty folder: error, skip (if it holds this same dataset), overwrite."
    ),
]


@data_app.command("digits")
def data_digits(
    out: Annotated[Path, typer.Option(help="Root of the ImageFolder tree to write.")],
    size: Annotated[int, typer.Option(help="Side length in pixels (default 64).")] = 64,
    val_fraction: ValFraction = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed (default 0).")] = 0,
    force: Force = False,
    if_exists: IfExists = "error",
) -> None:
    """scikit-learn's bundled handwritten digits (1,797 images, 10 classes) as ImageFolder."""
    from imgbench.data.digits import write_digits

    root = write_digits(
        out, size=size, val_fraction=val_fraction, seed=seed, force=force, if_exists=if_exists
    )
    _print_counts(root)


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Option(help="Root of the ImageFolder tree to write.")],
    classes: Annotated[int, typer.Option(help="Number of classes.")] = 10,
    size: Annotated[int, typer.Option(help="Side length in pixels (default 224).")] = 224,
    per_class: Annotated[int, typer.Option(help="Images per class, train and val together.")] = 50,
    val_fraction: ValFraction = 0.2,
    seed: Annotated[int, typer.Option(help="Seed (default 0).")] = 0,
    force: Force = False,
    if_exists: IfExists = "error",
) -> None:
    """A learnable synthetic dataset of any shape and class count."""
    from imgbench.data.synthetic import write_synthetic

    root = write_synthetic(
        out, classes, size, per_class, val_fraction=val_fraction, seed=seed, force=force, if_exists=if_exists
    )
    _print_counts(root)


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="ImageFolder root (with train/ and val/, or flat).")],
) -> None:
    """Validate every file; list each problem by path; exit 1 if there is any."""
    from imgbench.data.check import check_imagefolder

    report = check_imagefolder(root)
    _print_counts(root, report.splits)
    if report.image_sizes:
        sizes = ", ".join(f"{w}×{h} ({n})" for (w, h), n in report.image_sizes.most_common(5))
        console.print(f"image sizes: {sizes}")
    # The same lines the trainers and the load generator refuse with (DatasetCheckError).
    for line in report.problem_lines():
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        err_console.print(report.summary(), markup=False, highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok[/green] {root}")


def _print_counts(root: Path, splits: dict[str, dict[str, int]] | None = None) -> None:
    if splits is None:
        from imgbench.data.imagefolder import read_dataset_info

        splits = read_dataset_info(root).get("counts", {})  # type: ignore[assignment]
    table = Table(title=str(root))
    table.add_column("split")
    table.add_column("classes", justify="right")
    table.add_column("images", justify="right")
    table.add_column("smallest class", justify="right")
    for split, counts in (splits or {}).items():
        table.add_row(
            split, str(len(counts)), str(sum(counts.values())), str(min(counts.values(), default=0))
        )
    console.print(table)


# -- stack -----------------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up(
    services: Annotated[list[str], typer.Argument(help="Services to start, in order.")],
    run_dir: RunDirOption = DEFAULT_STACK_DIR,
    model_repository: Annotated[
        Path | None, typer.Option(help="Model repository the model servers read.")
    ] = None,
    free_ports: Annotated[bool, typer.Option(help="Use free ports instead of the defaults.")] = False,
    server_config: Annotated[
        Path | None,
        typer.Option(
            help="Ready configs each model server starts with: `imgbench tune`'s RUN_DIR/best "
            "(triton/<model>/config.pbtxt, tfserving/, torchserve/)."
        ),
    ] = None,
) -> None:
    """Start services, wait until each is ready, and leave them running (stop with `stack down`)."""
    from imgbench.stack import Stack
    from imgbench.stack.model_servers import SERVER_CONFIG_OPTION
    from imgbench.stack.ports import free_port_map

    if server_config is not None and not server_config.is_dir():
        raise ImgbenchError(f"--server-config {str(server_config)!r} is not a folder (expected RUN_DIR/best)")
    options = {SERVER_CONFIG_OPTION: str(server_config.resolve())} if server_config is not None else None
    stack = Stack(
        run_dir,
        ports=free_port_map() if free_ports else None,
        model_repository=model_repository,
        options=options,
    )
    try:
        stack.up(services)
    except KeyboardInterrupt:
        err_console.print("interrupted: stopping what was started")
        stack.down(services)
        raise typer.Exit(130) from None
    _print_status(stack)


@stack_app.command("down")
def stack_down(
    services: Annotated[list[str] | None, typer.Argument(help="Services to stop (default: all).")] = None,
    run_dir: RunDirOption = DEFAULT_STACK_DIR,
) -> None:
    """Stop exactly the processes `stack up` recorded in RUN_DIR."""
    from imgbench.stack import Stack

    stopped = Stack(run_dir).down(services or None)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(run_dir: RunDirOption = DEFAULT_STACK_DIR) -> None:
    """Show the recorded services, their PIDs, ports and logs."""
    from imgbench.stack import Stack

    _print_status(Stack(run_dir))


def _print_status(stack) -> None:
    table = Table(title=f"stack in {stack.run_dir}")
    for column in ("service", "pid", "state", "ports", "log"):
        table.add_column(column)
    for status in stack.status():
        ports = ", ".join(f"{name} {port}" for name, port in status.ports.items())
        state = "[green]running[/green]" if status.running else "[red]stopped[/red]"
        table.add_row(status.name, str(status.pid), state, ports, str(status.log))
    console.print(table)


# -- report ----------------------------------------------------------------------------------------
@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory with model-repository/ and load/.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN_DIR/report).")] = None,
    prices: Annotated[
        Path | None, typer.Option(help="Price table YAML (default: the bundled placeholders).")
    ] = None,
) -> None:
    """Write report.md and PNG plots from a run's manifests and load results."""
    from imgbench.report.build import build_report

    path = build_report(run_dir, out, prices)
    console.print(f"report: {path}")


# -- load ------------------------------------------------------------------------------------------
# The loadgen runs in its own venv: Locust monkey-patches the process with gevent, which the core
# (and TensorFlow/torch next to it) must never see. These commands only hand their arguments over.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _loadgen(module: str, args: list[str]) -> None:
    import subprocess

    from imgbench.paths import project_root, venv_bin

    python = venv_bin("loadgen") / "python"
    if not python.exists():
        raise ImgbenchError(f"the loadgen venv is missing ({python}); run `scripts/setup.sh loadgen`")
    raise typer.Exit(subprocess.call([str(python), "-m", module, *args], cwd=project_root()))


@load_app.command("run", context_settings=PASS_THROUGH)
def load_run(ctx: typer.Context) -> None:
    """A Locust run: `python -m loadgen` with these arguments (--help lists Locust's and imgbench's)."""
    _loadgen("loadgen", ctx.args)


@load_app.command("sweep", context_settings=PASS_THROUGH)
def load_sweep(ctx: typer.Context) -> None:
    """Per backend, the highest arrival rate whose p99 stays under the SLO (--help lists the options)."""
    _loadgen("loadgen.sweep", ctx.args)


# -- tune ------------------------------------------------------------------------------------------
def _knob_values(specs: list[str]) -> dict[str, list[int | float]] | None:
    """--knob NAME=V1,V2,... (repeatable) -> {NAME: [V1, V2, ...]}."""
    space: dict[str, list[int | float]] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        try:
            space[name.strip()] = [float(v) if "." in v else int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ImgbenchError(f"--knob must be NAME=V1,V2,... with numbers, got {spec!r}") from None
        if not name.strip() or not space[name.strip()]:
            raise ImgbenchError(f"--knob must be NAME=V1,V2,..., got {spec!r}")
    return space or None


@app.command("tune")
def tune(
    server: Annotated[str, typer.Option(help="Server to tune (a name of imgbench.servers).")],
    model: Annotated[str, typer.Option(help="Model it serves, e.g. pt_mobilenet_v3_small.")],
    model_repository: Annotated[Path, typer.Option(help="Model repository with that model.")],
    run_dir: Annotated[Path, typer.Option(help="Probe folders and results.")] = Path("runs/tune"),
    slo_ms: Annotated[float, typer.Option(help="p99 objective in ms.")] = 100.0,
    budget_s: Annotated[float, typer.Option(help="No probe starts after this many seconds.")] = 300.0,
    strategy: Annotated[str, typer.Option(help="hill-climb or grid.")] = "hill-climb",
    knob: Annotated[
        list[str] | None,
        typer.Option(help="NAME=V1,V2,... values to try (repeatable; default: the registry's)."),
    ] = None,
    users: Annotated[int, typer.Option(help="Closed-loop users per probe.")] = 4,
    rate: Annotated[
        float | None, typer.Option(help="Open loop instead: Poisson arrivals per probe, requests/s.")
    ] = None,
    seconds: Annotated[float, typer.Option(help="Measured seconds per probe.")] = 10.0,
) -> None:
    """Search a server's knobs under a p99 SLO, one fresh server and load point per probe; write the
    results (a load result file) and the best configuration as ready config files."""
    from imgbench.tune.runner import TuneSettings, run_tune

    if strategy not in ("hill-climb", "grid"):
        raise ImgbenchError(f"--strategy must be hill-climb or grid, got {strategy!r}")
    settings = TuneSettings(
        server=server,
        model=model,
        model_repository=model_repository,
        run_dir=run_dir,
        slo_ms=slo_ms,
        budget_s=budget_s,
        strategy=strategy,  # type: ignore[arg-type]
        space=_knob_values(knob or []),
        users=users,
        rate=rate,
        seconds=seconds,
    )
    path, result = run_tune(settings)
    table = Table(title=f"tune {server} {model} (p99 ≤ {slo_ms:g} ms)")
    for column in ("config", "images/s", "p99 ms", "passed", "rejected"):
        table.add_column(column)
    for probe in result.probes:
        table.add_row(
            str(probe.config),
            f"{probe.images_per_second:.1f}" if probe.images_per_second is not None else "–",
            f"{probe.p99_ms:.2f}" if probe.p99_ms is not None else "–",
            "yes" if probe.passed else "no",
            probe.rejected[:60],
        )
    console.print(table)
    console.print(result.verdict)
    console.print(f"results: {path}")


# -- demo ------------------------------------------------------------------------------------------
@app.command("demo")
def demo(
    run_dir: Annotated[Path | None, typer.Option(help="Run folder (default runs/demo-<UTC time>).")] = None,
    architecture: Annotated[
        str, typer.Option(help="Catalog model (default mobilenet_v3_small).")
    ] = "mobilenet_v3_small",
    epochs: Annotated[int, typer.Option(help="Training epochs per framework (default 6).")] = 6,
    image_size: Annotated[int, typer.Option(help="Image side in pixels (default 32).")] = 32,
    load_seconds: Annotated[float, typer.Option(help="Measured seconds per load point (default 15).")] = 15.0,
    repeats: Annotated[
        int,
        typer.Option(
            help="Seeds per trainer and runs per load point; the report's 95% CIs and verdicts need 2 or "
            "more (default 1).",
            min=1,
        ),
    ] = 1,
    free_ports: Annotated[bool, typer.Option(help="Free ports instead of the standard ones.")] = False,
    dynamic_sizes: Annotated[
        str | None,
        typer.Option(
            help="Also export dynamic-image-size models gated at these sizes, e.g. 32,48,64 "
            "(the trainers' --dynamic-sizes; default: none)."
        ),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Run a scenario of the seed article instead (imgbench.scenarios: case-study); its own "
            "data, model and load settings (default: none, the digits demo)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="With --scenario: validate and print its plan, run nothing.")
    ] = False,
) -> None:
    """The whole pipeline natively: dataset, both trainers, three servers, load, report, stop."""
    from imgbench.demo import DemoSettings, default_run_dir, print_summary, run_demo
    from imgbench.stack.ports import free_port_map

    if scenario is not None or dry_run:
        _demo_scenario(scenario, run_dir, dry_run, free_ports)
        return
    settings = DemoSettings(
        run_dir=run_dir or default_run_dir(),
        architecture=architecture,
        epochs=epochs,
        image_size=image_size,
        load_seconds=load_seconds,
        repeats=repeats,
        dynamic_sizes=dynamic_sizes,
        ports=free_port_map() if free_ports else None,
    )
    report_path = run_demo(settings)
    print_summary(settings.run_dir)
    console.print(f"report: {report_path}")


def _demo_scenario(name: str | None, run_dir: Path | None, dry_run: bool, free_ports: bool) -> None:
    import json
    from datetime import UTC, datetime

    from imgbench.scenarios import plan_scenario

    if name is None:
        raise ImgbenchError("--dry-run validates a scenario's plan: add --scenario NAME (e.g. case-study)")
    plan = plan_scenario(name, run_dir or Path("runs") / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    if dry_run:
        console.print_json(json.dumps(plan.describe()))
        return
    from imgbench.report.case_study import print_case_study
    from imgbench.scenario_run import run_scenario
    from imgbench.stack.ports import free_port_map

    report_path = run_scenario(plan, free_port_map() if free_ports else None)
    print_case_study(plan.run_dir)
    console.print(f"report: {report_path}")


def main() -> None:
    try:
        app()
    except ImgbenchError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
