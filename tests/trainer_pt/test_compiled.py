"""--compile's compiled-vs-eager check (real torch.compile on a tiny model; a perturbed "compiled" model
fails the gate, in the check and in the export) and --fused-sgd (same weights as the default kernels,
a clear refusal where torch has none, the recipe says which ran)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TrainedRun
from torch import nn
from torch.utils.data import TensorDataset
from trainer_pt import compiled
from trainer_pt.distributed import DistInfo
from trainer_pt.train import build_optimizer, resolved_config

from imgbench.compiled_check import CHECK_NAME, CompiledGateError, read_check
from imgbench.errors import ImgbenchError
from imgbench.manifest import load_manifest

GATE = {"min_agreement": 0.999, "max_abs_diff": 1e-3}


def tiny_model(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
    return model.eval()


def tiny_val(images: int = 12, size: int = 16) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(images, 3, size, size, generator=generator), torch.arange(images) % 5)


def test_compiled_model_agrees_with_eager_and_is_recorded(tmp_path: Path) -> None:
    # Real torch.compile (Inductor, C++ on this CPU); 12 images in batches of 8: the padded last batch
    # must not change the answers.
    check = compiled.check_run(
        tmp_path, tiny_model(), tiny_val(), "default", stage="train", batch_size=8, **GATE
    )
    assert check.passed and check.reason is None
    assert check.n == 12 and check.top1_agreement == 1.0
    assert check.max_abs_logit_diff < 1e-4
    assert check.compiler == "torch.compile(mode=default)" and check.stage == "train"
    assert check.compiled_accuracy == check.eager_accuracy
    assert check.compile_seconds is not None and check.compile_seconds > 0
    assert read_check(tmp_path) == check


class Perturbed(nn.Module):
    """What a silently wrong fused kernel looks like from outside: every logit off by ``shift`` (top-1
    unchanged), or with ``reorder`` a ramp over the classes that changes the answers."""

    def __init__(self, model: nn.Module, shift: float, reorder: bool) -> None:
        super().__init__()
        self.model, self.shift, self.reorder = model, shift, reorder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if self.reorder:
            return logits + self.shift * torch.linspace(-1, 1, logits.shape[1])
        return logits + self.shift


def test_a_wrong_compiled_model_fails_the_gate_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: Perturbed(model, 0.002, reorder=False))
    with pytest.raises(
        CompiledGateError, match=r"torch.compile\(mode=max-autotune\) vs eager: max \|Δlogit\|"
    ):
        compiled.check_run(tmp_path, tiny_model(), tiny_val(), "max-autotune", stage="export", **GATE)
    recorded = read_check(tmp_path)
    assert recorded is not None and not recorded.passed
    assert recorded.max_abs_logit_diff > GATE["max_abs_diff"] and "exceeds the tolerance" in recorded.reason


def test_compile_check_images_spreads_over_the_split(tmp_path: Path) -> None:
    assert compiled.evenly_spaced(359, 4) == [0, 119, 239, 358]
    with pytest.raises(ImgbenchError, match="--compile-check-images must be at least 1, got 0"):
        compiled.evenly_spaced(10, 0)


@pytest.mark.slow
def test_export_with_a_wrong_compiled_model_publishes_nothing(
    trained: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer_pt import __main__ as cli
    from trainer_pt import export

    run_dir = shutil.copytree(trained.run_dir, tmp_path / "run")  # the check writes into the run folder
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: Perturbed(model, 5.0, reorder=True))
    repo = tmp_path / "repo"
    args: argparse.Namespace = cli.get_args_parser().parse_args(
        ["export", "--run-dir", str(run_dir), "--model-repository", str(repo), "--skip-int8",
         "--compile", "max-autotune", "--compile-check-images", "40"]
    )  # fmt: skip
    with pytest.raises(CompiledGateError, match=r"top-1 agreement .* on 40 images is below the gate"):
        export.export_run(args)
    assert not repo.exists() or not [p for p in repo.rglob("*") if p.is_file()]
    assert (run_dir / CHECK_NAME).is_file() and not read_check(run_dir).passed
    assert trained.result.returncode == 0


@pytest.mark.slow
def test_a_run_without_compile_records_no_check_and_default_sgd(trained: TrainedRun) -> None:
    training = load_manifest(trained.repo / "manifests" / "pt_mobilenet_v3_small.json").training
    assert training.compiled_check is None
    assert training.recipe["compile"] is None
    assert str(training.recipe["optimizer_fusion"]).startswith("none: torch.optim.SGD")


def _sgd_args(fused: bool) -> argparse.Namespace:
    return argparse.Namespace(weight_decay=1e-4, momentum=0.9, fused_sgd=fused)


def test_fused_sgd_gives_the_weights_of_the_default_sgd() -> None:
    models = {fused: tiny_model().train() for fused in (False, True)}
    optimizers = {fused: build_optimizer(models[fused], _sgd_args(fused), lr=0.05) for fused in models}
    assert optimizers[True].defaults["fused"] and not optimizers[False].defaults["fused"]
    generator = torch.Generator().manual_seed(2)
    for _ in range(5):
        images, targets = torch.randn(8, 3, 16, 16, generator=generator), torch.randint(0, 5, (8,))
        for fused, model in models.items():
            optimizers[fused].zero_grad()
            nn.functional.cross_entropy(model(images), targets).backward()
            optimizers[fused].step()
    eager, fused = models[False].state_dict(), models[True].state_dict()
    assert any(not torch.equal(eager[k], tiny_model().state_dict()[k]) for k in eager)  # it trained
    for key in eager:
        torch.testing.assert_close(fused[key], eager[key], rtol=1e-5, atol=1e-6)


def test_fused_sgd_is_refused_where_torch_has_no_fused_kernel() -> None:
    model = nn.Linear(4, 2, device="meta")  # no fused SGD kernel for the meta device
    with pytest.raises(ImgbenchError, match=r"--fused-sgd: torch .* no fused SGD for parameters on meta"):
        build_optimizer(model, _sgd_args(True), lr=0.1)


def test_the_recipe_records_fused_sgd_and_compile() -> None:
    from trainer_pt.__main__ import get_args_parser

    args = get_args_parser().parse_args(
        ["train", "--data-path", "d", "--fused-sgd", "--compile", "max-autotune"]
    )
    recipe = resolved_config(args, DistInfo(), ["a", "b"], steps_per_epoch=3)["recipe"]
    assert recipe["optimizer_fusion"] == "fused: torch.optim.SGD(fused=True)"
    assert recipe["compile"] == "torch.compile(max-autotune)"
