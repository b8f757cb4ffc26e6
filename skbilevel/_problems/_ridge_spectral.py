"""Closed forms of ridge cross-validation for penalties shared across features.

A penalty shared by all features of a target commutes with the Gram matrix:
one eigendecomposition per fold makes every later evaluation of the
validation loss and of its exact derivative cost O(n_val * rank), and exact
leave-one-out has a closed form too. The reference formulas are written
once here in NumPy (:func:`holdout_predictions`, :func:`loo_residuals`); the
Numba kernels of :mod:`skbilevel._ridge_kernels` compute the same quantities
and their derivatives in one sweep, and are tested against them.

* :func:`spectral_holdout_folds` / :class:`SpectralHoldoutObjective` - K-fold;
* :func:`spectral_loo` / :class:`SpectralLOOObjective` - exact leave-one-out;
* :class:`DirectLOOObjective` - exact leave-one-out for per-feature or
  grouped penalties, differentiating the hat-matrix diagonal in closed form.
"""

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._linalg import robust_cho_factor
from .._objectives import CVObjective, map_folds
from .._ridge_kernels import spectral_holdout_loss_grad, spectral_loo_loss_grad
from .._validation import as_float_c
from ._ridge import (
    centered_gram,
    centered_sum_of_squares,
    drop_null_directions,
    weighted_means,
)

__all__ = [
    "DirectLOOObjective",
    "SpectralFold",
    "SpectralHoldoutObjective",
    "SpectralLOOObjective",
    "holdout_predictions",
    "is_complement",
    "loo_residuals",
    "spectral_holdout_folds",
    "spectral_loo",
]


def holdout_predictions(A, z, s2, alphas, ybar):
    """Validation predictions of one target of a ridge fold, at many strengths.

    With the fold's centered, weighted training Gram matrix ``V diag(s2) V^T``,
    ``A`` the centered validation rows projected on ``V`` and ``z`` the
    projected training targets, the prediction at strength ``a`` is
    ``A diag(1 / (s2 + a)) z + ybar``.

    Parameters
    ----------
    A : ndarray of shape (n_val, rank)
    z : ndarray of shape (rank,)
    s2 : ndarray of shape (rank,)
    alphas : ndarray of shape (n_alphas,)
    ybar : float
        Weighted mean of the training targets (the intercept's share).

    Returns
    -------
    predictions : ndarray of shape (n_val, n_alphas)
    """
    return A @ (z[:, None] / (s2[:, None] + alphas[None, :])) + ybar


def loo_residuals(P, z, s2, alphas, y, q2):
    """Exact leave-one-out residuals of one ridge target, at many strengths.

    With the weighted, centered design ``Xc = U S V^T`` and ``P = Xc V``, the
    hat matrix is ``q q^T + P diag(1 / (s2 + a)) P^T`` (``q q^T`` projects on
    the unpenalized intercept) and the leave-one-out residual of sample ``i``
    is ``r_i / (1 - h_ii)``, in units of ``sqrt(sw)``.

    Parameters
    ----------
    P : ndarray of shape (n_samples, rank)
    z : ndarray of shape (rank,)
        ``P^T y``.
    s2 : ndarray of shape (rank,)
    alphas : ndarray of shape (n_alphas,)
    y : ndarray of shape (n_samples,)
        Centered targets times the square root of the sample weights.
    q2 : ndarray of shape (n_samples,)
        Leverage of the intercept, ``sw_i / sum(sw)`` (zeros without one).

    Returns
    -------
    residuals : ndarray of shape (n_samples, n_alphas)
    """
    inv = 1.0 / (s2[:, None] + alphas[None, :])
    fit = P @ (z[:, None] * inv)
    leverage = q2[:, None] + (P**2) @ inv
    # A sample the model interpolates exactly has a zero residual too.
    return (y[:, None] - fit) / np.maximum(1.0 - leverage, 1e-12)


# --------------------------------------------------------------------------
# Spectral shortcuts for a penalty shared by all features of each target.
# --------------------------------------------------------------------------


