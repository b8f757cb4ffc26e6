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

Sweeps run over a working set (the support and the coordinates the
optimality condition wants in), with a pass over all the columns for the
duality gap, which bounds ``P(w) - min P``, whenever the set has settled.
For a pure Lasso, every gap also screens columns out (gap-safe rules,
Fercoq, Gramfort and Salmon 2015; Ndiaye et al. 2017): the dual of ``P`` is
1-strongly concave in ``theta = k sqrt(s / W) r``, so the optimal dual point
lies within ``sqrt(2 gap)`` of the current one, and a column with
``k |z_j| + sqrt(2 gap * curvature_j) < alpha_j`` has ``w_j = 0`` at the
optimum. Screened columns are skipped by every later sweep and pass (the
caller keeps the mask across calls at the same strengths); the gap is then
the reduced problem's, whose optimum is the full problem's.
"""

import numpy as np

from ._numba import jit

__all__ = [
    "cd_dense",
    "cd_dense_folds",
    "cd_gram",
    "cd_sparse",
    "centered_column_curvature",
    "gram_jacobian_sweeps",
    "newton_cut",
    "rows_squared_error",
    "solve_gram",
    "support_jacobian_sweeps",
]


@jit(reassociate=True)
def centered_column_curvature(X, xbar, s):
    """``sum_i s_i (x_ij - xbar_j) ** 2 / sum(s)`` of every column of dense X
    (Fortran order), centered before squaring: constant columns give exact
    zeros, and no centered copy of X is made."""
    n, d = X.shape
    total = s.sum()
    out = np.zeros(d)
    for j in range(d):
        acc = 0.0
        for i in range(n):
            diff = X[i, j] - xbar[j]
            acc += s[i] * diff * diff
        out[j] = acc / total
    return out


@jit
def _soft(value, threshold):
    if value > threshold:
        return value - threshold
    if value < -threshold:
        return value + threshold
    return 0.0


@jit(reassociate=True)
def _column_dot_dense(X, j, s, u):
    total = 0.0
    for i in range(X.shape[0]):
        total += s[i] * X[i, j] * u[i]
    return total


@jit(reassociate=True)
def _column_dot_weighted(X, j, v):
    """``X[:, j] . v``: a pass's column product with ``v = s * u`` formed
    once for the pass (one multiply-add an entry instead of two multiplies
    and an add: 2.7 against 3.8 ms for 5 folds over 1000 x 5000)."""
    total = 0.0
    for i in range(X.shape[0]):
        total += X[i, j] * v[i]
    return total


@jit(reassociate=True)
def _column_dot_sparse(data, indices, indptr, j, s, u):
    total = 0.0
    for q in range(indptr[j], indptr[j + 1]):
        i = indices[q]
        total += s[i] * data[q] * u[i]
    return total


@jit
def _gap(z, w, u, c, yc, s, total, alpha, beta, screened):
    """Duality gap from ``z_j = X_cj^T (s r) / W`` and the residual ``u + c``
    (screened columns left out)."""
    n = u.shape[0]
    rr = 0.0
    yr = 0.0
    for i in range(n):
        r = u[i] + c
        rr += s[i] * r * r
        yr += s[i] * yc[i] * r
    return _gap_from_sums(z, w, rr / total, yr / total, alpha, beta, screened)


@jit
def _dual_scale(z, alpha, beta, screened):
    """The largest ``k <= 1`` that keeps ``|k z_j| <= alpha_j`` on the
    pure-L1 coordinates that are not screened."""
    k = 1.0
    for j in range(z.shape[0]):
        if not screened[j] and beta[j] == 0.0 and abs(z[j]) > alpha[j]:
            k = min(k, alpha[j] / abs(z[j]))
    return k


@jit
def _gap_from_sums(z, w, rr, yr, alpha, beta, screened):
    """Duality gap from ``z_j = X_cj^T (s r) / W``, ``rr = r^T S r / W`` and
    ``yr = y_c^T S r / W`` (``r`` the residual).

    The dual point is ``nu = k r / W``, with ``k <= 1`` the largest scale that
    keeps ``|X_cj^T s nu| <= alpha_j`` on the pure-L1 coordinates that are not
    screened (those are zero: they add nothing to the penalty).
    """
    k = _dual_scale(z, alpha, beta, screened)
    penalty = 0.0
    for j in range(w.shape[0]):
        penalty += alpha[j] * abs(w[j]) + 0.5 * beta[j] * w[j] * w[j]
    primal = 0.5 * rr + penalty
    dual = k * yr - 0.5 * k * k * rr
    for j in range(w.shape[0]):
        if beta[j] > 0.0 and not screened[j]:
            excess = abs(k * z[j]) - alpha[j]
            if excess > 0.0:
                dual -= 0.5 * excess * excess / beta[j]
    return primal - dual


@jit
def _screen(z, w, curvature, alpha, beta, gap, screened):
    """Gap-safe screening of a pure Lasso's zero coefficients (see the
    module's docstring); marks them in ``screened``."""
    for j in range(w.shape[0]):
        if beta[j] != 0.0:
            return  # an L2 part: another dual, no screening
    radius = np.sqrt(2.0 * max(gap, 0.0))
    k = _dual_scale(z, alpha, beta, screened)
    for j in range(w.shape[0]):
        if screened[j] or w[j] != 0.0:
            continue
        # A relative margin against the rounding of the stale sums.
        if k * abs(z[j]) + radius * np.sqrt(curvature[j]) < alpha[j] * (1.0 - 1e-9):
            screened[j] = True


