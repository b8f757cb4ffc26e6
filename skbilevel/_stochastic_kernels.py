"""Numba kernels of the stochastic mode: mini-batches gathered by row index.

The stochastic solvers touch a few hundred rows of a (possibly memory-mapped)
design matrix per step. These kernels read those rows in place, by index,
instead of materializing the batch (``X[rows]`` would copy it first), and
center them on the fly (``x - mean``), which keeps the intercept decoupled
from the coefficients without a centered copy of X. Everything else is the
per-sample algebra already in :mod:`skbilevel._logistic_kernels`.
"""

import numpy as np

from ._logistic_kernels import _csr_row_scatter, _csr_row_scores
from ._numba import jit

__all__ = [
    "dense_gather_scores",
    "dense_gather_scatter",
    "csr_gather_scores",
    "csr_gather_scatter",
]


@jit
def _shifted_intercept(mean, W, intercept):
    """``intercept - mean @ W``: the scores of centered rows, ``x @ W + shift``."""
    shift = intercept.copy()
    for j in range(W.shape[0]):
        for k in range(W.shape[1]):
            shift[k] -= mean[j] * W[j, k]
    return shift


@jit(reassociate=True)
def dense_gather_scores(X, rows, mean, W, intercept):
    """``(X[rows] - mean) @ W + intercept`` without copying the rows.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rows : ndarray of shape (batch,), dtype int64
    mean : ndarray of shape (n_features,)
    W : ndarray of shape (n_features, n_out)
    intercept : ndarray of shape (n_out,)

    Returns
    -------
    Z : ndarray of shape (batch, n_out)
    """
    n_features, n_out = W.shape
    shift = _shifted_intercept(mean, W, intercept)
    Z = np.empty((rows.shape[0], n_out))
    if n_out == 1:  # one dot product per row: a contiguous, vectorizable loop
        w = W[:, 0].copy()
        for r in range(rows.shape[0]):
            i = rows[r]
            acc = shift[0]
            for j in range(n_features):
                acc += X[i, j] * w[j]
            Z[r, 0] = acc
        return Z
    for r in range(rows.shape[0]):
        i = rows[r]
        for k in range(n_out):
            Z[r, k] = shift[k]
        for j in range(n_features):
            x = X[i, j]
            for k in range(n_out):
                Z[r, k] += x * W[j, k]
    return Z


@jit
def dense_gather_scatter(X, rows, mean, R):
    """``(X[rows] - mean).T @ R`` and ``R.sum(0)`` without copying the rows."""
    n_features = X.shape[1]
    n_out = R.shape[1]
    out = np.zeros((n_features, n_out))
    total = np.zeros(n_out)
    if n_out == 1:  # one axpy per row: a contiguous, vectorizable loop
        acc = np.zeros(n_features)
        for r in range(rows.shape[0]):
            i = rows[r]
            weight = R[r, 0]
            total[0] += weight
            for j in range(n_features):
                acc[j] += X[i, j] * weight
        out[:, 0] = acc
    else:
        for r in range(rows.shape[0]):
            i = rows[r]
            for k in range(n_out):
                total[k] += R[r, k]
            for j in range(n_features):
                x = X[i, j]
                for k in range(n_out):
                    out[j, k] += x * R[r, k]
    for j in range(n_features):
        for k in range(n_out):
            out[j, k] -= mean[j] * total[k]
    return out, total


@jit
def csr_gather_scores(data, indices, indptr, rows, mean, W, intercept):
    """CSR version of :func:`dense_gather_scores` (implicit centering)."""
    shift = _shifted_intercept(mean, W, intercept)
    Z = np.empty((rows.shape[0], W.shape[1]))
    for r in range(rows.shape[0]):
        i = rows[r]
        _csr_row_scores(data, indices, indptr[i], indptr[i + 1], W, shift, Z[r])
    return Z


@jit
def csr_gather_scatter(data, indices, indptr, rows, mean, R):
    """CSR version of :func:`dense_gather_scatter` (implicit centering)."""
    n_features = mean.shape[0]
    n_out = R.shape[1]
    out = np.zeros((n_features, n_out))
    total = np.zeros(n_out)
    for r in range(rows.shape[0]):
        i = rows[r]
        _csr_row_scatter(data, indices, indptr[i], indptr[i + 1], R[r], out, total)
    for j in range(n_features):
        for k in range(n_out):
            out[j, k] -= mean[j] * total[k]
    return out, total
