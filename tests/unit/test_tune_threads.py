"""Issue 12's tune gaps: every knob, thread counts included, reaches each server's launch (argv,
environment, model config), the ready files of the best configuration start each server
(`stack up --server-config`), and the Triton launcher keeps a config's thread parameters and a zero
queue delay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from factories import make_manifest
from typer.testing import CliRunner

from imgbench.cli import app
from imgbench.errors import StackError
from imgbench.manifest import write_manifest
from imgbench.paths import ModelRepository, project_root, venv_bin
from imgbench.stack import model_servers
from imgbench.stack.model_servers import SERVER_CONFIG_OPTION
from imgbench.stack.plan import StackContext
from imgbench.stack.ports import free_port_map
from imgbench.triton_config import TritonModelSpec, render_config
from imgbench.tune.configs import (
    read_env_file,
    tfserving_ready,
    torchserve_ready,
    triton_config,
    write_ready_configs,
)
from imgbench.tune.runner import NATIVE_KNOBS, default_space, defaults_of

sys.path.insert(0, str(project_root() / "services" / "serving" / "triton"))
from triton_native.repository import python_spec, sync

sys.path.pop(0)

SPEC = TritonModelSpec("pt_x", "image", [3, 8, 8], "logits", 10)


def _needs(*venvs: str) -> None:
    for venv in venvs:
        if not (venv_bin(venv) / "python").exists():
            pytest.skip(f"the {venv} venv is missing; run `scripts/setup.sh {venv}`")


def test_every_registry_knob_is_set_by_native_probes() -> None:
    from imgbench import servers

    for name, spec in servers.SERVERS.items():
        assert set(NATIVE_KNOBS[name]) == {k.name for k in spec.knobs}, name
        assert set(default_space(name)) == set(defaults_of(name)) == set(NATIVE_KNOBS[name])
    assert "ort_threads" in NATIVE_KNOBS["triton"] and "torch_threads" in NATIVE_KNOBS["torchserve"]


def test_python_spec_keeps_the_thread_parameters() -> None:
    text = triton_config(render_config(SPEC, "onnxruntime"), {"ort_threads": 2})
    spec = python_spec(text)
    assert spec.intra_op_threads == 2 and spec.inter_op_threads == 1
    assert 'string_value: "2"' in render_config(spec, "python")


def test_python_spec_keeps_a_zero_queue_delay() -> None:
    text = triton_config(render_config(SPEC, "onnxruntime"), {"max_queue_delay_us": 0})
    assert "max_queue_delay_microseconds: 0" in text
    assert python_spec(text).max_queue_delay_us == 0
    assert "max_queue_delay_microseconds: 0" in render_config(python_spec(text), "python")
    # A config without dynamic batching takes the defaults, as before.
    bare = text.split("dynamic_batching")[0]
    assert python_spec(bare).max_queue_delay_us == TritonModelSpec.max_queue_delay_us


def _repository(tmp_path: Path) -> tuple[ModelRepository, str, str]:
    repository = ModelRepository(tmp_path / "repo")
    pt, tf = make_manifest("pytorch"), make_manifest("tensorflow")
    for manifest in (pt, tf):
        write_manifest(repository.manifest_path(manifest.model), manifest)
    repository.triton_version_dir(pt.model, 1).mkdir(parents=True)
    repository.triton_onnx(pt.model, 1).write_bytes(b"onnx")
    repository.triton_config(pt.model).write_text(
        render_config(TritonModelSpec(pt.model, "image", [3, 8, 8], "logits", 10), "onnxruntime")
    )
    repository.torchserve_mar(pt.model).parent.mkdir(parents=True)
    repository.torchserve_mar(pt.model).write_bytes(b"mar")
    (repository.tfserving_model_dir(tf.model) / "1").mkdir(parents=True)
    return repository, pt.model, tf.model


def test_the_triton_launcher_reads_a_ready_config(tmp_path: Path) -> None:
    repository, model, _ = _repository(tmp_path)
    best = tmp_path / "best"
    source = repository.triton_config(model).read_text()
    write_ready_configs("triton", model, {"ort_threads": 2, "max_queue_delay_us": 0}, best, source)
    target = tmp_path / "python-repo"
    sync(repository, target, best / "triton")
    served = (target / model / "config.pbtxt").read_text()
    assert 'string_value: "2"' in served and "max_queue_delay_microseconds: 0" in served
    sync(repository, target)  # without the ready config the repository's own comes back
    assert "max_queue_delay_microseconds: 2000" in (target / model / "config.pbtxt").read_text()


def _context(tmp_path: Path, repository: ModelRepository, best: Path | None) -> StackContext:
    options = {SERVER_CONFIG_OPTION: str(best)} if best is not None else {}
    return StackContext(tmp_path / "stack", free_port_map(), repository.root, options)


def test_thread_knobs_reach_each_server_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs("triton", "tfserving", "torchserve")
    repository, pt, tf = _repository(tmp_path)
    best = tmp_path / "best"
    write_ready_configs("triton", pt, {"ort_threads": 2}, best, repository.triton_config(pt).read_text())
    write_ready_configs(
        "tfserving", tf, {"intra_op_threads": 2, "inter_op_threads": 3, "num_batch_threads": 2}, best
    )
    write_ready_configs(
        "torchserve", pt, {"batch_size": 4, "max_batch_delay_ms": 1, "workers": 2, "torch_threads": 2}, best
    )
    ctx = _context(tmp_path, repository, best)

    triton = model_servers.triton_plan(ctx)
    assert f"--config-dir={best / 'triton'}" in triton.argv

    tfserving = model_servers.tfserving_plan(ctx)
    assert f"--batching_parameters_file={best / 'tfserving' / 'batching_parameters.txt'}" in tfserving.argv
    # The ready flags come after the defaults, so the last one (the stand-in's argparse) wins.
    assert tfserving.argv[-2:] == [
        "--tensorflow_intra_op_parallelism=2",
        "--tensorflow_inter_op_parallelism=3",
    ]
    assert "num_batch_threads { value: 2 }" in (best / "tfserving" / "batching_parameters.txt").read_text()

    torchserve = model_servers.torchserve_plan(ctx)
    assert torchserve.env["OMP_NUM_THREADS"] == "2" and torchserve.env["IMGBENCH_TORCH_THREADS"] == "2"
    registered: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(
        model_servers, "reconfigure_torchserve", lambda url, m, c: registered.append((url, m, dict(c)))
    )
    assert torchserve.configure is not None
    torchserve.configure()
    assert registered == [
        (
            f"http://127.0.0.1:{ctx.ports['torchserve']['management']}",
            pt,
            {"batch_size": 4, "max_batch_delay_ms": 1, "workers": 2},
        )
    ]


def test_without_a_ready_config_the_defaults_launch(tmp_path: Path) -> None:
    _needs("tfserving", "torchserve")
    repository, _, _ = _repository(tmp_path)
    ctx = _context(tmp_path, repository, None)
    tfserving = model_servers.tfserving_plan(ctx)
    assert "--tensorflow_intra_op_parallelism=1" in tfserving.argv
    assert not any(a.startswith("--batching_parameters_file") for a in tfserving.argv)
    torchserve = model_servers.torchserve_plan(ctx)
    assert torchserve.configure is None and torchserve.env["OMP_NUM_THREADS"] == "1"


def test_ready_files_read_back_and_bad_ones_are_named(tmp_path: Path) -> None:
    write_ready_configs("torchserve", "pt_x", {"batch_size": 16, "torch_threads": 2}, tmp_path)
    env, models = torchserve_ready(tmp_path)
    assert env["OMP_NUM_THREADS"] == "2"
    assert models == {"pt_x": {"batch_size": 16, "max_batch_delay_ms": 5, "workers": 1}}
    (tmp_path / "torchserve" / "environment.env").write_text("OMP_NUM_THREADS 2\n")
    with pytest.raises(Exception, match="expected KEY=value, got 'OMP_NUM_THREADS 2'"):
        read_env_file(tmp_path / "torchserve" / "environment.env")
    (tmp_path / "tfserving").mkdir()
    (tmp_path / "tfserving" / "flags.txt").write_text("tensorflow_intra_op_parallelism=2\n")
    with pytest.raises(Exception, match="must be a --flag=value"):
        tfserving_ready(tmp_path)


def test_a_missing_server_config_folder_is_an_error(tmp_path: Path) -> None:
    _needs("tfserving")
    repository, _, _ = _repository(tmp_path)
    with pytest.raises(StackError, match="is not a folder"):
        model_servers.tfserving_plan(_context(tmp_path, repository, tmp_path / "nope"))
    result = CliRunner().invoke(
        app, ["stack", "up", "tfserving", "--run-dir", str(tmp_path / "s"), "--server-config", "nope"]
    )
    assert result.exit_code != 0 and "is not a folder" in str(result.exception or result.output)
