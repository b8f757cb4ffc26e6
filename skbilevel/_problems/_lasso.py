"""Weighted Lasso (or elastic net) of one fold, differentiated on its support.

For every target column ``t`` the problem is scikit-learn's
:class:`~sklearn.linear_model.Lasso` objective with sample weights,

    1 / (2 W) * sum_i s_i (y_it - b_t - x_i w_t) ** 2 + sum_j alpha_jt |w_jt|,

with ``W = sum_i s_i`` and ``alpha = exp(theta)[group_idx]``; the intercept
``b`` is the weighted mean of the residual (the data are centered, never in
memory: see :mod:`~skbilevel._lasso_kernels`). It is solved by coordinate
descent to a duality gap: on the data's columns, or, for tall dense data
(see :func:`uses_gram`), on the centered weighted Gram matrix
``X_c^T S X_c / W``, where a coordinate costs ``n_features`` operations
instead of ``n_samples`` and the support's Hessian is a block of it.

The solution is not differentiable where a coefficient enters or leaves the
support, but almost everywhere it is, and on the support ``S`` (where
``w_j != 0``) the optimality condition
``X_S^T S (X_S w_S - y) / W + alpha_S sign(w_S) = 0`` is smooth. Its implicit
derivative is ``dw_S / dtheta_g = -H_SS^{-1} (alpha sign(w))_{S, g}`` with
``H_SS = X_S^T S X_S / W`` (centered columns), and zero off the support.
The protocol's Hessian is therefore ``H_SS`` on the support and the identity
off it, and the cross-derivative ``alpha_j sign(w_j)`` (zero off the
support): every hypergradient method written against the protocol then
differentiates on the support. With an L2 part (the elastic net's
``+ 1/2 sum_j beta_j w_j ** 2``, ``beta = exp(theta)[l2_group_idx]``),
``H_SS`` gains ``diag(beta_S)`` and the L2 groups' cross-derivative is
``beta_j w_j``.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._hypergradient import INNER_MAX_ITER
from .._lasso_kernels import (
    cd_dense,
    cd_dense_folds,
    cd_sparse,
    centered_column_curvature,
    gram_jacobian_sweeps,
    newton_cut,
    rows_squared_error,
    solve_gram,
    support_jacobian_sweeps,
)
from .._linalg import (
    cho_solve_vector,
    conjugate_gradient,
    power_iteration,
    robust_cho_factor,
)
from ._base import InnerProblem, penalty_weights
from ._ridge import CenteredSquaredValidation, centered_sum_of_squares, weighted_means
from ._ridge_spectral import is_complement

__all__ = [
    "GramSums",
    "LassoProblem",
    "SUPPORT_FACTORIZE_MAX",
    "ValidationMoments",
    "fold_gram_sums",
    "lasso_alpha_max",
    "solve_shared_design",
    "uses_gram",
]

# Largest support whose Hessian is formed and factorized; larger ones are
# solved by conjugate gradients on support-restricted products.
SUPPORT_FACTORIZE_MAX = 2000
# Coordinate-descent sweeps of one solve at most, and between two Newton
# steps on the support.
_MAX_SWEEPS = 10_000
_SWEEPS_BEFORE_NEWTON = 20
# On the Gram matrix a sweep costs ``n_features ** 2``, well below a Newton
# step's factorization: more sweeps first (measured on the correlated
# 2000 x 200 elastic net: 0.45 s with 20, 0.34 s with 50, 0.36 s with 100;
# on 1000 x 5000 columns, 50 took 0.75 s against 0.64 s).
_SWEEPS_BEFORE_NEWTON_GRAM = 50
# Validation rows (entries) from which a C-ordered X is read in place.
_IN_PLACE_MIN_ENTRIES = 2**18
# Relative duality gap under which round-off dominates: the gap is a
# difference of sums of the objective's size (measured: 2e-13 of P(0) at the
# exact solution of an 80 x 2 problem).
_GAP_FLOOR = 1e-12
# Coordinate descent runs on the Gram matrix for dense data with at least
# this many rows per column, up to this many columns (its memory).
GRAM_ROWS_PER_FEATURE = 2
GRAM_MAX_FEATURES = 4000
# Rows per block when forming the Gram matrix (centered, no full copy).
_GRAM_CHUNK = 8192


def uses_gram(n_samples, n_features, sparse):
    """Whether a problem of this shape solves on its Gram matrix."""
    return (
        not sparse
        and n_samples >= GRAM_ROWS_PER_FEATURE * n_features
        and n_features <= GRAM_MAX_FEATURES
    )


@dataclass
class GramSums:
    """The centered weighted moments a Gram-matrix problem needs.

    ``G = X_c^T S X_c / W``, ``b = X_c^T S Y_c / W`` and ``yy = sum_i s_i
    Y_c**2 / W`` (per target), with ``X_c = X - xbar``, ``Y_c = Y - ybar``
    centered by the rows' weighted means (zeros without an intercept),
    ``W = sum(s)``.
    """

    G: np.ndarray
    b: np.ndarray
    yy: np.ndarray
    xbar: np.ndarray
    ybar: np.ndarray
    total: float
    n_samples: int


def _shifted_moments(X, Y, sw, rows, x_shift, y_shift):
    """Weighted moments of ``X[rows] - x_shift`` and ``Y[rows] - y_shift``
    (``rows=None``: all of them), block by block: ``(A, c, yy, xs, ys, W)``
    as in :class:`ValidationMoments`."""
    n_rows = X.shape[0] if rows is None else len(rows)
    d, k = X.shape[1], Y.shape[1]
    A, c = np.zeros((d, d)), np.zeros((d, k))
    yy, xs, ys, total = np.zeros(k), np.zeros(d), np.zeros(k), 0.0
    for start in range(0, n_rows, _GRAM_CHUNK):
        part = slice(start, start + _GRAM_CHUNK)
        index = part if rows is None else rows[part]
        block, targets, s = X[index] - x_shift, Y[index] - y_shift, sw[index]
        weighted = block * s[:, None]
        A += block.T @ weighted
        c += weighted.T @ targets
        yy += s @ targets**2
        xs += s @ block
        ys += s @ targets
        total += float(s.sum())
    return A, c, yy, xs, ys, total


def _centered_sums(moments, x_shift, y_shift, n_samples, fit_intercept):
    """:class:`GramSums` from moments about ``(x_shift, y_shift)``: centered
    at the rows' own means through their (small) offsets from the shift."""
    A, c, yy, xs, ys, total = moments
    G, b, yy = A / total, c / total, yy / total
    x_off, y_off = xs / total, ys / total
    if fit_intercept:
        G = G - np.outer(x_off, x_off)
        b = b - np.outer(x_off, y_off)
        yy = yy - y_off**2
        x_shift, y_shift = x_shift + x_off, y_shift + y_off
    return GramSums(0.5 * (G + G.T), b, yy, x_shift, y_shift, total, n_samples)


