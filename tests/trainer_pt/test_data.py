"""The resumable sampler: deterministic per (seed, epoch), shardable, able to start mid-epoch."""

from __future__ import annotations

from trainer_pt.data import EpochSampler, ShardSampler


def test_same_order_for_same_seed_and_epoch() -> None:
    a, b = EpochSampler(100, seed=1), EpochSampler(100, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(100))
    b.set_epoch(4)
    assert list(a) != list(b)


def test_skip_resumes_where_the_epoch_stopped() -> None:
    full, resumed = EpochSampler(50, seed=0), EpochSampler(50, seed=0)
    full.set_epoch(2)
    resumed.set_epoch(2, skip=20)
    assert list(resumed) == list(full)[20:] and len(resumed) == 30


def test_ranks_get_equal_disjoint_shards() -> None:
    shards = []
    for rank in range(3):
        sampler = EpochSampler(10, seed=0, rank=rank, world_size=3)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert {len(s) for s in shards} == {4}  # padded to equal length: DDP ranks take equal steps
    assert set().union(*shards) == set(range(10))


def test_eval_shards_count_each_image_once() -> None:
    shards = [list(ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))


def test_train_splits_apply_hflip_and_crop_scale(tmp_path) -> None:
    """--hflip reaches the train transform (it was once dropped: digits flipped at p 0.5 under --hflip 0)."""
    import argparse

    from torchvision import transforms
    from trainer_pt.train import load_run_splits

    from imgbench.data.digits import write_digits

    root = write_digits(tmp_path / "digits", size=8, seed=0)
    args = argparse.Namespace(
        data_path=root, image_size=8, skip_data_check=True, crop_scale_min=0.5, hflip=0.0
    )
    steps = load_run_splits(args).train.transform.transforms
    flip = next(t for t in steps if isinstance(t, transforms.RandomHorizontalFlip))
    crop = next(t for t in steps if isinstance(t, transforms.RandomResizedCrop))
    assert flip.p == 0.0 and crop.scale == (0.5, 1.0)
