"""`imgbench demo --repeats N`: both trainers get --repeats N, every load point runs N times with its own
seed and result file; the end-of-run summary fits an 80-column log. Nothing is started."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imgbench import demo
from imgbench.stack import loadgen as loadgen_service


@dataclass
class _FakeStack:
    options: dict[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, str]:
        return dict(self.options)


@dataclass
class _Plan:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    recorded: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(
        demo, "run_logged", lambda stage, argv, settings, env=None: recorded.append((stage, argv))
    )
    monkeypatch.setattr(demo, "_python", lambda venv: f"/venv/{venv}/python")
    monkeypatch.setattr(
        loadgen_service,
        "build",
        lambda ctx: _Plan(
            [ctx[loadgen_service.BACKEND_OPTION], *shlex.split(ctx[loadgen_service.ARGS_OPTION])]
        ),
    )
    return recorded


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_trainers_get_the_repeats(tmp_path: Path, calls: list[tuple[str, list[str]]]) -> None:
    settings = demo.DemoSettings(run_dir=tmp_path, repeats=3)
    demo.stage_train_pt(settings)
    demo.stage_train_tf(settings)
    assert [_flag(argv, "--repeats") for _, argv in calls] == ["3", "3"]
    assert [_flag(argv, "--seed") for _, argv in calls] == ["0", "0"]  # seeds 0, 1, 2


def test_every_load_point_repeats_with_its_own_seed(
    tmp_path: Path, calls: list[tuple[str, list[str]]]
) -> None:
    settings = demo.DemoSettings(run_dir=tmp_path, repeats=2, backends=("triton",))
    settings.stack = _FakeStack()  # type: ignore[assignment]
    demo.stage_load(settings)
    runs = [(_flag(argv, "--run-id"), _flag(argv, "--seed")) for _, argv in calls]
    models = demo.load_cases()["triton"]
    assert len(runs) == len(models) * 2 * 2  # models × (closed, open) × repeats
    assert ("triton-pt_mobilenet_v3_small-closed-seed0", "0") in runs
    assert ("triton-pt_mobilenet_v3_small-closed-seed1", "1") in runs
    assert len({run_id for run_id, _ in runs}) == len(runs)  # one result file per repeat


def test_one_repeat_keeps_the_run_ids(tmp_path: Path, calls: list[tuple[str, list[str]]]) -> None:
    settings = demo.DemoSettings(run_dir=tmp_path, backends=("triton",))
    settings.stack = _FakeStack()  # type: ignore[assignment]
    demo.stage_load(settings)
    assert _flag(calls[0][1], "--run-id") == "triton-pt_mobilenet_v3_small-closed"


def test_dynamic_sizes_reach_both_trainers_only_when_asked(
    tmp_path: Path, calls: list[tuple[str, list[str]]]
) -> None:
    demo.stage_train_pt(demo.DemoSettings(run_dir=tmp_path))
    demo.stage_train_tf(demo.DemoSettings(run_dir=tmp_path, dynamic_sizes="32,48"))
    (_, pt), (_, tf) = calls
    assert "--dynamic-sizes" not in pt
    assert _flag(tf, "--dynamic-sizes") == "32,48"
