"""Dataset splits as pure functions of (labels, groups, seed); nothing is baked into the data.

A group is a field of view ('<class>/<full-image stem>'): a full image and all its crops share
it, and a group never straddles two folds or two parts of a split, so no crop of one field of
view is seen in training and in testing.
"""

from __future__ import annotations

import numpy as np

SCHEMES = ("kfold", "paper")


def _group_table(labels, groups):
    """Unique groups in order of first appearance: (members per group, label per group)."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and groups must be 1-D of equal length, got {labels.shape} and {groups.shape}"
        )
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # group ids by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group_of = rank[inverse]
    members = [[] for _ in order]
    for i, g in enumerate(group_of):
        members[g].append(i)
    group_labels = np.empty(len(order), labels.dtype)
    for g, idx in enumerate(members):
        values, counts = np.unique(labels[idx], return_counts=True)
        group_labels[g] = values[np.argmax(counts)]  # groups are single-class in SIPaKMeD
    return [np.asarray(m, np.int64) for m in members], group_labels


def kfold_splits(labels, groups, num_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Grouped, stratified K-fold assignment.

    Groups of each class are shuffled with ``seed``, sorted by size (largest first) and each is
    given to the fold that holds the fewest examples of that class so far (ties: fewest
    examples overall, then lowest fold). With one example per group (the full images) the
    per-class counts of any two folds differ by at most one.

    Args:
      labels: [N] int class of each example.
      groups: [N] group id of each example.
      num_folds: K >= 2.
      seed: shuffling seed; same seed, same folds.

    Returns:
      K sorted int64 arrays of example indices: disjoint, together all of 0..N-1.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    members, group_labels = _group_table(labels, groups)
    rng = np.random.default_rng(seed)
    classes = np.unique(group_labels)
    per_class = np.zeros((len(classes), num_folds), np.int64)
    totals = np.zeros(num_folds, np.int64)
    folds = [[] for _ in range(num_folds)]
    for c, cls in enumerate(classes):
        ids = np.flatnonzero(group_labels == cls)
        ids = ids[rng.permutation(len(ids))]
        sizes = np.asarray([len(members[g]) for g in ids])
        for g in ids[np.argsort(-sizes, kind="stable")]:
            fold = min(range(num_folds), key=lambda f: (per_class[c, f], totals[f], f))
            folds[fold].append(members[g])
            per_class[c, fold] += len(members[g])
            totals[fold] += len(members[g])
    return [np.sort(np.concatenate(f)) if f else np.zeros(0, np.int64) for f in folds]


def paper_split(labels, groups, seed: int = 0) -> dict[str, np.ndarray]:
    """The paper's per-class 70/20/10 split after a seeded shuffle.

    Per class of n examples: train floor(0.7 n), validation floor(0.2 n), test the rest (on the
    966 full images: 101 test images, as in the paper). Whole groups are assigned in shuffled
    order, so with grouped data (crops) the sizes are approximate and no group is split.

    Returns:
      {'train', 'val', 'test'}: sorted int64 index arrays.
    """
    members, group_labels = _group_table(labels, groups)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for cls in np.unique(group_labels):
        ids = np.flatnonzero(group_labels == cls)
        ids = ids[rng.permutation(len(ids))]
        n = sum(len(members[g]) for g in ids)
        n_train, n_val = int(np.floor(0.7 * n)), int(np.floor(0.2 * n))
        seen = 0
        for g in ids:
            part = "train" if seen < n_train else "val" if seen < n_train + n_val else "test"
            parts[part].append(members[g])
            seen += len(members[g])
    return {k: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64) for k, v in parts.items()}


def split_indices(
    labels, groups, *, scheme: str = "kfold", fold: int = 0, num_folds: int = 5, seed: int = 0
) -> dict[str, np.ndarray]:
    """Train/validation/test record indices.

    ``scheme='kfold'``: test = fold ``fold``, validation = fold ``(fold + 1) % num_folds``, train
    = the other folds. ``scheme='paper'``: `paper_split` (``fold`` and ``num_folds`` unused).

    Returns:
      {'train', 'val', 'test'}: sorted int64 arrays, disjoint, together all examples.
    """
    if scheme == "paper":
        return paper_split(labels, groups, seed)
    if scheme != "kfold":
        raise ValueError(f"config.data.split_scheme must be one of {SCHEMES}, got {scheme!r}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"config.data.fold must be in [0, {num_folds}), got {fold}")
    folds = kfold_splits(labels, groups, num_folds, seed)
    val_fold = (fold + 1) % num_folds
    train = [f for k, f in enumerate(folds) if k not in (fold, val_fold)]
    return {
        "train": np.sort(np.concatenate(train)),
        "val": folds[val_fold],
        "test": folds[fold],
    }
