import numpy as np
import pytest

from cervix_jax.data import kfold_splits, paper_split, split_indices

FULL_COUNTS = (223, 238, 271, 108, 126)


def _full_images():
    labels = np.repeat(np.arange(5), FULL_COUNTS)
    groups = np.asarray([f"{label}/{i:03d}" for i, label in enumerate(labels)])
    return labels, groups


def _crops(seed=0):
    """Grouped data like the cropped variant: 1-12 crops per field of view."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for label in range(5):
        for stem in range(40):
            n = int(rng.integers(1, 13))
            labels += [label] * n
            groups += [f"{label}/{stem:03d}"] * n
    order = rng.permutation(len(labels))  # records come in arbitrary order
    return np.asarray(labels)[order], np.asarray(groups)[order]


@pytest.mark.parametrize("data", [_full_images, _crops])
def test_folds_disjoint_exhaustive_and_grouped(data):
    labels, groups = data()
    folds = kfold_splits(labels, groups, num_folds=5, seed=0)
    assert len(folds) == 5
    everything = np.concatenate(folds)
    assert len(everything) == len(labels) and len(np.unique(everything)) == len(labels)
    fold_of = np.empty(len(labels), int)
    for k, f in enumerate(folds):
        fold_of[f] = k
        assert np.all(np.diff(f) > 0)
    for g in np.unique(groups):
        assert len(np.unique(fold_of[groups == g])) == 1, g


def test_per_class_counts_within_one_across_folds_for_single_image_groups():
    labels, groups = _full_images()
    folds = kfold_splits(labels, groups, num_folds=5, seed=1)
    counts = np.stack([np.bincount(labels[f], minlength=5) for f in folds])
    assert np.all(counts.max(0) - counts.min(0) <= 1), counts
    np.testing.assert_array_equal(counts.sum(0), FULL_COUNTS)


def test_grouped_folds_stay_balanced_up_to_a_group():
    labels, groups = _crops()
    folds = kfold_splits(labels, groups, num_folds=5, seed=0)
    counts = np.stack([np.bincount(labels[f], minlength=5) for f in folds])
    assert np.all(counts.max(0) - counts.min(0) <= 12), counts


def test_same_seed_same_folds_other_seed_other_folds():
    labels, groups = _crops()
    a = kfold_splits(labels, groups, 5, seed=7)
    b = kfold_splits(labels, groups, 5, seed=7)
    c = kfold_splits(labels, groups, 5, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_split_indices_kfold_uses_next_fold_for_validation():
    labels, groups = _full_images()
    folds = kfold_splits(labels, groups, 5, seed=0)
    for fold in range(5):
        s = split_indices(labels, groups, scheme="kfold", fold=fold, num_folds=5, seed=0)
        np.testing.assert_array_equal(s["test"], folds[fold])
        np.testing.assert_array_equal(s["val"], folds[(fold + 1) % 5])
        assert len(s["train"]) + len(s["val"]) + len(s["test"]) == len(labels)
        assert not set(s["train"]) & (set(s["val"]) | set(s["test"]))
    # Across folds, every example is tested exactly once.
    tested = np.concatenate(
        [split_indices(labels, groups, fold=k, num_folds=5)["test"] for k in range(5)]
    )
    assert np.array_equal(np.sort(tested), np.arange(len(labels)))


def test_paper_split_reproduces_the_paper_sizes():
    labels, groups = _full_images()
    s = paper_split(labels, groups, seed=0)
    assert {k: len(v) for k, v in s.items()} == {"train": 674, "val": 191, "test": 101}
    np.testing.assert_array_equal(np.bincount(labels[s["test"]]), [23, 25, 28, 12, 13])
    assert split_indices(labels, groups, scheme="paper", seed=0)["test"].tolist() == (
        s["test"].tolist()
    )
    other = paper_split(labels, groups, seed=1)
    assert not np.array_equal(s["test"], other["test"])


def test_paper_split_never_splits_a_group():
    labels, groups = _crops()
    s = paper_split(labels, groups, seed=0)
    seen = {}
    for part, idx in s.items():
        for g in np.unique(groups[idx]):
            assert seen.setdefault(g, part) == part
    assert sum(len(v) for v in s.values()) == len(labels)
    assert 0.6 < len(s["train"]) / len(labels) < 0.75


def test_bad_arguments_are_explained():
    labels, groups = _full_images()
    with pytest.raises(ValueError, match="split_scheme must be one of"):
        split_indices(labels, groups, scheme="random")
    with pytest.raises(ValueError, match=r"config.data.fold must be in \[0, 5\), got 5"):
        split_indices(labels, groups, fold=5, num_folds=5)
    with pytest.raises(ValueError, match="num_folds must be >= 2"):
        kfold_splits(labels, groups, 1)
    with pytest.raises(ValueError, match="equal length"):
        kfold_splits(labels[:-1], groups, 5)