def gram_sums(X, Y, sw, fit_intercept):
    """:class:`GramSums` of all the rows (centered before the products: no
    digits lost to large means)."""
    x_shift, y_shift = weighted_means(X, Y, sw, fit_intercept)
    moments = _shifted_moments(X, Y, sw, None, x_shift, y_shift)
    return _centered_sums(moments, x_shift, y_shift, X.shape[0], fit_intercept)


def fold_gram_sums(X, Y, sw, folds, fit_intercept):
    """Every fold's :class:`GramSums` of its training rows, sharing work;
    those of all the rows; and every fold's validation moments.

    The moments of the rows are formed about all the rows' weighted means.
    A fold whose training rows are all the others (K-fold) subtracts its
    validation rows' moments from all the rows' instead of reading its
    training rows, and where the validation rows partition the data (every
    row in one of them) all the rows' moments are the sum of theirs: ``n
    d^2`` operations for all the folds instead of ``(K - 1) n d^2``, and no
    copy of the training rows (measured on 400000 x 100, 5 folds: 0.22 s
    against 0.38 s when all the rows' moments were formed apart). A fold's
    own centering is then a correction by its mean's small offset from the
    global one.

    Returns
    -------
    folds : list of GramSums
    whole : GramSums
        All the rows' (the refit's); equal to :func:`gram_sums`'s up to
        round-off.
    held : list of ValidationMoments or None
        Every fold's validation rows, where they were formed (K-fold).
    """
    x_shift, y_shift = weighted_means(X, Y, sw, fit_intercept)
    n_samples = X.shape[0]
    held = [
        _shifted_moments(X, Y, sw, test, x_shift, y_shift)
        if is_complement(train, test, n_samples)
        else None
        for train, test in folds
    ]
    if all(h is not None for h in held) and _partitions(folds, n_samples):
        whole = tuple(sum(parts) for parts in zip(*held, strict=True))
    else:
        whole = _shifted_moments(X, Y, sw, None, x_shift, y_shift)
    out = []
    for (train, _), moments in zip(folds, held, strict=True):
        if moments is not None:
            moments = tuple(a - h for a, h in zip(whole, moments, strict=True))
        else:  # shuffle-split, time series: the training rows themselves
            moments = _shifted_moments(X, Y, sw, train, x_shift, y_shift)
        out.append(_centered_sums(moments, x_shift, y_shift, len(train), fit_intercept))
    validation = [
        None if h is None else ValidationMoments(h, x_shift, y_shift) for h in held
    ]
    return (
        out,
        _centered_sums(whole, x_shift, y_shift, n_samples, fit_intercept),
        validation,
    )


def _partitions(folds, n_samples):
    """Whether every row is in exactly one fold's validation rows."""
    counts = np.bincount(
        np.concatenate([test for _, test in folds]), minlength=n_samples
    )
    return bool(np.all(counts == 1))


