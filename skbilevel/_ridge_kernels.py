"""Numba kernels for the hot loops of the ridge hypergradient.

Every kernel takes plain, C-contiguous float64 / int64 arrays; callers
normalise dtype and layout first (:func:`skbilevel._validation.as_float_c`)
so that float32, Fortran-ordered or read-only input never triggers a new
compilation. Each kernel is tested against the NumPy reference formula of
:mod:`skbilevel._problems._ridge_spectral` or :mod:`._problems._ridge`.
Dense and CSR variants sit side by side.
"""

import numpy as np

from ._numba import jit

__all__ = [
    "dense_centered_squares",
    "dense_chunked_summary",
    "spectral_holdout_loss_grad",
    "spectral_loo_loss_grad",
    "dense_centered_gram_matvec",
    "csr_centered_gram_matvec",
]


@jit
def spectral_holdout_loss_grad(A, Z, s2, alpha, res0, sw):
    """Held-out squared error of a ridge fold and its derivative in log(alpha).

    The fold's validation predictions, minus the targets, are
    ``A @ diag(1 / (s2 + alpha_t)) @ Z[:, t] + res0[:, t]`` for target ``t``
    (``A`` projects the centered validation rows on the eigenvectors of the
    training Gram matrix, ``Z`` the centered training targets).

    Parameters
    ----------
    A : ndarray of shape (n_val, rank)
    Z : ndarray of shape (rank, n_targets)
    s2 : ndarray of shape (rank,)
        Eigenvalues of the centered, weighted training Gram matrix.
    alpha : ndarray of shape (n_targets,)
        Regularization strength of each target.
    res0 : ndarray of shape (n_val, n_targets)
        Training target mean minus validation targets.
    sw : ndarray of shape (n_val,)
        Validation sample weights.

    Returns
    -------
    loss : ndarray of shape (n_targets,)
        ``sum_i sw_i * residual_it ** 2``.
    grad : ndarray of shape (n_targets,)
        Derivative of ``loss`` with respect to ``log(alpha_t)``.
    """
    n_val, rank = A.shape
    n_targets = Z.shape[1]
    loss = np.zeros(n_targets)
    grad = np.zeros(n_targets)
    a = np.empty(rank)
    b = np.empty(rank)
    for t in range(n_targets):
        for k in range(rank):
            inv = 1.0 / (s2[k] + alpha[t])
            a[k] = Z[k, t] * inv
            b[k] = a[k] * inv
        acc_l = 0.0
        acc_g = 0.0
        for i in range(n_val):
            p = 0.0
            q = 0.0
            for k in range(rank):
                p += A[i, k] * a[k]
                q += A[i, k] * b[k]
            r = p + res0[i, t]
            acc_l += sw[i] * r * r
            # d(prediction)/d(log alpha) = -alpha * A diag(1/(s2+alpha)^2) Z
            acc_g -= 2.0 * sw[i] * r * alpha[t] * q
        loss[t] = acc_l
        grad[t] = acc_g
    return loss, grad


@jit
def spectral_loo_loss_grad(P, Z, s2, alpha, y_tilde, q2):
    """Exact leave-one-out squared error of ridge and its derivative in log(alpha).

    With the weighted, centered design ``Xc = U S V^T`` and ``P = Xc V``, the
    hat matrix is ``q q^T + P diag(1/(s2+alpha)) P^T`` (``q q^T`` projects on
    the unpenalized intercept) and the leave-one-out residual of sample ``i``
    is ``r_i / (1 - h_ii)``.

    Parameters
    ----------
    P : ndarray of shape (n_samples, rank)
    Z : ndarray of shape (rank, n_targets)
        ``V^T Xc^T y_tilde``.
    s2 : ndarray of shape (rank,)
    alpha : ndarray of shape (n_targets,)
    y_tilde : ndarray of shape (n_samples, n_targets)
        Centered targets times the square root of the sample weights.
    q2 : ndarray of shape (n_samples,)
        Leverage of the intercept, ``sw_i / sum(sw)`` (zeros without one).

    Returns
    -------
    loss : ndarray of shape (n_targets,)
        Sum of squared (weighted) leave-one-out residuals.
    grad : ndarray of shape (n_targets,)
        Derivative of ``loss`` with respect to ``log(alpha_t)``.
    """
    n_samples, rank = P.shape
    n_targets = Z.shape[1]
    loss = np.zeros(n_targets)
    grad = np.zeros(n_targets)
    inv = np.empty(rank)
    a = np.empty(rank)
    for t in range(n_targets):
        for k in range(rank):
            inv[k] = 1.0 / (s2[k] + alpha[t])
            a[k] = Z[k, t] * inv[k]
        acc_l = 0.0
        acc_g = 0.0
        for i in range(n_samples):
            fit = 0.0
            dfit = 0.0
            h = q2[i]
            dh = 0.0
            for k in range(rank):
                pik = P[i, k]
                fit += pik * a[k]
                dfit += pik * a[k] * inv[k]
                pp = pik * pik * inv[k]
                h += pp
                dh += pp * inv[k]
            dfit *= -alpha[t]
            dh *= -alpha[t]
            den = 1.0 - h
            if den < 1e-12:
                # A sample the model interpolates exactly: its residual is 0 too.
                den = 1e-12
            r = y_tilde[i, t] - fit
            e = r / den
            de = (-dfit * den + r * dh) / (den * den)
            acc_l += e * e
            acc_g += 2.0 * e * de
        loss[t] = acc_l
        grad[t] = acc_g
    return loss, grad


