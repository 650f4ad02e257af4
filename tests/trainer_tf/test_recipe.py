"""The optimizer and the input pipeline behave like trainer-pt's (no training needed)."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest
from trainer_tf import data
from trainer_tf.optim import EpochCosine, SGDWithL2, per_step_cosine, scaled_learning_rate

from imgbench.errors import DatasetError
from imgbench.manifest import IMAGENET_MEAN, IMAGENET_STD


def test_sgd_l2_matches_torch_sgd_weight_decay() -> None:
    """Two steps of torch.optim.SGD(lr, momentum=0.9, weight_decay=wd), written out by hand:
    g' = g + wd·w; b = 0.9·b + g'; w -= lr·b. Vectors (norms, biases) get no decay, like trainer-pt."""
    lr, wd, momentum = 0.1, 0.01, 0.9
    matrix = keras.Variable(np.array([[1.0, -2.0], [0.5, 3.0]], dtype="float32"))
    bias = keras.Variable(np.array([1.0, -1.0], dtype="float32"))
    optimizer = SGDWithL2(l2=wd, learning_rate=lr, momentum=momentum)
    grad_m = np.array([[0.1, 0.2], [-0.3, 0.4]], dtype="float32")
    grad_b = np.array([0.5, -0.5], dtype="float32")

    w, b = matrix.numpy().copy(), bias.numpy().copy()
    buf_w, buf_b = np.zeros_like(w), np.zeros_like(b)
    for _ in range(2):
        optimizer.apply([grad_m, grad_b], [matrix, bias])
        buf_w = momentum * buf_w + (grad_m + wd * w)
        w = w - lr * buf_w
        buf_b = momentum * buf_b + grad_b
        b = b - lr * buf_b
    np.testing.assert_allclose(matrix.numpy(), w, rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), b, rtol=1e-6)


def test_epoch_cosine_is_torch_sequential_lr() -> None:
    """LinearLR(start 0.01, 2 epochs) then CosineAnnealingLR(T_max=8), one value per epoch."""
    schedule = EpochCosine(0.1, steps_per_epoch=5, epochs=10, warmup_epochs=2, warmup_decay=0.01)
    per_epoch = [float(schedule(epoch * 5 + offset)) for epoch in range(10) for offset in (0, 4)]
    expected = [0.1 * 0.01, 0.1 * (0.01 + 0.99 / 2)] + [
        0.1 * 0.5 * (1 + math.cos(math.pi * e / 8)) for e in range(8)
    ]
    assert per_epoch == pytest.approx([v for v in expected for _ in (0, 1)], rel=1e-5)


def test_per_step_cosine_reaches_zero_at_the_real_last_step() -> None:
    schedule = per_step_cosine(0.2, total_steps=90)
    assert float(schedule(0)) == pytest.approx(0.2)
    assert float(schedule(45)) == pytest.approx(0.1, rel=1e-5)
    assert float(schedule(90)) == pytest.approx(0.0, abs=1e-7)


def test_linear_scaling_rule() -> None:
    assert scaled_learning_rate(0.1, 256) == pytest.approx(0.1)
    assert scaled_learning_rate(0.8, 32) == pytest.approx(0.1)


def test_class_order_is_sorted_folder_names(tmp_path: Path, digits32: Path) -> None:
    train, val = data.list_dataset(digits32)
    assert train.class_names == [str(d) for d in range(10)] == val.class_names
    assert len(train) == 1438 and len(val) == 359
    assert all(
        Path(p).parent.name == train.class_names[y] for p, y in zip(train.paths, train.labels, strict=True)
    )


def test_undecodable_suffix_is_rejected_before_training(tmp_path: Path, digits32: Path) -> None:
    import shutil

    root = tmp_path / "d"
    shutil.copytree(digits32, root)
    (root / "train" / "0" / "x.tiff").write_bytes(b"II*\x00")
    with pytest.raises(DatasetError, match=r"x\.tiff"):
        data.list_dataset(root)


def test_eval_preprocessing_resizes_crops_and_normalizes(digits32: Path) -> None:
    _, val = data.list_dataset(digits32)
    images, labels = data.eval_arrays(val, 32, data.default_val_resize(32), limit=8)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
    assert labels.tolist() == val.labels[:8]
    # A white-ish stroke pixel maps above 0, the black background to -mean/std.
    background = -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(images[0, 0, 0], background, atol=0.05)
    again, _ = data.eval_arrays(val, 32, data.default_val_resize(32), limit=8)
    np.testing.assert_array_equal(images, again)  # deterministic


def test_train_pipeline_augments_to_full_batches(digits32: Path) -> None:
    train, _ = data.list_dataset(digits32)
    dataset = data.train_dataset(train, 32, 64, seed=0, cache=True)
    batches = list(dataset.take(2))
    x, y = batches[0]
    assert x.shape == (64, 32, 32, 3) and y.shape == (64, 10)
    assert np.allclose(y.numpy().sum(axis=1), 1.0)
    assert dataset.cardinality().numpy() == 1438 // 64  # drop_remainder, like trainer-pt's drop_last
    assert not np.array_equal(batches[0][0].numpy(), batches[1][0].numpy())