class ValidationMoments:
    """A fold's validation rows as weighted moments, for the squared error.

    With ``a_i = x_i - x_shift``, ``e_i = y_i - y_shift`` and the moments
    ``A = sum_i s_i a_i a_i^T``, ``c = sum_i s_i a_i e_i^T``, ``yy = sum_i
    s_i e_i**2``, ``xs = sum_i s_i a_i``, ``ys = sum_i s_i e_i``, ``W =
    sum_i s_i``, the residual of the model ``(x - xbar) w + ybar`` is ``r_i
    = a_i w - e_i + delta`` with ``delta = (x_shift - xbar) w + ybar -
    y_shift``, so that per target

        sum_i s_i r_i**2 = w^T A w - 2 w^T c + yy + 2 delta (xs^T w - ys)
                           + W delta**2,
        sum_i s_i r_i (x_i - xbar) = A w - c + delta xs
                                     + (x_shift - xbar) (xs^T w - ys + W delta):

    ``d |S|`` operations for coefficients on a support ``S`` instead of a
    pass over the rows (measured on 400000 x 100, 5 folds, 13 evaluations:
    0.23 s of a 1.0 s fit). The sum is a difference of terms of the
    targets' variance: it loses ``log10(var(y) / MSE)`` digits to round-off,
    3 where the model explains 99.9% of the variance.

    Parameters
    ----------
    moments : tuple
        ``(A, c, yy, xs, ys, W)`` as above.
    x_shift : ndarray of shape (n_features,)
    y_shift : ndarray of shape (n_targets,)
    """

    def __init__(self, moments, x_shift, y_shift):
        self.A, self.c, self.yy, self.xs, self.ys, self.total = moments
        self.x_shift, self.y_shift = x_shift, y_shift

    def squared_error(self, w, xbar, ybar):
        """Weighted validation MSE (averaged over targets) and its gradient
        in ``w``, for the model ``(x - xbar) w + ybar``."""
        used = np.flatnonzero(np.any(w != 0.0, axis=1))
        Aw = self.A[:, used] @ w[used]
        offset = self.x_shift - xbar
        delta = offset @ w + ybar - self.y_shift
        linear = self.xs @ w - self.ys
        sums = (
            np.sum(w[used] * Aw[used], axis=0)
            - 2.0 * np.sum(w[used] * self.c[used], axis=0)
            + self.yy
            + 2.0 * delta * linear
            + self.total * delta**2
        )
        scale = 2.0 / (self.total * w.shape[1])
        loss = 0.5 * scale * float(np.sum(np.maximum(sums, 0.0)))
        grad = scale * (
            Aw - self.c + np.outer(self.xs, delta)
            + np.outer(offset, linear + self.total * delta)
        )  # fmt: skip
        return loss, grad


def lasso_alpha_max(X, Y, sw, fit_intercept):
    """Smallest ``alpha`` whose Lasso solution is zero, for every target.

    ``max_j |X_cj^T S Y_c| / W`` per target column (centered when
    ``fit_intercept``).

    Returns
    -------
    alpha_max : ndarray of shape (n_targets,)
    """
    # X_c^T S Y_c = X^T S Y_c: S Y_c sums to zero column-wise with an
    # intercept (so X's means, a pass over X, are not needed).
    Yc = Y - sw @ Y / sw.sum() if fit_intercept else Y
    correlations = np.asarray(X.T @ (sw[:, None] * Yc)) / sw.sum()
    return np.max(np.abs(correlations), axis=0)


def _reads_in_place(X, rows):
    """Whether the validation loss reads ``X[rows]`` in place
    (:func:`rows_squared_error`) rather than from a gathered copy: for a
    C-ordered X, where the copy would be large. Fresh memory then costs more
    than the kernel loses to BLAS (1000 x 5000, 200 rows a fold: 0.12 s of
    setup saved; 400 x 200: BLAS on the copy, 7 ms faster over an elastic
    net's 415 evaluations)."""
    return (
        isinstance(X, np.ndarray)
        and X.dtype == np.float64
        and X.flags.c_contiguous
        and len(rows) * X.shape[1] >= _IN_PLACE_MIN_ENTRIES
    )


def _solve_key(theta, w0, tol, max_iter, for_adjoint):
    """What determines a solve's result (see LassoProblem.solve)."""
    start = None if w0 is None else np.asarray(w0, dtype=float).tobytes()
    return (np.asarray(theta, dtype=float).tobytes(), start, float(tol),
            max_iter, bool(for_adjoint))  # fmt: skip


