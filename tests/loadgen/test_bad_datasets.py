"""A dataset with bad files in its evaluation split: the load generator's image pool refuses before it
sends anything, listing every problem of that split exactly as `imgbench data check` prints them
(one checker: imgbench.data.check)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_datasets import BAD_FILES, cli_problem_lines, problem_lines, write_bad_tree
from lg_helpers import MODEL, free_port, run_loadgen
from loadgen.images import load_pool

from imgbench.data.check import DatasetCheckError
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository


def test_the_image_pool_refuses_a_bad_eval_split_with_the_clis_lines(
    fake_repository: Path, tmp_path: Path
) -> None:
    data = write_bad_tree(tmp_path / "bad")
    manifest = load_manifest(ModelRepository(fake_repository).manifest_path(MODEL))
    val = data / manifest.dataset.eval_split
    expected = [line for line in cli_problem_lines(data) if line.startswith(f"problem {val}/")]
    assert len(expected) == len(BAD_FILES), expected
    with pytest.raises(DatasetCheckError) as refused:
        load_pool(manifest, data, limit=4)
    assert problem_lines(str(refused.value)) == expected
    # The whole process: refused in the preflight, before any server is asked (none listens here).
    run = run_loadgen(
        tmp_path, "--backend", "triton", "--target", f"127.0.0.1:{free_port()}", "--model", MODEL,
        "--model-repository", str(fake_repository), "--dataset", str(data), "-u", "1",
        "--step-duration", "2", "--warmup", "0",
    )  # fmt: skip
    assert run.returncode != 0, run.output[-3000:]
    # The session logs the refusal and prints it: the same lines, twice.
    assert sorted(set(problem_lines(run.output))) == expected, run.output[-3000:]
    assert "refused by the load generator's image pool" in run.output
