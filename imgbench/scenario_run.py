"""Running a scenario's plan (``imgbench.scenarios``) with the demo's machinery: each stage logged to
RUN_DIR/logs/<stage>.log and echoed, a failing stage named, the servers always stopped.

    plan = plan_scenario("case-study", Path("runs/case-study"))
    report = run_scenario(plan)
"""

from __future__ import annotations

import shlex
from pathlib import Path

from imgbench.demo import (
    DemoSettings,
    Stage,
    StageFailed,
    _python,
    _trainer_env,
    console,
    run_demo,
    run_logged,
)
from imgbench.scenarios import ScenarioPlan, write_scenario_file
from imgbench.stack.ports import PortMap
from imgbench.stack.runner import Stack


def scenario_stages(plan: ScenarioPlan) -> tuple[Stage, ...]:
    scenario = plan.scenario

    def dataset(settings: DemoSettings) -> None:
        from imgbench.data.synthetic import write_synthetic

        write_synthetic(
            plan.data_dir,
            scenario.classes,
            scenario.image_size,
            scenario.per_class,
            val_fraction=scenario.val_fraction,
            seed=0,
            force=True,
        )
        console.print(
            f"[dim]  dataset |[/dim] synthetic, {scenario.classes} classes at {scenario.image_size} px: "
            f"{scenario.train_images} train, {scenario.val_images} val in {plan.data_dir}"
        )

    def train(settings: DemoSettings) -> None:
        run_logged(
            "train-pt",
            [_python("pt"), "-m", "trainer_pt", *plan.train_args],
            settings,
            _trainer_env("trainer-pt"),
        )

    def serve(settings: DemoSettings) -> None:
        settings.stack = Stack(
            plan.run_dir / "stack", ports=settings.ports, model_repository=plan.model_repository
        )
        # The Pushgateway too: the load generator pushes its metrics there after each run, and a push
        # that fails ends it with exit code 3.
        settings.stack.up(["pushgateway", scenario.server])

    def load(settings: DemoSettings) -> None:
        from imgbench.stack import loadgen as loadgen_service

        if settings.stack is None:
            raise StageFailed("stage 'load' needs the server of stage 'serve'")
        for run in plan.load_runs:  # back to back, the same settings and seed
            settings.stack.options[loadgen_service.BACKEND_OPTION] = scenario.server
            settings.stack.options[loadgen_service.ARGS_OPTION] = shlex.join(run.args)
            launch = loadgen_service.build(settings.stack.context())
            run_logged("load", launch.argv, settings, launch.env)

    def report(settings: DemoSettings) -> None:
        from imgbench.report.build import build_report

        settings.report_path = build_report(plan.run_dir)

    descriptions = {
        "dataset": f"synthetic {scenario.classes}-class images at {scenario.image_size} px",
        "train-pt": f"{scenario.architecture}, {scenario.epochs} epochs; exports incl. INT8 (gated)",
        "serve": f"{scenario.server}: {', '.join(plan.served_models)}",
        "load": f"closed loop ×{','.join(map(str, scenario.users))}, {scenario.load_seconds:g} s each, "
        "fp32 then INT8",
        "report": "report.md with the case study beside the article's figures",
    }
    runners = {"dataset": dataset, "train-pt": train, "serve": serve, "load": load, "report": report}
    return tuple(Stage(name, descriptions[name], runners[name]) for name in plan.stages)


def run_scenario(
    plan: ScenarioPlan, ports: PortMap | None = None, from_stage: str | None = None
) -> Path | None:
    """Run every stage of ``plan`` (or those from ``from_stage`` on, over a run folder whose earlier
    stages are done); returns the report's path."""
    stages = scenario_stages(plan)
    if from_stage is not None:
        names = [stage.name for stage in stages]
        if from_stage not in names:
            raise StageFailed(f"unknown stage {from_stage!r}; the scenario's stages: {', '.join(names)}")
        stages = stages[names.index(from_stage) :]
    write_scenario_file(plan)
    settings = DemoSettings(
        run_dir=plan.run_dir,
        architecture=plan.scenario.architecture,
        image_size=plan.scenario.image_size,
        epochs=plan.scenario.epochs,
        batch_size=plan.scenario.batch_size,
        backends=(plan.scenario.server,),
        load_seconds=plan.scenario.load_seconds,
        warmup_seconds=plan.scenario.warmup_seconds,
        concurrencies=plan.scenario.users,
        ports=ports,
    )
    return run_demo(settings, stages)