def solve_shared_design(problems, theta, warm_starts, tol, for_adjoint,
                        max_iter=INNER_MAX_ITER):  # fmt: skip
    """:meth:`LassoProblem.solve` of K folds that share one dense design
    (``BilevelLassoCV._weighted_folds``), their coordinate descent in
    lockstep (:func:`~skbilevel._lasso_kernels.cd_dense_folds`).

    The same steps as K separate solves, so the same solutions to the bit,
    but each pass over all the columns (the duality gaps) reads X once for
    the folds that need it. Every problem keeps its result, which its own
    ``solve`` call with the same arguments then returns (the fold's
    hypergradient evaluation runs as before).
    """
    first = problems[0]
    X, K = first.X, len(problems)
    budget = _MAX_SWEEPS if max_iter is None else max(int(max_iter), 1)
    W = [
        np.zeros((first.n_features, first.n_targets)) if w0 is None else w0.copy()
        for w0 in warm_starts
    ]
    converged = np.ones(K, dtype=bool)
    alphas = [p._alpha(theta) for p in problems]
    betas = [p._beta(theta) for p in problems]
    xbar = np.array([p.xbar for p in problems])
    curvature = np.array([p.curvature for p in problems])
    weights = np.array([p.sw for p in problems])
    for t in range(first.n_targets):
        yc = np.array([p.Yc[:, t] for p in problems])
        coef = np.array([w[:, t] for w in W])
        alpha = np.array([a[:, t] for a in alphas])
        beta = np.array([b[:, t] for b in betas])
        tols = np.array([max(tol * tol, _GAP_FLOOR) * max(p.null_loss[t], 1e-300)
                         for p in problems])  # fmt: skip
        spent = np.zeros(K, dtype=np.int64)
        gaps = np.full(K, np.inf)
        polished = np.full(K, not for_adjoint)
        finished = np.zeros(K, dtype=bool)
        screened = np.zeros((K, first.n_features), dtype=bool)
        while True:
            active = np.flatnonzero(~finished & (spent < budget))
            if not active.size:
                break
            part, masks = coef[active], screened[active]
            part_gaps = np.empty(active.size)
            used = np.zeros(active.size, dtype=np.int64)
            cd_dense_folds(
                X, xbar[active], curvature[active], yc[active], weights[active],
                part, alpha[active], beta[active], tols[active],
                np.minimum(_SWEEPS_BEFORE_NEWTON, budget - spent[active]), masks,
                part_gaps, used,
            )  # fmt: skip
            coef[active], screened[active] = part, masks
            for i, k in enumerate(active):
                spent[k] += used[i]
                gaps[k] = part_gaps[i]
                if gaps[k] <= tols[k] and polished[k]:
                    finished[k] = True
                    continue
                # As LassoProblem.solve: a Newton step on the support, and
                # one more at the gap's tolerance.
                polished[k] = gaps[k] <= tols[k]
                problems[k]._support_newton(t, coef[k], alpha[k], beta[k])
        for k in range(K):
            W[k][:, t] = coef[k]
            converged[k] = converged[k] and gaps[k] <= tols[k]
    for k, problem in enumerate(problems):
        key = _solve_key(theta, warm_starts[k], tol, max_iter, for_adjoint)
        problem._presolved = (key, (W[k], bool(converged[k])))


class SupportGram:
    """Gram matrix of the columns that have entered a support, grown lazily.

    Successive supports of a fold (along the outer search and between the
    Newton steps of one solve) share most of their columns: a block
    ``H_SS`` is read from the products already formed, and only a new
    column's products with the kept ones are computed (``n |A|`` operations
    for a kept set ``A``, instead of ``n |S|^2`` for the whole block).
    Measured on a 1000 x 5000 fold (supports of ~300 columns): ~2 ms to
    form a block against ~0.1 ms to read it.

    Parameters
    ----------
    products : callable
        ``products(rows, cols)`` returns the block of the Gram matrix at
        those column indices.
    limit : int, default=SUPPORT_FACTORIZE_MAX
        Most columns kept; past it the kept set restarts from the support
        asked for (memory: ``8 limit**2`` bytes at most).
    """

    def __init__(self, products, limit=None):
        self.products = products
        self.limit = SUPPORT_FACTORIZE_MAX if limit is None else int(limit)
        self.columns = np.empty(0, dtype=np.intp)  # kept, in order of entry
        self.position = {}  # column -> its row in ``self.matrix``
        self.matrix = np.empty((0, 0))  # capacity >= len(self.columns)

    def block(self, support):
        """``G[support][:, support]``, forming what is missing."""
        support = np.asarray(support, dtype=np.intp)
        new = np.array(
            [j for j in support.tolist() if j not in self.position], dtype=np.intp
        )
        if new.size:
            if self.columns.size + new.size > self.limit:
                self.columns = np.empty(0, dtype=np.intp)
                self.position = {}
                new = support
            self._grow(new)
        rows = np.fromiter(
            (self.position[j] for j in support.tolist()), np.intp, support.size
        )
        return self.matrix[np.ix_(rows, rows)]

    def _grow(self, new):
        kept = self.columns.size
        size = kept + new.size
        if size > self.matrix.shape[0]:  # doubling capacity: amortized copies
            capacity = min(max(2 * self.matrix.shape[0], size), self.limit)
            grown = np.empty((capacity, capacity))
            grown[:kept, :kept] = self.matrix[:kept, :kept]
            self.matrix = grown
        columns = np.r_[self.columns, new]
        # The new columns against all the kept ones and themselves.
        cross = self.products(new, columns)
        self.matrix[kept:size, :size] = cross
        self.matrix[:kept, kept:size] = cross[:, :kept].T
        self.columns = columns
        self.position.update((j, kept + i) for i, j in enumerate(new.tolist()))


