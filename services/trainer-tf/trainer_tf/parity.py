"""Keras's half of the recipe-parity check: load PyTorch's initial weights into the Keras model, replay
the same batches in the same order with trainer-tf's optimizer, schedule and loss, and compare.

    .venv/pt/bin/python -m trainer_pt.parity --model resnet18 --steps 50 --out /tmp/pt.npz
    .venv/tf/bin/python -m trainer_tf.parity /tmp/pt.npz

The switches that make the two pipelines equal are on: no augmentation (the batches are given), one
order, dropout 0, batch-norm momentum 0.1 (Keras 0.9), cosine per step. ``load_torch_weights`` maps
torchvision's parameters onto the Keras layers in network order and checks every shape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from imgbench.errors import ImgbenchError

# PyTorch module kinds by the parameter names a state dict holds for them.
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class ParityResult:
    architecture: str
    steps: int
    step0_max_abs_logit_diff: float
    step0_abs_loss_diff: float
    max_abs_loss_diff: float
    max_rel_loss_diff: float
    final_abs_loss_diff: float
    pt_losses: list[float]
    tf_losses: list[float]


def _torch_modules(state: dict[str, np.ndarray]) -> list[tuple[str, str, list[np.ndarray]]]:
    """(name, kind, arrays) per parameterized module, in state-dict (= module definition) order."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        modules.setdefault(prefix, {})[leaf] = value
    out = []
    for name, tensors in modules.items():
        if "running_mean" in tensors:
            out.append((name, "bn", [tensors[s] for s in _BN_SUFFIXES]))
        elif tensors["weight"].ndim == 4:
            out.append((name, "conv", [tensors["weight"], *([tensors["bias"]] if "bias" in tensors else [])]))
        elif tensors["weight"].ndim == 2:
            out.append(
                (name, "linear", [tensors["weight"], *([tensors["bias"]] if "bias" in tensors else [])])
            )
        else:
            raise ImgbenchError(f"parity: no Keras counterpart for torch module {name!r} ({sorted(tensors)})")
    return out


def _keras_layers(model) -> list:
    from keras import layers

    from trainer_tf.models import _all_layers

    kinds = (layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.Dense)
    return [layer for layer in _all_layers(model) if isinstance(layer, kinds) and layer.weights]


def _keras_weights(layer, kind: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    from keras import layers

    if kind == "bn":
        if not isinstance(layer, layers.BatchNormalization):
            raise ImgbenchError(
                f"parity: torch batch norm lines up with Keras {layer.name} ({type(layer).__name__})"
            )
        return arrays
    weight, *bias = arrays
    if kind == "linear":
        return [weight.T, *bias]
    if isinstance(layer, layers.DepthwiseConv2D):
        return [weight.transpose(2, 3, 0, 1), *bias]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return [weight.transpose(2, 3, 1, 0), *bias]  # (O, I, kh, kw) -> (kh, kw, I, O)


def load_torch_weights(model, state: dict[str, np.ndarray]) -> int:
    """Copy a torchvision state dict (name -> array) into the matching Keras model; returns the number
    of layers set. Modules and layers are paired in network order; any kind or shape mismatch raises
    ``ImgbenchError`` naming both sides."""
    modules = _torch_modules(state)
    keras_layers = _keras_layers(model)
    # Keras orders a functional graph by depth, so a shortcut branch may come before or after the
    # main path: match ResNets by name (torchvision's "layer1.0.downsample.0" is "layer1_0_downsample").
    by_name = {layer.name: layer for layer in keras_layers}
    if all(_resnet_name(name) in by_name for name, _, _ in modules):
        keras_layers = [by_name[_resnet_name(name)] for name, _, _ in modules]
    if len(modules) != len(keras_layers):
        raise ImgbenchError(
            f"parity: {len(modules)} torch modules with weights, {len(keras_layers)} Keras layers "
            f"in {model.name}"
        )
    for (name, kind, arrays), layer in zip(modules, keras_layers, strict=True):
        weights = _keras_weights(layer, kind, arrays)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(w.shape) for w in weights] != expected:
            raise ImgbenchError(
                f"parity: torch {name} {[w.shape for w in weights]} does not fit "
                f"Keras {layer.name} {expected}"
            )
        layer.set_weights(weights)
    return len(keras_layers)


def _resnet_name(torch_name: str) -> str:
    name = torch_name.replace(".", "_")
    if name.endswith("_downsample_0"):
        return name[: -len("_0")]
    if name.endswith("_downsample_1"):
        return name[: -len("_1")] + "_bn"
    return "logits" if name == "fc" else name


def replay(npz_path: Path) -> ParityResult:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from trainer_tf.models import build_model
    from trainer_tf.optim import make_optimizer, scaled_learning_rate

    data = np.load(npz_path)
    meta = {key.split("/", 1)[1]: data[key].item() for key in data.files if key.startswith("meta/")}
    state = {key[2:]: data[key] for key in data.files if key.startswith("w/")}
    architecture, steps = str(meta["architecture"]), int(meta["steps"])
    # NCHW -> NHWC: the same pixels, Keras's layout.
    images = data["images"].transpose(0, 1, 3, 4, 2)
    labels = data["labels"]
    num_classes = int(meta["num_classes"])

    keras.utils.set_random_seed(0)
    model = build_model(architecture, num_classes, int(meta["image_size"]), bn_momentum=0.9, dropout=0.0)
    load_torch_weights(model, state)
    optimizer = make_optimizer(
        scaled_learning_rate(float(meta["lr"]), int(meta["batch_size"])),
        steps_per_epoch=steps,
        epochs=1,
        momentum=float(meta["momentum"]),
        weight_decay=float(meta["weight_decay"]),
        schedule="step",
    )
    model.compile(
        optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True), jit_compile=False
    )
    step0_logits = model(tf.constant(images[0]), training=True).numpy()
    one_hot = np.eye(num_classes, dtype=np.float32)
    # train_on_batch is model.fit's own train_step, one batch at a time.
    losses = [float(model.train_on_batch(images[i], one_hot[labels[i]])) for i in range(steps)]

    pt_losses = data["losses"]
    gaps = np.abs(np.asarray(losses) - pt_losses)
    return ParityResult(
        architecture=architecture,
        steps=steps,
        step0_max_abs_logit_diff=float(np.abs(step0_logits - data["step0_logits"]).max()),
        step0_abs_loss_diff=float(gaps[0]),
        max_abs_loss_diff=float(gaps.max()),
        max_rel_loss_diff=float((gaps / np.abs(pt_losses)).max()),
        final_abs_loss_diff=float(gaps[-1]),
        pt_losses=[float(x) for x in pt_losses],
        tf_losses=losses,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer_tf.parity", description=__doc__.split("\n")[0])
    parser.add_argument("npz", type=Path, help="file written by `python -m trainer_pt.parity`")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here (default: none)")
    args = parser.parse_args(argv)
    result = replay(args.npz)
    summary = {k: v for k, v in asdict(result).items() if not k.endswith("_losses")}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
