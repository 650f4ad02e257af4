"""--jit-compile's XLA-vs-Keras check (real XLA on a tiny model; a perturbed "XLA" model fails the gate,
in the check and in the export), --fused-sgd refused with the reason, the recipe saying what ran."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TrainedRun

from imgbench.compiled_check import CHECK_NAME, CompiledGateError, read_check
from imgbench.errors import ImgbenchError
from imgbench.manifest import load_manifest

GATE = {"min_agreement": 0.999, "max_abs_diff": 1e-3}


def tiny_model(num_classes: int = 5):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("hard_swish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def tiny_val(images: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((images, 16, 16, 3), dtype=np.float32), np.arange(images) % 5


def test_xla_model_agrees_with_keras_and_is_recorded(tmp_path: Path) -> None:
    from trainer_tf import compiled

    images, labels = tiny_val()
    # Batches of 8 over 12 images: the padded last batch must not change the answers.
    check = compiled.check_run(tmp_path, tiny_model(), images, labels, stage="train", batch_size=8, **GATE)
    assert check.passed and check.reason is None
    assert check.n == 12 and check.top1_agreement == 1.0 and check.max_abs_logit_diff < 1e-4
    assert check.compiler == compiled.COMPILER and check.stage == "train"
    assert check.compiled_accuracy == check.eager_accuracy
    assert read_check(tmp_path) == check


def _perturbed_xla(shift: float, reorder: bool):
    """A "compiler" adding ``shift`` to every logit (top-1 unchanged), or ``reorder``: a ramp over the
    classes that changes the answers."""
    import tensorflow as tf

    def compile_xla(fn):
        # What a silently wrong fused kernel looks like from outside: close, but not Keras's logits.
        def wrong(batch):
            logits = fn(batch)
            return logits + (shift * tf.linspace(-1.0, 1.0, logits.shape[1]) if reorder else shift)

        return tf.function(wrong)

    return compile_xla


def test_a_wrong_xla_model_fails_the_gate_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_tf import compiled

    monkeypatch.setattr(compiled, "compile_xla", _perturbed_xla(0.002, reorder=False))  # 2× the tolerance
    images, labels = tiny_val()
    with pytest.raises(
        CompiledGateError, match=r"XLA \(tf.function jit_compile=True\) vs eager: max \|Δlogit\|"
    ):
        compiled.check_run(tmp_path, tiny_model(), images, labels, stage="export", **GATE)
    recorded = read_check(tmp_path)
    assert recorded is not None and not recorded.passed and "exceeds the tolerance" in recorded.reason


def test_fused_sgd_is_refused_with_what_exists_instead() -> None:
    from trainer_tf.__main__ import get_args_parser
    from trainer_tf.train import plan_run

    args = get_args_parser().parse_args(["train", "--data-path", "nowhere", "--fused-sgd"])
    with pytest.raises(
        ImgbenchError, match=r"--fused-sgd: Keras has no fused SGD .*use_xla=True.*--jit-compile"
    ):
        plan_run(args)  # before the dataset is even listed


@pytest.mark.slow
def test_export_with_a_wrong_xla_model_publishes_nothing(
    trained: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_tf import compiled, export
    from trainer_tf.__main__ import get_args_parser

    run_dir = shutil.copytree(trained.run_dir, tmp_path / "run")  # the check writes into the run folder
    monkeypatch.setattr(compiled, "compile_xla", _perturbed_xla(5.0, reorder=True))
    repo = tmp_path / "repo"
    args: argparse.Namespace = get_args_parser().parse_args(
        ["export", "--run-dir", str(run_dir), "--model-repository", str(repo), "--skip-tflite",
         "--jit-compile", "--compile-check-images", "40"]
    )  # fmt: skip
    with pytest.raises(CompiledGateError, match=r"top-1 agreement .* on 40 images is below the gate"):
        export.export_run(run_dir, args)
    assert not repo.exists() or not [p for p in repo.rglob("*") if p.is_file()]
    assert (run_dir / CHECK_NAME).is_file() and not read_check(run_dir).passed


@pytest.mark.slow
def test_a_run_without_xla_records_no_check_and_no_fusion(trained: TrainedRun) -> None:
    training = load_manifest(trained.repository / "manifests" / "tf_mobilenet_v3_small.json").training
    assert training.compiled_check is None
    recipe = json.loads((trained.run_dir / "config.json").read_text())["recipe"]
    assert recipe["compile"] is None
    assert recipe["optimizer_fusion"].startswith("none: Keras per-variable SGD update")
