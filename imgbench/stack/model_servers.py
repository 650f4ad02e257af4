"""Launch plans for the three model servers, natively on 127.0.0.1, each from its own venv.

- TorchServe (Java frontend + Python workers, venv ``torchserve``): the container's
  services/serving/torchserve/config.properties rendered with loopback addresses, this stack's ports
  and run-directory paths (TMPDIR and java.io.tmpdir inside the run directory).
- Triton (venv ``triton``): services/serving/triton/triton_native, which assembles the python-backend
  repository ``triton-python/`` from ``triton/`` and runs nvidia-pytriton's tritonserver.
- TF Serving stand-in (venv ``tfserving``): services/serving/tfserving/tfserving_standin, the TF Serving
  gRPC API over the same SavedModel layout; a stand-in because the real binary is not installable here.

Readiness is checked over HTTP (no gRPC needed in the runner): TorchServe ping and every model with a
READY worker; Triton server ready and every model ready; every stand-in model AVAILABLE.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from imgbench import servers
from imgbench.atomic import atomic_write_text
from imgbench.errors import StackError
from imgbench.parallelism import tfserving_thread_flags
from imgbench.paths import ModelRepository, project_root, venv_bin
from imgbench.ports import LOOPBACK
from imgbench.stack.plan import LaunchPlan, StackContext
from imgbench.stack.readiness import Probe, all_of, http_ok
from imgbench.tune.configs import tfserving_ready, torchserve_ready
from imgbench.tune.torchserve_api import reconfigure_torchserve

SERVING_DIR = project_root() / "services" / "serving"
# Native TorchServe: token authorization off unless the stack option says "on" (see _torchserve).
TORCHSERVE_TOKEN_AUTH_OPTION = "torchserve.token_auth"
# A folder of ready configs (`imgbench tune`'s RUN_DIR/best, imgbench.tune.configs) every server starts
# with: `imgbench stack up --server-config DIR`.
SERVER_CONFIG_OPTION = "server_config"
# Environment of every model server: one intra-op thread per worker/instance (docs/platform-notes.md).
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ORT_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
}


def _get_json(url: str, headers: dict[str, str] | None = None) -> object | None:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:
            return json.loads(response.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, json.JSONDecodeError):
        return None


def json_probe(
    url: str, accept: Callable[[object], bool], headers: Callable[[], dict[str, str]] | None = None
) -> Probe:
    """Ready when ``GET url`` answers JSON that ``accept`` likes."""

    def probe() -> bool:
        answer = _get_json(url, headers() if headers else None)
        return answer is not None and accept(answer)

    return probe


def _python(venv: str) -> str:
    python = venv_bin(venv) / "python"
    if not python.exists():
        raise StackError(f"venv {venv!r} is missing ({python}); run `scripts/setup.sh {venv}`")
    return str(python)


def served_models(
    ctx: StackContext, server: str, has_artifact: Callable[[ModelRepository, str], bool]
) -> list[str]:
    """Complete models (manifest written) that have ``server``'s export; at least one."""
    if ctx.model_repository is None:
        raise StackError(f"{server} needs a model repository: pass --model-repository DIR")
    repository = ModelRepository(Path(ctx.model_repository).resolve())
    models = [m for m in repository.models() if has_artifact(repository, m)]
    if not models:
        raise StackError(
            f"{server}: no complete model with its export in {repository.root} "
            "(a model counts once manifests/<model>.json exists); train one first"
        )
    return models


def server_config_dir(ctx: StackContext) -> Path | None:
    """The ready-config folder the stack was started with, or None; a missing folder is an error."""
    value = ctx.options.get(SERVER_CONFIG_OPTION)
    if not value:
        return None
    path = Path(value).resolve()
    if not path.is_dir():
        raise StackError(
            f"--server-config {value!r} is not a folder (expected RUN_DIR/best of `imgbench tune`)"
        )
    return path


# -- TorchServe -------------------------------------------------------------------------------------
def render_torchserve_config(template: str, overrides: dict[str, str]) -> str:
    """The container's config.properties with ``overrides`` replacing (or adding) keys."""
    lines, seen = [], set()
    for line in template.splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.lstrip().startswith("#") and "=" in line and key in overrides:
            lines.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    return "\n".join(lines) + "\n"


