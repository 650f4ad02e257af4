"""What a report reads from a run directory: manifests and load results, nothing else.

RUN_DIR/model-repository/manifests/*.json   (or RUN_DIR/manifests/*.json)
RUN_DIR/load/**/*.json                       load results (``imgbench.load_results``)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.errors import ImgbenchError, LoadResultError, ManifestError
from imgbench.load_results import LoadResult, load_load_result
from imgbench.manifest import Manifest, load_manifest
from imgbench.paths import ModelRepository

log = logging.getLogger(__name__)


@dataclass
class ReportInputs:
    run_dir: Path
    manifests: dict[str, Manifest] = field(default_factory=dict)
    load_results: list[LoadResult] = field(default_factory=list)
    """Load result files as the load generator and the SLO search wrote them (imgbench.load_results)."""
    problems: list[str] = field(default_factory=list)
    """Inputs that were present but unreadable: said in the report."""

    def by_architecture(self) -> dict[str, dict[str, Manifest]]:
        """architecture -> framework -> manifest."""
        grouped: dict[str, dict[str, Manifest]] = {}
        for manifest in self.manifests.values():
            grouped.setdefault(manifest.architecture, {})[manifest.framework] = manifest
        return dict(sorted(grouped.items()))


def model_repository_of(run_dir: Path) -> ModelRepository:
    nested = run_dir / "model-repository"
    return ModelRepository(nested if nested.is_dir() else run_dir)


def read_inputs(run_dir: Path) -> ReportInputs:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ImgbenchError(f"run directory {run_dir} does not exist")
    inputs = ReportInputs(run_dir=run_dir)
    repository = model_repository_of(run_dir)
    for name in repository.models():
        try:
            inputs.manifests[name] = load_manifest(repository.manifest_path(name))
        except ManifestError as exc:
            inputs.problems.append(str(exc))
    load_dir = run_dir / "load"
    for path in sorted(load_dir.rglob("*.json")) if load_dir.is_dir() else []:
        try:
            inputs.load_results.append(load_load_result(path))
        except LoadResultError as exc:
            inputs.problems.append(str(exc))
    return inputs