class SpectralFold:
    """One hold-out fold in eigen-coordinates (see ``spectral_holdout_loss_grad``).

    Validation predictions at per-target strengths ``alpha`` are
    ``A @ (Z / (s2 + alpha)) + ybar``.

    Attributes
    ----------
    A : ndarray of shape (n_val, rank)
    Z : ndarray of shape (rank, n_targets)
    s2 : ndarray of shape (rank,)
    ybar : ndarray of shape (n_targets,)
        Weighted mean of the training targets (the intercept's share).
    Y_val : ndarray of shape (n_val, n_targets)
    sw : ndarray of shape (n_val,)
    """

    def __init__(self, A, Z, s2, ybar, Y_val, sw):
        self.A = as_float_c(A)
        self.Z = as_float_c(Z)
        self.s2 = as_float_c(s2)
        self.ybar = ybar
        self.Y_val = Y_val
        self.res0 = as_float_c(ybar - Y_val)
        self.sw = as_float_c(sw)
        self.scale = 1.0 / (sw.sum() * Y_val.shape[1])

    def predict(self, alpha):
        """Validation predictions at per-target strengths ``alpha`` (n_targets,)."""
        return np.column_stack(
            [
                holdout_predictions(self.A, self.Z[:, t], self.s2, alpha[t : t + 1],
                                    self.ybar[t])[:, 0]
                for t in range(self.Z.shape[1])
            ]
        )  # fmt: skip

    def loss_grad(self, alpha):
        """Validation MSE and its derivative in log(alpha) of each target."""
        loss, grad = spectral_holdout_loss_grad(
            self.A, self.Z, self.s2, alpha, self.res0, self.sw
        )
        return self.scale * loss.sum(), self.scale * grad

    def scan(self, alphas):
        """Validation MSE for many shared strengths at once (matrix products).

        Parameters
        ----------
        alphas : ndarray of shape (n_alphas,)

        Returns
        -------
        losses : ndarray of shape (n_alphas,)
        """
        out = np.zeros(alphas.shape[0])
        for t in range(self.Z.shape[1]):
            pred = holdout_predictions(
                self.A, self.Z[:, t], self.s2, alphas, self.ybar[t]
            )
            out += self.sw @ (pred - self.Y_val[:, t : t + 1]) ** 2
        return out * self.scale


def centered_kernel(K, sw, fit_intercept):
    """``sqrt(S) (X - xbar)(X - xbar)^T sqrt(S)`` from the raw kernel ``K = X X^T``.

    Works on one copy of ``K`` (these matrices are the large ones).
    """
    K = np.array(K, dtype=np.float64, order="C")
    if fit_intercept:
        total = sw.sum()
        k = K @ sw / total  # X xbar
        K -= k[:, None]
        K -= k[None, :]
        K += sw @ k / total
    if np.any(sw != 1.0):
        root = np.sqrt(sw)
        K *= root[:, None]
        K *= root[None, :]
    return K


def _raw_kernel(X):
    return np.asarray((X @ X.T).toarray() if sp.issparse(X) else X @ X.T)


def _gram_moments(X, Y, sw):
    """Uncentered weighted Gram, cross-moments and sums of a block of rows."""
    G = centered_gram(X, sw, np.zeros(X.shape[1]))
    return (
        G,
        np.asarray(X.T @ sw).ravel(),
        np.asarray(X.T @ (sw[:, None] * Y)),
        sw @ Y,
        sw.sum(),
    )


# Past this ratio of the Gram's largest to smallest diagonal entry (columns
# whose scales differ by 1e5), eigh's absolute error (eps x the largest
# eigenvalue) swamps the small columns' eigenvalues: the SVD of the rows keeps
# them to eps x the largest singular value instead.
_EIGH_MAX_SPREAD = 1e10


def _spread(sums_of_squares):
    """Whether columns' sums of squares span more than ``_EIGH_MAX_SPREAD``."""
    largest = sums_of_squares.max(initial=0.0)
    scaled = sums_of_squares[sums_of_squares > 1e-20 * largest]  # not constants
    return bool(scaled.size and largest > _EIGH_MAX_SPREAD * scaled.min())


def _gram_eigen(G, X, sw, rows, xbar):
    """Eigenpairs of the centered weighted Gram ``G`` of ``X[rows]``.

    ``eigh(G)`` when the columns' scales are alike; the SVD of the centered,
    weighted rows when they differ by more than 1e5 (a price in cents beside
    z-scores), where ``eigh`` would lose the small columns' directions.
    """
    if sp.issparse(X) or not _spread(np.diag(G)):
        return drop_null_directions(*np.linalg.eigh(G))
    rows_X, rows_sw = X[rows], sw[rows]
    # The Gram's diagonal is a difference of moments: a constant column keeps
    # a round-off residue there. Two passes over the rows tell it apart.
    if not _spread(centered_sum_of_squares(rows_X, rows_sw, xbar)):
        return drop_null_directions(*np.linalg.eigh(G))
    root = np.sqrt(rows_sw)
    _, s, Vt = np.linalg.svd(root[:, None] * (rows_X - xbar), full_matrices=False)
    return drop_null_directions(s**2, Vt.T, from_singular_values=True)


