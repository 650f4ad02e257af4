"""``--image-sizes``: the pool holds images at each size in turn, every batch is one size, the sizes
take turns batch by batch, and the idle pass covers every image; a bad list is named."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from lg_helpers import MODEL
from loadgen.images import load_pool
from loadgen.options import LoadOptions, add_arguments

from imgbench.errors import ImgbenchError
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository


def test_mixed_pool_batches_take_turns_at_one_size_each(fake_repository: Path, digits_dir: Path) -> None:
    manifest = load_manifest(ModelRepository(fake_repository).manifest_path(MODEL))
    pool = load_pool(manifest, digits_dir, limit=21, image_sizes=(16, 24))
    assert pool.sizes is not None and sorted(np.unique(pool.sizes)) == [16, 24]
    assert {row.shape for row in pool.images} == {(3, 16, 16), (3, 24, 24)}
    batches = pool.batches(4, 6)
    assert [b.shape for b, _ in batches] == [(4, 3, s, s) for s in (16, 24, 16, 24, 16, 24)]
    # The same image, at the other size, is not the same row: each size's batches walk its own images.
    first16 = pool.batch_indices(4, 3)[0]
    assert (pool.sizes[first16] == 16).all()
    references = pool.with_references(np.arange(len(pool))).reference_batches(4, 2)
    assert [list(r) for r in references] == [list(i) for i in pool.batch_indices(4, 2)]
    kept = pool.subset(pool.sizes == 24)
    assert kept.sizes is not None and len(kept) == int((pool.sizes == 24).sum())
    # Without sizes: the manifest's one size, one array.
    fixed = load_pool(manifest, digits_dir, limit=8)
    assert fixed.sizes is None and fixed.images.shape == (8, 3, 16, 16)


def _parsed(*argv: str) -> argparse.Namespace:
    from locust.argument_parser import LocustArgumentParser

    parser = LocustArgumentParser(add_help=False)
    add_arguments(parser)
    parser.add_argument("-u", dest="num_users", type=int, default=1)
    return parser.parse_args(list(argv))


def test_image_sizes_option_is_parsed_and_bad_values_named() -> None:
    options = LoadOptions.from_parsed(_parsed("--model", MODEL, "--image-sizes", "24,16"))
    assert options.image_sizes == (16, 24) and options.describe()["image_sizes"] == (16, 24)
    assert LoadOptions.from_parsed(_parsed("--model", MODEL)).image_sizes == ()
    with pytest.raises(ImgbenchError, match="'big'"):
        LoadOptions.from_parsed(_parsed("--model", MODEL, "--image-sizes", "16,big"))