class LassoProblem(CenteredSquaredValidation, InnerProblem):
    """Weighted Lasso of one fold (see the module docstring).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or sparse matrix
    Y : ndarray of shape (n_samples, n_targets)
    sw : ndarray of shape (n_samples,)
    group_idx : ndarray of shape (n_features, n_targets), dtype int64
        Hyperparameter group of every coefficient's L1 strength.
    n_hyper : int
    fit_intercept : bool
    X_val, Y_val, sw_val : arrays, default=None
        Validation rows.
    l2_group_idx : ndarray of shape (n_features, n_targets), dtype int64, \
            default=None
        Hyperparameter group of every coefficient's L2 strength: the elastic
        net's ``+ 1/2 sum_j beta_j w_j ** 2`` with ``beta = exp(theta)[l2]``
        (groups distinct from the L1 ones). None: the Lasso.
    gram : GramSums, default=None
        The training rows' sums, where the caller formed them (``X``, ``Y``
        and ``sw`` are then None).
    val_moments : ValidationMoments, default=None
        The validation rows' moments: the validation loss and its gradient
        are computed from them, without a pass over ``X_val``, while the
        validation weights stay those they were formed with.
    val_source : tuple (X, rows), default=None
        In place of ``X_val``: the validation rows are ``X[rows]``, gathered
        on first use (with ``val_moments``, a search scored by its loss
        never reads them), or read in place by the validation loss where
        the copy would be large (a C-ordered X).
    """

    can_factorize = True

    def __init__(
        self,
        X,
        Y,
        sw,
        group_idx,
        n_hyper,
        fit_intercept,
        *,
        X_val=None,
        Y_val=None,
        sw_val=None,
        l2_group_idx=None,
        gram=None,
        val_moments=None,
        val_source=None,
    ):
        self.l2_group_idx = l2_group_idx
        self.group_idx = group_idx
        self.n_hyper = n_hyper
        if X is not None and gram is None:
            sparse = sp.issparse(X)
            if uses_gram(X.shape[0], X.shape[1], sparse):
                gram = gram_sums(X, Y, np.asarray(sw, dtype=np.float64), fit_intercept)
        self.gram = gram is not None
        self._support_gram = self._xty = self._last_factor = None
        self._presolved = None  # (solve arguments, result): see solve_shared_design
        if self.gram:
            # Coordinate descent on the Gram matrix: the rows are not kept.
            self.sparse, self.X, self.sw, self.Yc = False, None, None, None
            self.G, self.b, self.yy = gram.G.copy(), gram.b.copy(), gram.yy
            self.xbar, self.ybar, self.total = gram.xbar, gram.ybar, gram.total
            self.n_samples, self.n_features = gram.n_samples, gram.G.shape[0]
            self.n_targets = gram.b.shape[1]
            self.null_loss = 0.5 * gram.yy  # P(0), the gap's scale, per target
            squares = np.diag(self.G).copy()
        else:
            self._init_rows(X, Y, sw, fit_intercept)
            squares = self._row_curvature()
        # Round-off of a constant column's centered sum of squares.
        squares[squares <= 1e-14 * max(squares.max(), 1e-300)] = 0.0
        self.curvature = squares
        if self.gram:  # constant columns: no curvature, no coupling
            dead = squares == 0.0
            self.G[dead] = 0.0
            self.G[:, dead] = 0.0
            self.b[dead] = 0.0
        self._X_val, self._val_source = X_val, val_source
        if X_val is not None or val_source is not None:
            self.Y_val = Y_val
            self.sw_val = sw_val
        self.val_moments = val_moments

    @property
    def X_val(self):
        """Validation rows (gathered from ``val_source`` on first use)."""
        if self._X_val is None and self._val_source is not None:
            X, rows = self._val_source
            self._X_val, self._val_source = X[rows], None
        return self._X_val

    def __getstate__(self):
        # A pickled problem (a dask worker's fold) carries its validation
        # rows, not the whole X they would be gathered from.
        state = self.__dict__.copy()
        if state["_val_source"] is not None:
            X, rows = state["_val_source"]
            state["_X_val"], state["_val_source"] = X[rows], None
        return state

    @property
    def sw_val(self):
        """Validation weights."""
        return self._sw_val

    @sw_val.setter
    def sw_val(self, weights):
        # Other weights (the early-stopping guard holds rows out): the
        # moments no longer describe the validation rows.
        self._sw_val = weights
        self.val_moments = None

    def outer_loss_grad(self, w):
        """Weighted validation MSE and its gradient in ``w``, from the
        validation moments where the problem has them, else from the
        validation rows (read in place while they are still ``X[rows]`` of
        a C-ordered X)."""
        if self.val_moments is not None:
            return self.val_moments.squared_error(w, self.xbar, self.ybar)
        source = self._val_source
        if self._X_val is not None or source is None or not _reads_in_place(*source):
            return super().outer_loss_grad(w)
        X, rows = source
        w = np.ascontiguousarray(w, dtype=np.float64)
        sum_squares, products, sums = rows_squared_error(
            X,
            np.asarray(rows, dtype=np.intp),
            w,
            self.ybar - self.xbar @ w,
            np.ascontiguousarray(self.Y_val, dtype=np.float64),
            np.ascontiguousarray(self.sw_val, dtype=np.float64),
        )
        scale = 2.0 / (self.sw_val.sum() * self.n_targets)
        return 0.5 * scale * sum_squares, scale * (products - np.outer(self.xbar, sums))

    def _init_rows(self, X, Y, sw, fit_intercept):
        """Keep the training rows (coordinate descent on the columns)."""
        self.sparse = sp.issparse(X)
        self.sw = np.ascontiguousarray(sw, dtype=np.float64)
        self.n_samples, self.n_features = X.shape
        self.n_targets = Y.shape[1]
        self.total = float(self.sw.sum())
        self.xbar, self.ybar = weighted_means(X, Y, self.sw, fit_intercept)
        self.Yc = np.asfortranarray(Y - self.ybar)
        self.null_loss = 0.5 * (self.sw @ self.Yc**2) / self.total
        if self.sparse:
            Xc = sp.csc_matrix(X, dtype=np.float64)
            Xc.sort_indices()
            self.X = X
            self._csc = (
                np.ascontiguousarray(Xc.data),
                np.ascontiguousarray(Xc.indices, dtype=np.int64),
                np.ascontiguousarray(Xc.indptr, dtype=np.int64),
            )
        else:
            self.X = np.asfortranarray(X, dtype=np.float64)

    def _row_curvature(self):
        """``sum_i s_i (x_ij - xbar_j)**2 / W`` of every column."""
        if self.sparse:
            return centered_sum_of_squares(self.X, self.sw, self.xbar) / self.total
        return centered_column_curvature(self.X, self.xbar, self.sw)

    # ----------------------------------------------------------------- algebra
    def _alpha(self, theta):
        return penalty_weights(theta, self.group_idx)

    def _beta(self, theta):
        """L2 weights of every coefficient (zeros for the Lasso)."""
        if self.l2_group_idx is None:
            return np.zeros((self.n_features, self.n_targets))
        return penalty_weights(theta, self.l2_group_idx)

    def _centered_matvec(self, v):
        """``(X - xbar) v`` for v of shape (n_features, k)."""
        return np.asarray(self.X @ v) - self.xbar @ v

    def _centered_rmatvec(self, r):
        """``(X - xbar)^T r`` for r of shape (n_samples, k)."""
        return np.asarray(self.X.T @ r) - np.outer(self.xbar, r.sum(axis=0))

    def value(self, w, theta):
        if self.gram:  # 1/2 r^T S r / W from the sums
            data = 0.5 * float(np.sum(self.yy - 2.0 * np.sum(self.b * w, axis=0)
                                      + np.sum(w * (self.G @ w), axis=0)))  # fmt: skip
        else:
            residual = self.Yc - self._centered_matvec(w)
            data = 0.5 * float(self.sw @ np.sum(residual**2, axis=1)) / self.total
        l1 = float(np.sum(self._alpha(theta) * np.abs(w)))
        return data + l1 + 0.5 * float(np.sum(self._beta(theta) * w**2))

    def gradient(self, w, theta):
        """Gradient of the smooth part plus ``alpha sign(w)`` (zero off the
        support): the optimality residual on the support."""
        if self.gram:
            smooth = self.G @ w - self.b
        else:
            residual = self.Yc - self._centered_matvec(w)
            smooth = -self._centered_rmatvec(self.sw[:, None] * residual) / self.total
        smooth = smooth + self._beta(theta) * w
        return smooth + self._alpha(theta) * np.sign(w)

    def hvp(self, w, theta, v):
        """``H_SS v_S`` on the support of ``w`` (per target), ``v`` off it
        (``H`` includes the L2 weights)."""
        support = w != 0.0
        on = np.where(support, v, 0.0)
        if self.gram:
            Hv = self.G @ on
        else:
            Hv = self._centered_rmatvec(self.sw[:, None] * self._centered_matvec(on))
            Hv = Hv / self.total
        Hv = Hv + self._beta(theta) * on
        return np.where(support, Hv, v)

    def hessian_diagonal(self, w, theta):
        return np.where(w != 0.0, self.curvature[:, None] + self._beta(theta), 1.0)

    def lipschitz(self, w, theta):
        return power_iteration(lambda v: self.hvp(w, theta, v), w.shape)

    def cross(self, w, theta, v):
        """``sum_{j in g} alpha_j sign(w_j) v_j`` (L1 groups) and
        ``sum_{j in g} beta_j w_j v_j`` (L2 groups): the derivative in
        ``theta_g`` of the optimality residual, paired with ``v`` (zero off
        the support)."""
        out = np.bincount(
            self.group_idx.ravel(),
            weights=(self._alpha(theta) * np.sign(w) * v).ravel(),
            minlength=self.n_hyper,
        )
        if self.l2_group_idx is not None:
            out += np.bincount(
                self.l2_group_idx.ravel(),
                weights=(self._beta(theta) * w * v).ravel(),
                minlength=self.n_hyper,
            )
        return out

    def _support_block(self, support):
        """``H_SS`` without the L2 part."""
        if self.gram:
            return self.G[np.ix_(support, support)]
        if self._support_gram is None:
            self._support_gram = SupportGram(self._weighted_products)
        return self._support_gram.block(support)

    def _support_correlations(self, support, t):
        """``X_S^T S y_t / W`` (centered)."""
        if self.gram:
            return self.b[support, t]
        return self._correlations()[support, t]

    def _weighted_products(self, rows, cols):
        """``X_c[:, rows]^T S X_c[:, cols] / W`` (centered columns)."""
        left = self._support_columns(rows)
        return (self.sw[:, None] * left).T @ self._support_columns(cols) / self.total

    def _correlations(self):
        """``X_c^T S Y_c / W`` of every column, formed once."""
        if self._xty is None:
            self._xty = self._centered_rmatvec(self.sw[:, None] * self.Yc) / self.total
        return self._xty

    def _factor(self, support, t, beta):
        """Cholesky factor of ``H_SS + diag(beta_S)``, the last one reused
        (the final Newton step of a solve and the hypergradient's solve
        factorize the same support)."""
        key = self._last_factor
        if (
            key is not None
            and key[1] == t
            and np.array_equal(key[0], support)
            and np.array_equal(key[2], beta[support])
        ):
            return key[3]
        H = self._support_block(support)  # a new array (fancy indexing)
        H[np.diag_indices_from(H)] += beta[support]
        factor = robust_cho_factor(H)
        self._last_factor = (support.copy(), t, beta[support].copy(), factor)
        return factor

    def _support_columns(self, support):
        """Centered columns ``X_S - xbar_S``, dense, shape (n_samples, |S|)."""
        if self.sparse:
            block = self.X[:, support].toarray()
        else:
            block = self.X[:, support]
        return block - self.xbar[support]

    def forward_hypergradient(self, w, theta, g, memory, tol, max_sweeps):
        """Hypergradient ``J^T g`` by implicit forward differentiation.

        ``J = dw_S / dtheta`` solves ``H_SS J = -B`` on every target's
        support, with ``B`` the derivative of the optimality residual in
        ``theta`` (one column per hyperparameter group met on the support);
        it is iterated by Gauss-Seidel sweeps, coordinate descent's own
        order (Bertrand et al., 2022), from the previous evaluation's ``J``
        when the support and its groups have not changed. No system is
        factorized: per sweep, two passes over the support's columns per
        column of ``J``.

        Parameters
        ----------
        w : ndarray of shape (n_features, n_targets)
        theta : ndarray of shape (n_hyper,)
        g : ndarray of shape (n_features, n_targets)
            Gradient of the validation loss in ``w``.
        memory : list or None
            The ``(support, groups, J)`` of every target from the last call.
        tol : float
            Stop when the largest update of a sweep is at most ``tol`` times
            the largest entry of ``J``.
        max_sweeps : int

        Returns
        -------
        grad : ndarray of shape (n_hyper,)
        memory : list
        converged : bool
        """
        alpha, beta = self._alpha(theta), self._beta(theta)
        grad = np.zeros(self.n_hyper)
        kept, converged = [], True
        for t in range(self.n_targets):
            support = np.flatnonzero(w[:, t])
            if support.size == 0:
                kept.append(None)
                continue
            l1 = self.group_idx[support, t]
            derivative = [(l1, alpha[support, t] * np.sign(w[support, t]))]
            if self.l2_group_idx is not None:
                l2 = self.l2_group_idx[support, t]
                derivative.append((l2, beta[support, t] * w[support, t]))
            groups = np.unique(np.concatenate([idx for idx, _ in derivative]))
            B = np.zeros((support.size, groups.size))
            rows = np.arange(support.size)
            for idx, values in derivative:
                np.add.at(B, (rows, np.searchsorted(groups, idx)), values)
            diagonal = self.curvature[support] + beta[support, t]
            previous = memory[t] if memory is not None else None
            if (
                previous is not None
                and np.array_equal(previous[0], support)
                and np.array_equal(previous[1], groups)
            ):
                J = previous[2].copy()
            else:
                J = -B / diagonal[:, None]  # one Jacobi step from zero
            if self.gram:
                H = self.G[np.ix_(support, support)].copy()
                H[np.diag_indices_from(H)] += beta[support, t]
                _, done = gram_jacobian_sweeps(H, B, J, tol, max_sweeps)
            else:
                columns = np.asfortranarray(self._support_columns(support))
                _, done = support_jacobian_sweeps(
                    columns, self.sw, self.total, diagonal,
                    np.ascontiguousarray(beta[support, t]), B, J, tol, max_sweeps,
                )  # fmt: skip
            converged = converged and done
            grad[groups] += J.T @ g[support, t]
            kept.append((support, groups, J))
        return grad, kept, converged

    def hessian_solve(self, w, theta, rhs):
        """``H_SS^{-1} rhs_S`` on every target's support, ``rhs`` off it.

        Supports up to :data:`SUPPORT_FACTORIZE_MAX` coefficients are solved
        by a Cholesky factorization of ``H_SS`` (shifted by round-off where a
        support nearly as large as the rows makes it singular); larger ones
        by conjugate gradients.
        """
        out = np.array(rhs, dtype=float, copy=True)
        beta = self._beta(theta)
        for t in range(self.n_targets):
            support = np.flatnonzero(w[:, t])
            if support.size == 0:
                continue
            if support.size <= SUPPORT_FACTORIZE_MAX:
                out[support, t] = cho_solve_vector(
                    self._factor(support, t, beta[:, t]), rhs[support, t]
                )
            else:
                column = np.zeros_like(w)
                column[:, t] = w[:, t]
                target_rhs = np.zeros_like(rhs)
                target_rhs[support, t] = rhs[support, t]
                solution, _, _ = conjugate_gradient(
                    lambda v, column=column: self.hvp(column, theta, v),
                    target_rhs,
                    tol=1e-12,
                    max_iter=10 * support.size,
                    diagonal=self.hessian_diagonal(column, theta),
                )
                out[support, t] = solution[support, t]
        return out

    # ------------------------------------------------------------------ solver
    def solve(
        self, theta, w0=None, tol=1e-10, method="direct", max_iter=None,
        for_adjoint=True,
    ):  # fmt: skip
        """Coordinate descent, warm-started at ``w0``.

        Stops once every target's duality gap is at most
        ``max(tol**2, 1e-12) * P_t(0)`` (``P_t(0)``, the objective at zero:
        the gap is then a relative accuracy of the objective, like the
        Newton decrement of the other solvers); for a hypergradient
        (``for_adjoint``), after one more Newton step on the support, checked
        by the gap. ``method`` is ignored (one solver); ``max_iter`` caps the
        sweeps (default 10000).
        """
        presolved, self._presolved = self._presolved, None
        if presolved is not None and presolved[0] == _solve_key(
            theta, w0, tol, max_iter, for_adjoint
        ):
            w, converged = presolved[1]
            return w.copy(), converged
        alpha, beta = self._alpha(theta), self._beta(theta)
        w = np.zeros((self.n_features, self.n_targets)) if w0 is None else w0.copy()
        budget = _MAX_SWEEPS if max_iter is None else max(int(max_iter), 1)
        converged = True
        for t in range(self.n_targets):
            target_tol = max(tol * tol, _GAP_FLOOR) * max(self.null_loss[t], 1e-300)
            coef = np.ascontiguousarray(w[:, t])
            alpha_t = np.ascontiguousarray(alpha[:, t])
            beta_t = np.ascontiguousarray(beta[:, t])
            if self.gram:  # the same rounds, in one Numba call
                gap = self._solve_gram(t, coef, alpha_t, beta_t, target_tol,
                                       budget, for_adjoint)  # fmt: skip
                w[:, t] = coef
                converged = converged and gap <= target_tol
                continue
            spent, gap = 0, np.inf
            polished = not for_adjoint
            # Columns found zero at the optimum (gap-safe screening): kept
            # across the calls below, which share these strengths.
            screened = np.zeros(self.n_features, dtype=bool)
            while spent < budget:
                sweeps = min(_SWEEPS_BEFORE_NEWTON, budget - spent)
                gap, used = self._coordinate_descent(
                    t, coef, alpha_t, beta_t, target_tol, sweeps, screened
                )
                spent += used
                if gap <= target_tol and polished:
                    break
                # Slow linear convergence (nearly collinear columns, a weak
                # penalty): the support and signs are usually right long
                # before the values; one Newton step on the support solves
                # them exactly, and the next sweep checks it (the gap). At
                # the gap's tolerance, one more: the gap floor (1e-12 of
                # P(0)) leaves coefficients ~1e-6 off, too far for the
                # hypergradient (measured: 6e-7 on an elastic net).
                polished = gap <= target_tol
                self._support_newton(t, coef, alpha_t, beta_t)
            w[:, t] = coef
            converged = converged and gap <= target_tol
        return w, converged

    def _solve_gram(self, t, coef, alpha, beta, tol, budget, polish):
        """:meth:`solve`'s rounds for target ``t`` on the Gram matrix, by
        :func:`~skbilevel._lasso_kernels.solve_gram` (measured on the
        correlated 2000 x 200 elastic net: the Newton steps' NumPy and SciPy
        calls cost 0.086 s of a 0.185 s fit); keeps the last Newton step's
        factor for the hypergradient's solve. Returns the duality gap."""
        gap, _, support, lower = solve_gram(
            self.G, np.ascontiguousarray(self.b[:, t]), self.yy[t], coef, alpha,
            beta, tol, budget, _SWEEPS_BEFORE_NEWTON_GRAM, polish,
            SUPPORT_FACTORIZE_MAX,
        )  # fmt: skip
        if support.size:
            self._last_factor = (support, t, beta[support].copy(), (lower.T, False))
        return gap

    def _coordinate_descent(self, t, coef, alpha, beta, tol, sweeps, screened):
        """Sweeps on target ``t`` from ``coef`` (updated in place): (gap, sweeps).

        ``screened`` marks the columns known to be zero at these strengths
        (gap-safe screening, dense and sparse X); updated in place."""
        yc = np.ascontiguousarray(self.Yc[:, t])
        if self.sparse:
            return cd_sparse(
                *self._csc, self.xbar, self.curvature, yc, self.sw, coef, alpha,
                beta, tol, sweeps, screened,
            )  # fmt: skip
        return cd_dense(
            self.X, self.xbar, self.curvature, yc, self.sw, coef, alpha, beta, tol,
            sweeps, screened,
        )  # fmt: skip

    def _support_newton(self, t, coef, alpha, beta):
        """Newton step on ``coef``'s support with its signs fixed (where the
        objective is a quadratic), cut where a coefficient first reaches zero.

        Along the segment the signs hold, so the true objective decreases;
        the coefficient that reaches zero leaves the support (an active-set
        step), and coordinate descent goes on from there."""
        support = np.flatnonzero(coef)
        if not 0 < support.size <= SUPPORT_FACTORIZE_MAX:
            return
        rhs = self._support_correlations(support, t) - alpha[support] * np.sign(
            coef[support]
        )
        values = cho_solve_vector(self._factor(support, t, beta), rhs)
        newton_cut(coef, support, values)
