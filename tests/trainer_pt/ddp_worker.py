"""One process of the DDP equivalence check (tests/trainer_pt/test_ddp.py), under torchrun or alone:
trainer-pt's own process-group setup, optimizer, scheduler and training loop, on a small model without
batch norm (batch norm normalises each rank's share of a batch on its own, so no DDP run can equal one
process there) and fixed data in a fixed order. Rank 0 writes the final weights to OUT (.npz).

    python ddp_worker.py OUT GLOBAL_BATCH
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler
from trainer_pt.distributed import cleanup, init_distributed
from trainer_pt.train import (
    EpochProgress,
    StopFlag,
    build_optimizer,
    build_scheduler,
    effective_lr,
    train_one_epoch,
)

STEPS = 4


def main(out: str, global_batch: int) -> None:
    info = init_distributed("cpu", threads=1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)
    )
    images = torch.randn(STEPS * global_batch, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (STEPS * global_batch,), generator=torch.Generator().manual_seed(2))
    data = TensorDataset(images, labels)
    per_rank = global_batch // info.world_size
    # Unshuffled shards interleave (rank r takes r, r+W, ...): each step's ranks together hold exactly
    # the batch one process takes, and DDP's gradient mean over equal shards is that batch's mean.
    sampler = DistributedSampler(data, shuffle=False) if info.enabled else None
    loader = DataLoader(data, batch_size=per_rank, sampler=sampler, shuffle=False)
    args = argparse.Namespace(
        batch_size=per_rank, lr=0.1, momentum=0.9, weight_decay=1e-4, lr_schedule="step", epochs=1,
        lr_warmup_epochs=0, lr_warmup_decay=0.01, lr_min=0.0, channels_last=False, amp=None,
        no_progress=True,
    )  # fmt: skip
    optimizer = build_optimizer(model, args, effective_lr(args, info.world_size))
    scheduler = build_scheduler(optimizer, args, steps_per_epoch=len(loader))
    trained = DistributedDataParallel(model) if info.enabled else model
    train_one_epoch(
        trained, nn.CrossEntropyLoss(), optimizer, torch.amp.GradScaler("cpu", enabled=False), loader,
        args, info, EpochProgress(), StopFlag(), epoch=1, step_scheduler=scheduler,
    )  # fmt: skip
    if info.is_main:
        weights = {f"param{i}": p.detach().numpy() for i, p in enumerate(model.parameters())}
        np.savez(out, steps=len(loader), world_size=info.world_size, **weights)
    cleanup(info)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
