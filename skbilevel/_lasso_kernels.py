"""Numba coordinate descent for the weighted Lasso (and its L2 part), one target.

The training problem, for one target column, is

    P(w) = 1 / (2 W) * sum_i s_i r_i ** 2 + sum_j alpha_j |w_j|
           + 1 / 2 * sum_j beta_j w_j ** 2,     r = yc - (X - 1 xbar^T) w,

with ``W = sum_i s_i``, ``yc`` the weighted-centered target and ``xbar`` the
weighted column means (zeros without an intercept). X is never centered in
memory: the kernels keep ``u = yc - X w`` and ``c = xbar . w`` (so that
``r = u + c``); with an intercept ``sum_i s_i r_i = 0``, so the centered
column products reduce to ``sum_i s_i x_ij u_i + c W xbar_j``. Dense X is
read by columns (Fortran order), sparse X as CSC arrays.

Sweeps alternate between all the coordinates and the current support (the
active set), and stop on the duality gap, which bounds ``P(w) - min P``.
"""

import numpy as np

from ._numba import jit

__all__ = ["cd_dense", "cd_sparse", "duality_gap_dense", "duality_gap_sparse"]


@jit
def _soft(value, threshold):
    if value > threshold:
        return value - threshold
    if value < -threshold:
        return value + threshold
    return 0.0


@jit
def _column_dot_dense(X, j, s, u):
    total = 0.0
    for i in range(X.shape[0]):
        total += s[i] * X[i, j] * u[i]
    return total


@jit
def _column_dot_sparse(data, indices, indptr, j, s, u):
    total = 0.0
    for q in range(indptr[j], indptr[j + 1]):
        i = indices[q]
        total += s[i] * data[q] * u[i]
    return total


@jit
def _gap(z, w, u, c, yc, s, total, alpha, beta):
    """Duality gap from ``z_j = X_cj^T (s r) / W`` and the residual ``u + c``.

    The dual point is ``nu = k r / W``, with ``k <= 1`` the largest scale that
    keeps ``|X_cj^T s nu| <= alpha_j`` on the pure-L1 coordinates.
    """
    n = u.shape[0]
    rr = 0.0
    yr = 0.0
    for i in range(n):
        r = u[i] + c
        rr += s[i] * r * r
        yr += s[i] * yc[i] * r
    k = 1.0
    penalty = 0.0
    for j in range(w.shape[0]):
        penalty += alpha[j] * abs(w[j]) + 0.5 * beta[j] * w[j] * w[j]
        if beta[j] == 0.0 and abs(z[j]) > alpha[j]:
            k = min(k, alpha[j] / abs(z[j]))
    primal = 0.5 * rr / total + penalty
    dual = k * yr / total - 0.5 * k * k * rr / total
    for j in range(w.shape[0]):
        if beta[j] > 0.0:
            excess = abs(k * z[j]) - alpha[j]
            if excess > 0.0:
                dual -= 0.5 * excess * excess / beta[j]
    return primal - dual


@jit
def duality_gap_dense(X, xbar, yc, s, w, u, c, alpha, beta):
    """Duality gap of ``w`` (dense X); ``u = yc - X w``, ``c = xbar . w``."""
    total = s.sum()
    z = np.empty(w.shape[0])
    for j in range(w.shape[0]):
        z[j] = (_column_dot_dense(X, j, s, u) + c * total * xbar[j]) / total
    return _gap(z, w, u, c, yc, s, total, alpha, beta)


@jit
def duality_gap_sparse(data, indices, indptr, xbar, yc, s, w, u, c, alpha, beta):
    """Duality gap of ``w`` (CSC arrays of X); see :func:`duality_gap_dense`."""
    total = s.sum()
    z = np.empty(w.shape[0])
    for j in range(w.shape[0]):
        dot = _column_dot_sparse(data, indices, indptr, j, s, u)
        z[j] = (dot + c * total * xbar[j]) / total
    return _gap(z, w, u, c, yc, s, total, alpha, beta)


