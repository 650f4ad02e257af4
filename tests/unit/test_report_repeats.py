"""The report across repeats: 95% CIs, Welch verdicts on the seed's claims (n=1: cannot tell), percentiles
marked unreliable below their sample counts, the 80-column terminal summary, a --repeats 2 report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import load_document, load_point, make_manifest

from imgbench.errors import ImgbenchError
from imgbench.manifest import Manifest, SeedFigures, TrainingRepeats, write_manifest
from imgbench.paths import ModelRepository
from imgbench.report.build import build_report
from imgbench.report.inputs import read_inputs
from imgbench.report.stats import ci95, compare, percentile_cell, percentile_reliable, welch_p_value
from imgbench.report.terminal import render_summary

# -- confidence intervals and verdicts --------------------------------------------------------------------


def test_ci95_is_student_t_across_repeats() -> None:
    interval = ci95([0.90, 0.92, 0.94])
    assert interval.mean == pytest.approx(0.92)
    assert interval.half_width == pytest.approx(4.3027 * 0.02 / 3**0.5, rel=1e-4)
    assert interval.format(3) == "0.920 ± 0.050 (n=3)"
    single = ci95([0.9])
    assert single.half_width is None and single.low is None
    assert single.format(1) == "0.9 (n=1, no CI)"
    with pytest.raises(ImgbenchError, match="none"):
        ci95([])


def test_welch_p_value_matches_the_textbook_example() -> None:
    # t = (3 - 1) / sqrt(1/3 + 1/3) = 2.449, df = 4: two-sided p = 0.0704.
    p_value = welch_p_value(ci95([2.0, 3.0, 4.0]), ci95([0.0, 1.0, 2.0]))
    assert p_value == pytest.approx(0.0704, abs=1e-4)
    with pytest.raises(ImgbenchError, match="n=1"):
        welch_p_value(ci95([1.0]), ci95([1.0, 2.0]))


@pytest.mark.parametrize(
    ("a", "b", "sign", "verdict"),
    [
        ([0.95, 0.96, 0.94], [0.90, 0.91, 0.89], +1, "supported"),
        ([0.95, 0.96, 0.94], [0.90, 0.91, 0.89], -1, "contradicted"),
        ([10.0, 10.1, 9.9], [12.0, 12.2, 11.8], -1, "supported"),  # PT faster per epoch, as claimed
        ([0.95, 0.80, 0.90], [0.90, 0.85, 0.93], +1, "not distinguishable"),
        ([0.95], [0.90], +1, "cannot tell"),  # one run per side: no run-to-run variation
        ([0.95], [0.90, 0.91, 0.89], +1, "cannot tell"),
        ([0.95, 0.95], [0.95, 0.95], +1, "not distinguishable"),  # identical, no spread
        ([0.96, 0.96], [0.95, 0.95], +1, "supported"),  # different, no spread
    ],
)
def test_verdicts_follow_from_the_repeats(a: list[float], b: list[float], sign: int, verdict: str) -> None:
    assert compare(a, b, sign).verdict == verdict


def test_cannot_tell_says_why_and_what_to_do() -> None:
    text = compare([0.9], [0.8], +1).explain()
    assert text.startswith("cannot tell") and "--repeats 2" in text
    assert "Welch p=" in compare([1.0, 1.1], [2.0, 2.1], -1).explain()
    with pytest.raises(ImgbenchError, match="0"):
        compare([1.0], [1.0], 0)


# -- percentiles ------------------------------------------------------------------------------------------


def test_tail_percentiles_below_their_sample_counts_are_marked() -> None:
    assert percentile_reliable(50.0, 10) and percentile_reliable(99.0, 1_000)
    assert not percentile_reliable(99.0, 999)
    assert not percentile_reliable(99.9, 9_999) and percentile_reliable(99.9, 10_000)
    assert percentile_cell(12.345, 99.0, 290) == "12.35†"
    assert percentile_cell(12.345, 99.0, 5_000) == "12.35"
    assert percentile_cell(12.345, 99.9, 5_000) == "12.35†"
    assert percentile_cell(None, 99.0, 5) is None


# -- reports from synthetic runs --------------------------------------------------------------------------


def _with_repeats(manifest: Manifest, top1: list[float], seconds: list[float]) -> Manifest:
    manifest.training.repeats = TrainingRepeats(
        per_seed=[
            SeedFigures(seed=seed, epochs=3, top1=t, seconds_per_epoch=s, images_per_second=1438 / s,
                        peak_memory_bytes=900 * 2**20 + seed)
            for seed, (t, s) in enumerate(zip(top1, seconds, strict=True))
        ]
    )  # fmt: skip
    return manifest


def _write_run(run_dir: Path, manifests: list[Manifest], documents: list[dict]) -> Path:
    repo = ModelRepository(run_dir / "model-repository")
    for manifest in manifests:
        write_manifest(repo.manifest_path(manifest.model), manifest)
    (run_dir / "load").mkdir(parents=True)
    for index, document in enumerate(documents):
        (run_dir / "load" / f"run{index}.json").write_text(json.dumps(document))
    return run_dir


MODEL = "pt_mobilenet_v3_small"


def _load_documents(seeds: list[int]) -> list[dict]:
    documents = []
    for seed in seeds:
        cases = [("torchserve", 1, 30.0), ("torchserve", 4, 60.0), ("triton", 1, 8.0), ("tfserving", 1, 12.0)]
        points = [
            load_point(b, u, p99 + seed, seed=seed, model=MODEL, run_id=f"{b}-{u}-s{seed}", n=300 + 900 * u)
            for b, u, p99 in cases
        ]
        points.append(
            load_point("triton", 0, 9.0 + seed, seed=seed, mode="open", target_rate=20.0, point="rate=20",
                       n=290, model="tf_mobilenet_v3_small", run_id=f"open-s{seed}")
        )  # fmt: skip
        documents.append(load_document(points, run_id=f"run-s{seed}"))
    return documents


@pytest.fixture
def repeated_run(tmp_path: Path) -> Path:
    pt = _with_repeats(make_manifest("pytorch", "mobilenet_v3_small"), [0.95, 0.94], [10.0, 10.2])
    tf = _with_repeats(make_manifest("tensorflow", "mobilenet_v3_small"), [0.90, 0.905], [20.0, 20.4])
    return _write_run(tmp_path / "run", [pt, tf], _load_documents([0, 1]))


def test_a_repeats_2_report_gives_intervals_and_verdicts(repeated_run: Path) -> None:
    report = build_report(repeated_run).read_text()
    assert "94.5% ± 6.4% (n=2)" in report  # top-1 across the two seeds, t(1) = 12.71
    claims = report.split("## The seed's claims, measured")[1].split("## Training")[0]
    assert "| top-1, PyTorch − TensorFlow |" in claims and "supported (Welch p=" in claims
    assert "time per epoch" in claims and "Welch's t-test" in claims
    assert "Across repeats" in report
    rows = {line for line in report.splitlines() if line.startswith("| ") and "(n=2)" in line}
    # p99 60 and 61 ms over two seeds: 60.50 ± 12.71 × 0.71 / √2; 3,900 requests per repeat: reliable.
    closed_4 = next(
        row for row in rows if "| TorchServe | pt_mobilenet_v3_small | 1 | closed ×4 | 2 |" in row
    )
    assert "| 3,900 | 20.17 ± 2.12 (n=2) | 60.50 ± 6.35 (n=2) | 400.0 ± 0.0 (n=2) |" in closed_4
    # The open-loop point's 290 requests per repeat cannot carry a p99.
    assert any("| open 20/s | 2 | 290 |" in row and "9.50 ± 6.35 (n=2) †" in row for row in rows)
    for within_run_wording in ("measurement noise", "standard errors apart", "two standard errors"):
        assert within_run_wording not in report


def test_one_run_per_framework_cannot_tell(tmp_path: Path) -> None:
    slow_tf = make_manifest("tensorflow")
    slow_tf.training.top1 = 0.5
    run = _write_run(tmp_path / "run", [make_manifest("pytorch"), slow_tf], _load_documents([0]))
    report = build_report(run).read_text()
    claims = report.split("## The seed's claims, measured")[1].split("## Training")[0]
    assert claims.count("cannot tell: 1 vs 1 repeat(s)") == 3  # top-1, time per epoch, memory
    summary = report.split("## What this run says")[1].split("## The seed's")[0]
    assert "the report cannot tell whether that is real" in summary
    assert "Across repeats" not in report  # nothing was repeated
    assert "Each load point ran once: no confidence interval" in report


def test_the_terminal_summary_fits_80_columns(repeated_run: Path) -> None:
    text = render_summary(read_inputs(repeated_run), width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in text
    # Short registry names in the tables, the full self-reported labels in the legend.
    assert "  triton = Triton 2.51.0 (python backend)" in lines
    assert "  tfserving = TF Serving stand-in (TensorFlow 2.21.0)" in lines
    assert any(line.split()[:2] == ["pt_mobilenet_v3_small", "2"] for line in lines)
    open_row = next(line for line in lines if "open 20/s" in line)
    assert "290" in open_row and "9.50†" in open_row
    assert "unreliable" in text


def test_slo_search_and_tuning_p99s_carry_their_n(tmp_path: Path) -> None:
    search = {
        "backend": "triton", "model": MODEL, "slo_ms": 100, "max_rate": 40.0, "p99_ms": 80.0, "step_s": 20,
        "probes": [{"rate": 20.0, "p99_ms": 50.0, "n": 400}, {"rate": 40.0, "p99_ms": 80.0, "n": 800}],
    }  # fmt: skip
    best = {"config": {"max_batch_size": 8}, "images_per_second": 90.0, "p99_ms": 30.0, "passed": True}
    tune = {
        "backend": "triton", "model": MODEL, "strategy": "grid", "slo_ms": 50, "budget_s": 60,
        "elapsed_s": 50, "best": best, "default": best, "probes": [best], "verdict": "8 is best.",
    }  # fmt: skip
    tune_point = load_point("triton", 1, 30.0, model=MODEL, n=2_000, server_config={"max_batch_size": 8})
    run = _write_run(
        tmp_path / "run",
        [],
        [
            load_document([], kind="slo_search", slo_search=[search]),
            load_document([tune_point], kind="tune", tune=tune),
        ],
    )
    report = build_report(run).read_text()
    assert "| 100 | 40.0 | 800 | 80.00† | 20 |" in report  # 800 requests cannot carry a p99
    assert "| 30.00 (n=2,000) |" in report


def test_client_bound_points_are_marked_in_the_terminal_summary(tmp_path: Path) -> None:
    document = load_document([load_point("triton", 1, 8.0, model=MODEL, n=5_000, client_bound=True)])
    text = render_summary(read_inputs(_write_run(tmp_path / "run", [], [document])), width=80)
    row = next(line for line in text.splitlines() if line.startswith(" triton") or line.startswith("triton"))
    assert "100.0*" in row and "8.00" in row and "8.00†" not in row
    assert "* client-bound" in text


def test_the_terminal_summary_fits_80_columns_with_wide_intervals(tmp_path: Path) -> None:
    # Noisy seeds (a busy machine) and a fast server: the widest cells the summary can meet.
    pt = _with_repeats(make_manifest("pytorch", "mobilenet_v3_small"), [0.10, 0.99], [0.5, 900.0])
    tf = _with_repeats(make_manifest("tensorflow", "mobilenet_v3_small"), [0.50, 0.51], [1.0, 2.0])
    documents = [
        load_document([load_point("triton", 64, 2_000.0 * (1 + seed), seed=seed, model=MODEL, n=123_456,
                                  throughput_rps=99_999.9, errors=12_345, incorrect=1_234)])
        for seed in (0, 1)
    ]  # fmt: skip
    text = render_summary(read_inputs(_write_run(tmp_path / "run", [pt, tf], documents)), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text, text
    # Both seeds of the point count, though their files share a run id.
    assert "closed ×64     2  123,456" in text, text


def test_plots_draw_one_line_per_point_over_its_repeats_and_one_panel_per_model(
    repeated_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeats of a load point are one median line (n = the fewest samples of any repeat), not one line
    per seed, and each model gets its own panel: with N repeats the legends stay readable."""
    from imgbench.report import plots

    figures: dict[str, list[tuple[str, list[str]]]] = {}

    def capture(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
        figures[path.name] = [
            (ax.get_title(), [text.get_text() for text in ax.get_legend().get_texts()]) for ax in fig.axes
        ]
        return path

    monkeypatch.setattr(plots, "_save", capture)
    inputs = read_inputs(repeated_run)
    plots.latency_percentiles(inputs, tmp_path)
    plots.throughput_vs_load(inputs, tmp_path)
    latency = dict(figures["latency_percentiles.png"])
    assert set(latency) == {MODEL, "tf_mobilenet_v3_small"}
    assert len(latency[MODEL]) == 4, latency[MODEL]  # 4 points, 2 repeats each
    assert all("median of 2 runs" in label for label in latency[MODEL])
    assert any("n=1,200," in label for label in latency[MODEL])
    throughput = dict(figures["throughput_vs_concurrency.png"])
    assert len(throughput[MODEL]) == 3, throughput[MODEL]  # one line per server