def is_complement(train, val, n_samples):
    """Whether a split's training rows are exactly all the others (K-fold)."""
    if len(train) + len(val) != n_samples:
        return False
    seen = np.zeros(n_samples, dtype=bool)
    seen[train] = True
    seen[val] = True
    return bool(seen.all())


def spectral_holdout_folds(X, Y, sw, folds, fit_intercept, mode, n_jobs=None):
    """Eigen-coordinates of every hold-out fold, sharing work across folds.

    In ``mode="primal"`` (n_features small) the full weighted Gram matrix is
    formed once and each fold's training Gram is obtained by subtracting the
    validation rows' contribution, where the training rows are all the others
    (K-fold); other splits form it from their training rows. In
    ``mode="dual"`` (n_samples small) the full kernel ``X X^T`` is formed once
    and every fold reads its blocks.
    The per-fold eigendecompositions run in ``n_jobs`` threads.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_targets)
    sw : ndarray of shape (n_samples,)
    folds : list of (train_idx, val_idx)
    fit_intercept : bool
    mode : {"primal", "dual"}
    n_jobs : int, default=None

    Returns
    -------
    folds : list of SpectralFold
    precomputed : dict
        ``{"gram": ...}`` or ``{"kernel": ...}``: the centered, weighted
        matrix of all rows, for :class:`RidgeProblem` to refit without
        forming it again.
    """
    if mode == "primal":
        G, xs, xy, ys, total = _gram_moments(X, Y, sw)

        def primal_fold(fold):
            train, val = fold
            Xv, Yv, swv = X[val], Y[val], sw[val]
            if is_complement(train, val, X.shape[0]):
                Gv, xsv, xyv, ysv, totv = _gram_moments(Xv, Yv, swv)
                G_t, xs_t, xy_t = G - Gv, xs - xsv, xy - xyv
                ys_t, tot_t = ys - ysv, total - totv
            else:  # time series, shuffle-split...: the training rows themselves
                G_t, xs_t, xy_t, ys_t, tot_t = _gram_moments(
                    X[train], Y[train], sw[train]
                )
            if fit_intercept:
                xbar = xs_t / tot_t
                ybar = ys_t / tot_t
                G_t -= tot_t * np.outer(xbar, xbar)
                xy_t -= tot_t * np.outer(xbar, ybar)
            else:
                xbar = np.zeros(X.shape[1])
                ybar = np.zeros(Y.shape[1])
            s2, V = _gram_eigen(G_t, X, sw, train, xbar)
            A = np.asarray(Xv @ V) - xbar @ V
            return SpectralFold(A, V.T @ xy_t, s2, ybar, Yv, swv)

        out = map_folds(primal_fold, folds, n_jobs)
        if fit_intercept:
            G -= np.outer(xs, xs) / total
        return out, {"gram": G}

    K = _raw_kernel(X)

    def dual_fold(fold):
        train, val = fold
        swt = sw[train]
        Ktt = K[np.ix_(train, train)]
        Kvt = K[np.ix_(val, train)]
        Yt = Y[train]
        if fit_intercept:
            tot_t = swt.sum()
            kt = Ktt @ swt / tot_t  # X_t xbar
            kv = Kvt @ swt / tot_t  # X_v xbar
            xx = swt @ kt / tot_t  # ||xbar||^2
            Kvt = Kvt - kv[:, None] - kt[None, :] + xx
            ybar = swt @ Yt / tot_t
        else:
            ybar = np.zeros(Y.shape[1])
        root = np.sqrt(swt)
        s2, U = drop_null_directions(
            *np.linalg.eigh(centered_kernel(Ktt, swt, fit_intercept))
        )
        A = (Kvt * root) @ U
        Z = U.T @ (root[:, None] * (Yt - ybar))
        return SpectralFold(A, Z, s2, ybar, Y[val], sw[val])

    out = map_folds(dual_fold, folds, n_jobs)
    return out, {"kernel": centered_kernel(K, sw, fit_intercept)}


