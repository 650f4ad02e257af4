"""The report's "Edge models" section, rendered from manifests: every TFLite model's size, measured peak
memory, latency and agreement, the seed's edge-memory claim beside ours, and what is not measured."""

from __future__ import annotations

import json
from pathlib import Path

from factories import make_manifest

from imgbench.manifest import ExportRecord, Manifest, write_manifest
from imgbench.paths import ModelRepository
from imgbench.report.build import build_report
from imgbench.report.edge import claim_rows, edge_section
from imgbench.report.inputs import read_inputs

MiB = 2**20


def _tflite(prefix: str, variant: str, size_mib: float, peak_mib: float | None, ms: float) -> ExportRecord:
    details: dict[str, object] = {"converter": f"{prefix}-converter", "threads": 2}
    if peak_mib is not None:
        details["memory"] = {
            "model_bytes": int(size_mib * MiB),
            "peak_growth_bytes": int(peak_mib * MiB),
            "steady_growth_bytes": int(peak_mib * MiB) - MiB,
        }
    return ExportRecord(
        format=f"tflite_{variant}",
        path=f"edge/{prefix}_resnet18/model_{variant}.tflite",
        size_bytes=int(size_mib * MiB),
        n=359,
        top1_agreement=1.0 if variant == "fp32" else 0.97,
        max_abs_logit_diff=3e-6 if variant == "fp32" else 0.8,
        accuracy=0.95,
        latency_ms_per_image=ms,
        details=details,
    )


def _with_tflite(framework: str, records: dict[str, ExportRecord]) -> Manifest:
    manifest = make_manifest(framework)
    manifest.exports.update(records)
    return manifest


def _run(tmp_path: Path, manifests: list[Manifest]) -> Path:
    repo = ModelRepository(tmp_path / "run" / "model-repository")
    for manifest in manifests:
        write_manifest(repo.manifest_path(manifest.model), manifest)
    return tmp_path / "run"


def test_edge_table_and_the_claim_beside_ours(tmp_path: Path) -> None:
    pt = _with_tflite(
        "pytorch",
        {
            "tflite_fp32": _tflite("pt", "fp32", 42.0, 90.0, 2.0),
            "tflite_int8": _tflite("pt", "int8", 11.0, 20.0, 1.0),
        },
    )
    tf = _with_tflite(
        "tensorflow",
        {
            "tflite_fp32": _tflite("tf", "fp32", 40.0, 72.0, 2.5),
            "tflite_dynamic": _tflite("tf", "dynamic", 11.0, None, 1.5),
            "tflite_int8": _tflite("tf", "int8", 10.5, 15.0, 0.9),
        },
    )
    run = _run(tmp_path, [pt, tf])
    section = edge_section(read_inputs(run))
    lines = section.splitlines()
    assert lines[0] == "## Edge models"
    # One row per TFLite model of both frameworks, with its measured figures.
    pt_fp32 = "| pt_resnet18 | fp32 | pt-converter | 42.0 MiB | 90.0 MiB | 89.0 MiB | 2.000 | 2 |"
    tf_int8 = "| tf_resnet18 | int8 | tf-converter | 10.5 MiB | 15.0 MiB | 14.0 MiB | 0.900 | 2 |"
    assert pt_fp32 + " 100.00% | 3.00e-06 | 95.00% |" in lines
    assert tf_int8 + " 97.00% | 8.00e-01 | 95.00% |" in lines
    # A model whose memory was not measured shows a dash, not a zero.
    assert "| tf_resnet18 | dynamic | tf-converter | 11.0 MiB | – | – | 1.500 |" in section
    # The claim: TF vs PT per variant both frameworks exported (dynamic is TF only).
    rows = claim_rows(read_inputs(run))
    assert [row[:7] for row in rows] == [
        ["resnet18", "fp32", "90.0 MiB", "72.0 MiB", "-20.0%", "-4.8%", "+25.0%"],
        ["resnet18", "int8", "20.0 MiB", "15.0 MiB", "-25.0%", "-4.5%", "-10.0%"],
    ]
    assert all(row[7] == "at export: 1 run each" for row in rows)
    assert all("14 MB vs 11 MB" in row[8] and "−21.4%" in row[8] for row in rows)
    # A bench file in the run folder (one venv, interleaved, N runs) replaces the export-time figures.
    runs = {"pt_resnet18": [80.0, 84.0, 100.0], "tf_resnet18": [60.0, 63.0, 61.0]}
    bench = {
        "models": [
            {
                "model": model,
                "export": "tflite_fp32",
                "runs": [{"peak_growth_bytes": v * MiB} for v in values],
            }
            for model, values in runs.items()
        ]
    }
    (run / "edge-memory.json").write_text(json.dumps(bench))
    fp32 = claim_rows(read_inputs(run))[0]
    assert fp32[:5] == ["resnet18", "fp32", "84.0 MiB", "61.0 MiB", "-27.4%"]
    assert fp32[7] == "bench: median of 3 vs 3 runs"
    assert claim_rows(read_inputs(run))[1][7] == "at export: 1 run each"  # int8 was not benched
    assert "experimental (ONNX → TFLite)" in section
    assert "Not measured here" in section and "edgetpu_compiler" in section
    # And it is part of the whole report, after the exports.
    report = build_report(run).read_text()
    assert report.index("## Exports") < report.index("## Edge models") < report.index("## Serving")


def test_no_tflite_and_one_framework_are_said(tmp_path: Path) -> None:
    section = edge_section(read_inputs(_run(tmp_path / "a", [make_manifest("pytorch")])))
    assert "No TFLite export in this run" in section and "Not measured here" in section
    failed = ExportRecord(
        format="tflite_fp32", path="edge/pt_resnet18/model_fp32.tflite", status="failed", reason="gate"
    )
    only_pt = _with_tflite("pytorch", {"tflite_fp32": failed})
    section = edge_section(read_inputs(_run(tmp_path / "b", [only_pt])))
    assert "| pt_resnet18 | fp32 | failed: gate |" in section
    assert "No architecture has TFLite exports of both frameworks" in section
