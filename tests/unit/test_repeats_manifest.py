"""--repeats in the contracts: the manifest's ``training.repeats`` (written from repeats.json by both
trainers' exports) and the load point's ``seed``; old files without them still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import epoch, load_document, load_point, make_manifest

from imgbench.errors import ImgbenchError, ManifestError
from imgbench.load_results import parse_load_result
from imgbench.manifest import SeedFigures, TrainingRepeats, load_manifest, write_manifest
from imgbench.training_log import append_epoch, training_repeats, write_repeats


def _seed_runs(base: Path, seeds: dict[int, float]) -> dict[int, Path]:
    runs = {}
    for seed, top1 in seeds.items():
        run_dir = base / f"seed-{seed}"
        for record in (epoch(1, 12.0, top1 / 2), epoch(2, 10.0, top1)):
            append_epoch(run_dir, record)
        runs[seed] = run_dir
    return runs


def test_repeats_round_trip_through_the_manifest(tmp_path: Path) -> None:
    repeats = TrainingRepeats(
        per_seed=[
            SeedFigures(seed=s, epochs=3, top1=t, seconds_per_epoch=10.0, images_per_second=140.0,
                        peak_memory_bytes=2**20)
            for s, t in ((0, 0.9), (1, 0.92))
        ]
    )  # fmt: skip
    manifest = make_manifest()
    manifest.training.repeats = repeats
    write_manifest(tmp_path / "pt_resnet18.json", manifest)
    loaded = load_manifest(tmp_path / "pt_resnet18.json")
    assert loaded.training.repeats == repeats
    assert loaded.training.repeats.schema_version == 1
    assert loaded.training.repeats.values("top1") == [0.9, 0.92]
    with pytest.raises(ManifestError, match="'nope'"):
        loaded.training.repeats.values("nope")


def test_old_manifest_without_repeats_still_loads(tmp_path: Path) -> None:
    data = json.loads(make_manifest().model_dump_json())
    del data["training"]["repeats"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert load_manifest(tmp_path / "old.json").training.repeats is None


def test_repeated_seed_is_refused() -> None:
    row = {"epochs": 1, "top1": 0.9, "seconds_per_epoch": 1.0, "images_per_second": 1.0,
           "peak_memory_bytes": 1}  # fmt: skip
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        TrainingRepeats(per_seed=[SeedFigures(seed=3, **row), SeedFigures(seed=3, **row)])


def test_training_repeats_reads_the_summary_beside_a_seed_folder(tmp_path: Path) -> None:
    runs = _seed_runs(tmp_path, {4: 0.9, 5: 0.94})
    write_repeats(tmp_path, runs)
    repeats = training_repeats(runs[4])
    assert repeats is not None
    assert [row.seed for row in repeats.per_seed] == [4, 5]
    assert repeats.values("top1") == [0.9, 0.94]
    assert repeats.values("seconds_per_epoch") == [10.0, 10.0]  # the first epoch is warm-up
    # A single run (not a seed folder), or a seed folder with no summary: no repeats.
    assert training_repeats(tmp_path / "plain-run") is None
    assert training_repeats(_seed_runs(tmp_path / "other", {0: 0.9})[0]) is None


def test_a_broken_repeats_summary_names_its_file(tmp_path: Path) -> None:
    runs = _seed_runs(tmp_path, {0: 0.9})
    (tmp_path / "repeats.json").write_text('{"per_seed": [{"seed": 0}]}')
    with pytest.raises(ImgbenchError, match=r"repeats\.json"):
        training_repeats(runs[0])


def test_load_points_keep_their_seed_and_old_points_load() -> None:
    result = parse_load_result(
        load_document([load_point("triton", 1, 5.0, seed=7), load_point("triton", 1, 5.0)]), "x.json"
    )
    assert [p.seed for p in result.points] == [7, None]
