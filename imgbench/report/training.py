"""Training section: the rows of the seed's table, measured, per framework and architecture.

With ``--repeats N`` every figure is the mean over the seeds with its 95% confidence interval (Student
t); with one run it is that run's value, and the table says there is no interval."""

from __future__ import annotations

from imgbench.manifest import Manifest
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table
from imgbench.report.repeats import training_interval
from imgbench.report.stats import Interval

FRAMEWORK_LABEL = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}


def epoch_seconds(manifest: Manifest) -> Interval | None:
    """Seconds per epoch after the first (warm-up), across seeds."""
    return training_interval(manifest, "seconds_per_epoch") if manifest.training.history else None


def interval_cell(interval: Interval, digits: int, scale: float = 1.0, unit: str = "") -> str:
    """``'95.0% ± 1.2% (n=3)'``; a single run's value alone (its row's ``repeats`` says 1)."""
    if interval.half_width is None:
        return f"{interval.mean * scale:,.{digits}f}{unit}"
    return interval.format(digits, scale, unit)


def _mean(manifest: Manifest, figure: str) -> float:
    return training_interval(manifest, figure).mean


def _variant(manifest: Manifest) -> str:
    recipe = manifest.training.recipe
    flags = [
        name
        for name in ("compile", "jit_compile", "amp", "mixed_precision", "channels_last")
        if recipe.get(name)
    ]
    return ", ".join(f"{flag}={recipe[flag]}" for flag in flags) or "default"


def training_section(inputs: ReportInputs) -> str:
    grouped = inputs.by_architecture()
    if not grouped:
        return "## Training\n\nNo trained model in this run (no manifest found).\n"
    rows = []
    ratio_rows = []
    for architecture, frameworks in grouped.items():
        for framework in ("pytorch", "tensorflow"):
            manifest = frameworks.get(framework)
            if manifest is None:
                rows.append(
                    [architecture, FRAMEWORK_LABEL[framework], 0, "not trained in this run"] + [None] * 7
                )
                continue
            training = manifest.training
            repeats = len(training.repeats.per_seed) if training.repeats else 1
            rows.append(
                [
                    architecture,
                    FRAMEWORK_LABEL[framework],
                    repeats,
                    interval_cell(training_interval(manifest, "top1"), 1, 100, "%"),
                    f"{training.top5:.1%}",
                    interval_cell(training_interval(manifest, "seconds_per_epoch"), 2),
                    interval_cell(training_interval(manifest, "images_per_second"), 0),
                    interval_cell(training_interval(manifest, "peak_memory_bytes"), 1, 2**-20, " MiB")
                    + f" ({training.memory_kind})",
                    f"{training.parameters:,}",
                    f"{training.epochs} (best {training.best_epoch})",
                    f"{training.device}; {_variant(manifest)}",
                ]
            )
        pt, tf = frameworks.get("pytorch"), frameworks.get("tensorflow")
        if pt and tf:
            pt_s, tf_s = epoch_seconds(pt), epoch_seconds(tf)
            ratio_rows.append(
                [
                    architecture,
                    f"{(_mean(pt, 'top1') - _mean(tf, 'top1')) * 100:+.1f} pts",
                    f"{tf_s.mean / pt_s.mean:.2f}×" if pt_s and tf_s and pt_s.mean else None,
                    f"{_mean(pt, 'peak_memory_bytes') / _mean(tf, 'peak_memory_bytes'):.2f}×"
                    if tf.training.peak_memory_bytes
                    else None,
                    f"{pt.training.parameters / tf.training.parameters:.4f}"
                    if tf.training.parameters
                    else None,
                ]
            )
    parts = [
        "## Training",
        "",
        "Best validation top-1, seconds per epoch and training images/s over the epochs after the first "
        "(which pays for warm-up), peak memory. With `repeats` above 1 (`--repeats N`: one run per seed) "
        "each is the mean over the seeds ± the half-width of its 95% confidence interval (Student t); "
        "with one run it is that run's value and there is no interval: the spread of epochs within a run "
        "says nothing about the next run. top-5 is the exported (first) seed's.",
        "",
        table(
            [
                "model",
                "framework",
                "repeats",
                "top-1",
                "top-5",
                "s/epoch",
                "img/s",
                "peak memory",
                "parameters",
                "epochs",
                "run",
            ],
            rows,
        ),
    ]
    if ratio_rows:
        parts += [
            "",
            "PyTorch relative to TensorFlow, same architecture, data, recipe and machine, from the means "
            "above (speed: TF s/epoch ÷ PT s/epoch, above 1 means PyTorch is faster); whether a difference "
            "is real is decided in the claims section, across repeats:",
            "",
            table(
                ["model", "top-1 PT − TF", "speed PT/TF", "peak memory PT/TF", "parameters PT/TF"], ratio_rows
            ),
        ]
    recipes = {
        name: manifest.training.recipe
        for name, manifest in sorted(inputs.manifests.items())
        if manifest.training.recipe
    }
    if recipes:
        parts += [
            "",
            "Recipes as recorded by the trainers (the same keys in both, imgbench.trainer_cli.RECIPE_KEYS); "
            "a row whose values differ is marked **differs**:",
            "",
        ]
        keys = sorted({key for recipe in recipes.values() for key in recipe})
        rows = []
        for key in keys:
            values = [recipe.get(key) for recipe in recipes.values()]
            differs = len({repr(value) for value in values}) > 1
            rows.append([key, *values, "**differs**" if differs else ""])
        parts.append(table(["setting", *recipes, ""], rows))
    return "\n".join(parts) + "\n"
