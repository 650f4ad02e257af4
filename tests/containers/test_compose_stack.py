"""docker compose up, for real: every imgbench image built, the whole stack run end to end on this
machine's Docker engine, with deploy/compose/offline.yml replacing the official images that cannot be
pulled here by local stand-ins (TF Serving stand-in, Triton with its python backend, Debian's Prometheus
and Pushgateway). The demo recipe at its smallest: 1 epoch, short load runs.

One stack for the module (bringing it up trains both models); the tests run in file order and each
names the service and shows its log tail when it fails. `down -v` runs at the end whatever happened."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_support import ONE_SHOT, SERVERS, ComposeStack, docker

pytestmark = pytest.mark.skipif(
    os.environ.get("IMGBENCH_SKIP_CONTAINERS") == "1", reason="IMGBENCH_SKIP_CONTAINERS=1"
)
ARCH = "mobilenet_v3_small"
# (backend, model) pairs the loadgen runs: every server, and Triton with both frameworks' ONNX.
LOAD_CASES = [
    ("torchserve", f"pt_{ARCH}"),
    ("tfserving", f"tf_{ARCH}"),
    ("triton", f"pt_{ARCH}"),
    ("triton", f"tf_{ARCH}"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    workdir = tmp_path_factory.mktemp("compose")
    workdir.chmod(0o755)  # TorchServe (uid 1000) reads the config mounted from here
    stack = ComposeStack(project=f"imgbench-test-{os.getpid()}", workdir=workdir)
    (workdir / "torchserve.properties").chmod(0o644)
    started = time.monotonic()
    try:
        # trainer-pt first: its torch layer is then TorchServe's (the same cached instructions).
        stack.compose("build", "trainer-pt", timeout=3600)
        stack.compose("build", timeout=3600)
        stack.built_s = time.monotonic() - started
        # `up -d` returns once every dependency condition held: the one-shot jobs have finished.
        stack.compose("up", "-d", timeout=2400)
        stack.up_s = time.monotonic() - started - stack.built_s
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=600, check=False)
        stack.leftovers_after_down = stack.leftovers()


def test_one_shot_jobs_exit_zero(stack: ComposeStack) -> None:
    states = stack.by_service()
    for service in ONE_SHOT:
        record = states.get(service)
        assert record is not None, f"{service} never ran\n{stack.failure_context()}"
        context = stack.failure_context((service,))
        assert record["State"] == "exited" and record["ExitCode"] == 0, (
            f"{service}: state {record['State']}, exit {record['ExitCode']}\n{context}"
        )


def test_both_manifests_are_on_the_shared_volume(stack: ComposeStack) -> None:
    files = stack.list_volume("model-repository", "manifests")
    assert {f"manifests/pt_{ARCH}.json", f"manifests/tf_{ARCH}.json"} <= set(files), files
    for framework in ("pt", "tf"):
        manifest = json.loads(stack.read_volume("model-repository", f"manifests/{framework}_{ARCH}.json"))
        assert manifest["model"] == f"{framework}_{ARCH}"
    stack.manifests_before = {
        f: stack.read_volume("model-repository", f"manifests/{f}_{ARCH}.json") for f in ("pt", "tf")
    }


def test_servers_prometheus_and_pushgateway_become_healthy(stack: ComposeStack) -> None:
    stack.wait_healthy((*SERVERS, "prometheus", "pushgateway", "loadgen"), timeout_s=600)


def _loadgen_run(stack: ComposeStack, backend: str, model: str) -> dict:
    """A bounded headless run: one master, two workers, each a `docker compose run` container."""
    case = f"{backend}-{model}".replace("_", "-")
    master = f"{stack.project}-lgm-{case}"
    env = ["-e", f"IMGBENCH_BACKEND={backend}", "-e", f"IMGBENCH_MODEL={model}"]
    stack.compose(
        "run", "-d", "--no-deps", "--name", master, *env, "loadgen",
        "--master", "--headless", "--expect-workers=2", "-u", "4", "-r", "4",
        "--mode=closed", "--step-duration=8", "--warmup=2", "--images=64", f"--run-id={case}",
    )  # fmt: skip
    workers = [f"{stack.project}-lgw{i}-{case}" for i in (1, 2)]
    for worker in workers:
        stack.compose(
            "run", "-d", "--no-deps", "--name", worker, *env, "loadgen-worker",
            "--worker", f"--master-host={master}", "--images=64",
        )  # fmt: skip
    import subprocess

    waited = subprocess.run([docker(), "wait", master], capture_output=True, text=True, timeout=300)
    code = waited.stdout.strip()
    logs = subprocess.run([docker(), "logs", "--tail", "60", master], capture_output=True, text=True)
    for name in (master, *workers):
        subprocess.run([docker(), "rm", "-f", name], capture_output=True, check=False)
    assert code == "0", f"loadgen master for {backend}/{model} exited {code}:\n{logs.stdout}{logs.stderr}"
    results = [p for p in stack.list_volume("loadgen-results", ".") if case in p and p.endswith(".json")]
    assert results, f"no results for {case} in the loadgen-results volume"
    return json.loads(stack.read_volume("loadgen-results", results[-1]))


@pytest.mark.parametrize(("backend", "model"), LOAD_CASES, ids=[f"{b}-{m}" for b, m in LOAD_CASES])
def test_loadgen_with_two_workers_answers_every_server_correctly(
    stack: ComposeStack, backend: str, model: str
) -> None:
    result = _loadgen_run(stack, backend, model)
    points = result["points"]
    assert points, f"{backend}/{model}: a result without load points"
    for point in points:
        assert point["n"] > 0, f"{backend}/{model}: no request answered: {point}"
        assert point["deployment"] == "compose", point
        assert point["errors"] == 0 and point["incorrect"] == 0, f"{backend}/{model}: {point}"
    # Each point names the server as it reported itself; here the TF Serving stand-in says so.
    identities = {json.dumps(point["server"], sort_keys=True) for point in points}
    if backend == "tfserving":
        assert all(point["server"]["stand_in"] for point in points), identities


def _query(stack: ComposeStack, path: str) -> dict:
    port = stack.ports["prometheus"][9090]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def test_prometheus_scrapes_every_target_and_has_the_loadgen_histogram(stack: ComposeStack) -> None:
    deadline = time.monotonic() + 90
    while True:
        targets = _query(stack, "/api/v1/targets")["data"]["activeTargets"]
        down = [(t["labels"]["job"], t.get("lastError")) for t in targets if t["health"] != "up"]
        jobs = {t["labels"]["job"] for t in targets}
        histogram = _query(stack, "/api/v1/query?query=count(imgbench_request_latency_seconds_bucket)")
        if (
            not down
            and {"torchserve", "triton", "tfserving", "loadgen", "pushgateway"} <= jobs
            and histogram["data"]["result"]
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"targets down: {down}; jobs {sorted(jobs)}; loadgen histogram: {histogram}")
        time.sleep(5)


def test_torchserve_answers_after_its_key_expiry(stack: ComposeStack) -> None:
    # The test override gives keys 30 s; keyguard renews them at 15 s. Well past one lifetime now.
    keys = json.loads(stack.read_volume("torchserve-auth", "key_file.json"))
    assert "expiration time" in keys["inference"]
    stack.wait_healthy(("torchserve",), timeout_s=60)
    renewals = [line for line in stack.logs("torchserve", tail="all").splitlines() if "[keyguard]" in line]
    assert any("renewed the inference key" in line for line in renewals), renewals or stack.logs("torchserve")
    result = _loadgen_run(stack, "torchserve", f"pt_{ARCH}")
    assert all(p["errors"] == 0 for p in result["points"]), result["points"]


def test_a_trainer_without_its_dataset_fails_naming_it_and_loses_nothing(stack: ComposeStack) -> None:
    result = stack.compose(
        "run", "--rm", "--no-deps", "trainer-pt", "train", "--data-path=/data/missing", "--epochs=1",
        "--output-dir=/runs/missing", "--model-repository=/models", check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout[-2000:]
    assert "/data/missing" in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
    for framework, before in stack.manifests_before.items():
        assert stack.read_volume("model-repository", f"manifests/{framework}_{ARCH}.json") == before


def _triton_http(stack: ComposeStack, path: str) -> int:
    port = stack.ports["triton"][8000]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_triton_keeps_serving_when_one_model_cannot_load(stack: ComposeStack) -> None:
    """A model whose ONNX file is garbage: Triton stays ready (--strict-readiness=false) and serves the
    others; only that model is unready. The broken model is removed again afterwards."""
    source, broken = f"pt_{ARCH}", "pt_broken"
    script = (
        "import json, pathlib, shutil\n"
        "v = pathlib.Path('/v')\n"
        f"src, dst = v / 'triton' / '{source}', v / 'triton' / '{broken}'\n"
        "(dst / '1').mkdir(parents=True, exist_ok=True)\n"
        f"config = (src / 'config.pbtxt').read_text().replace('{source}', '{broken}')\n"
        "(dst / 'config.pbtxt').write_text(config)\n"
        "(dst / '1' / 'model.onnx').write_bytes(b'not an onnx model')\n"
        f"text = (v / 'manifests' / '{source}.json').read_text().replace('{source}', '{broken}')\n"
        f"(v / 'manifests' / '{broken}.json').write_text(text)\n"
    )
    stack.write_volume("model-repository", script)
    try:
        deadline = time.monotonic() + 120
        while _triton_http(stack, f"/v2/models/{broken}") == 404 and time.monotonic() < deadline:
            time.sleep(5)  # the repository is polled every 30 s
        assert _triton_http(stack, f"/v2/models/{broken}/ready") != 200
        assert _triton_http(stack, "/v2/health/ready") == 200, stack.logs("triton")
        for model in (f"pt_{ARCH}", f"tf_{ARCH}"):
            assert _triton_http(stack, f"/v2/models/{model}/ready") == 200, stack.logs("triton")
    finally:
        stack.write_volume(
            "model-repository",
            "import pathlib, shutil\n"
            f"shutil.rmtree('/v/triton/{broken}', ignore_errors=True)\n"
            f"pathlib.Path('/v/manifests/{broken}.json').unlink(missing_ok=True)\n",
        )


def test_a_second_up_does_not_retrain(stack: ComposeStack) -> None:
    stack.compose("up", "-d", timeout=900)
    states = stack.by_service()
    for service in ("dataset", "trainer-pt", "trainer-tf"):
        assert states[service]["ExitCode"] == 0, stack.failure_context((service,))
    for framework, before in stack.manifests_before.items():
        after = stack.read_volume("model-repository", f"manifests/{framework}_{ARCH}.json")
        assert after == before, f"trainer-{framework} retrained on a second up"
    assert "skip" in stack.logs("trainer-pt").lower(), stack.logs("trainer-pt")


def test_down_v_leaves_nothing_of_the_project(stack: ComposeStack) -> None:
    stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=600)
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}


def test_images_share_the_framework_layers(stack: ComposeStack) -> None:
    import subprocess

    def layers(image: str) -> list[str]:
        out = subprocess.run(
            [docker(), "image", "inspect", image], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)[0]["RootFS"]["Layers"]

    trainer, torchserve = layers("imgbench/trainer-pt:0.1.0"), layers("imgbench/torchserve:0.1.0")
    # base, user, torch: the torch layer is one layer on disk for both images.
    assert trainer[:3] == torchserve[:3]
    assert layers("imgbench/trainer-tf:0.1.0")[:3] == layers("imgbench/tfserving-standin:0.1.0")[:3]
    Path(os.environ.get("IMGBENCH_CONTAINER_TIMES", "/dev/null")).write_text(
        json.dumps({"build_s": round(stack.built_s), "up_s": round(stack.up_s)}) + "\n"
    )
