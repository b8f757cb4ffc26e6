"""Weighted ridge regression as an inner problem, and its spectral shortcuts.

The training problem of one fold is

    L(w, theta) = 0.5 * ||sqrt(sw) * (Y - X w - b)||^2 + 0.5 * sum(p * w ** 2)

with ``p = exp(theta)[group_idx]`` and an unpenalized intercept ``b``. The
intercept is eliminated by centering X and Y with their weighted means, so
``w`` holds only penalized coefficients. Centering of sparse X is implicit.

Two representations are provided:

* :class:`RidgeProblem` implements the generic protocol (any penalty
  grouping, every hypergradient method) on a Gram matrix when it is small,
  or on the design matrix itself (Numba kernels, dense or CSR) otherwise.
* :func:`spectral_holdout_folds` / :func:`spectral_loo` exploit that a
  penalty shared by all features of a target commutes with the Gram matrix:
  one eigendecomposition per fold makes every later evaluation of the
  validation loss and of its exact derivative cost O(n_val * rank).
"""

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._cv import map_folds
from .._kernels import (
    as_float_c,
    as_index_c,
    csr_centered_gram_matvec,
    dense_centered_gram_matvec,
    spectral_holdout_loss_grad,
)
from .._linalg import conjugate_gradient, power_iteration, robust_cho_factor
from ._base import InnerProblem, penalty_weights

__all__ = [
    "RidgeProblem",
    "can_factorize",
    "SpectralFold",
    "spectral_holdout_folds",
    "spectral_loo",
    "GRAM_MAX_DIM",
    "DENSE_MAX_ENTRIES",
]

# Largest side of a Gram/kernel matrix we form and factorize (8000**2 doubles
# = 512 MB). Past that, only the iterative (CG) path is used.
GRAM_MAX_DIM = 8000
# Largest sparse matrix we densify for a factorization (200 MB of doubles).
DENSE_MAX_ENTRIES = 25_000_000


def can_factorize(n_samples, n_features, sparse):
    """Whether a ridge problem of this size can be solved by factorization.

    The Gram (d x d) or kernel (n x n) matrix must be at most
    ``GRAM_MAX_DIM`` wide, and the kernel form of sparse data needs a dense
    copy of the design of at most ``DENSE_MAX_ENTRIES`` entries.
    """
    small = min(n_samples, n_features) <= GRAM_MAX_DIM
    if sparse and n_features > n_samples:
        small = small and n_samples * n_features <= DENSE_MAX_ENTRIES
    return small


def weighted_means(X, Y, sw, fit_intercept):
    """Weighted column means of X and Y (zeros when there is no intercept)."""
    n_features = X.shape[1]
    if not fit_intercept:
        return np.zeros(n_features), np.zeros(Y.shape[1])
    total = sw.sum()
    xbar = np.asarray(X.T @ sw).ravel() / total
    ybar = sw @ Y / total
    return xbar, ybar


def _csr_arrays(X):
    return as_float_c(X.data), as_index_c(X.indices), as_index_c(X.indptr)


def _drop_null_directions(s2, vectors):
    """Keep the eigenpairs of a PSD matrix that are not round-off zeros."""
    s2 = np.maximum(s2, 0.0)
    keep = s2 > s2.max(initial=0.0) * max(vectors.shape) * np.finfo(np.float64).eps
    return s2[keep], np.ascontiguousarray(vectors[:, keep])


