"""Each server's gRPC answers for validation images equal the same runtime run in-process."""

from __future__ import annotations

import numpy as np
import pytest
from serving_support import CASE_IDS, CASES, EvalSet, References, ServingStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Same runtime in and out of the server: only float reassociation across batch sizes differs.
MAX_ABS_DIFF = 1e-3


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize(("server", "prefix"), CASES, ids=CASE_IDS)
def test_served_logits_match_in_process(
    serving: ServingStack,
    eval_sets: dict[str, EvalSet],
    references: References,
    server: str,
    prefix: str,
    batch_size: int,
) -> None:
    model = serving.trained.models[prefix]
    images = eval_sets[prefix].batch
    with serving.client(server) as client:
        served = np.concatenate(
            [
                client.infer(model, images[start : start + batch_size])
                for start in range(0, len(images), batch_size)
            ]
        )
    expected = references[(server, prefix)]
    assert served.shape == expected.shape == (len(images), serving.trained.manifest(prefix).num_classes)
    assert served.dtype == np.float32
    mismatches = np.flatnonzero(served.argmax(1) != expected.argmax(1))
    assert mismatches.size == 0, (
        f"{server}/{model} top-1 differs from in-process on images {mismatches.tolist()}"
    )
    worst = float(np.abs(served - expected).max())
    assert worst <= MAX_ABS_DIFF, f"{server}/{model}: max |Δlogit| {worst:.2e} > {MAX_ABS_DIFF}"
    print(f"{server}/{model} batch {batch_size}: {len(images)} images, top-1 identical, max |Δ| {worst:.1e}")


@pytest.mark.parametrize(("server", "prefix"), CASES, ids=CASE_IDS)
def test_ready_and_metadata_come_from_the_manifest(serving: ServingStack, server: str, prefix: str) -> None:
    model = serving.trained.models[prefix]
    manifest = serving.trained.manifest(prefix)
    with serving.client(server) as client:
        assert client.ready()
        assert client.ready(model)
        assert not client.ready("pt_no_such_model")
        metadata = client.metadata(model)
    assert metadata["backend"] == server and metadata["model"] == model
    assert manifest.version in metadata["versions"]
    if server == "tfserving":
        # Natively the stand-in answers; it must say so.
        assert "stand-in" in metadata["server"]
    if server != "torchserve":  # TorchServe's tensors are .npy bytes under "data"
        assert [t["name"] for t in metadata["inputs"]] == [manifest.input.name]
        assert manifest.logits_name in [t["name"] for t in metadata["outputs"]]
