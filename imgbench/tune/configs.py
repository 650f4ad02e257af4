"""A configuration as the files each server reads, ready for `stack up`, compose and Kubernetes:

- Triton: the model's ``config.pbtxt`` with ``max_batch_size``, ``preferred_batch_size``,
  ``max_queue_delay_microseconds``, the instance count and ONNX Runtime's ``intra_op_threads``;
- TF Serving (and the stand-in): ``batching_parameters.txt`` (with ``num_batch_threads``) and
  ``flags.txt`` (``--tensorflow_intra_op_parallelism``/``--tensorflow_inter_op_parallelism``);
- TorchServe: the model config (``<model>.model-config.yaml``: batch size, max batch delay, workers; for
  torch-model-archiver ``--config-file`` or a registration) and ``environment.env`` (torch threads).

The folder they are written to (``RUN_DIR/best`` of `imgbench tune`) is what `imgbench stack up
--server-config DIR` starts each server with (``imgbench.stack.model_servers``); the readers below are
what the launch builders use.

    >>> text = 'max_batch_size: 32\\n  preferred_batch_size: [ 4, 8 ]\\n  max_queue_delay_microseconds: 2\\n'
    >>> knobs = {"max_batch_size": 8, "preferred_batch_size": 4, "max_queue_delay_us": 500}
    >>> print(triton_config(text, knobs))
    max_batch_size: 8
      preferred_batch_size: [ 2, 4 ]
      max_queue_delay_microseconds: 500
    <BLANKLINE>
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from imgbench import servers
from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError
from imgbench.load_results import ConfigValue
from imgbench.triton_config import INTRA_OP_KEY

Config = dict[str, ConfigValue]

MAX_ENQUEUED_BATCHES = 100
# The ready files of each server, relative to the ready-config folder (``{model}``: the tuned model).
# One list: `write_ready_configs` writes exactly these, deploy/compose/tuned.yml and
# deploy/k8s/components/tuned-config mount exactly these (tests/deploy/test_tuned_config.py).
READY_FILES: dict[str, tuple[str, ...]] = {
    "triton": ("triton/{model}/config.pbtxt",),
    "tfserving": ("tfserving/batching_parameters.txt", "tfserving/flags.txt"),
    "torchserve": ("torchserve/{model}.model-config.yaml", "torchserve/environment.env"),
}


def ready_files(server: str, model: str) -> list[str]:
    """The relative paths of ``server``'s ready files for ``model``."""
    if server not in READY_FILES:
        raise ImgbenchError(f"no ready config for server {server!r}; known: {', '.join(READY_FILES)}")
    return [name.format(model=model) for name in READY_FILES[server]]


