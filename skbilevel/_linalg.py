"""Small iterative linear-algebra routines shared by the problems and hypergradients."""

import numpy as np
import scipy.linalg
from scipy.linalg import blas

from ._numba import jit

__all__ = [
    "SETTLE_SAFETY",
    "cho_solve_vector",
    "conjugate_gradient",
    "power_iteration",
    "robust_cho_factor",
    "smallest_ritz_value",
]

# Factor on the bound of what a Newton step's decrement lacks, whose smallest
# Ritz value is an estimate from above (see conjugate_gradient's ``settle``).
SETTLE_SAFETY = 10.0


def conjugate_gradient(
    matvec,
    rhs,
    x0=None,
    tol=1e-10,
    max_iter=1000,
    diagonal=None,
    preconditioner=None,
    settle=0.0,
):
    """Solve ``A x = rhs`` for a symmetric positive definite ``A`` by (P)CG.

    Kept instead of ``scipy.sparse.linalg.cg``: same iterates, but it takes
    block right-hand sides as they are and costs 7.5 us of overhead per
    iteration against 9.7 us (measured; see the user guide).

    Arrays of any shape are treated as one long vector (the Frobenius inner
    product), which solves block-diagonal systems such as one ridge per
    target in a single run.

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` returns ``A x`` with the shape of ``x``.
    rhs : ndarray
        Right-hand side.
    x0 : ndarray, default=None
        Warm start; zeros when None.
    tol : float, default=1e-10
        Stop when ``||A x - rhs|| <= tol * ||rhs||``.
    max_iter : int, default=1000
        Maximum number of iterations.
    diagonal : ndarray, default=None
        Diagonal of ``A`` (shape of ``rhs``), used as a Jacobi preconditioner:
        it removes the effect of the features' scales on the iteration count.
    preconditioner : callable, default=None
        ``preconditioner(r)`` returns an approximation of ``A^{-1} r`` (a
        symmetric positive definite operator), used instead of ``diagonal``:
        for instance a factorization of a nearby matrix.
    settle : float, default=0.0
        For a Newton step (``rhs`` the negative gradient, ``x0`` None), stop
        as converged once the decrement ``rhs . A^-1 rhs`` is estimated
        below ``settle``: the Newton solve then ends at the current point,
        and the step's accuracy does not matter. CG's ``rhs . x_k`` grows
        to the decrement; what it lacks is ``r_k . A^-1 r_k``, at most
        ``r_k . M^-1 r_k / lambda_min`` for the preconditioner ``M``, where
        ``lambda_min`` (of ``M^-1 A``) is estimated by the smallest Ritz
        value of the iterations so far (:func:`smallest_ritz_value`, 3 at
        least), an estimate from above which ``SETTLE_SAFETY`` makes up for.

    Returns
    -------
    x : ndarray
        The approximate solution.
    n_iter : int
        Number of matrix-vector products.
    converged : bool
        Whether the tolerance was reached.
    """
    rhs_norm = np.linalg.norm(rhs)
    if rhs_norm == 0.0:
        return np.zeros_like(rhs), 0, True
    if preconditioner is None and diagonal is not None:
        inverse_diagonal = np.where(
            diagonal > 0, 1.0 / np.maximum(diagonal, 1e-300), 1.0
        )

        def preconditioner(r):
            return inverse_diagonal * r

    if x0 is None:
        x = np.zeros_like(rhs)
        r = rhs.copy()
        n_matvec = 0
    else:
        x = x0.copy()
        r = rhs - matvec(x)
        n_matvec = 1
    threshold = tol * rhs_norm
    if np.linalg.norm(r) <= threshold:
        return x, n_matvec, True
    z = r if preconditioner is None else preconditioner(r)
    rz = np.vdot(r, z)
    p = z.copy()
    if x0 is not None:
        settle = 0.0  # the decrement's sum holds from zero only
    decrement = 0.0
    kept = max_iter if settle > 0.0 else 0  # the Lanczos coefficients
    alphas, betas = np.empty(kept), np.empty(kept)
    for k in range(max_iter):
        ap = matvec(p)
        n_matvec += 1
        pap = np.vdot(p, ap)
        if not pap > 0.0:  # lost positive definiteness to round-off: stop here
            break
        step = rz / pap
        decrement += step * rz
        x += step * p
        r -= step * ap
        if np.linalg.norm(r) <= threshold:
            return x, n_matvec, True
        z = r if preconditioner is None else preconditioner(r)
        rz_new = np.vdot(r, z)
        if settle > 0.0:
            alphas[k], betas[k] = step, rz_new / rz
        if settle > 0.0 and k >= 2 and decrement <= settle:
            ritz = smallest_ritz_value(alphas, betas, k + 1)
            if ritz > 0.0 and decrement + SETTLE_SAFETY * rz_new / ritz <= settle:
                return x, n_matvec, True
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, n_matvec, False