@jit
def cd_dense(X, xbar, curvature, yc, s, w, alpha, beta, tol, max_sweeps):
    """Coordinate descent on dense X (Fortran order), warm-started at ``w``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), Fortran order
    xbar : ndarray of shape (n_features,)
        Weighted column means (zeros without an intercept).
    curvature : ndarray of shape (n_features,)
        ``sum_i s_i (x_ij - xbar_j) ** 2 / W``.
    yc : ndarray of shape (n_samples,)
        Weighted-centered target (the target without an intercept).
    s : ndarray of shape (n_samples,)
        Sample weights.
    w : ndarray of shape (n_features,)
        Warm start; updated in place.
    alpha, beta : ndarray of shape (n_features,)
        L1 and L2 weights of every coefficient.
    tol : float
        Stop once the duality gap is at most ``tol``.
    max_sweeps : int

    Returns
    -------
    gap : float
        The last duality gap computed.
    sweeps : int
    """
    n, d = X.shape
    total = s.sum()
    u = yc.copy()
    c = 0.0
    for j in range(d):
        if w[j] != 0.0:
            c += xbar[j] * w[j]
            for i in range(n):
                u[i] -= X[i, j] * w[j]
    gap = np.inf
    active_only = False
    for sweep in range(max_sweeps):
        largest = 0.0
        for j in range(d):
            if curvature[j] <= 0.0:
                w[j] = 0.0
                continue
            if active_only and w[j] == 0.0:
                continue
            dot = (_column_dot_dense(X, j, s, u) + c * total * xbar[j]) / total
            new = _soft(dot + curvature[j] * w[j], alpha[j]) / (curvature[j] + beta[j])
            delta = new - w[j]
            if delta != 0.0:
                w[j] = new
                c += xbar[j] * delta
                for i in range(n):
                    u[i] -= X[i, j] * delta
                largest = max(largest, abs(delta) * np.sqrt(curvature[j]))
        if active_only:
            # The support's own sweeps until they settle, then a full sweep.
            active_only = largest * largest > tol
            continue
        gap = duality_gap_dense(X, xbar, yc, s, w, u, c, alpha, beta)
        if gap <= tol:
            return gap, sweep + 1
        active_only = True
    return gap, max_sweeps


@jit
def cd_sparse(data, indices, indptr, xbar, curvature, yc, s, w, alpha, beta, tol,
              max_sweeps):  # fmt: skip
    """Coordinate descent on CSC arrays of X; see :func:`cd_dense`."""
    d = w.shape[0]
    total = s.sum()
    u = yc.copy()
    c = 0.0
    for j in range(d):
        if w[j] != 0.0:
            c += xbar[j] * w[j]
            for q in range(indptr[j], indptr[j + 1]):
                u[indices[q]] -= data[q] * w[j]
    gap = np.inf
    active_only = False
    for sweep in range(max_sweeps):
        largest = 0.0
        for j in range(d):
            if curvature[j] <= 0.0:
                w[j] = 0.0
                continue
            if active_only and w[j] == 0.0:
                continue
            dot = _column_dot_sparse(data, indices, indptr, j, s, u)
            dot = (dot + c * total * xbar[j]) / total
            new = _soft(dot + curvature[j] * w[j], alpha[j]) / (curvature[j] + beta[j])
            delta = new - w[j]
            if delta != 0.0:
                w[j] = new
                c += xbar[j] * delta
                for q in range(indptr[j], indptr[j + 1]):
                    u[indices[q]] -= data[q] * delta
                largest = max(largest, abs(delta) * np.sqrt(curvature[j]))
        if active_only:
            active_only = largest * largest > tol
            continue
        gap = duality_gap_sparse(data, indices, indptr, xbar, yc, s, w, u, c, alpha,
                                 beta)  # fmt: skip
        if gap <= tol:
            return gap, sweep + 1
        active_only = True
    return gap, max_sweeps
