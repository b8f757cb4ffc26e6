"""Fold bookkeeping: FoldRows gives every split its rows, consistently ordered."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold
from sklearn.preprocessing import StandardScaler

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
    column_parts = rows.split(X, column_major=True)
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
        for part, order in zip(column_parts[k], (train_order, test_order), strict=True):
            np.testing.assert_array_equal(part, X[order])
            assert part.flags.f_contiguous
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


def test_map_folds_inside_a_fold_runs_in_order():
    """A fold that maps folds again runs them in its own thread (the kept
    pool would otherwise wait on itself), with the same results."""
    from skbilevel._objectives import map_folds

    def outer(k):
        return map_folds(lambda j: 10 * k + j, range(3), n_jobs=2)

    assert map_folds(outer, range(4), n_jobs=2) == [
        [10 * k + j for j in range(3)] for k in range(4)
    ]


def test_blas_budget_keeps_the_row_blocks_threads():
    """With blas_threads set, sequential evaluations run BLAS on that many
    threads while the row blocks keep the threads BLAS had; both are
    restored afterwards."""
    from threadpoolctl import threadpool_info

    from skbilevel._objectives import FoldsObjective
    from skbilevel._rows import row_threads

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    objective = FoldsObjective.__new__(FoldsObjective)
    objective.blas_threads = 1
    before, rows_before = blas_threads(), row_threads()
    with objective._blas_budget():
        assert blas_threads() == [1] * len(before)
        assert row_threads() == rows_before
    assert blas_threads() == before
    assert row_threads() == rows_before
    objective.blas_threads = None
    with objective._blas_budget():
        assert blas_threads() == before


@pytest.mark.slow
@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
def test_folds_on_a_dask_cluster_match_local(penalty):
    """Under a dask joblib backend, one fit's folds live on the workers (one
    actor each, keeping its warm starts): same search, same model."""
    import joblib
    from distributed import Client, LocalCluster, get_task_stream

    from skbilevel import BilevelLogisticCV

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(penalty=penalty, max_iter=15, early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = BilevelLogisticCV(**params).fit(X, y)
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
            joblib.parallel_config(backend="dask"),
            get_task_stream(client) as stream,
        ):
            remote = BilevelLogisticCV(**params).fit(X, y)
    actors = [task for task in stream.data if "_FoldActor" in str(task["key"])]
    assert len(actors) == 5  # one per fold, made once for the whole search
    np.testing.assert_allclose(remote.C_, local.C_, rtol=1e-8)
    np.testing.assert_allclose(remote.coef_, local.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        rtol=1e-9,
    )