class RidgeProblem(InnerProblem):
    """Weighted ridge training problem of one fold (see module docstring).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or CSR matrix
        Training rows, float64 (C-contiguous when dense).
    Y : ndarray of shape (n_samples, n_targets)
    sw : ndarray of shape (n_samples,)
    group_idx : ndarray of shape (n_features, n_targets), dtype int64
    n_hyper : int
        Number of hyperparameter groups.
    fit_intercept : bool
    gram : ndarray of shape (n_features, n_features), default=None
        The centered, weighted Gram matrix if the caller already has it.
    kernel : ndarray of shape (n_samples, n_samples), default=None
        The centered, weighted kernel matrix ``Xc Xc^T`` if the caller
        already has it (used by direct solves with a shared penalty, n < d).
    eigen : tuple (s2, vectors), default=None
        Eigendecomposition (null directions dropped) of the centered,
        weighted Gram matrix (``vectors`` of shape (n_features, rank)) or of
        the kernel matrix (shape (n_samples, rank)). Direct solves with a
        shared penalty then cost a few matrix-vector products.
    X_val, Y_val, sw_val : arrays, default=None
        Validation rows; needed only for :meth:`outer_loss_grad`.
    """

    def __init__(
        self,
        X,
        Y,
        sw,
        group_idx,
        n_hyper,
        fit_intercept,
        *,
        gram=None,
        kernel=None,
        eigen=None,
        X_val=None,
        Y_val=None,
        sw_val=None,
    ):
        self.X = X
        self.sparse = sp.issparse(X)
        self.sw = sw
        self.group_idx = group_idx
        self.n_hyper = n_hyper
        self.n_samples, self.n_features = X.shape
        self.n_targets = Y.shape[1]
        self.xbar, self.ybar = weighted_means(X, Y, sw, fit_intercept)
        Yc = Y - self.ybar
        self._Yc = Yc
        # Xc^T S Yc equals X^T S Yc because S Yc sums to zero column-wise.
        self.b = np.asarray(X.T @ (sw[:, None] * Yc))
        if not fit_intercept:
            self.b = np.ascontiguousarray(self.b)
        self.c0 = 0.5 * float(np.sum(sw[:, None] * Yc**2))
        self._gram = gram
        self._kernel = kernel
        self._eigen = eigen
        self._root_sw = np.sqrt(sw)
        self.shared_penalty = bool(np.all(group_idx == group_idx[:, :1]))
        self._factor_key = None
        self._factors = None
        self._lipschitz_gram = None
        if X_val is not None:
            self.X_val = X_val
            self.Y_val = Y_val
            self.sw_val = sw_val
            self._val_scale = 2.0 / (sw_val.sum() * self.n_targets)

    # ----------------------------------------------------------------- algebra
    @property
    def use_gram(self):
        """Whether the Hessian's data part is held as a d x d matrix."""
        if self._gram is not None:
            return True
        return self.n_features <= min(self.n_samples, GRAM_MAX_DIM)

    def gram(self):
        """Centered weighted Gram matrix ``Xc^T S Xc``, formed on first use."""
        if self._gram is None:
            X, sw, xbar = self.X, self.sw, self.xbar
            if self.sparse:
                G = (X.T @ X.multiply(sw[:, None]).tocsr()).toarray()
            else:
                # In chunks of rows: no weighted copy of X is formed.
                G = np.zeros((self.n_features, self.n_features))
                for start in range(0, self.n_samples, 8192):
                    block = X[start : start + 8192]
                    G += block.T @ (block * sw[start : start + 8192, None])
            G -= sw.sum() * np.outer(xbar, xbar)
            self._gram = G
        return self._gram

    def data_matvec(self, V):
        """``Xc^T S Xc @ V`` for V of shape (n_features, n_targets)."""
        if self.use_gram:
            return self.gram() @ V
        V = as_float_c(V)
        if self.sparse:
            data, indices, indptr = _csr_arrays(self.X)
            return csr_centered_gram_matvec(
                data, indices, indptr, self.sw, self.xbar, V
            )
        return dense_centered_gram_matvec(self.X, self.sw, self.xbar, V)

    def value(self, w, theta):
        p = penalty_weights(theta, self.group_idx)
        return float(
            0.5 * np.sum(w * self.data_matvec(w))
            - np.sum(self.b * w)
            + self.c0
            + 0.5 * np.sum(p * w**2)
        )

    def gradient(self, w, theta):
        p = penalty_weights(theta, self.group_idx)
        return self.data_matvec(w) - self.b + p * w

    def hvp(self, w, theta, v):
        p = penalty_weights(theta, self.group_idx)
        return self.data_matvec(v) + p * v

    def hessian_diagonal(self, w, theta):
        if not hasattr(self, "_gram_diagonal"):
            if self.use_gram:
                self._gram_diagonal = np.diag(self.gram()).copy()
            elif self.sparse:
                self._gram_diagonal = (
                    np.asarray(self.X.multiply(self.X).T @ self.sw).ravel()
                    - self.sw.sum() * self.xbar**2
                )
            else:
                self._gram_diagonal = self.sw @ (self.X - self.xbar) ** 2
        p = penalty_weights(theta, self.group_idx)
        return self._gram_diagonal[:, None] + p

    def lipschitz(self, w, theta):
        if self._lipschitz_gram is None:
            self._lipschitz_gram = power_iteration(
                lambda v: self.data_matvec(v), (self.n_features, 1)
            )
        return self._lipschitz_gram + float(np.exp(np.max(theta)))

    # ---------------------------------------------------------- factorizations
    def _dense_centered_design(self):
        X = self.X.toarray() if self.sparse else self.X
        return self._root_sw[:, None] * (X - self.xbar)

    def _xc_matvec(self, V):
        """``Xc @ V`` with ``Xc = sqrt(sw) * (X - xbar)`` never formed."""
        return self._root_sw[:, None] * (np.asarray(self.X @ V) - self.xbar @ V)

    def _xc_rmatvec(self, U):
        """``Xc^T @ U`` with ``Xc`` never formed."""
        scaled = self._root_sw[:, None] * U
        return np.asarray(self.X.T @ scaled) - np.outer(self.xbar, scaled.sum(0))

    @property
    def can_factorize(self):
        """Whether direct solves fit in memory (see :func:`can_factorize`)."""
        return can_factorize(self.n_samples, self.n_features, self.sparse)

    def _factor(self, p_col):
        """Factorization of the Hessian for one column of penalty weights."""
        if self._eigen is not None and np.all(p_col == p_col[0]):
            return ("eigen", None)
        if self.use_gram:
            H = self.gram().copy()
            H[np.diag_indices_from(H)] += p_col
            return ("primal", robust_cho_factor(H))
        # Dual form (n < d): H^{-1} = D^{-1} - D^{-1} Xc^T M^{-1} Xc D^{-1},
        # with M = I + Xc D^{-1} Xc^T, n x n instead of d x d.
        if not self.can_factorize:
            raise NotImplementedError(
                "The problem is too large to factorize; use hypergradient='cg'."
            )
        if np.all(p_col == p_col[0]):
            # Shared strength: M = I + K / p with the kernel K = Xc Xc^T.
            if self._kernel is None:
                Xc = self._dense_centered_design()
                self._kernel = Xc @ Xc.T
            M = self._kernel / p_col[0]
        else:
            Xc = self._dense_centered_design()
            M = (Xc / p_col) @ Xc.T
        M[np.diag_indices_from(M)] += 1.0
        return ("dual", robust_cho_factor(M))

    def _apply_factor(self, factor, p_col, rhs, y_tilde=None):
        """Apply the inverse Hessian of one penalty column to ``rhs``.

        When ``y_tilde`` is given, ``rhs`` is ``Xc^T y_tilde`` (the ridge
        solution's right-hand side) and kernel forms solve in sample space,
        ``w = D^{-1} Xc^T M^{-1} y_tilde``: unlike the general Woodbury
        formula, this has no cancellation when the strengths are tiny.
        """
        kind, cho = factor
        if kind == "primal":
            return scipy.linalg.cho_solve(cho, rhs, check_finite=False)
        if kind == "eigen":
            s2, vectors = self._eigen
            p = p_col[0]

            def shifted_inverse(v):  # (vectors diag(s2) vectors^T + p I)^{-1} v
                coef = vectors.T @ v
                return vectors @ (coef / (s2 + p)[:, None]) + (v - vectors @ coef) / p

            if vectors.shape[0] == self.n_features:
                return shifted_inverse(rhs)
            if y_tilde is not None:
                return self._xc_rmatvec(shifted_inverse(y_tilde))
            return (rhs - self._xc_rmatvec(shifted_inverse(self._xc_matvec(rhs)))) / p
        if y_tilde is not None:
            inner = scipy.linalg.cho_solve(cho, y_tilde, check_finite=False)
            return self._xc_rmatvec(inner) / p_col[:, None]
        scaled = rhs / p_col[:, None]
        inner = scipy.linalg.cho_solve(cho, self._xc_matvec(scaled), check_finite=False)
        return scaled - self._xc_rmatvec(inner) / p_col[:, None]

    def _solve_factored(self, theta, rhs, y_tilde=None):
        p = penalty_weights(theta, self.group_idx)
        key = theta.tobytes()
        if key != self._factor_key:
            self._factor_key = key
            columns = [0] if self.shared_penalty else range(self.n_targets)
            self._factors = [self._factor(p[:, t]) for t in columns]
        if self.shared_penalty:
            return self._apply_factor(self._factors[0], p[:, 0], rhs, y_tilde)
        out = np.empty_like(rhs)
        for t in range(self.n_targets):
            column = slice(t, t + 1)
            out[:, column] = self._apply_factor(
                self._factors[t],
                p[:, t],
                rhs[:, column],
                None if y_tilde is None else y_tilde[:, column],
            )
        return out

    def hessian_solve(self, w, theta, rhs):
        return self._solve_factored(theta, rhs)

    def solve(
        self,
        theta,
        w0=None,
        tol=1e-10,
        method="direct",
        max_iter=1000,
        for_adjoint=True,
    ):
        if method == "direct":
            y_tilde = None
            if not self.use_gram:
                y_tilde = self._root_sw[:, None] * self._Yc
            return self._solve_factored(theta, self.b, y_tilde), True
        p = penalty_weights(theta, self.group_idx)
        w, _, converged = conjugate_gradient(
            lambda v: self.data_matvec(v) + p * v,
            self.b,
            x0=w0,
            tol=tol,
            max_iter=max_iter,
            diagonal=self.hessian_diagonal(None, theta),
        )
        return w, converged

    # ---------------------------------------------------------------- outputs
    def intercept(self, w):
        """Unpenalized intercept that goes with coefficients ``w``."""
        return self.ybar - self.xbar @ w

    def outer_loss_grad(self, w):
        """Weighted validation MSE (averaged over targets) and its gradient in w."""
        residual = np.asarray(self.X_val @ w) - self.xbar @ w + self.ybar - self.Y_val
        weighted = self.sw_val[:, None] * residual
        loss = 0.5 * self._val_scale * float(np.sum(weighted * residual))
        grad = self._val_scale * (
            np.asarray(self.X_val.T @ weighted) - np.outer(self.xbar, weighted.sum(0))
        )
        return loss, grad


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
        return self.A @ (self.Z / (self.s2[:, None] + alpha[None, :])) + self.ybar

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
        inv = 1.0 / (self.s2[:, None] + alphas[None, :])  # rank x n_alphas
        out = np.zeros(alphas.shape[0])
        for t in range(self.Z.shape[1]):
            resid = self.A @ (self.Z[:, t : t + 1] * inv) + self.res0[:, t : t + 1]
            out += self.sw @ resid**2
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
    if sp.issparse(X):
        Xw = X.multiply(sw[:, None]).tocsr()
        G = (X.T @ Xw).toarray()
        xs = np.asarray(Xw.sum(axis=0)).ravel()
        xy = np.asarray(Xw.T @ Y)
    else:
        Xw = X * sw[:, None]
        G = X.T @ Xw
        xs = Xw.sum(axis=0)
        xy = Xw.T @ Y
    return G, xs, xy, sw @ Y, sw.sum()