def torchserve_allowed_urls(store: Path) -> str:
    r"""``allowed_urls`` admitting only files inside ``store``: a Java regex, as a .properties value.

    The path is escaped (a ``.`` in it matches only a dot), and each backslash doubled because
    java.util.Properties reads ``\.`` as ``.``.

    >>> print(torchserve_allowed_urls(Path("/models/torch.serve")))
    file:///models/torch\\.serve/.*
    """
    return f"file://{re.escape(str(store))}/.*".replace("\\", "\\\\")


def _torchserve_keys(workdir: Path) -> dict[str, str]:
    path = workdir / "key_file.json"
    try:
        return {kind: entry["key"] for kind, entry in json.loads(path.read_text()).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _torchserve(ctx: StackContext) -> LaunchPlan:
    models = served_models(ctx, "torchserve", lambda repo, m: repo.torchserve_mar(m).is_file())
    repository = ModelRepository(Path(ctx.model_repository).resolve())  # type: ignore[arg-type]
    workdir = ctx.service_dir("torchserve")
    tmpdir = workdir / "tmp"
    tmpdir.mkdir(exist_ok=True)
    ports = ctx.ports["torchserve"]
    token_auth = ctx.options.get(TORCHSERVE_TOKEN_AUTH_OPTION, "off") == "on"
    store = repository.torchserve_dir
    overrides = {
        "inference_address": f"http://{LOOPBACK}:{ports['rest']}",
        "management_address": f"http://{LOOPBACK}:{ports['management']}",
        "metrics_address": f"http://{LOOPBACK}:{ports['metrics']}",
        "grpc_inference_address": LOOPBACK,
        "grpc_inference_port": str(ports["grpc"]),
        "grpc_management_address": LOOPBACK,
        "grpc_management_port": str(ports["grpc_management"]),
        "model_store": str(store),
        "load_models": ",".join(f"{m}={m}.mar" for m in models),
        "allowed_urls": torchserve_allowed_urls(store),
        # Natively everything binds 127.0.0.1 and keys would expire mid-run; containers keep it on.
        "disable_token_authorization": "false" if token_auth else "true",
        "vmargs": f"-Xmx1g -XX:+ExitOnOutOfMemoryError -Djava.io.tmpdir={tmpdir}",
    }
    template = (SERVING_DIR / "torchserve" / "config.properties").read_text()
    config_path = workdir / "config.properties"
    atomic_write_text(config_path, render_torchserve_config(template, overrides))
    venv = venv_bin("torchserve")
    torchserve = venv / "torchserve"
    if not torchserve.exists():
        raise StackError(f"TorchServe is not installed ({torchserve}); run `scripts/setup.sh torchserve`")

    def management_headers() -> dict[str, str]:
        key = _torchserve_keys(workdir).get("management") if token_auth else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def worker_ready(answer: object) -> bool:
        return isinstance(answer, list) and any(
            w.get("status") == "READY" for entry in answer for w in entry.get("workers", [])
        )

    management = f"http://{LOOPBACK}:{ports['management']}"
    ready_dir = server_config_dir(ctx)
    ready_env, ready_models = torchserve_ready(ready_dir) if ready_dir else ({}, {})
    unknown = sorted(set(ready_models) - set(models))
    if unknown:
        raise StackError(f"--server-config has TorchServe configs for {unknown}, not served here ({models})")

    def configure() -> None:
        # A .mar carries its own model-config.yaml: register those models again with the ready one's.
        for model, config in ready_models.items():
            reconfigure_torchserve(management, model, config)

    return LaunchPlan(
        argv=[
            str(torchserve),
            "--start",
            "--foreground",
            "--ncs",
            "--ts-config",
            str(config_path),
            "--model-store",
            str(store),
        ],
        ready=all_of(
            json_probe(f"http://{LOOPBACK}:{ports['rest']}/ping", lambda a: a == {"status": "Healthy"}),
            *[json_probe(f"{management}/models/{m}", worker_ready, management_headers) for m in models],
        ),
        env={
            **ONE_THREAD,
            **ready_env,
            "PATH": f"{venv}:/usr/bin:/bin",
            "TMPDIR": str(tmpdir),
            "LOG_LOCATION": str(workdir / "logs"),
            "METRICS_LOCATION": str(workdir / "logs"),
        },
        # key_file.json and the frontend's logs/ land in the working directory: the run directory.
        cwd=workdir,
        startup_timeout_s=180.0,
        stop_timeout_s=20.0,
        configure=configure if ready_models else None,
    )


# -- Triton -----------------------------------------------------------------------------------------
def _triton(ctx: StackContext) -> LaunchPlan:
    models = served_models(ctx, "triton", lambda repo, m: repo.triton_config(m).is_file())
    ports = ctx.ports["triton"]
    base = f"http://{LOOPBACK}:{ports['http']}"
    ready_dir = server_config_dir(ctx)
    # Ready configs (triton/<model>/config.pbtxt) replace the repository's: batching, instances, ORT threads.
    ready = [f"--config-dir={ready_dir / 'triton'}"] if ready_dir and (ready_dir / "triton").is_dir() else []
    return LaunchPlan(
        argv=[
            _python("triton"),
            "-m",
            "triton_native",
            f"--model-repository={Path(ctx.model_repository).resolve()}",  # type: ignore[arg-type]
            f"--workdir={ctx.service_dir('triton')}",
            f"--http-port={ports['http']}",
            f"--grpc-port={ports['grpc']}",
            f"--metrics-port={ports['metrics']}",
            *ready,
        ],
        ready=all_of(
            http_ok(f"{base}/v2/health/ready"), *[http_ok(f"{base}/v2/models/{m}/ready") for m in models]
        ),
        env={**ONE_THREAD, "PYTHONPATH": str(SERVING_DIR / "triton"), "PYTHONUNBUFFERED": "1"},
        startup_timeout_s=180.0,
        stop_timeout_s=35.0,  # tritonserver's own exit timeout is 30 s
    )


# -- TF Serving stand-in ----------------------------------------------------------------------------
def _tfserving(ctx: StackContext) -> LaunchPlan:
    models = served_models(ctx, "tfserving", lambda repo, m: repo.tfserving_model_dir(m).is_dir())
    repository = ModelRepository(Path(ctx.model_repository).resolve())  # type: ignore[arg-type]
    workdir = ctx.service_dir("tfserving")
    ports = ctx.ports["tfserving"]
    base = f"http://{LOOPBACK}:{ports['rest']}"

    def available(answer: object) -> bool:
        versions = answer.get("model_version_status", []) if isinstance(answer, dict) else []
        return any(v.get("state") == "AVAILABLE" for v in versions)

    ready_dir = server_config_dir(ctx)
    batching, flags = tfserving_ready(ready_dir) if ready_dir else (None, [])
    # The thread flags always (the stand-in's defaults are these too); a ready config's flags come last.
    ready = [
        *tfserving_thread_flags(),
        *([f"--batching_parameters_file={batching}"] if batching else []),
        *flags,
    ]

    return LaunchPlan(
        argv=[
            _python("tfserving"),
            "-m",
            "tfserving_standin",
            f"--port={ports['grpc']}",
            f"--rest_api_port={ports['rest']}",
            f"--bind_address={LOOPBACK}",
            f"--model_repository={repository.root}",
            f"--model_config_file={workdir / 'models.config'}",
            "--file_system_poll_wait_seconds=2",
            "--enable_batching",
            *ready,
        ],
        ready=all_of(*[json_probe(f"{base}/v1/models/{m}", available) for m in models]),
        env={**ONE_THREAD, "PYTHONPATH": str(SERVING_DIR / "tfserving"), "TF_CPP_MIN_LOG_LEVEL": "1"},
        startup_timeout_s=180.0,
    )


# The launch builders the server registry names (imgbench.servers.ServerSpec.launch).
torchserve_plan = _torchserve
triton_plan = _triton
tfserving_plan = _tfserving


def builders() -> dict[str, tuple[str, Callable[[StackContext], LaunchPlan]]]:
    """server -> (description, launch builder), from the server registry."""
    return {name: (spec.description, servers.resolve(spec.launch)) for name, spec in servers.SERVERS.items()}


BUILDERS = builders()