def _int(config: Mapping[str, ConfigValue], name: str) -> int:
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 0:
        raise ImgbenchError(f"knob {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _sub(pattern: str, replacement: str, text: str, what: str) -> str:
    new, count = re.subn(pattern, replacement, text)
    if count == 0:
        raise ImgbenchError(f"config.pbtxt has no {what} to set: is it a Triton model config?")
    return new


def triton_config(text: str, config: Mapping[str, ConfigValue]) -> str:
    """``text`` (a config.pbtxt) with the knobs ``config`` names set; other knobs keep their value."""
    if "max_batch_size" in config:
        text = _sub(
            r"max_batch_size:\s*\d+",
            f"max_batch_size: {_int(config, 'max_batch_size')}",
            text,
            "max_batch_size",
        )
    if "preferred_batch_size" in config:
        preferred = _int(config, "preferred_batch_size")
        limit = _int(config, "max_batch_size") if "max_batch_size" in config else preferred
        sizes = sorted({b for b in (preferred // 2, preferred) if 1 <= b <= max(limit, 1)}) or [1]
        text = _sub(
            r"preferred_batch_size:\s*\[[^\]]*\]",
            f"preferred_batch_size: [ {', '.join(map(str, sizes))} ]",
            text,
            "preferred_batch_size",
        )
    if "max_queue_delay_us" in config:
        delay = _int(config, "max_queue_delay_us")
        text = _sub(
            r"max_queue_delay_microseconds:\s*\d+", f"max_queue_delay_microseconds: {delay}", text, "delay"
        )
    if "instance_count" in config:
        text = _sub(r"count:\s*\d+", f"count: {_int(config, 'instance_count')}", text, "instance_group count")
    if "ort_threads" in config:
        threads = _int(config, "ort_threads")
        # The onnxruntime backend's key; the python model reads the same one (imgbench.triton_config).
        text = re.sub(r'parameters\s*\{\s*key:\s*"intra_op_thread(?:s|_count)"[^}]*\}\s*\}\s*', "", text)
        text = text.rstrip("\n") + (
            f'\nparameters {{\n  key: "{INTRA_OP_KEY}"\n  value: {{ string_value: "{threads}" }}\n}}\n'
        )
    return text


def tfserving_batching(config: Mapping[str, ConfigValue]) -> str:
    """TF Serving's BatchingParameters text proto (the stand-in reads the same file)."""
    return (
        f"max_batch_size {{ value: {_int(config, 'max_batch_size')} }}\n"
        f"batch_timeout_micros {{ value: {_int(config, 'batch_timeout_micros')} }}\n"
        f"max_enqueued_batches {{ value: {MAX_ENQUEUED_BATCHES} }}\n"
        f"num_batch_threads {{ value: {_int(config, 'num_batch_threads')} }}\n"
    )


def tfserving_flags(config: Mapping[str, ConfigValue]) -> list[str]:
    return [
        f"--tensorflow_intra_op_parallelism={_int(config, 'intra_op_threads')}",
        f"--tensorflow_inter_op_parallelism={_int(config, 'inter_op_threads')}",
    ]


def torchserve_model_config(config: Mapping[str, ConfigValue]) -> str:
    """The model's yaml for torch-model-archiver ``--config-file`` (torch threads: ``environment.env``)."""
    workers = _int(config, "workers")
    return (
        f"minWorkers: {workers}\nmaxWorkers: {workers}\n"
        f"batchSize: {_int(config, 'batch_size')}\nmaxBatchDelay: {_int(config, 'max_batch_delay_ms')}\n"
        "responseTimeout: 120\n"
    )


def torchserve_environment(config: Mapping[str, ConfigValue]) -> dict[str, str]:
    """The environment of TorchServe (its workers inherit it): intra-op threads per worker; the handler
    reads ``IMGBENCH_TORCH_THREADS``, OpenMP and MKL the others."""
    threads = str(_int(config, "torch_threads"))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "IMGBENCH_TORCH_THREADS": threads}


def _env_text(env: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in env.items())


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (compose's ``env_file`` format; ``#`` comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ImgbenchError(f"{path}:{number}: expected KEY=value, got {line!r}")
        env[key.strip()] = value.strip()
    return env


def tfserving_ready(server_config: Path) -> tuple[Path | None, list[str]]:
    """(batching parameters file or None, extra flags) of a ready-config folder's ``tfserving/``."""
    folder = server_config / "tfserving"
    batching = folder / "batching_parameters.txt"
    flags_file = folder / "flags.txt"
    flags = [line.strip() for line in flags_file.read_text().splitlines()] if flags_file.is_file() else []
    flags = [flag for flag in flags if flag and not flag.startswith("#")]
    bad = [flag for flag in flags if not flag.startswith("--")]
    if bad:
        raise ImgbenchError(f"{flags_file}: every line must be a --flag=value, got {bad}")
    return (batching if batching.is_file() else None), flags


def torchserve_ready(server_config: Path) -> tuple[dict[str, str], dict[str, Config]]:
    """(environment, {model: {batch_size, max_batch_delay_ms, workers}}) of a ready-config folder's
    ``torchserve/``; models without a ``<model>.model-config.yaml`` keep their archive's settings."""
    folder = server_config / "torchserve"
    env_file = folder / "environment.env"
    env = read_env_file(env_file) if env_file.is_file() else {}
    models: dict[str, Config] = {}
    for path in sorted(folder.glob("*.model-config.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        try:
            models[path.name.removesuffix(".model-config.yaml")] = {
                "batch_size": int(document["batchSize"]),
                "max_batch_delay_ms": int(document["maxBatchDelay"]),
                "workers": int(document["minWorkers"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ImgbenchError(
                f"{path}: needs integer batchSize, maxBatchDelay and minWorkers ({exc!r}); got {document!r}"
            ) from None
    return env, models


def write_ready_configs(
    server: str, model: str, config: Mapping[str, ConfigValue], out_dir: Path, triton_source: str = ""
) -> list[Path]:
    """The best configuration as the files ``server`` reads, under ``out_dir``; knobs ``config`` does not
    name keep their registry default."""
    config = {**{knob.name: knob.default for knob in servers.get_server(server).knobs}, **config}
    if server == "triton":
        if not triton_source:
            raise ImgbenchError("writing a Triton config needs the model's current config.pbtxt")
        texts = [triton_config(triton_source, config)]
    elif server == "tfserving":
        texts = [tfserving_batching(config), "\n".join(tfserving_flags(config)) + "\n"]
    elif server == "torchserve":
        texts = [torchserve_model_config(config), _env_text(torchserve_environment(config))]
    else:
        raise ImgbenchError(f"no ready config for server {server!r}")
    files = {out_dir / name: text for name, text in zip(ready_files(server, model), texts, strict=True)}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return list(files)