def spectral_holdout_folds(X, Y, sw, folds, fit_intercept, mode, n_jobs=None):
    """Eigen-coordinates of every hold-out fold, sharing work across folds.

    In ``mode="primal"`` (n_features small) the full weighted Gram matrix is
    formed once and each fold's training Gram is obtained by subtracting the
    validation rows' contribution. In ``mode="dual"`` (n_samples small) the
    full kernel ``X X^T`` is formed once and every fold reads its blocks.
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
            val = fold[1]
            Xv, Yv, swv = X[val], Y[val], sw[val]
            Gv, xsv, xyv, ysv, totv = _gram_moments(Xv, Yv, swv)
            tot_t = total - totv
            G_t = G - Gv
            xy_t = xy - xyv
            if fit_intercept:
                xbar = (xs - xsv) / tot_t
                ybar = (ys - ysv) / tot_t
                G_t -= tot_t * np.outer(xbar, xbar)
                xy_t -= tot_t * np.outer(xbar, ybar)
            else:
                xbar = np.zeros(X.shape[1])
                ybar = np.zeros(Y.shape[1])
            s2, V = _drop_null_directions(*np.linalg.eigh(G_t))
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
        s2, U = _drop_null_directions(
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
        G = _gram_moments(X, Y, sw)[0] - sw.sum() * np.outer(xbar, xbar)
        s2, V = _drop_null_directions(*np.linalg.eigh(G))
        P = root[:, None] * (np.asarray(X @ V) - xbar @ V)
        Z = P.T @ y_tilde
        return P, Z, s2, y_tilde, q2, {"gram": G, "eigen": (s2, V)}
    K = centered_kernel(_raw_kernel(X), sw, fit_intercept)
    s2, U = _drop_null_directions(*np.linalg.eigh(K))
    P = U * np.sqrt(s2)
    Z = P.T @ y_tilde
    return P, Z, s2, y_tilde, q2, {"kernel": K, "eigen": (s2, U)}
