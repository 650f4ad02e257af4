"""INT8 served: native Triton serves the trainer's ``<model>_int8`` next to its fp32 model, answers with
the model's shape and the logits of an offline ONNX Runtime run of ``model_int8.onnx``, and the load
generator measures it against the fp32 model's answers (``--reference-model``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from trained_digits import run_logged

from imgbench.paths import project_root, served_variant, venv_bin

pytestmark = pytest.mark.integration


def offline_onnx_logits(path: Path, batch: np.ndarray, workdir: Path) -> np.ndarray:
    """``path`` run by ONNX Runtime in-process in the Triton venv (the runtime its python model uses)."""
    source, target = workdir / "in.npy", workdir / "out.npy"
    np.save(source, batch)
    script = project_root() / "services" / "serving" / "inprocess.py"
    argv = [
        str(venv_bin("triton") / "python"),
        str(script),
        "predict",
        "onnx",
        str(path),
        str(source),
        str(target),
    ]
    run_logged(argv, workdir / "offline-int8.log", timeout=300)
    return np.load(target)


def test_triton_serves_int8_as_the_offline_onnx_runtime_run(serving, eval_sets, tmp_path: Path) -> None:
    trained = serving.trained
    manifest = trained.manifest("pt")
    int8 = served_variant(manifest.model, "int8")
    record = manifest.exports["onnx_int8"]
    assert record.details["served"]["model"] == int8, "the trained repository does not serve INT8"
    client = serving.client("triton")
    try:
        assert client.ready(int8), f"Triton does not serve {int8}"
        batch = eval_sets["pt"].batch[:16]  # within the model's max_batch_size
        served = client.infer(int8, batch)
        fp32 = client.infer(manifest.model, batch)
    finally:
        client.close()
    assert served.shape == (len(batch), len(manifest.class_names)) and served.dtype == np.float32
    offline = offline_onnx_logits(trained.repository / record.path, batch, tmp_path)
    # The same runtime and graph: the same predictions, logits to float rounding, and closer to the
    # INT8 graph's than to the fp32 model's (a 1-epoch model's INT8 logits differ from fp32 by ~1e-4).
    np.testing.assert_array_equal(served.argmax(axis=1), offline.argmax(axis=1))
    to_int8, to_fp32 = np.abs(served - offline).max(), np.abs(served - fp32).max()
    assert to_int8 <= 1e-5 and to_int8 < to_fp32, (to_int8, to_fp32)


def test_load_counts_int8_answers_that_differ_from_fp32(serving, tmp_path: Path) -> None:
    python = venv_bin("loadgen") / "python"
    if not python.exists():
        pytest.skip("the loadgen venv is missing; run `scripts/setup.sh loadgen`")
    model = serving.trained.models["pt"]
    argv = [
        str(python), "-m", "loadgen", "--headless", "--only-summary", "--backend", "triton",
        "--target", serving.target("triton"), "--model", served_variant(model, "int8"),
        "--reference-model", model, "--keep-misclassified",
        "--model-repository", str(serving.trained.repository), "--dataset", str(serving.trained.dataset),
        "-u", "2", "--images", "64", "--step-duration", "4", "--warmup", "1",
        "--drain", "1", "--metrics-port", "0", "--results-dir", str(tmp_path), "--run-id", "int8",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=project_root())
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / "int8.json").read_text())
    facts = results["preflight"]
    (point,) = results["points"]
    assert point["errors"] == 0 and point["n"] >= 50, point
    assert point["reference_model"] == model and facts["reference_model"] == model
    # 64 prepared requests, each user cycling through them: under load the shares of answers that
    # disagree with fp32 (and that miss the label) are the idle pass's, to a cycle's worth of requests.
    slack = 2 * 64 / point["n"] + 0.02
    assert abs((1 - point["disagreements"] / point["n"]) - facts["agreement_at_rest"]) <= slack, (
        point,
        facts,
    )
    assert abs((1 - point["incorrect"] / point["n"]) - facts["accuracy_at_rest"]) <= slack, (point, facts)
    if facts["agreement_at_rest"] < 1:
        assert point["disagreements"] > 0
