"""A new model version appears while the servers run and is served without a restart.

Triton (repository poll; natively the launcher re-assembles triton-python/ from triton/) and the TF
Serving stand-in (version folder poll, as tensorflow_model_server) pick it up from the model
repository by themselves. TorchServe does not watch its model store: a new version is registered
through its management API, which is how TorchServe supports it."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from serving_support import EvalSet, ServingStack

from imgbench.manifest import load_manifest, write_manifest
from imgbench.paths import ModelRepository

pytestmark = [pytest.mark.integration, pytest.mark.slow]
POLL_TIMEOUT_S = 90


def _wait_for(condition: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < POLL_TIMEOUT_S:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {POLL_TIMEOUT_S} s")


def _publish_version(repository: ModelRepository, model: str, layout: Callable[[int], Path]) -> int:
    """Copy the newest version as version+1 (written beside, then renamed), then bump the manifest."""
    manifest = load_manifest(repository.manifest_path(model))
    new = manifest.version + 1
    staging = layout(manifest.version).with_name(f".staging-{new}")
    shutil.copytree(layout(manifest.version), staging)
    staging.rename(layout(new))
    manifest.version = new
    write_manifest(repository.manifest_path(model), manifest)
    return new


@pytest.mark.parametrize(("server", "prefix"), [("triton", "pt"), ("tfserving", "tf")])
def test_new_version_in_the_repository_is_served(
    serving: ServingStack, eval_sets: dict[str, EvalSet], server: str, prefix: str
) -> None:
    repository = ModelRepository(serving.trained.repository)
    model = serving.trained.models[prefix]
    pid = serving.pid(server)
    layout = {
        "triton": lambda v: repository.triton_version_dir(model, v),
        "tfserving": lambda v: repository.tfserving_version_dir(model, v),
    }[server]
    images = eval_sets[prefix].batch[:8]
    with serving.client(server) as client:
        before = client.infer(model, images)
        version = _publish_version(repository, model, layout)
        seconds = _wait_for(
            lambda: version in client.metadata(model)["versions"], f"{server} {model} v{version}"
        )
        served = client.infer(model, images, version=version)
        latest = client.infer(model, images)
    print(f"{server}: {model} v{version} served {seconds:.1f} s after it was written")
    np.testing.assert_allclose(served, before, atol=1e-4)  # same weights, new version number
    np.testing.assert_allclose(latest, before, atol=1e-4)
    assert serving.pid(server) == pid


def _mar_with_version(source: Path, target: Path, version: str) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"]["modelVersion"] = version
                data = json.dumps(manifest).encode()
            new.writestr(item, data)


def test_torchserve_new_version_through_the_management_api(
    serving: ServingStack, eval_sets: dict[str, EvalSet]
) -> None:
    repository = ModelRepository(serving.trained.repository)
    model = serving.trained.models["pt"]
    pid = serving.pid("torchserve")
    images = eval_sets["pt"].batch[:8]
    archive = repository.torchserve_dir / f"{model}.v2.mar"
    _mar_with_version(repository.torchserve_mar(model), archive, "2")
    query = urllib.parse.urlencode(
        {"url": archive.name, "model_name": model, "initial_workers": 1, "synchronous": "true"}
    )
    management = f"http://127.0.0.1:{serving.ports['torchserve']['management']}"
    request = urllib.request.Request(f"{management}/models?{query}", method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200, response.read()
    with serving.client("torchserve") as client:
        served = client.infer(model, images, version=2)
        np.testing.assert_allclose(served, client.infer(model, images, version=1), atol=1e-5)
    assert serving.pid("torchserve") == pid
