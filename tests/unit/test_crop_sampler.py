"""CropSampler batches against the stream of single crops."""

from __future__ import annotations

from itertools import islice

import numpy as np

from training.data.patches import CropSampler


def test_batches_match_single_crops():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((40, 50, 3), (70, 33, 3))]
    singles = list(islice(iter(CropSampler(images, 16, seed=5)), 12))
    batches = list(islice(CropSampler(images, 16, seed=5).batches(4), 3))

    assert [batch.shape for batch in batches] == [(4, 16, 16, 3)] * 3
    np.testing.assert_array_equal(np.concatenate(batches), np.stack(singles))