@jit
def _mark_violators(z, w, alpha, beta, working, screened):
    """Add to the working set the zero coefficients that the optimality
    condition wants in (``|z_j| > alpha_j``); returns how many were added."""
    added = 0
    for j in range(w.shape[0]):
        if screened[j]:
            continue
        if not working[j] and w[j] == 0.0 and abs(z[j]) > alpha[j]:
            working[j] = True
            added += 1
    return added


@jit
def _scores_dense(X, xbar, s, u, c, total, z, screened):
    """``z_j = X_cj^T (s r) / W`` for every column not screened (one pass
    over those columns of X)."""
    v = s * u
    for j in range(X.shape[1]):
        if not screened[j]:
            z[j] = (_column_dot_weighted(X, j, v) + c * total * xbar[j]) / total


@jit
def _scores_sparse(data, indices, indptr, xbar, s, u, c, total, z, screened):
    for j in range(xbar.shape[0]):
        if screened[j]:
            continue
        dot = _column_dot_sparse(data, indices, indptr, j, s, u)
        z[j] = (dot + c * total * xbar[j]) / total


@jit
def _dense_sweep(X, xbar, curvature, s, u, c, total, w, alpha, beta, screened,
                 working, full):  # fmt: skip
    """One sweep of coordinate descent over the working set (all the columns
    with ``full``) of dense X; ``u``, ``w`` and ``working`` are updated in
    place. Returns the new intercept term ``c`` and the largest step (in the
    coordinate's curvature norm)."""
    n, d = X.shape
    largest = 0.0
    for j in range(d):
        if curvature[j] <= 0.0:
            w[j] = 0.0
            continue
        if screened[j] or not (full or working[j]):
            continue
        dot = (_column_dot_dense(X, j, s, u) + c * total * xbar[j]) / total
        new = _soft(dot + curvature[j] * w[j], alpha[j]) / (curvature[j] + beta[j])
        delta = new - w[j]
        if delta != 0.0:
            w[j] = new
            working[j] = True
            c += xbar[j] * delta
            for i in range(n):
                u[i] -= X[i, j] * delta
            largest = max(largest, abs(delta) * np.sqrt(curvature[j]))
    return c, largest


