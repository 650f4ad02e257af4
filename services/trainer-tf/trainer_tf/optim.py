"""trainer-pt's optimizer recipe in Keras: SGD with momentum, PyTorch-style (coupled) L2 weight decay,
cosine annealing with optional linear warm-up, over the real number of steps.

Keras's ``SGD(weight_decay=...)`` is decoupled (``w -= lr·wd·w`` beside the update, momentum never sees
it); ``torch.optim.SGD(weight_decay=...)`` adds ``wd·w`` to the gradient, so the decay passes through the
momentum buffer. ``SGDWithL2`` does the latter, and like trainer-pt (torchvision's
``--norm-weight-decay 0``) only on weights with more than one dimension: not on norms and biases.

The schedule is trainer-pt's by default: ``CosineAnnealingLR`` after ``LinearLR`` warm-up, both stepped once
per epoch (``EpochCosine``); ``--lr-schedule step`` decays every optimizer step instead. Either way the
epoch length is the real ``len(train) // global batch``, never a guess.
"""

from __future__ import annotations

import math

import keras
from keras import ops

WARMUP_START_FACTOR = 0.01  # torchvision's --lr-warmup-decay default
LR_REFERENCE_BATCH = 256  # --lr is the rate for this global batch and scales linearly (Goyal et al.)


def scaled_learning_rate(base_lr: float, global_batch: int) -> float:
    """The peak learning rate for ``global_batch``: ``base_lr · global_batch / 256``."""
    return base_lr * global_batch / LR_REFERENCE_BATCH


class SGDWithL2(keras.optimizers.SGD):
    """``torch.optim.SGD(momentum=m, weight_decay=l2)``, update for update: the L2 term joins the
    gradient before momentum, and the rate multiplies the buffer (``b = m·b + g; w -= lr·b``).

    Keras's own SGD keeps ``lr`` inside the velocity (``v = m·v - lr·g; w += v``): equal while the rate
    is constant, but under a decaying schedule every past gradient keeps the rate of its own step, so
    the two drift apart; this class takes torch's order so the recipe is the same, not close.
    """

    def __init__(self, l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.nesterov:
            raise ValueError(
                f"SGDWithL2 implements torch's plain momentum only; got nesterov={self.nesterov}"
            )
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2 and len(variable.shape) > 1:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        buffer = self.momentums[self._get_variable_index(variable)]
        # torch's first step sets the buffer to the gradient; m·0 + g is the same.
        self.assign(buffer, ops.add(ops.multiply(buffer, ops.cast(self.momentum, variable.dtype)), gradient))
        self.assign_sub(variable, ops.multiply(buffer, learning_rate))

    def get_config(self) -> dict:
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="trainer_tf")
class EpochCosine(keras.optimizers.schedules.LearningRateSchedule):
    """torch's ``SequentialLR([LinearLR(start_factor), CosineAnnealingLR(T_max, eta_min)])`` stepped once
    per epoch, as a function of the optimizer step: constant within an epoch.

    >>> [round(float(EpochCosine(0.1, 10, 4, 0, 0.01, 0.0)(s)), 4) for s in (0, 9, 10, 39)]
    [0.1, 0.1, 0.0854, 0.0146]
    """

    def __init__(self, peak_lr, steps_per_epoch, epochs, warmup_epochs=0, warmup_decay=0.01, lr_min=0.0):
        self.peak_lr = float(peak_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.warmup_epochs = int(min(warmup_epochs, max(epochs - 1, 0)))
        self.warmup_decay = float(warmup_decay)
        self.lr_min = float(lr_min)

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch)
        span = max(self.epochs - self.warmup_epochs, 1)
        cosine_epoch = ops.maximum(epoch - self.warmup_epochs, 0.0)
        cosine = self.lr_min + (self.peak_lr - self.lr_min) * 0.5 * (
            1.0 + ops.cos(math.pi * cosine_epoch / span)
        )
        if not self.warmup_epochs:
            return cosine
        factor = self.warmup_decay + (1.0 - self.warmup_decay) * epoch / self.warmup_epochs
        return ops.where(epoch < self.warmup_epochs, self.peak_lr * factor, cosine)

    def get_config(self) -> dict:
        return {
            "peak_lr": self.peak_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "warmup_epochs": self.warmup_epochs,
            "warmup_decay": self.warmup_decay,
            "lr_min": self.lr_min,
        }


def per_step_cosine(peak_lr, total_steps, warmup_steps=0, warmup_decay=0.01, lr_min=0.0):
    """Cosine decay every optimizer step over ``total_steps``, the first ``warmup_steps`` a linear ramp
    (trainer-pt's ``--lr-schedule step``: ``CosineAnnealingLR(T_max=total_steps, eta_min)`` per step)."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    alpha = lr_min / peak_lr if peak_lr else 0.0
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak_lr * warmup_decay,
            decay_steps=max(total_steps - warmup_steps, 1),
            alpha=alpha,
            warmup_target=peak_lr,
            warmup_steps=warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(peak_lr, decay_steps=max(total_steps, 1), alpha=alpha)


def make_optimizer(
    peak_lr: float,
    steps_per_epoch: int,
    epochs: int,
    momentum: float,
    weight_decay: float,
    warmup_epochs: int = 0,
    warmup_decay: float = WARMUP_START_FACTOR,
    lr_min: float = 0.0,
    schedule: str = "epoch",
) -> SGDWithL2:
    if schedule == "epoch":
        rate = EpochCosine(peak_lr, steps_per_epoch, epochs, warmup_epochs, warmup_decay, lr_min)
    else:
        rate = per_step_cosine(
            peak_lr, steps_per_epoch * epochs, warmup_epochs * steps_per_epoch, warmup_decay, lr_min
        )
    return SGDWithL2(l2=weight_decay, learning_rate=rate, momentum=momentum)
