"""trainer-tf under MultiWorkerMirroredStrategy: worker processes on 127.0.0.1, each given a generated
TF_CONFIG as a Kubeflow TFJob would.

- The distribution code (``trainer_tf.distribution``: strategy selection and the Keras 3.15
  workarounds of ``fitting_under``) with the trainer's optimizer trains a batch-norm-free model to the
  weights of one process with the same global batch (float tolerance).
- ``python -m trainer_tf train`` itself runs on two workers: the replicas and global batch add up, the
  steps per epoch equal a one-process run's with the same global batch, and both workers end with the
  same trainable weights and optimizer state. Its networks have batch norm, which normalizes each
  replica's share of a batch by that share's statistics (as PyTorch DDP without SyncBatchNorm does),
  so they are not compared with one process's weights.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE_SIZE, SERVICE_ROOT, trainer_env

WORKERS = 2
GLOBAL_BATCH = 4
# Keras BatchNormalization's variables: gamma, beta, moving mean, moving variance.
MOVING_STATISTICS = re.compile(r"batch_normalization[^/]*/vars/[23]$")

# One process of the distribution check: a Dense model on fixed data, the trainer's SGD (momentum,
# L2, cosine schedule), 2 epochs × 2 steps; writes its final weights as .npy.
KERAS_WORKER = """
import sys
import numpy as np
import keras
import tensorflow as tf
from trainer_tf.distribution import fitting_under, select_strategy
from trainer_tf.optim import make_optimizer