@jit
def dense_centered_gram_matvec(X, sw, xbar, V):
    """``Xc^T diag(sw) Xc @ V`` with ``Xc = X - xbar`` never formed.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sw : ndarray of shape (n_samples,)
    xbar : ndarray of shape (n_features,)
    V : ndarray of shape (n_features, n_targets)

    Returns
    -------
    out : ndarray of shape (n_features, n_targets)
    """
    u = np.dot(X, V)
    xv = np.dot(xbar, V)
    n_samples, n_targets = u.shape
    tot = np.zeros(n_targets)
    for i in range(n_samples):
        for t in range(n_targets):
            u[i, t] = sw[i] * (u[i, t] - xv[t])
            tot[t] += u[i, t]
    out = np.dot(X.T, u)
    for j in range(out.shape[0]):
        for t in range(n_targets):
            out[j, t] -= xbar[j] * tot[t]
    return out


@jit
def csr_centered_gram_matvec(data, indices, indptr, sw, xbar, V):
    """CSR twin of :func:`dense_centered_gram_matvec`, in one sweep over the rows.

    Centering is implicit so the matrix stays sparse.
    """
    n_samples = indptr.shape[0] - 1
    n_features, n_targets = V.shape
    xv = np.zeros(n_targets)
    for j in range(n_features):
        for t in range(n_targets):
            xv[t] += xbar[j] * V[j, t]
    out = np.zeros((n_features, n_targets))
    tot = np.zeros(n_targets)
    u = np.empty(n_targets)
    for i in range(n_samples):
        for t in range(n_targets):
            u[t] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            for t in range(n_targets):
                u[t] += data[p] * V[j, t]
        for t in range(n_targets):
            u[t] = sw[i] * (u[t] - xv[t])
            tot[t] += u[t]
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            for t in range(n_targets):
                out[j, t] += data[p] * u[t]
    for j in range(n_features):
        for t in range(n_targets):
            out[j, t] -= xbar[j] * tot[t]
    return out


@jit
def dense_centered_squares(X, sw, xbar, start, stop):
    """``sum_i sw_i (X[i] - xbar) ** 2`` over rows ``start:stop``, per column.

    One pass over the rows, without the two temporaries of the NumPy
    formula (``X - xbar`` and its square). Centering before squaring keeps
    constant columns at (nearly) exact zeros.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sw : ndarray of shape (n_samples,)
    xbar : ndarray of shape (n_features,)
    start, stop : int

    Returns
    -------
    out : ndarray of shape (n_features,)
    """
    d = X.shape[1]
    out = np.zeros(d)
    for i in range(start, stop):
        w = sw[i]
        for j in range(d):
            r = X[i, j] - xbar[j]
            out[j] += w * r * r
    return out


# Rows of a chunk in dense_chunked_summary: about 128 KiB, so that its second
# read (the squares about the chunk's mean) comes from the cache.
_SUMMARY_CHUNK_ENTRIES = 16384


@jit
def dense_chunked_summary(X, sw, start, stop):
    """Weight, mean, centered squares and largest entry of rows ``start:stop``.

    Chunks of rows that fit in the cache are read twice (their weighted
    mean, then the squares about it) and merged into the running totals by
    the pairwise update of Chan, Golub and LeVeque: one pass over memory
    for what :func:`dense_centered_squares` needs two for (the means first),
    and the largest absolute entry besides.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sw : ndarray of shape (n_samples,)
    start, stop : int

    Returns
    -------
    weight : float
        ``sum(sw[start:stop])``.
    mean : ndarray of shape (n_features,)
        Weighted column means of the rows (zeros when ``weight`` is 0).
    squares : ndarray of shape (n_features,)
        ``sum_i sw_i (X[i] - mean) ** 2`` per column.
    largest : ndarray of shape (n_features,)
        Largest absolute entry per column (NaN entries are skipped; a NaN
        or infinite entry leaves ``mean`` non-finite).
    """
    d = X.shape[1]
    chunk = max(1, _SUMMARY_CHUNK_ENTRIES // max(d, 1))
    total = 0.0
    mean = np.zeros(d)
    squares = np.zeros(d)
    largest = np.zeros(d)
    chunk_mean = np.empty(d)
    chunk_squares = np.empty(d)
    for c0 in range(start, stop, chunk):
        c1 = min(c0 + chunk, stop)
        weight = 0.0
        chunk_mean[:] = 0.0
        for i in range(c0, c1):
            w = sw[i]
            weight += w
            for j in range(d):
                x = X[i, j]
                # w * x is NaN for an infinite x of weight 0: the check
                # sees every entry, weighted or not.
                chunk_mean[j] += w * x
                a = abs(x)
                largest[j] = a if a > largest[j] else largest[j]
        if weight <= 0.0:
            for j in range(d):
                # x - x: 0 for a finite x, NaN otherwise (np.isfinite here
                # took 0.2 s more to compile).
                mean[j] += chunk_mean[j] - chunk_mean[j]
            continue
        chunk_squares[:] = 0.0
        for j in range(d):
            chunk_mean[j] /= weight
        for i in range(c0, c1):
            w = sw[i]
            for j in range(d):
                r = X[i, j] - chunk_mean[j]
                chunk_squares[j] += w * r * r
        share = weight / (total + weight)
        for j in range(d):
            delta = chunk_mean[j] - mean[j]
            squares[j] += chunk_squares[j] + delta * delta * total * share
            mean[j] += delta * share
        total += weight
    return total, mean, squares, largest
