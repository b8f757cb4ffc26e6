"""Weighted ridge regression as an inner problem, and its stochastic data term.

The training problem of one fold is

    L(w, theta) = 0.5 * ||sqrt(sw) * (Y - X w - b)||^2 + 0.5 * sum(p * w ** 2)

with ``p = exp(theta)[group_idx]`` and an unpenalized intercept ``b``. The
intercept is eliminated by centering X and Y with their weighted means, so
``w`` holds only penalized coefficients. Centering of sparse X is implicit.

:class:`RidgeProblem` implements the generic protocol (any penalty
grouping, every hypergradient method) on a Gram matrix when it is small, or
on the design matrix itself (Numba kernels, dense or CSR) otherwise;
:class:`SquaredFit` is the same data term for the stochastic mode. The
closed forms for a penalty shared by all features of a target (one
eigendecomposition per fold, exact leave-one-out) are in
:mod:`._ridge_spectral`.
"""

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._linalg import conjugate_gradient, power_iteration, robust_cho_factor
from .._ridge_kernels import (
    csr_centered_gram_matvec,
    dense_centered_gram_matvec,
    dense_centered_squares,
    dense_chunked_summary,
)
from .._rows import map_row_blocks
from .._validation import as_float_c, as_index_c
from ._base import InnerProblem, penalty_weights

__all__ = [
    "CenteredSquaredValidation",
    "DENSE_MAX_ENTRIES",
    "GRAM_MAX_DIM",
    "RidgeProblem",
    "SquaredFit",
    "can_factorize",
    "centered_gram",
    "centered_sum_of_squares",
    "drop_null_directions",
    "weighted_means",
]

# Largest side of a Gram/kernel matrix we form and factorize (8000**2 doubles
# = 512 MB). Past that, only the iterative (CG) path is used.
GRAM_MAX_DIM = 8000
# Largest sparse matrix we densify for a factorization (200 MB of doubles).
DENSE_MAX_ENTRIES = 25_000_000
# Rows per chunk of the passes that must not copy X.
_CHUNK = 8192


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


def centered_gram(X, sw, xbar):
    """Centered, weighted Gram matrix ``(X - xbar)^T diag(sw) (X - xbar)``.

    Dense X is read in chunks of rows (no weighted copy is formed); sparse X
    stays sparse until the d x d product.
    """
    if sp.issparse(X):
        G = (X.T @ X.multiply(sw[:, None]).tocsr()).toarray()
    else:
        G = np.zeros((X.shape[1], X.shape[1]))
        for start in range(0, X.shape[0], _CHUNK):
            block = X[start : start + _CHUNK]
            G += block.T @ (block * sw[start : start + _CHUNK, None])
    G -= sw.sum() * np.outer(xbar, xbar)
    return G


def column_moments(X, sw):
    """Weighted column means and centered sums of squares of ``X``, in two
    passes (the means, then the squares about them); dense C-contiguous
    float64 ``X`` takes :func:`dense_column_summary`'s one.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    sw : ndarray of shape (n_samples,)
        Sample weights, with a positive sum.

    Returns
    -------
    mean : ndarray of shape (n_features,)
    squares : ndarray of shape (n_features,)
        ``sum_i sw_i (X[i] - mean) ** 2`` per column.
    """
    mean = np.asarray(X.T @ sw).ravel() / sw.sum()
    return mean, centered_sum_of_squares(X, sw, mean)


def dense_column_summary(X, sw):
    """:func:`column_moments` of dense C-contiguous float64 ``X`` and its
    largest absolute entry, ``(mean, squares, largest)``, in one pass over
    it; or None: for other layouts, and where an entry is NaN or infinite
    (or the sums overflow), which the pass detects.

    Cache-sized chunks of rows, merged pairwise
    (:func:`~skbilevel._ridge_kernels.dense_chunked_summary`): 400000 x 200
    in 0.03 s on 2 cores, against 0.09 s for the three passes, and 0.036 s
    for scikit-learn's check of finite entries alone, which the estimators
    leave to this pass.
    """
    if (
        sp.issparse(X)
        or X.dtype != np.float64
        or not X.flags.c_contiguous
        # Read-only arrays (memory maps) would compile the kernel once more.
        or not X.flags.writeable
        or X.size == 0
    ):
        return None
    sw = as_float_c(sw)
    blocks = map_row_blocks(
        lambda start, stop: dense_chunked_summary(X, sw, start, stop),
        X.shape[0],
        row_work=2 * X.shape[1],
    )
    total, mean, squares, largest = blocks[0]
    for weight, block_mean, block_squares, block_largest in blocks[1:]:
        largest = np.maximum(largest, block_largest)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN is the answer
            if not weight > 0.0:
                mean = mean + 0.0 * block_mean  # a non-finite entry stays seen
                continue
            share = weight / (total + weight)
            delta = block_mean - mean
            squares = squares + block_squares + delta * delta * total * share
            mean = mean + delta * share
        total += weight
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(squares))):
        return None
    return mean, squares, float(largest.max())


