"""PyTorch's half of the recipe-parity check: train a catalog model a few SGD steps on fixed batches and
write everything the Keras half needs to replay it (initial weights, batches, per-step losses) to .npz.

    .venv/pt/bin/python -m trainer_pt.parity --model mobilenet_v3_small --steps 50 --out /tmp/pt.npz
    .venv/tf/bin/python -m trainer_tf.parity /tmp/pt.npz        # replays it in Keras, prints the gaps

Torch and TensorFlow cannot share a process (docs/platform-notes.md), hence the file in between.
The run uses trainer-pt's own pieces (``build_model``, ``build_optimizer``, ``build_scheduler``, the
loss) with the switches that make the two pipelines equal: no augmentation (the batches are given),
the same order, dropout 0, batch-norm momentum 0.1, cosine stepped per optimizer step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainer_pt.models import build_model
from trainer_pt.train import apply_dropout, build_optimizer, build_scheduler, effective_lr


def recipe_args(args: argparse.Namespace) -> argparse.Namespace:
    """The trainer's recipe namespace for ``steps`` optimizer steps of one 'epoch'."""
    return argparse.Namespace(
        lr=args.lr,
        batch_size=args.batch_size,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        lr_min=0.0,
        epochs=1,
        lr_schedule="step",
        lr_warmup_epochs=0,
        lr_warmup_decay=0.01,
    )


def fixed_batches(
    steps: int, batch_size: int, image_size: int, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of NCHW float32 images and integer labels: a fixed random template per class plus
    noise, so the loss falls as in real training (pure noise would only be memorized)."""
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((num_classes, 3, image_size, image_size), dtype=np.float32)
    labels = rng.integers(0, num_classes, size=(steps, batch_size))
    noise = rng.standard_normal((steps, batch_size, 3, image_size, image_size), dtype=np.float32)
    return (templates[labels] + noise).astype(np.float32), labels


def run(args: argparse.Namespace) -> dict[str, np.ndarray]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.num_classes, args.image_size, bn_momentum=0.1)
    apply_dropout(model, 0.0)
    # Initial weights by state-dict name (buffers included: batch-norm statistics start equal too).
    initial = {f"w/{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}
    images, labels = fixed_batches(args.steps, args.batch_size, args.image_size, args.num_classes, args.seed)
    recipe = recipe_args(args)
    optimizer = build_optimizer(model, recipe, effective_lr(recipe, 1))
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch=args.steps)
    criterion = nn.CrossEntropyLoss()
    model.train()
    losses, rates, step0_logits, step0_grads = [], [], None, {}
    for step in range(args.steps):
        logits = model(torch.from_numpy(images[step]))
        loss = criterion(logits, torch.from_numpy(labels[step]))
        if step == 0:
            step0_logits = logits.detach().numpy().copy()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            step0_grads = {f"g/{k}": p.grad.numpy().copy() for k, p in model.named_parameters()}
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert step0_logits is not None
    return {
        **initial,
        **step0_grads,
        "images": images,
        "labels": labels,
        "step0_logits": step0_logits,
        "losses": np.asarray(losses, dtype=np.float64),
        "lrs": np.asarray(rates, dtype=np.float64),
        "meta/architecture": np.asarray(args.model),
        "meta/num_classes": np.asarray(args.num_classes),
        "meta/image_size": np.asarray(args.image_size),
        "meta/lr": np.asarray(args.lr),
        "meta/batch_size": np.asarray(args.batch_size),
        "meta/momentum": np.asarray(args.momentum),
        "meta/weight_decay": np.asarray(args.weight_decay),
        "meta/steps": np.asarray(args.steps),
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer_pt.parity", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v3_small", help="catalog name (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--num-classes", type=int, default=10, help="(default: %(default)s)")
    parser.add_argument("-b", "--batch-size", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=50, help="SGD steps (default: %(default)s)")
    parser.add_argument(
        "--lr", type=float, default=0.1, help="at a global batch of 256, scaled (default: %(default)s)"
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="(default: %(default)s)")
    parser.add_argument("--wd", dest="weight_decay", type=float, default=1e-4, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help=".npz to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **result)
    print(
        f"wrote {args.out}: {args.steps} steps, loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