def spectral_loo(X, Y, sw, fit_intercept, mode):
    """Quantities for the exact leave-one-out loss (see ``spectral_loo_loss_grad``).

    Returns
    -------
    P : ndarray of shape (n_samples, rank)
    Z : ndarray of shape (rank, n_targets)
    s2 : ndarray of shape (rank,)
    y_tilde : ndarray of shape (n_samples, n_targets)
    q2 : ndarray of shape (n_samples,)
    precomputed : dict
        ``{"gram": ...}`` or ``{"kernel": ...}`` for the final refit.
    """
    xbar, ybar = weighted_means(X, Y, sw, fit_intercept)
    root = np.sqrt(sw)
    y_tilde = root[:, None] * (Y - ybar)
    q2 = sw / sw.sum() if fit_intercept else np.zeros_like(sw)
    if mode == "primal":
        G = centered_gram(X, sw, xbar)
        s2, V = _gram_eigen(G, X, sw, slice(None), xbar)
        P = root[:, None] * (np.asarray(X @ V) - xbar @ V)
        Z = P.T @ y_tilde
        return P, Z, s2, y_tilde, q2, {"gram": G, "eigen": (s2, V)}
    K = centered_kernel(_raw_kernel(X), sw, fit_intercept)
    s2, U = drop_null_directions(*np.linalg.eigh(K))
    P = U * np.sqrt(s2)
    Z = P.T @ y_tilde
    return P, Z, s2, y_tilde, q2, {"kernel": K, "eigen": (s2, U)}


class SpectralHoldoutObjective(CVObjective):
    """Mean validation MSE over spectral folds.

    Parameters
    ----------
    folds : list of SpectralFold
    target_group : ndarray of shape (n_targets,), dtype int64
        Hyperparameter of each target (all zeros for a scalar penalty).
    n_hyper : int
    n_jobs : int or None
    verbose : int
    """

    cheap_scan = True

    def __init__(self, folds, target_group, n_hyper, n_jobs=None, verbose=0):
        super().__init__(n_hyper, len(folds), verbose)
        self.folds = folds
        self.target_group = target_group
        self.n_jobs = n_jobs

    def _evaluate(self, theta, need_grad):
        alpha = np.exp(theta)[self.target_group]
        results = map_folds(lambda fold: fold.loss_grad(alpha), self.folds, self.n_jobs)
        losses = np.array([r[0] for r in results])
        grad = np.bincount(
            self.target_group,
            weights=np.mean([r[1] for r in results], axis=0),
            minlength=self.n_hyper,
        )
        return float(losses.mean()), (grad if need_grad else None), losses, None

    def _scan(self, ts):
        split_losses = np.column_stack([fold.scan(np.exp(ts)) for fold in self.folds])
        f = split_losses.mean(axis=1)
        for t, row_f, row_split in zip(ts, f, split_losses, strict=True):
            self._log(np.full(self.n_hyper, t), row_f, row_split, None)
        return f

    def validation_predictions(self, index):
        alpha = np.exp(self.records[index].theta)[self.target_group]
        return [fold.predict(alpha) for fold in self.folds]


class _LeaveOneOut(CVObjective):
    """Leave-one-out objectives: one split, every sample validated once.

    Subclasses set ``Y`` (targets, shape (n_samples, n_targets)), ``root``
    (square roots of the sample weights) and ``_residuals(theta)`` (the
    leave-one-out residuals in units of ``root``).
    """

    def validation_predictions(self, index):
        residuals = self._residuals(self.records[index].theta)
        root = self.root[:, None]
        scaled = np.divide(
            residuals, root, out=np.zeros_like(residuals), where=root > 0
        )
        return [self.Y - scaled]


