"""Training section: the rows of the seed's table, measured, per framework and architecture."""

from __future__ import annotations

from imgbench.manifest import Manifest
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import mib, num, pct, table
from imgbench.report.stats import Spread, spread, steady_state

FRAMEWORK_LABEL = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}


def epoch_seconds(manifest: Manifest) -> Spread | None:
    return spread(steady_state([record.seconds for record in manifest.training.history]))


def epoch_throughput(manifest: Manifest) -> Spread | None:
    return spread(steady_state([record.images_per_second for record in manifest.training.history]))


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
                    [architecture, FRAMEWORK_LABEL[framework], "not trained in this run"] + [None] * 7
                )
                continue
            training = manifest.training
            seconds = epoch_seconds(manifest)
            rows.append(
                [
                    architecture,
                    FRAMEWORK_LABEL[framework],
                    pct(training.top1),
                    pct(training.top5),
                    str(seconds) if seconds else None,
                    num(training.images_per_second, 0),
                    mib(training.peak_memory_bytes) + f" ({training.memory_kind})",
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
                    f"{(pt.training.top1 - tf.training.top1) * 100:+.1f} pts",
                    f"{tf_s.mean / pt_s.mean:.2f}×" if pt_s and tf_s and pt_s.mean else None,
                    f"{pt.training.peak_memory_bytes / tf.training.peak_memory_bytes:.2f}×"
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
        "Best validation top-1/top-5 (the exported weights), seconds per epoch as mean ± standard "
        "deviation over epochs after the first (which pays for warm-up), mean training images/s, "
        "peak memory.",
        "",
        table(
            [
                "model",
                "framework",
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
            "PyTorch relative to TensorFlow, same architecture, data, recipe and machine "
            "(speed: TF s/epoch ÷ PT s/epoch, above 1 means PyTorch is faster):",
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
