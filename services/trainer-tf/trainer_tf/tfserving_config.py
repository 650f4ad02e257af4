"""TF Serving's configuration files, written at the ``tfserving/`` root of the model repository, next to
the model folders they describe:

    tfserving/models.config              --model_config_file: every tf_* model with a version folder
    tfserving/batching_parameters.txt    --enable_batching --batching_parameters_file
    tfserving/monitoring.config          --monitoring_config_file: Prometheus, /monitoring/prometheus/metrics

Start the real server with
``tensorflow_model_server --port=8500 --rest_api_port=8501 --model_config_file=tfserving/models.config
--enable_batching --batching_parameters_file=tfserving/batching_parameters.txt
--monitoring_config_file=tfserving/monitoring.config``.
"""

from __future__ import annotations

from pathlib import Path

from imgbench.atomic import atomic_write_text
from imgbench.paths import MODEL_NAME_PATTERN, ModelRepository

MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
MONITORING_CONFIG = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

# Mirrors the Triton config (imgbench.triton_config defaults): batches up to 32, at most 2 ms of waiting.
MAX_BATCH_SIZE = 32
BATCH_TIMEOUT_MICROS = 2000
MAX_ENQUEUED_BATCHES = 100


def served_models(repo: ModelRepository) -> list[str]:
    """Model folders under tfserving/ that hold at least one integer version."""
    root = repo.tfserving_dir
    if not root.is_dir():
        return []
    return sorted(
        folder.name
        for folder in root.iterdir()
        if folder.is_dir() and MODEL_NAME_PATTERN.match(folder.name) and repo.versions(folder.name)
    )


def models_config_text(models: list[str], base_path: str) -> str:
    """A ``model_config_list`` serving the newest version of each model.

    >>> print(models_config_text(["tf_resnet18"], "/models/tfserving"))   # doctest: +ELLIPSIS
    model_config_list {
      config {
        name: "tf_resnet18"
        base_path: "/models/tfserving/tf_resnet18"
    ...
    """
    entries = "".join(
        f"""  config {{
    name: "{name}"
    base_path: "{base_path.rstrip("/")}/{name}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 1 }} }}
  }}
"""
        for name in models
    )
    return f"model_config_list {{\n{entries}}}\n"


def batching_parameters_text(num_batch_threads: int) -> str:
    return (
        f"max_batch_size {{ value: {MAX_BATCH_SIZE} }}\n"
        f"batch_timeout_micros {{ value: {BATCH_TIMEOUT_MICROS} }}\n"
        f"max_enqueued_batches {{ value: {MAX_ENQUEUED_BATCHES} }}\n"
        f"num_batch_threads {{ value: {num_batch_threads} }}\n"
    )


def monitoring_config_text() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{PROMETHEUS_PATH}"\n}}\n'


def write_tfserving_configs(
    repo: ModelRepository, base_path: str | None, num_batch_threads: int
) -> list[Path]:
    """(Re)write the three files for every model now under tfserving/; returns their paths."""
    root = repo.tfserving_dir
    base = base_path or str(root.resolve())
    files = {
        root / MODELS_CONFIG: models_config_text(served_models(repo), base),
        root / BATCHING_PARAMETERS: batching_parameters_text(num_batch_threads),
        root / MONITORING_CONFIG: monitoring_config_text(),
    }
    for path, text in files.items():
        atomic_write_text(path, text)
    return list(files)
