"""The shared trainer contract (imgbench.trainer_cli): one parser, one default per help text, old names
as aliases, one recipe record, --if-exists."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from imgbench import trainer_cli
from imgbench.errors import ImgbenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer")
    trainer_cli.add_train_arguments(parser, "runs/x_<model>/<UTC time>")
    return parser


def test_every_help_states_its_default_once() -> None:
    for action in _parser()._actions:
        if action.help and action.dest != "help":
            assert action.help.count("(default:") <= 1, action.option_strings
    text = _parser().format_help()
    assert "(default: 10) (default: 10)" not in text and "(default: 10)" in text


def test_old_flag_names_are_aliases() -> None:
    old = _parser().parse_args(
        ["--data", "d", "--run-dir", "r", "--warmup-epochs", "2", "--no-check-data", "--weight-decay", "0.1"]
    )
    new = _parser().parse_args(
        [
            "--data-path",
            "d",
            "--output-dir",
            "r",
            "--lr-warmup-epochs",
            "2",
            "--skip-data-check",
            "--wd",
            "0.1",
        ]
    )
    assert vars(old) == vars(new)
    assert old.data_path == Path("d") and old.output_dir == Path("r") and old.lr_warmup_epochs == 2


@pytest.mark.parametrize("value", ["0", "1", "1.5", "x"])
def test_bn_momentum_is_pytorch_convention_in_open_interval(value: str) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--data-path", "d", "--bn-momentum", value])


def test_bn_momentum_native_is_none() -> None:
    assert _parser().parse_args(["--data-path", "d", "--bn-momentum", "native"]).bn_momentum is None


def test_recipe_record_has_exactly_the_shared_keys() -> None:
    args = _parser().parse_args(["--data-path", "d", "--image-size", "32", "--dropout", "0"])
    resolved = {
        "world_size": 1,
        "global_batch_size": 32,
        "steps_per_epoch": 44,
        "peak_lr": 0.0125,
        "precision": "float32",
        "compile": None,
        "optimizer_fusion": "none",
        "threads": 2,
        "device": trainer_cli.describe_cpu(),
    }
    record = trainer_cli.recipe_record(args, resolved)
    assert tuple(record) == trainer_cli.RECIPE_KEYS
    assert record["val_resize_size"] == 36 and record["dropout"] == 0.0 and record["threads"] == 2
    with pytest.raises(ImgbenchError, match=r"missing keys.*threads"):
        trainer_cli.recipe_record(args, {k: v for k, v in resolved.items() if k != "threads"})
    with pytest.raises(ImgbenchError, match=r"unknown keys.*surprise"):
        trainer_cli.recipe_record(args, {**resolved, "surprise": 1})


def test_if_exists_skip_only_when_the_manifest_exists(tmp_path: Path, caplog) -> None:
    args = _parser().parse_args(["--data-path", "d", "--model-repository", str(tmp_path), "--if-exists=skip"])
    assert not trainer_cli.skip_existing(args, "pt_resnet18")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "pt_resnet18.json").write_text("{}")
    with caplog.at_level(logging.INFO):
        assert trainer_cli.skip_existing(args, "pt_resnet18")
    assert "--if-exists=skip" in caplog.text
    args.if_exists = "overwrite"
    assert not trainer_cli.skip_existing(args, "pt_resnet18")


def test_check_recipe_names_the_offending_value() -> None:
    args = _parser().parse_args(["--data-path", "d", "--crop-scale-min", "1.5"])
    with pytest.raises(ImgbenchError, match=r"1\.5"):
        trainer_cli.check_recipe(args)
    args = _parser().parse_args(["--data-path", "d", "--resume"])
    with pytest.raises(ImgbenchError, match="--output-dir"):
        trainer_cli.check_recipe(args)


def test_resume_modes_parse_and_auto_follows_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def resume(*flags: str) -> str | None:
        return _parser().parse_args(["--data-path", "d", "--output-dir", "r", *flags]).resume

    assert (resume(), resume("--resume"), resume("--resume", "auto")) == (None, "required", "auto")
    assert resume("--resume=auto", "--no-export") == "auto"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--data-path", "d", "--resume", "maybe"])
    for mode, checkpoint, expected in [
        (None, None, False),
        (None, tmp_path / "c.pt", False),
        ("required", None, True),  # the trainer then fails naming the missing checkpoint
        ("auto", None, False),
        ("auto", tmp_path / "c.pt", True),
    ]:
        args = argparse.Namespace(resume=mode)
        with caplog.at_level(logging.INFO, logger="imgbench.trainer_cli"):
            caplog.clear()
            assert trainer_cli.resolve_resume(args, tmp_path, checkpoint) is expected, (mode, checkpoint)
        said = caplog.text
        if mode != "auto":
            assert "--resume auto" not in said
        elif expected:
            assert "resuming from" in said and str(checkpoint) in said
        else:
            assert "starting a new run" in said