def centered_sum_of_squares(X, sw, xbar):
    """Diagonal of :func:`centered_gram` without forming it (nor a copy of X)."""
    if sp.issparse(X):
        return np.asarray(X.multiply(X).T @ sw).ravel() - sw.sum() * xbar**2
    # Centered before squaring (a second pass after the means), so that
    # constant columns give (nearly) exact zeros.
    if X.dtype == np.float64 and X.flags.c_contiguous and X.flags.writeable:
        # One Numba pass in row blocks: 400000 x 200 in 0.016 s on 2 cores,
        # against 0.145 s for the NumPy chunks below (a centered copy of each
        # chunk and its square). Read-only arrays (memory maps) would compile
        # the kernel once more: they take the chunks.
        sw, xbar = as_float_c(sw), as_float_c(xbar)
        blocks = map_row_blocks(
            lambda start, stop: dense_centered_squares(X, sw, xbar, start, stop),
            X.shape[0],
            row_work=X.shape[1],
        )
        return np.sum(blocks, axis=0)
    # Other layouts (a DataFrame's Fortran-ordered values) are not copied.
    out = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _CHUNK):
        block = X[start : start + _CHUNK] - xbar
        out += sw[start : start + _CHUNK] @ (block * block)
    return out


def _csr_arrays(X):
    return as_float_c(X.data), as_index_c(X.indices), as_index_c(X.indptr)


def drop_null_directions(s2, vectors, from_singular_values=False):
    """Keep the eigenpairs of a PSD matrix that are not round-off zeros.

    Eigenvalues of a Gram matrix are known to ``eps`` times the largest; when
    they are squared singular values of the rows, the singular values are
    (``from_singular_values``), so the threshold applies before squaring.
    """
    s2 = np.maximum(s2, 0.0)
    tolerance = max(vectors.shape) * np.finfo(np.float64).eps
    if from_singular_values:
        tolerance = tolerance**2
    keep = s2 > s2.max(initial=0.0) * tolerance
    return s2[keep], np.ascontiguousarray(vectors[:, keep])


class CenteredSquaredValidation:
    """Validation side of the squared-error models fit on centered data.

    Needs ``xbar``, ``ybar`` (the training fold's weighted means, zeros
    without an intercept), ``X_val``, ``Y_val``, ``sw_val`` and ``n_targets``.
    The model predicts ``(X - xbar) w + ybar``.
    """

    def intercept(self, w):
        """Unpenalized intercept that goes with coefficients ``w``."""
        return self.ybar - self.xbar @ w

    def coefficients(self, w):
        """``(coef, intercept)`` in the original (uncentered) coordinates."""
        return w, self.intercept(w)

    def row_losses(self, w, rows):
        """Squared error of validation rows ``rows`` (mean over targets)."""
        residual = (
            np.asarray(self.X_val[rows] @ w)
            - self.xbar @ w
            + self.ybar
            - self.Y_val[rows]
        )
        return np.mean(residual**2, axis=1)

    def outer_loss_grad(self, w):
        """Weighted validation MSE (averaged over targets) and its gradient in w."""
        sw_val = self.sw_val  # the early-stopping guard may zero some rows
        scale = 2.0 / (sw_val.sum() * self.n_targets)
        residual = np.asarray(self.X_val @ w) - self.xbar @ w + self.ybar - self.Y_val
        weighted = sw_val[:, None] * residual
        loss = 0.5 * scale * float(np.sum(weighted * residual))
        grad = scale * (
            np.asarray(self.X_val.T @ weighted) - np.outer(self.xbar, weighted.sum(0))
        )
        return loss, grad


class RidgeProblem(CenteredSquaredValidation, InnerProblem):
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
            self._gram = centered_gram(self.X, self.sw, self.xbar)
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
            self._gram_diagonal = (
                np.diag(self.gram()).copy()
                if self.use_gram
                else centered_sum_of_squares(self.X, self.sw, self.xbar)
            )
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


class SquaredFit:
    """Squared-error data term of the stochastic mode (rows read by index).

    ``0.5 * sw * ||y - z||^2`` with ``Y`` of shape (n, n_targets); the
    intercept is the training mean of the targets (rows are centered).
    """

    curvature = 1.0
    learns_intercept = False

    def __init__(self, Y, sw):
        self.Y, self.sw = Y, sw
        self.n_out = Y.shape[1]
        # The validation loss is the mean squared error over targets.
        self.val_factor = 2.0 / self.n_out

    def residual(self, Z, rows):
        weights = self.sw[rows][:, None]
        r = Z - self.Y[rows]
        return 0.5 * float(np.sum(weights * r * r)), weights * r, None

    def curvature_product(self, state, rows, Zv):
        return self.sw[rows][:, None] * Zv

    def curvature_weights(self, state, rows):
        return np.repeat(self.sw[rows][:, None], self.n_out, axis=1)
