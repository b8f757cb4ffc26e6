"""Fold bookkeeping: FoldRows gives every split its rows, consistently ordered."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold

from skbilevel._folds import FoldRows


@pytest.mark.parametrize(
    "splitter, partition",
    [
        (KFold(4), True),
        (KFold(3, shuffle=True, random_state=0), True),
        (StratifiedKFold(3), True),
        (ShuffleSplit(3, test_size=0.3, random_state=0), False),
    ],
)
def test_fold_rows_match_indexing(splitter, partition):
    rng = np.random.RandomState(0)
    X = rng.randn(30, 4)
    y = np.arange(30) % 2
    folds = list(splitter.split(X, y))
    rows = FoldRows(len(X), folds)
    assert (rows.order is not None) == partition
    parts = rows.split(X)
    sparse_parts = rows.split(sp.csr_matrix(X))
    float32_parts = rows.split(X, np.float32)
    for k, (train, test) in enumerate(folds):
        train_order, test_order = rows.index(k)
        # The same samples as the split, validation rows in the split's order.
        np.testing.assert_array_equal(np.sort(train_order), np.sort(train))
        np.testing.assert_array_equal(test_order, test)
        np.testing.assert_array_equal(parts[k][0], X[train_order])
        np.testing.assert_array_equal(parts[k][1], X[test_order])
        np.testing.assert_array_equal(sparse_parts[k][0].toarray(), X[train_order])
        np.testing.assert_array_equal(float32_parts[k][0], X[train_order].astype("f4"))
        assert parts[k][0].flags.c_contiguous
        if partition:  # views of one shared copy, no copy per fold
            assert parts[k][0].base is parts[0][0].base is not None


def test_folds_in_threads_share_the_blas_threads():
    """n_jobs fold threads each get their share of the cores for BLAS."""
    from joblib import cpu_count
    from threadpoolctl import threadpool_info

    from skbilevel._objectives import map_folds

    def blas_threads(_):
        return [
            pool["num_threads"]
            for pool in threadpool_info()
            if pool["user_api"] == "blas"
        ]

    outside = blas_threads(None)
    inside = map_folds(blas_threads, range(4), n_jobs=2)
    share = max(1, cpu_count() // 2)
    assert all(threads == [share] * len(outside) for threads in inside)
    assert blas_threads(None) == outside  # restored afterwards
    assert map_folds(blas_threads, range(4), n_jobs=None) == [outside] * 4