class SpectralLOOObjective(_LeaveOneOut):
    """Exact leave-one-out MSE for penalties shared by all features of a target.

    Parameters
    ----------
    P, Z, s2, y_tilde, q2 : ndarrays
        As returned by :func:`spectral_loo`.
    Y : ndarray of shape (n_samples, n_targets)
    sw : ndarray of shape (n_samples,)
    target_group : ndarray of shape (n_targets,)
    n_hyper : int
    verbose : int
    """

    cheap_scan = True

    def __init__(self, P, Z, s2, y_tilde, q2, Y, sw, target_group, n_hyper, verbose=0):
        super().__init__(n_hyper, 1, verbose)
        self.P, self.Z, self.s2, self.y_tilde, self.q2 = P, Z, s2, y_tilde, q2
        self.Y, self.root = Y, np.sqrt(sw)
        self.scale = 1.0 / (sw.sum() * y_tilde.shape[1])
        self.target_group = target_group

    def _evaluate(self, theta, need_grad):
        alpha = np.exp(theta)[self.target_group]
        loss, grad = spectral_loo_loss_grad(
            self.P, self.Z, self.s2, alpha, self.y_tilde, self.q2
        )
        f = self.scale * loss.sum()
        grad = np.bincount(
            self.target_group, weights=self.scale * grad, minlength=self.n_hyper
        )
        return f, (grad if need_grad else None), np.array([f]), None

    def _scan(self, ts):
        # Many strengths at once with matrix products (BLAS), target by target.
        f = np.zeros(len(ts))
        for t in range(self.Z.shape[1]):
            residuals = loo_residuals(
                self.P, self.Z[:, t], self.s2, np.exp(ts), self.y_tilde[:, t], self.q2
            )
            f += np.sum(residuals**2, axis=0)
        f *= self.scale
        for t, value in zip(ts, f, strict=True):
            self._log(np.full(self.n_hyper, t), value, np.array([value]), None)
        return f

    def _residuals(self, theta):
        alpha = np.exp(theta)[self.target_group]
        return np.column_stack(
            [
                loo_residuals(self.P, self.Z[:, t], self.s2, alpha[t : t + 1],
                              self.y_tilde[:, t], self.q2)[:, 0]
                for t in range(self.Z.shape[1])
            ]
        )  # fmt: skip


class DirectLOOObjective(_LeaveOneOut):
    """Exact leave-one-out MSE for per-feature or grouped penalties.

    With ``Xc`` the weighted, centered design, ``A = Xc^T Xc + diag(p)`` and
    ``B = Xc A^{-1}``, the hat diagonal is ``q2 + rowsum(B * Xc)``; its
    derivative in ``log p_j`` is ``-p_j B_ij^2`` and the residual's is
    ``p_j B_ij w_j``. ``B`` comes from a d x d Cholesky factorization when
    n >= d, otherwise from an n x n one (Woodbury identity).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Dense design (the caller densifies sparse input).
    Y : ndarray of shape (n_samples, n_targets)
    sw : ndarray of shape (n_samples,)
    fit_intercept : bool
    feature_group : ndarray of shape (n_features,)
        Hyperparameter of each feature (shared by all targets).
    n_hyper : int
    verbose : int
    """

    def __init__(self, X, Y, sw, fit_intercept, feature_group, n_hyper, verbose=0):
        super().__init__(n_hyper, 1, verbose)
        xbar, ybar = weighted_means(X, Y, sw, fit_intercept)
        root = np.sqrt(sw)
        self.Y, self.root = Y, root
        self.Xc = root[:, None] * (X - xbar)
        self.y_tilde = root[:, None] * (Y - ybar)
        self.q2 = sw / sw.sum() if fit_intercept else np.zeros_like(sw)
        self.primal = X.shape[1] <= X.shape[0]
        self.gram = self.Xc.T @ self.Xc if self.primal else None
        self.feature_group = feature_group
        self.scale = 1.0 / (sw.sum() * Y.shape[1])

    def _b_matrix(self, p):
        if self.primal:
            H = self.gram.copy()
            H[np.diag_indices_from(H)] += p
            cho = robust_cho_factor(H)
            return scipy.linalg.cho_solve(cho, self.Xc.T, check_finite=False).T
        Xs = self.Xc / p
        M = Xs @ self.Xc.T
        M[np.diag_indices_from(M)] += 1.0
        cho = robust_cho_factor(M)
        return scipy.linalg.cho_solve(cho, Xs, check_finite=False)

    def _parts(self, theta):
        p = np.exp(theta)[self.feature_group]
        B = self._b_matrix(p)
        w = B.T @ self.y_tilde
        h = self.q2 + np.einsum("ij,ij->i", B, self.Xc)
        den = np.maximum(1.0 - h, 1e-12)
        r = self.y_tilde - self.Xc @ w
        return p, B, w, den, r / den[:, None]

    def _evaluate(self, theta, need_grad):
        p, B, w, den, e = self._parts(theta)
        f = self.scale * float(np.sum(e**2))
        grad = None
        if need_grad:
            term1 = p * np.sum(w * (B.T @ (e / den[:, None])), axis=1)
            term2 = -p * ((B**2).T @ (np.sum(e**2, axis=1) / den))
            grad = np.bincount(
                self.feature_group,
                weights=2.0 * self.scale * (term1 + term2),
                minlength=self.n_hyper,
            )
        return f, grad, np.array([f]), None

    def _residuals(self, theta):
        return self._parts(theta)[4]
