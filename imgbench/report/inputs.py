"""What a report reads from a run directory: manifests and load results, nothing else.

RUN_DIR/model-repository/manifests/*.json   (or RUN_DIR/manifests/*.json)
RUN_DIR/load/**/*.json                       load results written by the load generator
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.errors import ImgbenchError, ManifestError
from imgbench.manifest import Manifest, load_manifest
from imgbench.paths import ModelRepository

log = logging.getLogger(__name__)


@dataclass
class ReportInputs:
    run_dir: Path
    manifests: dict[str, Manifest] = field(default_factory=dict)
    load_results: list[dict] = field(default_factory=list)
    """Load result documents as written by the load generator (see imgbench.report.serving)."""
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
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            inputs.problems.append(f"load result {path} is unreadable: {exc}")
            continue
        if isinstance(document, dict) and "points" in document:
            document.setdefault("_path", str(path))
            inputs.load_results.append(document)
    return inputs
