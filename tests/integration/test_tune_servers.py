"""`imgbench tune` against a real native server: the TF Serving stand-in on the digits model the
session trained, a tiny budget and two batch sizes; the best is at least as good as the default, the
results are a load result, and the best configuration is written as a ready batching file."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbench.load_results import load_load_result
from imgbench.paths import venv_bin
from imgbench.tune.runner import TuneSettings, run_tune

pytestmark = pytest.mark.integration


def test_tune_the_stand_in_with_a_tiny_budget(trained, tmp_path: Path) -> None:
    for venv in ("tfserving", "loadgen"):
        if not (venv_bin(venv) / "python").exists():
            pytest.skip(f"the {venv} venv is missing; run `scripts/setup.sh {venv}`")
    settings = TuneSettings(
        server="tfserving",
        model=trained.models["tf"],
        model_repository=trained.repository,
        run_dir=tmp_path / "tune",
        slo_ms=2000.0,
        budget_s=240.0,
        strategy="grid",
        space={"max_batch_size": [1, 8]},
        users=4,
        seconds=3.0,
        warmup_s=1.0,
        dataset=trained.dataset,
    )
    path, result = run_tune(settings)
    assert result.default is not None and result.default.passed, result.probes
    assert result.best is not None
    assert (result.best.images_per_second or 0) >= (result.default.images_per_second or 0)
    document = load_load_result(path)
    assert document.kind == "tune" and document.tune is not None
    assert all(point.server_config for point in document.points)
    assert all(point.server.stand_in for point in document.points)
    batching = Path(document.tune.best_config_files[0]).read_text()
    assert f"max_batch_size {{ value: {result.best.config['max_batch_size']} }}" in batching


def test_tune_torchserve_through_its_management_api(trained, tmp_path: Path) -> None:
    for venv in ("torchserve", "loadgen"):
        if not (venv_bin(venv) / "python").exists():
            pytest.skip(f"the {venv} venv is missing; run `scripts/setup.sh {venv}`")
    settings = TuneSettings(
        server="torchserve",
        model=trained.models["pt"],
        model_repository=trained.repository,
        run_dir=tmp_path / "tune",
        slo_ms=5000.0,
        budget_s=600.0,
        strategy="grid",
        space={"batch_size": [1, 4]},
        users=4,
        seconds=3.0,
        warmup_s=2.0,
        dataset=trained.dataset,
    )
    path, result = run_tune(settings)
    print(
        result.verdict,
        *[(p.config, p.images_per_second, p.p99_ms, p.rejected) for p in result.probes],
        sep="\n",
    )
    # TorchServe applied every configuration (a registration it overrode would be a rejected probe).
    assert not any(p.rejected for p in result.probes), [p.rejected for p in result.probes]
    assert result.best is not None and result.default is not None
    assert (result.best.images_per_second or 0) >= (result.default.images_per_second or 0)
    document = load_load_result(path)
    assert {point.server_config["batch_size"] for point in document.points if point.server_config} <= {
        8,
        1,
        4,
    }
    assert "batchSize:" in Path(document.tune.best_config_files[0]).read_text()  # type: ignore[union-attr]


def test_tune_triton_through_its_model_config(trained, tmp_path: Path) -> None:
    for venv in ("triton", "loadgen"):
        if not (venv_bin(venv) / "python").exists():
            pytest.skip(f"the {venv} venv is missing; run `scripts/setup.sh {venv}`")
    settings = TuneSettings(
        server="triton",
        model=trained.models["pt"],
        model_repository=trained.repository,
        run_dir=tmp_path / "tune",
        slo_ms=5000.0,
        budget_s=600.0,
        strategy="grid",
        space={"max_batch_size": [1]},
        users=4,
        seconds=3.0,
        warmup_s=1.0,
        dataset=trained.dataset,
    )
    path, result = run_tune(settings)
    print(
        result.verdict,
        *[(p.config, p.images_per_second, p.p99_ms, p.rejected) for p in result.probes],
        sep="\n",
    )
    assert not any(p.rejected for p in result.probes), [p.rejected for p in result.probes]
    assert result.best is not None and result.default is not None
    document = load_load_result(path)
    assert all(point.server.implementation == "Triton" for point in document.points)
    assert all(point.server_timings is not None for point in document.points)  # the statistics API
    config = Path(document.tune.best_config_files[0]).read_text()  # type: ignore[union-attr]
    assert f"max_batch_size: {result.best.config['max_batch_size']}" in config
