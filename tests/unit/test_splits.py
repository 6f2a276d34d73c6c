"""Group-aware splits and nested label fractions."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.labelled import DatasetError, LabelledImage, discover_labelled
from training.data.splits import make_splits, select_labelled, split_by_group


def _items(groups: int, per_group: int, stains=("pas",)) -> list[LabelledImage]:
    return [
        LabelledImage(f"{g:04d}-{stain}-{i}", stain, f"{g:04d}", Path(f"{g}-{i}.png"), Path(f"{g}-{i}.png"))
        for g in range(groups) for i in range(per_group) for stain in stains
    ]


def test_groups_never_span_splits(bupt):
    splits = split_by_group(discover_labelled(bupt), 0.2, 0.2, seed=0)
    groups = [{item.group for item in getattr(splits, name)} for name in ("train", "validation", "test")]
    assert not groups[0] & groups[1]
    assert not groups[0] & groups[2]
    assert not groups[1] & groups[2]


def test_every_stain_reaches_the_test_split(bupt):
    splits = split_by_group(discover_labelled(bupt), 0.2, 0.2, seed=0)
    assert {item.stain for item in splits.test} == {"pas", "pasm", "masson"}


def test_split_is_seeded():
    items = _items(20, 2)
    first = split_by_group(items, 0.2, 0.2, seed=3)
    again = split_by_group(items, 0.2, 0.2, seed=3)
    other = split_by_group(items, 0.2, 0.2, seed=4)
    assert [i.name for i in first.test] == [i.name for i in again.test]
    assert [i.name for i in first.test] != [i.name for i in other.test]


def test_shares_are_close_to_targets():
    splits = split_by_group(_items(50, 1), 0.2, 0.2, seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (30, 10, 10)


def test_fractions_are_nested():
    train = _items(100, 1, stains=("pas", "masson"))
    subsets = [set(i.name for i in select_labelled(train, f, seed=7)) for f in (0.01, 0.05, 0.1, 1.0)]
    assert subsets[0] <= subsets[1] <= subsets[2] <= subsets[3]
    assert [len(s) for s in subsets] == [2, 10, 20, 200]


def test_fraction_keeps_one_image_per_stain():
    train = _items(10, 1, stains=("pas", "masson"))
    chosen = select_labelled(train, 0.01, seed=0)
    assert sorted(i.stain for i in chosen) == ["masson", "pas"]


def test_same_seed_same_subset_and_repetitions_differ():
    items = _items(40, 1)
    a = make_splits(items, 0.2, 0.2, 0.25, seed=1, repetition=0)
    b = make_splits(items, 0.2, 0.2, 0.25, seed=1, repetition=0)
    c = make_splits(items, 0.2, 0.2, 0.25, seed=1, repetition=1)
    assert [i.name for i in a.labelled] == [i.name for i in b.labelled]
    assert [i.name for i in a.labelled] != [i.name for i in c.labelled]
    assert [i.name for i in a.test] == [i.name for i in c.test]


def test_fraction_never_shrinks_validation_or_test():
    items = _items(40, 1)
    full = make_splits(items, 0.2, 0.2, 1.0, seed=1)
    small = make_splits(items, 0.2, 0.2, 0.05, seed=1)
    assert len(small.validation) == len(full.validation)
    assert len(small.test) == len(full.test)
    assert len(small.labelled) < len(full.labelled)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_invalid_fraction_is_rejected(fraction):
    with pytest.raises(DatasetError, match="label_fraction"):
        select_labelled(_items(5, 1), fraction, seed=0)


def test_too_few_groups_is_rejected():
    with pytest.raises(DatasetError, match="at least 3 biopsies"):
        split_by_group(_items(2, 5), 0.2, 0.2, seed=0)