@jit
def cd_dense(X, xbar, curvature, yc, s, w, alpha, beta, tol, max_sweeps, screened):
    """Coordinate descent on dense X (Fortran order), warm-started at ``w``.

    Sweeps run over a working set: the support of ``w`` and the coordinates
    that the optimality condition wants in. Once they settle, one pass over
    all the columns gives the duality gap and the coordinates to add; a
    cold start (``w = 0``) begins with a full sweep.

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
    screened : ndarray of shape (n_features,), dtype=bool
        Columns known to be zero at the optimum (gap-safe screening), skipped;
        updated in place by every gap of a pure Lasso. Valid for these
        ``alpha`` and ``beta`` only.

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
    working = np.zeros(d, dtype=np.bool_)
    for j in range(d):
        if w[j] != 0.0:
            working[j] = True
            c += xbar[j] * w[j]
            for i in range(n):
                u[i] -= X[i, j] * w[j]
    z = np.empty(d)
    full = not working.any()
    gap = np.inf
    # The working set is checked (a pass over all the columns) once its
    # sweeps move the objective by less than ``settle``; a check that finds
    # nothing to add asks for 100 times more settling before the next one
    # (measured: a check after every slow sweep made 1445 passes on 800 x
    # 5000).
    settle = tol
    for sweep in range(max_sweeps):
        c, largest = _dense_sweep(X, xbar, curvature, s, u, c, total, w, alpha,
                                  beta, screened, working, full)  # fmt: skip
        full = False
        if largest * largest > settle:
            continue  # the working set has not settled
        _scores_dense(X, xbar, s, u, c, total, z, screened)
        gap = _gap(z, w, u, c, yc, s, total, alpha, beta, screened)
        if gap <= tol:
            return gap, sweep + 1
        _screen(z, w, curvature, alpha, beta, gap, screened)
        if _mark_violators(z, w, alpha, beta, working, screened) == 0:
            settle *= 0.01
            full = largest == 0.0  # nothing moves, nothing to add: sweep all
    return gap, max_sweeps


@jit
def cd_dense_folds(X, xbar, curvature, yc, s, w, alpha, beta, tol, max_sweeps,
                   screened, gaps, sweeps):  # fmt: skip
    """:func:`cd_dense` for K folds that share X (K-fold folds on one design,
    each weighting its own rows), in lockstep.

    Every fold takes :func:`cd_dense`'s own steps; a fold whose working set
    has settled waits until every other one has too, and their passes over
    all the columns (the duality gap, screening, the coordinates to add)
    then read each column once for all of them. A pass over 1000 x 5000
    (40 MB, out of cache) costs 1.4 ms, memory-bound; a column read from
    cache costs 0.11 against 0.28 us. Arrays are per fold (first axis K);
    ``w`` and ``screened`` are updated in place, ``gaps`` and ``sweeps``
    receive what :func:`cd_dense` returns for each fold.
    """
    K = w.shape[0]
    n, d = X.shape
    totals = np.empty(K)
    u = yc.copy()
    c = np.zeros(K)
    working = np.zeros((K, d), dtype=np.bool_)
    full = np.zeros(K, dtype=np.bool_)
    for k in range(K):
        totals[k] = s[k].sum()
        for j in range(d):
            if w[k, j] != 0.0:
                working[k, j] = True
                c[k] += xbar[k, j] * w[k, j]
                for i in range(n):
                    u[k, i] -= X[i, j] * w[k, j]
        full[k] = not working[k].any()
    z = np.empty((K, d))
    settle = tol.copy()
    largest = np.zeros(K)
    done = np.zeros(K, dtype=np.bool_)
    waiting = np.zeros(K, dtype=np.bool_)
    for k in range(K):
        gaps[k] = np.inf
        sweeps[k] = 0
    while not done.all():
        for k in range(K):
            if done[k] or waiting[k]:
                continue
            if sweeps[k] >= max_sweeps[k]:
                done[k] = True
                continue
            c[k], top = _dense_sweep(
                X, xbar[k], curvature[k], s[k], u[k], c[k], totals[k], w[k],
                alpha[k], beta[k], screened[k], working[k], full[k],
            )  # fmt: skip
            sweeps[k] += 1
            full[k] = False
            largest[k] = top
            waiting[k] = top * top <= settle[k]
        sweeping = False
        for k in range(K):
            sweeping = sweeping or not (done[k] or waiting[k])
        if sweeping or not waiting.any():
            continue  # some folds still sweep: the waiting ones wait
        # One pass over the columns for every waiting fold.
        v = s * u
        for j in range(d):
            for k in range(K):
                if waiting[k] and not screened[k, j]:
                    z[k, j] = (_column_dot_weighted(X, j, v[k]) + c[k]
                               * totals[k] * xbar[k, j]) / totals[k]  # fmt: skip
        for k in range(K):
            if not waiting[k]:
                continue
            waiting[k] = False
            gaps[k] = _gap(z[k], w[k], u[k], c[k], yc[k], s[k], totals[k],
                           alpha[k], beta[k], screened[k])  # fmt: skip
            if gaps[k] <= tol[k]:
                done[k] = True
                continue
            _screen(z[k], w[k], curvature[k], alpha[k], beta[k], gaps[k], screened[k])
            if _mark_violators(z[k], w[k], alpha[k], beta[k], working[k],
                               screened[k]) == 0:  # fmt: skip
                settle[k] *= 0.01
                full[k] = largest[k] == 0.0


@jit
def cd_sparse(data, indices, indptr, xbar, curvature, yc, s, w, alpha, beta, tol,
              max_sweeps, screened):  # fmt: skip
    """Coordinate descent on CSC arrays of X; see :func:`cd_dense`."""
    d = w.shape[0]
    total = s.sum()
    u = yc.copy()
    c = 0.0
    working = np.zeros(d, dtype=np.bool_)
    for j in range(d):
        if w[j] != 0.0:
            working[j] = True
            c += xbar[j] * w[j]
            for q in range(indptr[j], indptr[j + 1]):
                u[indices[q]] -= data[q] * w[j]
    z = np.empty(d)
    full = not working.any()
    gap = np.inf
    # The working set is checked (a pass over all the columns) once its
    # sweeps move the objective by less than ``settle``; a check that finds
    # nothing to add asks for 100 times more settling before the next one
    # (measured: a check after every slow sweep made 1445 passes on 800 x
    # 5000).
    settle = tol
    for sweep in range(max_sweeps):
        largest = 0.0
        for j in range(d):
            if curvature[j] <= 0.0:
                w[j] = 0.0
                continue
            if screened[j] or not (full or working[j]):
                continue
            dot = _column_dot_sparse(data, indices, indptr, j, s, u)
            dot = (dot + c * total * xbar[j]) / total
            new = _soft(dot + curvature[j] * w[j], alpha[j]) / (curvature[j] + beta[j])
            delta = new - w[j]
            if delta != 0.0:
                w[j] = new
                working[j] = True
                c += xbar[j] * delta
                for q in range(indptr[j], indptr[j + 1]):
                    u[indices[q]] -= data[q] * delta
                largest = max(largest, abs(delta) * np.sqrt(curvature[j]))
        full = False
        if largest * largest > settle:
            continue
        _scores_sparse(data, indices, indptr, xbar, s, u, c, total, z, screened)
        gap = _gap(z, w, u, c, yc, s, total, alpha, beta, screened)
        if gap <= tol:
            return gap, sweep + 1
        _screen(z, w, curvature, alpha, beta, gap, screened)
        if _mark_violators(z, w, alpha, beta, working, screened) == 0:
            settle *= 0.01
            full = largest == 0.0
    return gap, max_sweeps


@jit(reassociate=True)
def support_jacobian_sweeps(columns, s, total, diagonal, beta, B, J, tol, max_sweeps):
    """Gauss-Seidel sweeps on ``H_SS J = -B`` (the implicit forward Jacobian).

    ``H_SS = columns^T diag(s) columns / total + diag(beta)`` with
    ``columns`` the centered support columns (Fortran order, shape
    (n_samples, |S|)); ``J`` and ``B`` have one column per hyperparameter
    that touches the support. Coordinate by coordinate, as coordinate
    descent does on the training problem (``Z = columns @ J`` kept up to
    date), until the largest update is at most ``tol`` times the largest
    entry of ``J``. ``J`` is updated in place.

    Returns
    -------
    n_sweeps : int
    converged : bool
    """
    n, size = columns.shape
    m = B.shape[1]
    Z = np.zeros((m, n))  # (columns @ J).T: each row contiguous
    for a in range(size):
        for k in range(m):
            if J[a, k] != 0.0:
                for i in range(n):
                    Z[k, i] += columns[i, a] * J[a, k]
    for sweep in range(max_sweeps):
        change = 0.0
        scale = 0.0
        for a in range(size):
            for k in range(m):
                acc = 0.0
                for i in range(n):
                    acc += s[i] * columns[i, a] * Z[k, i]
                residual = acc / total + beta[a] * J[a, k] + B[a, k]
                delta = -residual / diagonal[a]
                if delta != 0.0:
                    J[a, k] += delta
                    for i in range(n):
                        Z[k, i] += columns[i, a] * delta
                change = max(change, abs(delta))
                scale = max(scale, abs(J[a, k]))
        if change <= tol * scale:
            return sweep + 1, True
    return max_sweeps, False


@jit
def cd_gram(G, b, yy, w, alpha, beta, tol, max_sweeps):
    """Coordinate descent on the centered weighted Gram matrix (tall data).

    Minimizes ``1/2 w^T G w - b^T w + alpha . |w| + 1/2 beta . w**2`` (the
    Lasso of :func:`cd_dense` up to the constant ``yy / 2``) with
    ``G = X_c^T S X_c / W`` and ``b = X_c^T S y_c / W``: a coordinate costs
    ``n_features`` operations instead of ``n_samples`` (scikit-learn's
    ``precompute``). ``q = G w`` is kept up to date; the duality gap, from
    the same sums, is checked after every sweep.

    Parameters
    ----------
    G : ndarray of shape (n_features, n_features)
    b : ndarray of shape (n_features,)
    yy : float
        ``y_c^T S y_c / W``.
    w : ndarray of shape (n_features,)
        Warm start; updated in place.
    alpha, beta : ndarray of shape (n_features,)
    tol : float
        Stop once the duality gap is at most ``tol``.
    max_sweeps : int

    Returns
    -------
    gap : float
    sweeps : int
    """
    d = G.shape[0]
    q = G @ w
    z = np.empty(d)
    none = np.zeros(d, dtype=np.bool_)  # no screening: a sweep costs d ** 2
    gap = np.inf
    for sweep in range(max_sweeps):
        for j in range(d):
            curvature = G[j, j]
            if curvature <= 0.0:
                w[j] = 0.0
                continue
            new = _soft(b[j] - q[j] + curvature * w[j], alpha[j]) / (
                curvature + beta[j]
            )
            delta = new - w[j]
            if delta != 0.0:
                w[j] = new
                for i in range(d):
                    q[i] += G[j, i] * delta  # G is symmetric: row j
        bw = 0.0
        wq = 0.0
        for j in range(d):
            z[j] = b[j] - q[j]
            bw += b[j] * w[j]
            wq += w[j] * q[j]
        gap = _gap_from_sums(z, w, yy - 2.0 * bw + wq, yy - bw, alpha, beta, none)
        if gap <= tol:
            return gap, sweep + 1
    return gap, max_sweeps


@jit
def _support_cholesky(H):
    """Lower Cholesky factor of ``H``, shifted by round-off where needed
    (as :func:`~skbilevel._linalg.robust_cho_factor`); empty if none is
    found."""
    try:
        return np.linalg.cholesky(H)
    except Exception:  # noqa: BLE001 - Numba catches no narrower class
        pass
    k = H.shape[0]
    scale = 0.0
    for a in range(k):
        scale = max(scale, abs(H[a, a]))
    scale = max(scale, 1e-300)
    for exponent in range(-15, -5):
        shifted = H.copy()
        for a in range(k):
            shifted[a, a] += scale * 10.0**exponent * k
        try:
            return np.linalg.cholesky(shifted)
        except Exception:  # noqa: BLE001
            pass
    return np.empty((0, 0))


@jit
def _gram_newton(G, b, w, alpha, beta, max_support):
    """Newton step on the support of ``w`` with its signs fixed, cut where a
    coefficient first reaches zero (see ``LassoProblem._support_newton``);
    ``w`` is updated in place. Returns the support and the lower Cholesky
    factor of its ``H_SS`` (empty arrays when no step was taken)."""
    support = np.flatnonzero(w)
    k = support.size
    if k == 0 or k > max_support:
        return np.empty(0, dtype=np.int64), np.empty((0, 0))
    H = np.empty((k, k))
    rhs = np.empty(k)
    for a in range(k):
        j = support[a]
        for c in range(k):
            H[a, c] = G[j, support[c]]
        H[a, a] += beta[j]
        rhs[a] = b[j] - alpha[j] * np.sign(w[j])
    L = _support_cholesky(H)
    if L.shape[0] == 0:
        return np.empty(0, dtype=np.int64), L
    # Forward and back substitution: L L^T values = rhs.
    values = rhs.copy()
    for a in range(k):
        acc = values[a]
        for c in range(a):
            acc -= L[a, c] * values[c]
        values[a] = acc / L[a, a]
    for a in range(k - 1, -1, -1):
        acc = values[a]
        for c in range(a + 1, k):
            acc -= L[c, a] * values[c]
        values[a] = acc / L[a, a]
    newton_cut(w, support, values)
    return support, L


@jit
def newton_cut(w, support, values):
    """Move ``w[support]`` to a Newton step's ``values``, cut where a
    coefficient first changes sign (it reaches zero there and leaves the
    support); ``w`` is updated in place. Along the segment the signs hold,
    so the objective (a quadratic on the support) decreases."""
    step = np.inf
    first = -1
    for a in range(support.size):
        current = w[support[a]]
        if np.sign(values[a]) != np.sign(current):
            candidate = current / (current - values[a])
            if candidate < step:
                step, first = candidate, a
    if first < 0:  # no sign change: the full step
        for a in range(support.size):
            w[support[a]] = values[a]
        return
    for a in range(support.size):
        current = w[support[a]]
        w[support[a]] = current + step * (values[a] - current)
    w[support[first]] = 0.0


@jit
def solve_gram(G, b, yy, w, alpha, beta, tol, max_sweeps, between, polish,
               max_support):  # fmt: skip
    """Coordinate descent with Newton steps on the support, on the Gram
    matrix: ``LassoProblem.solve`` for one target, in one call.

    Rounds of ``between`` sweeps of :func:`cd_gram` alternate with a Newton
    step on the support (:func:`_gram_newton`) until the duality gap is at
    most ``tol``; with ``polish``, after one more Newton step, checked by
    the gap. ``w`` is updated in place.

    Returns
    -------
    gap : float
    sweeps : int
    support : ndarray of int64
        The support of the last Newton step (empty: none taken).
    factor : ndarray of shape (|support|, |support|)
        Lower Cholesky factor of that step's ``H_SS + diag(beta_S)``.
    """
    spent = 0
    gap = np.inf
    polished = not polish
    support = np.empty(0, dtype=np.int64)
    factor = np.empty((0, 0))
    while spent < max_sweeps:
        gap, used = cd_gram(G, b, yy, w, alpha, beta, tol,
                            min(between, max_sweeps - spent))  # fmt: skip
        spent += used
        if gap <= tol and polished:
            break
        polished = gap <= tol
        step_support, step_factor = _gram_newton(G, b, w, alpha, beta, max_support)
        if step_support.size:
            support, factor = step_support, step_factor
    return gap, spent, support, factor


@jit(reassociate=True)
def gram_jacobian_sweeps(H, B, J, tol, max_sweeps):
    """Gauss-Seidel sweeps on ``H J = -B`` (``H = H_SS``, L2 part included):
    :func:`support_jacobian_sweeps` with the support's Hessian formed."""
    size, m = B.shape
    for sweep in range(max_sweeps):
        change = 0.0
        scale = 0.0
        for a in range(size):
            for k in range(m):
                acc = B[a, k]
                for c in range(size):
                    acc += H[a, c] * J[c, k]
                delta = -acc / H[a, a]
                J[a, k] += delta
                change = max(change, abs(delta))
                scale = max(scale, abs(J[a, k]))
        if change <= tol * scale:
            return sweep + 1, True
    return max_sweeps, False


