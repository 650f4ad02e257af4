"""A dataset with several bad files: trainer-tf refuses before its first epoch, exit 1, listing every
problem exactly as `imgbench data check` prints them (one checker: imgbench.data.check)."""

from __future__ import annotations

from pathlib import Path

from bad_datasets import BAD_FILES, cli_problem_lines, problem_lines, write_bad_tree
from conftest import run_trainer, train_args


def test_trainer_tf_refuses_a_bad_tree_with_the_clis_list(tmp_path: Path) -> None:
    data = write_bad_tree(tmp_path / "bad")
    run_dir = tmp_path / "run"
    result = run_trainer(*train_args(data, run_dir, epochs=1))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    expected = cli_problem_lines(data)
    assert len(expected) == 2 * len(BAD_FILES), expected  # each bad file, in both splits
    assert problem_lines(result.stderr) == expected
    assert "refused by trainer-tf" in result.stderr
    assert "epoch" not in result.stderr.lower(), "the refusal comes before the first epoch"
    assert not run_dir.exists(), "nothing written for a refused dataset"