@jit
def smallest_ritz_value(alphas, betas, k):
    """Smallest eigenvalue of the Lanczos tridiagonal of ``k`` (P)CG steps
    (step lengths ``alphas``, direction updates ``betas``): an estimate from
    above of the preconditioned operator's smallest eigenvalue.

    By bisection on Sturm counts (the number of negative pivots of
    ``T - x I``), to 1e-3 relative: LAPACK's solver made the first
    compilation of the compiled sparse solver that calls it 1.85 s, against
    1.3 s with this."""
    diagonal = np.empty(k)
    off = np.zeros(k)  # off[j] couples j - 1 and j
    for j in range(k):
        diagonal[j] = 1.0 / alphas[j]
        if j > 0:
            diagonal[j] += betas[j - 1] / alphas[j - 1]
            off[j] = np.sqrt(betas[j - 1]) / alphas[j - 1]
    # Gershgorin's interval holds every eigenvalue.
    low, high = np.inf, -np.inf
    for j in range(k):
        radius = off[j] + (off[j + 1] if j + 1 < k else 0.0)
        low = min(low, diagonal[j] - radius)
        high = max(high, diagonal[j] + radius)
    low = max(low, 0.0)  # T is positive definite (up to round-off)
    for _ in range(100):
        if high - low <= 1e-3 * high:
            break
        middle = 0.5 * (low + high)
        pivot, below = 1.0, 0
        for j in range(k):
            pivot = diagonal[j] - middle - (off[j] ** 2 / pivot if j > 0 else 0.0)
            if pivot == 0.0:
                pivot = 1e-300
            if pivot < 0.0:
                below += 1
        if below > 0:
            high = middle
        else:
            low = middle
    return low  # the interval's lower end: an estimate that errs low


def power_iteration(matvec, shape, n_iter=30, safety=1.05):
    """Estimate the largest eigenvalue of a symmetric positive semi-definite operator.

    Kept instead of ``scipy.sparse.linalg.eigsh``: step sizes need an upper
    estimate, not digits; 30 products give 1.03-1.05 x the largest eigenvalue
    where eigsh at its default tolerance takes 91 (measured).

    A deterministic start (all ones plus a ramp) keeps results reproducible.

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` returns ``A x``.
    shape : tuple
        Shape of the vectors ``matvec`` takes.
    n_iter : int, default=30
        Number of iterations.
    safety : float, default=1.05
        Factor applied to the estimate, which power iteration approaches from below.

    Returns
    -------
    lam : float
        Estimate of the largest eigenvalue, inflated by ``safety``.
    """
    x = 1.0 + np.linspace(0.0, 1.0, int(np.prod(shape))).reshape(shape)
    x /= np.linalg.norm(x)
    lam = 0.0
    for _ in range(n_iter):
        y = matvec(x)
        lam = float(np.vdot(x, y))
        norm = np.linalg.norm(y)
        if norm == 0.0:
            return 0.0
        x = y / norm
    return safety * lam


def robust_cho_factor(H):
    """Cholesky factorization of a symmetric positive (semi-)definite matrix.

    A matrix that is positive definite in exact arithmetic can fail to
    factorize when round-off exceeds its smallest eigenvalue (collinear
    columns with a tiny penalty). We then add a diagonal shift of the order of
    the round-off, growing it until the factorization succeeds: the change is
    below the precision the matrix is known to anyway.

    The factorization runs in NumPy's LAPACK, like the matrix products that
    build ``H``: alternating O(n^3) calls between NumPy's and SciPy's
    separate OpenBLAS thread pools makes each pool spin against the other
    (measured here: both twice slower). Solves with the factor, O(n^2), go
    through :func:`scipy.linalg.cho_solve`, which hands LAPACK a
    Fortran-ordered factor as it is but copies a C-ordered one at every call
    (measured: 0.57 against 0.21 ms a solve with 650 unknowns): the factor is
    returned as the transpose of NumPy's lower factor, an F-ordered upper one.

    Parameters
    ----------
    H : ndarray of shape (n, n)

    Returns
    -------
    factor : tuple
        ``(U, False)``, the upper Cholesky factor (Fortran-ordered) in the
        format of :func:`scipy.linalg.cho_factor`.
    """
    try:
        return np.linalg.cholesky(H).T, False
    except np.linalg.LinAlgError:
        pass
    scale = max(float(np.max(np.abs(np.diag(H)))), np.finfo(float).tiny)
    for exponent in range(-15, -5):
        shifted = H.copy()
        shifted[np.diag_indices_from(shifted)] += scale * 10.0**exponent * H.shape[0]
        try:
            return np.linalg.cholesky(shifted).T, False
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("The Hessian is not positive definite.")


def cho_solve_vector(factor, rhs):
    """Solve ``A x = rhs`` for one right-hand side, ``factor`` a Cholesky factor.

    Two triangular solves (BLAS ``trsv``) instead of
    :func:`scipy.linalg.cho_solve`, whose LAPACK ``potrs`` goes through the
    matrix-matrix ``trsm`` even for one vector: measured 49 against 147 us
    with 650 unknowns, 206 against 709 us with 1500 (2 cores; equal to
    round-off). Newton's chord steps and the preconditioned conjugate
    gradients of the adjoint make hundreds of such solves in a fit.

    Parameters
    ----------
    factor : tuple
        ``(c, lower)`` as returned by :func:`robust_cho_factor` or
        :func:`scipy.linalg.cho_factor`.
    rhs : ndarray of shape (n,)

    Returns
    -------
    x : ndarray of shape (n,)
    """
    c, lower = factor
    b = np.asarray(rhs, dtype=np.float64)
    if c.dtype != np.float64 or b.ndim != 1:
        return scipy.linalg.cho_solve(factor, b, check_finite=False)
    if not c.flags.f_contiguous:
        # The transpose of a C-ordered factor is a Fortran-ordered one of the
        # other triangle: no copy for BLAS.
        c, lower = c.T, not lower
    # A = L L^T (lower) or U^T U (upper): forward, then backward substitution.
    y = blas.dtrsv(c, b, lower=int(lower), trans=0 if lower else 1)
    return blas.dtrsv(c, y, lower=int(lower), trans=1 if lower else 0, overwrite_x=1)