@jit(reassociate=True)
def rows_squared_error(X, rows, w, offset, Y, s):
    """Validation rows ``X[rows]`` of a C-ordered X, read in place.

    With ``R = X[rows] w + offset - Y`` (``offset``: the intercept part,
    per target), returns ``sum_i s_i R_it ** 2`` over rows and targets,
    ``X[rows].T (s R)`` (n_features, n_targets) and ``(s R).sum(0)``. The
    predictions run over the nonzero rows of ``w`` only (a Lasso's support).
    Gathering ``X[rows]`` instead costs fresh memory: 8 MB a fold on 1000 x
    5000, which takes longer to touch than these products take.
    """
    n_features, n_targets = w.shape
    nonzero = np.zeros(n_features, dtype=np.bool_)
    for j in range(n_features):
        for t in range(n_targets):
            if w[j, t] != 0.0:
                nonzero[j] = True
    support = np.flatnonzero(nonzero)
    w_support = np.empty((n_targets, support.size))
    for t in range(n_targets):
        for m in range(support.size):
            w_support[t, m] = w[support[m], t]
    # Target-major, so that a row's update is one contiguous axpy.
    grad = np.zeros((n_targets, n_features))
    sums = np.zeros(n_targets)
    loss = 0.0
    for k in range(rows.shape[0]):
        row = X[rows[k]]
        for t in range(n_targets):
            prediction = offset[t]
            coef = w_support[t]
            for m in range(support.size):
                prediction += row[support[m]] * coef[m]
            residual = prediction - Y[k, t]
            weighted = s[k] * residual
            loss += weighted * residual
            sums[t] += weighted
            _axpy(weighted, row, grad[t])
    return loss, grad.T.copy(), sums


@jit
def _axpy(a, x, y):
    """``y += a x`` (contiguous vectors)."""
    for j in range(x.shape[0]):
        y[j] += a * x[j]