out, batch_size = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
strategy = select_strategy()
rng = np.random.RandomState(0)
x = rng.rand(8, 6).astype("float32")
y = keras.utils.to_categorical([0, 1, 2, 3, 3, 2, 1, 0], 4)
global_batch = batch_size * strategy.num_replicas_in_sync
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch, drop_remainder=True)
with strategy.scope():
    layers = [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(4)]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=make_optimizer(0.5, 8 // global_batch, 2, 0.9, 1e-4),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
with fitting_under(strategy, model, data):
    model.fit(data, epochs=2, verbose=0, shuffle=False)
steps = int(model.optimizer.iterations.numpy())
np.savez(out, *model.get_weights(), replicas=strategy.num_replicas_in_sync, steps=steps)
"""

TRAINER_RECIPE = [
    "--model=mobilenet_v3_small",
    f"--image-size={IMAGE_SIZE}",
    "--epochs=1",
    "--lr=0.16",
    "--bn-momentum=0.1",
    "--dropout=0",
    "--seed=0",
    "--no-augment",
    "--no-shuffle",
    "--workers=0",
    "--threads=1",
    "--device=cpu",
    "--no-export",
    "--no-progress",
]


def _tf_configs(count: int) -> list[dict]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(count)]


def _env(tf_config: dict | None) -> dict[str, str]:
    env = trainer_env()
    for proxy in ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(proxy, None)  # gRPC between the workers must not go through a proxy
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _run_all(commands: list[tuple[list[str], dict | None, Path]], timeout: float = 600) -> None:
    """Start every command (one per worker, or a single process) and wait for all of them."""
    processes = [
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=_env(tf_config))
        for argv, tf_config, log in commands
    ]
    try:
        for process, (_, _, log) in zip(processes, commands, strict=True):
            assert process.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def test_distribution_trains_the_weights_of_one_process(tmp_path: Path) -> None:
    script = tmp_path / "keras_worker.py"
    script.write_text(KERAS_WORKER, encoding="utf-8")
    configs = _tf_configs(WORKERS)
    _run_all(
        [
            (
                [sys.executable, str(script), str(tmp_path / f"worker{i}.npz"), str(GLOBAL_BATCH // WORKERS)],
                config,
                tmp_path / f"worker{i}.log",
            )
            for i, config in enumerate(configs)
        ]
    )
    _run_all(
        [
            (
                [sys.executable, str(script), str(tmp_path / "single.npz"), str(GLOBAL_BATCH)],
                None,
                tmp_path / "single.log",
            )
        ]
    )
    single = np.load(tmp_path / "single.npz")
    assert int(single["replicas"]) == 1 and int(single["steps"]) == 4
    for i in range(WORKERS):
        worker = np.load(tmp_path / f"worker{i}.npz")
        assert int(worker["replicas"]) == WORKERS and int(worker["steps"]) == 4
        for name in (n for n in single.files if n.startswith("arr_")):
            np.testing.assert_allclose(
                worker[name], single[name], rtol=1e-5, atol=1e-6, err_msg=f"worker {i}: {name}"
            )


def _tiny_digits(digits: Path, root: Path, train: int = 4) -> Path:
    """4 classes × ``train`` training images, 1 validation image each."""
    for label in ("0", "1", "2", "3"):
        for split, count in (("train", train), ("val", 1)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for source in sorted((digits / split / label).iterdir())[:count]:
                shutil.copy(source, folder / source.name)
    return root


def _final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    import h5py

    state = json.loads((run_dir / "backup" / "state.json").read_text())
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(run_dir / "backup" / state["weights"], "r") as fh:
        fh.visititems(
            lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
        )
    return arrays


@pytest.mark.slow
def test_trainer_runs_on_two_workers(tmp_path: Path, digits32: Path) -> None:
    data = _tiny_digits(digits32, tmp_path / "tiny")

    def command(run_dir: Path, batch_size: int) -> list[str]:
        train = [sys.executable, "-m", "trainer_tf", "train", f"--data={data}", f"--run-dir={run_dir}"]
        return [*train, f"--batch-size={batch_size}", *TRAINER_RECIPE]

    runs = [tmp_path / f"worker{i}" for i in range(WORKERS)]
    _run_all(
        [
            (command(run, GLOBAL_BATCH // WORKERS), config, tmp_path / f"{run.name}.log")
            for run, config in zip(runs, _tf_configs(WORKERS), strict=True)
        ]
    )
    _run_all([(command(tmp_path / "single", GLOBAL_BATCH), None, tmp_path / "single.log")])
    single = json.loads((tmp_path / "single" / "config.json").read_text())
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert (config["replicas"], config["global_batch"]) == (WORKERS, GLOBAL_BATCH), run.name
        assert config["steps_per_epoch"] == single["steps_per_epoch"] == 4
    first, second = (_final_weights(run) for run in runs)
    assert first.keys() == second.keys()
    for name, value in first.items():
        if MOVING_STATISTICS.search(name):
            continue  # each replica keeps the running mean/variance of the batches it saw
        np.testing.assert_array_equal(second[name], value, err_msg=f"the workers diverged: {name}")
    assert any(
        not np.array_equal(value, weights)
        for name, value in first.items()
        for weights in [_final_weights(tmp_path / "single")[name]]
        if name.startswith("layers/")
    ), "the distributed run trained nothing"


def test_tf_config_is_read_and_checked() -> None:
    sys.path.insert(0, str(SERVICE_ROOT))
    from trainer_tf.distribution import cluster_workers

    from imgbench.errors import ImgbenchError

    assert cluster_workers("") == 0
    config = {
        "cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"], "evaluator": ["d:4"]},
        "task": {"type": "worker", "index": 1},
    }
    assert cluster_workers(json.dumps(config)) == 3
    with pytest.raises(ImgbenchError, match="TF_CONFIG"):
        cluster_workers(json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ImgbenchError, match="received"):
        cluster_workers("not json")


RESUME_EPOCHS = 3
LOST = 1  # the worker whose pod is lost
FAIL_WITHIN = 60.0  # seconds the surviving worker may take to notice (TF's heartbeat timeout is 10 s)


def _backed_up_epoch(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "backup" / "state.json").read_text())["epoch"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _epochs_logged(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


@pytest.mark.slow
def test_a_lost_worker_resumes_from_the_last_epoch(tmp_path: Path, digits32: Path) -> None:
    """Two workers train with ``--resume auto`` (each its own run folder, as the TFJob's); once epoch 1
    is backed up on both, worker 1 is SIGKILLed inside epoch 2 (a lost pod); worker 0 fails on its own
    (its collectives and TF's coordination service lose the peer) within a bound; both are started
    again with the same command and TF_CONFIG and finish from epoch 1's checkpoint."""
    data = _tiny_digits(digits32, tmp_path / "tiny", train=8)
    recipe = [f for f in TRAINER_RECIPE if not f.startswith("--epochs=")]
    runs = [tmp_path / f"worker-{i}" for i in range(WORKERS)]
    logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
    configs = _tf_configs(WORKERS)

    def start() -> list[subprocess.Popen]:
        workers = []
        for run, log, config in zip(runs, logs, configs, strict=True):
            command = [
                sys.executable, "-m", "trainer_tf", "train", f"--data={data}", f"--run-dir={run}",
                f"--batch-size={GLOBAL_BATCH // WORKERS}", f"--epochs={RESUME_EPOCHS}", *recipe,
                "--resume=auto",
            ]  # fmt: skip
            with log.open("a") as err:
                workers.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=_env(config))
                )
        return workers

    def stop(workers: list[subprocess.Popen]) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(timeout=30)

    workers = start()
    try:
        deadline = time.monotonic() + 300
        while not all(_backed_up_epoch(run) >= 1 for run in runs):
            exited = [w.returncode for w in workers if w.poll() is not None]
            assert not exited, f"a worker exited ({exited}) before epoch 1: {logs[0].read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no epoch 1 within 300 s"
            time.sleep(0.02)  # a step takes longer: the kill lands inside epoch 2
        workers[LOST].send_signal(signal.SIGKILL)
        try:
            code = workers[1 - LOST].wait(timeout=FAIL_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the surviving worker still runs {FAIL_WITHIN} s after its peer was lost")
        assert code != 0, "the surviving worker must fail, so that its pod is restarted too"
    finally:
        stop(workers)
    first = [_epochs_logged(run) for run in runs]
    for run, epochs in zip(runs, first, strict=True):
        assert [row["epoch"] for row in epochs] == [1], f"{run.name}: the kill was meant to land in epoch 2"
        assert _backed_up_epoch(run) == 1
    for run, log in zip(runs, logs, strict=True):
        assert f"--resume auto: no checkpoint in {run}; starting a new run" in log.read_text()

    workers = start()  # the same commands and TF_CONFIG, every worker
    try:
        for worker, log in zip(workers, logs, strict=True):
            assert worker.wait(timeout=300) == 0, log.read_text()[-4000:]
    finally:
        stop(workers)
    for run, log, before in zip(runs, logs, first, strict=True):
        epochs = _epochs_logged(run)
        assert [row["epoch"] for row in epochs] == list(range(1, RESUME_EPOCHS + 1)), run.name
        assert epochs[0] == before[0], f"{run.name}: epoch 1 was trained again"
        text = log.read_text()
        assert f"--resume auto: resuming from {run / 'backup' / 'state.json'}" in text, text[-3000:]
        assert "1 epoch(s) done" in text
        assert _backed_up_epoch(run) == RESUME_EPOCHS
    first_weights, second_weights = (_final_weights(run) for run in runs)
    for name, value in first_weights.items():
        if not MOVING_STATISTICS.search(name):
            np.testing.assert_array_equal(second_weights[name], value, err_msg=f"diverged: {name}")
