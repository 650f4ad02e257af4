"""A configuration as the files each server reads, ready for `stack up`, compose and Kubernetes:

- Triton: the model's ``config.pbtxt`` with ``max_batch_size``, ``preferred_batch_size``,
  ``max_queue_delay_microseconds``, the instance count and ONNX Runtime's ``intra_op_threads``;
- TF Serving (and the stand-in): ``batching_parameters.txt``; intra/inter-op parallelism are flags;
- TorchServe: the model config (``model-config.yaml``, for torch-model-archiver ``--config-file``).

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

from imgbench import servers
from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError
from imgbench.load_results import ConfigValue
from imgbench.triton_config import INTRA_OP_KEY

MAX_ENQUEUED_BATCHES = 100


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
    """The model's yaml for torch-model-archiver ``--config-file`` (torch threads: OMP_NUM_THREADS)."""
    workers = _int(config, "workers")
    return (
        f"minWorkers: {workers}\nmaxWorkers: {workers}\n"
        f"batchSize: {_int(config, 'batch_size')}\nmaxBatchDelay: {_int(config, 'max_batch_delay_ms')}\n"
        f"# environment of each worker: OMP_NUM_THREADS={_int(config, 'torch_threads')}\n"
    )


def write_ready_configs(
    server: str, model: str, config: Mapping[str, ConfigValue], out_dir: Path, triton_source: str = ""
) -> list[Path]:
    """The best configuration as the files ``server`` reads, under ``out_dir``; knobs ``config`` does not
    name keep their registry default."""
    config = {**{knob.name: knob.default for knob in servers.get_server(server).knobs}, **config}
    if server == "triton":
        if not triton_source:
            raise ImgbenchError("writing a Triton config needs the model's current config.pbtxt")
        files = {out_dir / "triton" / model / "config.pbtxt": triton_config(triton_source, config)}
    elif server == "tfserving":
        files = {
            out_dir / "tfserving" / "batching_parameters.txt": tfserving_batching(config),
            out_dir / "tfserving" / "flags.txt": "\n".join(tfserving_flags(config)) + "\n",
        }
    elif server == "torchserve":
        files = {out_dir / "torchserve" / f"{model}.model-config.yaml": torchserve_model_config(config)}
    else:
        raise ImgbenchError(f"no ready config for server {server!r}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return list(files)
