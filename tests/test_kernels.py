"""Numba kernels: one compiled signature whatever the input's dtype or layout."""

import numpy as np
import pytest
import scipy.sparse as sp

from skbilevel import BilevelRidgeCV, _kernels

from ._helpers import make_data

KERNELS = [
    _kernels.spectral_holdout_loss_grad,
    _kernels.spectral_loo_loss_grad,
    _kernels.dense_centered_gram_matvec,
    _kernels.csr_centered_gram_matvec,
]


def _variants(tmp_path):
    X, Y, _ = make_data(50, 6)
    y = Y[:, 0]
    yield X, y
    yield X.astype(np.float32), y.astype(np.float32)
    yield np.asfortranarray(X), y
    yield X[:, ::1][::1], y  # a view
    yield X[::2], y[::2]  # non-contiguous rows
    path = tmp_path / "X.npy"
    np.save(path, X)
    yield np.load(path, mmap_mode="r"), y  # read-only memmap
    Xs = sp.csr_matrix(X)
    yield Xs, y
    Xs32 = Xs.copy()
    Xs32.indices = Xs32.indices.astype(np.int32)
    Xs32.indptr = Xs32.indptr.astype(np.int32)
    yield Xs32.astype(np.float32), y
    yield sp.csc_matrix(X), y


def test_one_signature_per_kernel(tmp_path):
    for X, y in _variants(tmp_path):
        for params in [{}, {"cv": None}, {"hypergradient": "cg"}]:
            BilevelRidgeCV(**params).fit(X, y)
    for kernel in KERNELS:
        assert len(kernel.signatures) <= 1, kernel.py_func.__name__


@pytest.mark.parametrize("sparse", [False, True])
def test_gram_matvec_matches_numpy(sparse):
    X, _, sw = make_data(30, 5, weights=True, sparse=sparse)
    Xd = X.toarray() if sparse else X
    xbar = sw @ Xd / sw.sum()
    V = np.random.RandomState(0).randn(5, 2)
    expected = (Xd - xbar).T @ (sw[:, None] * ((Xd - xbar) @ V))
    if sparse:
        out = _kernels.csr_centered_gram_matvec(
            X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64), sw, xbar, V
        )
    else:
        out = _kernels.dense_centered_gram_matvec(Xd, sw, xbar, V)
    assert np.allclose(out, expected, rtol=1e-12)
