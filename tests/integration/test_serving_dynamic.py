"""Dynamic input shapes served: native Triton serves each trainer's ``onnx_dynamic`` export as
``<model>_dynamic`` (dims -1 for height and width) and the TF Serving stand-in serves trainer-tf's
``savedmodel_dynamic`` (a signature with None height/width); requests of two image sizes, 32 px (the
training size) and 48 px, get answers of the right shape, the predictions of an in-process run of the
same export, and at the training size the fixed-shape model's predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trained_digits import run_logged

from imgbench.clients.images import load_eval_batch
from imgbench.dynamic_shapes import at_size, served_name
from imgbench.paths import project_root, venv_bin

pytestmark = pytest.mark.integration

SIZES = (32, 48)
CASES = [
    ("triton", "pt", "onnx_dynamic"),
    ("triton", "tf", "onnx_dynamic"),
    ("tfserving", "tf", "savedmodel_dynamic"),
]
RUNTIMES = {"onnx_dynamic": ("onnx", "triton"), "savedmodel_dynamic": ("savedmodel", "tfserving")}


def in_process(kind: str, venv: str, path: Path, batch: np.ndarray, workdir: Path, tag: str) -> np.ndarray:
    """The export run directly by the runtime the server uses, in that server's venv."""
    source, target = workdir / f"{tag}-in.npy", workdir / f"{tag}-out.npy"
    np.save(source, batch)
    script = project_root() / "services" / "serving" / "inprocess.py"
    argv = [str(venv_bin(venv) / "python"), str(script), "predict", kind, str(path), str(source), str(target)]
    run_logged(argv, workdir / f"{tag}.log", timeout=300)
    return np.load(target)


@pytest.mark.parametrize(("server", "prefix", "export"), CASES, ids=[f"{s}-{p}" for s, p, _ in CASES])
def test_dynamic_export_answers_two_sizes(
    serving, server: str, prefix: str, export: str, tmp_path: Path
) -> None:
    trained = serving.trained
    manifest = trained.manifest(prefix)
    record = manifest.exports.get(export)
    if record is None or record.status != "ok":
        pytest.skip(f"{manifest.model} has no {export} (trained without --dynamic-sizes)")
    dynamic = served_name(manifest.model)
    client = serving.client(server)
    try:
        assert client.ready(dynamic), f"{server} does not serve {dynamic}"
        answers = {}
        for size in SIZES:
            batch, _ = load_eval_batch(at_size(manifest, size), trained.dataset, limit=16)
            assert batch.shape[1:] == (
                (3, size, size) if manifest.input.layout == "NCHW" else (size, size, 3)
            )
            answers[size] = (batch, client.infer(dynamic, batch))
        fixed = client.infer(manifest.model, answers[SIZES[0]][0])
        # The fixed-shape model refuses the other size: the dynamic one is what serves it.
        with pytest.raises(Exception, match=r"(?i)shape"):
            client.infer(manifest.model, answers[SIZES[1]][0])
    finally:
        client.close()
    kind, venv = RUNTIMES[export]
    for size, (batch, served) in answers.items():
        assert served.shape == (len(batch), len(manifest.class_names)) and served.dtype == np.float32
        offline = in_process(
            kind, venv, trained.repository / record.path, batch, tmp_path, f"{server}-{prefix}-{size}"
        )
        np.testing.assert_array_equal(served.argmax(axis=1), offline.argmax(axis=1))
        scale = max(1.0, float(np.abs(offline).max()))
        assert np.abs(served - offline).max() <= 1e-5 * scale, (size, np.abs(served - offline).max())
    np.testing.assert_array_equal(answers[SIZES[0]][1].argmax(axis=1), fixed.argmax(axis=1))


def test_load_generator_sends_mixed_sizes_to_the_dynamic_model(serving, tmp_path: Path) -> None:
    import json
    import subprocess

    python = venv_bin("loadgen") / "python"
    if not python.exists():
        pytest.skip("the loadgen venv is missing; run `scripts/setup.sh loadgen`")
    manifest = serving.trained.manifest("pt")
    if manifest.exports.get("onnx_dynamic") is None or manifest.exports["onnx_dynamic"].status != "ok":
        pytest.skip(f"{manifest.model} has no onnx_dynamic (trained without --dynamic-sizes)")
    argv = [
        str(python), "-m", "loadgen", "--headless", "--only-summary", "--backend", "triton",
        "--target", serving.target("triton"), "--model", served_name(manifest.model),
        "--image-sizes", ",".join(map(str, SIZES)), "--keep-misclassified",
        "--model-repository", str(serving.trained.repository), "--dataset", str(serving.trained.dataset),
        "-u", "2", "--images", "64", "--step-duration", "4", "--warmup", "1",
        "--drain", "1", "--metrics-port", "0", "--results-dir", str(tmp_path), "--run-id", "mixed",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=project_root())
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / "mixed.json").read_text())
    (point,) = results["points"]
    assert point["errors"] == 0 and point["n"] >= 20, point
    # Each image's answer under load is its answer at rest, at either size.
    assert (
        point["incorrect"] / point["n"] <= 1 - results["preflight"]["accuracy_at_rest"] + 2 * 64 / point["n"]
    )
    assert results["config"]["image_sizes"] == list(SIZES)
    assert results["preflight"]["images_per_size"] == {str(s): 32 for s in SIZES}
