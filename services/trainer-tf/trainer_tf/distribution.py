"""Which ``tf.distribute`` strategy a run trains under.

- ``TF_CONFIG`` naming more than one task (a Kubeflow TFJob, or by hand: one process per worker, see
  tests/trainer_tf/test_multiworker.py): ``MultiWorkerMirroredStrategy``, gradients all-reduced across
  workers (and their local GPUs); ``--batch-size`` stays per replica, as in trainer-pt under torchrun.
- several local GPUs: ``MirroredStrategy``;
- otherwise the default strategy (one device).

A multi-worker strategy must exist before TensorFlow's runtime starts, so ``select_strategy`` runs
before anything lists devices or creates a tensor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

from imgbench.errors import ImgbenchError

log = logging.getLogger(__name__)

# Task types of TF_CONFIG that take part in the all-reduce (an "evaluator" does not).
_TRAINING_TASKS = ("chief", "worker")


def cluster_workers(tf_config: str | None = None) -> int:
    """How many training tasks ``TF_CONFIG`` names (0 when it is unset or empty).

    >>> cluster_workers('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}')
    2
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return 0
    try:
        config = json.loads(text)
        cluster = config["cluster"]
        task = config["task"]
        count = sum(len(cluster.get(kind, [])) for kind in _TRAINING_TASKS)
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise KeyError(f"task {task}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ImgbenchError(
            f"TF_CONFIG is not a TensorFlow cluster spec ({exc}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}, '
            f"received: {text[:200]}"
        ) from None
    return count


def select_strategy():
    """The strategy for this process (see the module docstring); call it before any device query."""
    import tensorflow as tf

    if cluster_workers() > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log.info("TF_CONFIG: MultiWorkerMirroredStrategy, %d replicas in sync", strategy.num_replicas_in_sync)
        return strategy
    # Several visible devices: one replica each, gradients all-reduced (trainer-pt uses DDP there).
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def fitting_under(strategy, model, train_dataset) -> Iterator[None]:
    """``model.fit`` inside this block trains under ``strategy``.

    Two Keras 3.15 faults under MultiWorkerMirroredStrategy are worked around here, and only there:
    - a model compiled under a strategy is built eagerly at the start of ``fit`` from the first
      distributed batch, reduced as one nest, which this strategy cannot (``Attempt to convert a value
      (PerReplica:...) ... to a Tensor``): the model, its metrics and optimizer are built here, in the
      strategy's scope (mirrored variables) from one local batch of ``train_dataset``, then the model
      forgets its strategy and ``fit`` runs inside the strategy's scope instead (variables created later,
      inside a replica, would not be the ones the updates land in: the weights never moved);
    - every step's logs are reduced with ``reduce(MEAN, axis=0)``, which fails on scalars ("Invalid
      reduction dimension 0 for input with 0 dimensions"): scalars are averaged over the replicas.
    Every step still all-reduces the gradients across workers.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        with strategy.scope():
            yield
        return
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    keras_reduce = keras_tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction="auto"):
        def reduce_one(value):
            # One local replica: a plain tensor; several: PerReplica. Both are all-reduced over workers.
            local = strategy.experimental_local_results(value)
            if reduction in ("auto", "mean") and all(getattr(v, "shape", None) == () for v in local):
                return strategy.reduce("MEAN", value, axis=None)
            return keras_reduce(value, strategy, reduction)

        return tf.nest.map_structure(reduce_one, values)

    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(train_dataset.take(1))))
    model._distribute_strategy = None  # fit() takes the strategy of the scope below instead
    keras_tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        with strategy.scope():
            yield
    finally:
        keras_tf_trainer.reduce_per_replica = keras_reduce
