"""Kernel ridge regression of one split, differentiated in its strength and widths.

The training problem is scikit-learn's :class:`~sklearn.kernel_ridge.KernelRidge`
with sample weights: the dual coefficients ``a`` minimize
``sum_i s_i (y_i - (K a)_i) ** 2 + alpha a^T K a``, that is (``D = diag(sqrt(s))``)

    a = D (D K D + alpha I)^{-1} D y,

one strength ``alpha_t`` per target column (or one for all). The kernel has
one width per feature, ``gamma_d = exp(theta_d)`` (a scalar width is the
sum over ``d`` of the per-feature derivatives):

* ``"rbf"``: ``exp(-sum_d gamma_d (x_d - z_d) ** 2)``;
* ``"laplacian"``: ``exp(-sum_d gamma_d |x_d - z_d|)``;
* ``"poly"``: ``(sum_d gamma_d x_d z_d + coef0) ** degree``;
* ``"linear"``: ``x . z`` (no width).

The validation loss is the weighted mean squared error of ``K_va a``. Its
derivative in the widths goes through the validation kernel directly and
through ``a``; with ``g`` the loss's gradient in the predictions, ``b`` the
adjoint ``D (D K D + alpha I)^{-1} D K_va^T g``, both are contractions

    dE / dtheta_d = sum_ij N_ij dK_ij / dtheta_d,
    N = g a^T (validation block),  N = -b a^T (training block),

computed for all ``d`` at once without the ``n_features`` derivative
matrices: for the RBF kernel ``dK_ij / dtheta_d = -gamma_d (x_id - z_jd)**2
K_ij``, whose contraction expands into matrix products; the Laplacian's
absolute differences are summed by a Numba kernel.

For a fixed width the folds' kernel matrices are diagonalized once
(``D K D = Q diag(lam) Q^T``), after which the loss and its derivative at any
``alpha`` cost ``O(n_val n_train)``: the strength is searched exactly, and
the width outside it (see :class:`~skbilevel._kernel_ridge.BilevelKernelRidgeCV`).
Leave-one-out has a closed form through the same diagonalization: the
residual of sample ``i`` left out is ``a_i / G_ii`` (scaled), with
``G = (D K D + alpha I)^{-1}``.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.spatial.distance

from .._kernel_kernels import absolute_difference_contraction
from .._linalg import cho_solve_vector, robust_cho_factor

__all__ = [
    "KERNELS",
    "KernelFold",
    "KernelLeaveOneOut",
    "KernelSpec",
    "NystroemFold",
    "dense_rows",
    "kernel_dual",
    "nystroem_dual",
]

KERNELS = ("rbf", "laplacian", "poly", "linear")
# Most entries of a sparse X made dense (800 MB of float64): the kernel
# matrices are dense anyway, but a wide sparse X need not fit densely.
DENSE_MAX_ENTRIES = 10**8
# Added to the landmarks' kernel matrix (whose diagonal is 1), see NystroemFold.
NYSTROEM_JITTER = 1e-8


def dense_rows(X):
    """``X`` as a C-ordered float64 array (sparse input made dense).

    Raises
    ------
    ValueError
        For a sparse ``X`` of more than ``DENSE_MAX_ENTRIES`` entries.
    """
    if sp.issparse(X):
        if X.shape[0] * X.shape[1] > DENSE_MAX_ENTRIES:
            raise ValueError(
                f"Kernel ridge computes its kernels on dense rows: a sparse X of "
                f"shape {X.shape} has more than {DENSE_MAX_ENTRIES} entries. "
                "Reduce the columns (e.g. TruncatedSVD) first."
            )
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=np.float64)


@dataclass(frozen=True)
class KernelSpec:
    """Which kernel, and the polynomial kernel's fixed parameters."""

    kernel: str = "rbf"
    degree: int = 3
    coef0: float = 1.0

    @property
    def has_widths(self):
        return self.kernel != "linear"

    @property
    def translation_invariant(self):
        return self.kernel in ("rbf", "laplacian")

    def matrix(self, X, Z, widths):
        """The kernel matrix between the rows of ``X`` and ``Z``.

        Parameters
        ----------
        X : ndarray of shape (n_x, n_features)
        Z : ndarray of shape (n_z, n_features)
        widths : ndarray of shape (n_features,)
            ``gamma_d`` (ignored by the linear kernel).

        Returns
        -------
        K : ndarray of shape (n_x, n_z)
        """
        if self.kernel == "linear":
            return X @ Z.T
        if self.kernel == "rbf":
            root = np.sqrt(widths)
            Xs, Zs = X * root, Z * root
            sq = (
                np.einsum("ij,ij->i", Xs, Xs)[:, None]
                + np.einsum("ij,ij->i", Zs, Zs)[None, :]
                - 2.0 * (Xs @ Zs.T)
            )
            # Round-off of the expansion can leave tiny negative distances.
            return np.exp(-np.maximum(sq, 0.0))
        if self.kernel == "laplacian":
            distance = scipy.spatial.distance.cdist(X * widths, Z * widths, "cityblock")
            return np.exp(-distance)
        return ((X * widths) @ Z.T + self.coef0) ** self.degree

    def width_contraction(self, N, X, Z, K, widths):
        """``sum_ij N_ij dK_ij / dlog(gamma_d)`` for every feature ``d``.

        Parameters
        ----------
        N : ndarray of shape (n_x, n_z)
        X, Z : ndarrays of shape (n_x, n_features) and (n_z, n_features)
        K : ndarray of shape (n_x, n_z)
            ``self.matrix(X, Z, widths)``.
        widths : ndarray of shape (n_features,)

        Returns
        -------
        grad : ndarray of shape (n_features,)
        """
        if self.kernel == "linear":
            return np.zeros(X.shape[1])
        if self.kernel == "rbf":
            # sum_ij M_ij (x_id - z_jd)^2 = (x_d^2) . M 1 + (z_d^2) . M^T 1
            #                               - 2 x_d . M z_d
            M = N * K
            squares = (X**2).T @ M.sum(axis=1) + (Z**2).T @ M.sum(axis=0)
            cross = np.einsum("id,id->d", X, M @ Z)
            return -widths * (squares - 2.0 * cross)
        if self.kernel == "laplacian":
            M = np.ascontiguousarray(N * K)
            spread = absolute_difference_contraction(
                M, np.ascontiguousarray(X), np.ascontiguousarray(Z)
            )
            return -widths * spread
        # poly: dK/dlog(gamma_d) = degree base^(degree - 1) gamma_d x_d z_d
        base = (X * widths) @ Z.T + self.coef0
        M = N * (self.degree * base ** (self.degree - 1))
        return widths * np.einsum("id,id->d", X, M @ Z)

    def diagonal(self, X, widths):
        """``K(x_i, x_i)`` of every row."""
        if self.kernel in ("rbf", "laplacian"):
            return np.ones(X.shape[0])
        if self.kernel == "linear":
            return np.einsum("ij,ij->i", X, X)
        return (np.einsum("ij,ij->i", X * widths, X) + self.coef0) ** self.degree


def _spectrum(matrix):
    """Eigenvalues (clipped at zero: round-off of a PSD matrix) and vectors."""
    lam, Q = np.linalg.eigh(matrix)
    return np.maximum(lam, 0.0), Q


class _Solver:
    """``(D K D + alpha_t I)^{-1}`` applied per target: by a Cholesky factor
    per distinct strength, or through a diagonalization."""

    def __init__(self, scaled, alphas, spectrum=None):
        self.alphas = alphas
        self.spectrum = spectrum
        self.factors = {}
        if spectrum is None:
            for alpha in np.unique(alphas):
                shifted = scaled.copy()
                shifted[np.diag_indices_from(shifted)] += alpha
                self.factors[float(alpha)] = robust_cho_factor(shifted)

    def solve(self, rhs):
        """``G_t rhs[:, t]`` for every target column ``t``."""
        out = np.empty_like(rhs)
        if self.spectrum is not None:
            lam, Q = self.spectrum
            projected = Q.T @ rhs
            out[:] = Q @ (projected / (lam[:, None] + self.alphas[None, :]))
            return out
        for t, alpha in enumerate(self.alphas):
            out[:, t] = cho_solve_vector(self.factors[float(alpha)], rhs[:, t])
        return out


def _holdout_path(P, z, lam, Y_val, sw_val, scale):
    """The validation loss at any strength, for a diagonalized split.

    The validation predictions at ``alpha`` are ``P (z / (lam + alpha))``
    per target column of ``z``. Returns ``path(alphas)``: the loss of every
    target at every strength, shape (m, n_targets), and its derivative in
    ``log alpha``, same shape.
    """
    weights = sw_val[:, None]

    def path(alphas):
        alphas = np.asarray(alphas, dtype=float)
        losses = np.empty((alphas.size, z.shape[1]))
        slopes = np.empty_like(losses)
        inverse = 1.0 / (lam[:, None] + alphas[None, :])
        for t in range(z.shape[1]):
            coef = z[:, t, None] * inverse
            residual = P @ coef - Y_val[:, t, None]
            change = P @ (-alphas[None, :] * coef * inverse)
            losses[:, t] = scale * np.sum(weights * residual**2, axis=0)
            slopes[:, t] = 2.0 * scale * np.sum(weights * residual * change, axis=0)
        return losses, slopes

    return path


def kernel_dual(K, root, Y, alphas, spectrum=None):
    """``(D a', a', solver)`` with ``a' = G D Y`` per target (see _Solver)."""
    scaled = None if spectrum is not None else root[:, None] * K * root[None, :]
    solver = _Solver(scaled, alphas, spectrum)
    scaled = solver.solve(root[:, None] * Y)
    return root[:, None] * scaled, scaled, solver


class KernelFold:
    """One holdout split of kernel ridge regression.

    Parameters
    ----------
    spec : KernelSpec
    X, Y, sw : training rows (n_train, n_features), targets (n_train,
        n_targets) and weights (n_train,)
    X_val, Y_val, sw_val : validation rows, targets and weights
    """

    def __init__(self, spec, X, Y, sw, X_val, Y_val, sw_val):
        self.spec = spec
        X, X_val = dense_rows(X), dense_rows(X_val)
        if spec.translation_invariant:
            # Centered rows: the expansions of squared differences lose no
            # digits to large column means (the kernel does not change).
            shift = sw @ X / sw.sum()
            X, X_val = X - shift, X_val - shift
        self.X, self.Y, self.root = X, Y, np.sqrt(sw)
        self.X_val, self.Y_val, self.sw_val = X_val, Y_val, sw_val
        self.scale = 1.0 / (sw_val.sum() * Y.shape[1])
        self._cache = None  # (widths, K, K_val, spectrum) of the last widths

    def _kernels(self, widths, spectral=False):
        cached = self._cache
        if cached is not None and np.array_equal(cached[0], widths):
            if cached[3] is not None or not spectral:
                return cached[1:]
        K = self.spec.matrix(self.X, self.X, widths)
        K_val = self.spec.matrix(self.X_val, self.X, widths)
        spectrum = None
        if spectral:
            spectrum = _spectrum(self.root[:, None] * K * self.root[None, :])
        self._cache = (widths.copy(), K, K_val, spectrum)
        return K, K_val, spectrum

    def strength_path(self, widths):
        """Losses and derivatives at many strengths, for fixed ``widths``.

        Returns
        -------
        path : callable
            ``path(alphas)`` with ``alphas`` of shape (m,) returns the loss
            of every target at every strength, shape (m, n_targets), and
            its derivative in ``log alpha``, same shape.
        """
        _, K_val, (lam, Q) = self._kernels(widths, spectral=True)
        z = Q.T @ (self.root[:, None] * self.Y)
        P = K_val @ (self.root[:, None] * Q)
        return _holdout_path(P, z, lam, self.Y_val, self.sw_val, self.scale)

    def dual(self, alphas, widths, spectral=False):
        """Dual coefficients ``a = D a'`` (n_train, n_targets), ``a' = G D y``
        and the solver of ``G``."""
        K, _, spectrum = self._kernels(widths, spectral)
        return kernel_dual(K, self.root, self.Y, alphas, spectrum)

    def predict(self, alphas, widths):
        """Validation predictions, shape (n_val, n_targets)."""
        a = self.dual(alphas, widths)[0]
        return self._kernels(widths)[1] @ a

    @property
    def basis(self):
        """The rows the dual coefficients weigh (the training rows)."""
        return self.X

    def training_predictions(self, alphas, widths):
        """Predictions on the training rows, shape (n_train, n_targets)."""
        return self._kernels(widths)[0] @ self.dual(alphas, widths)[0]

    def loss_grad(self, alphas, widths, need_grad=True, spectral=False):
        """Validation loss and its derivatives.

        Parameters
        ----------
        alphas : ndarray of shape (n_targets,)
        widths : ndarray of shape (n_features,)
        need_grad : bool
        spectral : bool
            Solve through the diagonalization (kept for the widths) instead
            of a Cholesky factor.

        Returns
        -------
        loss : float
        d_alpha : ndarray of shape (n_targets,) or None
            Derivative in ``log alpha_t``.
        d_width : ndarray of shape (n_features,) or None
            Derivative in ``log gamma_d``.
        """
        K, K_val, _ = self._kernels(widths, spectral)
        a, scaled_dual, solver = self.dual(alphas, widths, spectral)
        residual = K_val @ a - self.Y_val
        weighted = self.sw_val[:, None] * residual
        loss = self.scale * float(np.sum(weighted * residual))
        if not need_grad:
            return loss, None, None
        g = 2.0 * self.scale * weighted  # gradient in the predictions
        scaled_adjoint = solver.solve(self.root[:, None] * (K_val.T @ g))
        adjoint = self.root[:, None] * scaled_adjoint
        # d a'_t / d alpha_t = -G_t a'_t, paired with D K_val^T g.
        d_alpha = -alphas * np.sum(scaled_adjoint * scaled_dual, axis=0)
        d_width = None
        if self.spec.has_widths:
            d_width = self.spec.width_contraction(
                g @ a.T, self.X_val, self.X, K_val, widths
            ) + self.spec.width_contraction(-(adjoint @ a.T), self.X, self.X, K, widths)
        return loss, d_alpha, d_width


class KernelLeaveOneOut:
    """Exact leave-one-out of kernel ridge regression (one split, every row).

    Parameters
    ----------
    spec : KernelSpec
    X, Y, sw : all the rows, targets and weights
    """

    def __init__(self, spec, X, Y, sw):
        self.spec = spec
        X = dense_rows(X)
        if spec.translation_invariant:
            X = X - sw @ X / sw.sum()
        self.X, self.Y, self.root = X, Y, np.sqrt(sw)
        self.scale = 1.0 / (sw.sum() * Y.shape[1])
        self._cache = None

    def _kernels(self, widths):
        cached = self._cache
        if cached is not None and np.array_equal(cached[0], widths):
            return cached[1:]
        K = self.spec.matrix(self.X, self.X, widths)
        spectrum = _spectrum(self.root[:, None] * K * self.root[None, :])
        self._cache = (widths.copy(), K, spectrum)
        return K, spectrum

    def _residuals(self, lam, Q, z, alphas):
        """Left-out residuals (scaled by ``sqrt(s)``) and their derivative
        in ``log alpha``, shapes (n_samples, m), for one target's ``z``."""
        inverse = 1.0 / (lam[:, None] + alphas[None, :])
        squares = Q**2
        numerator = Q @ (z[:, None] * inverse)
        denominator = squares @ inverse
        residual = numerator / denominator
        d_num = Q @ (-alphas[None, :] * z[:, None] * inverse**2)
        d_den = squares @ (-alphas[None, :] * inverse**2)
        return residual, (d_num - residual * d_den) / denominator

    def strength_path(self, widths):
        """See :meth:`KernelFold.strength_path`."""
        _, (lam, Q) = self._kernels(widths)
        z = Q.T @ (self.root[:, None] * self.Y)

        def path(alphas):
            alphas = np.asarray(alphas, dtype=float)
            losses = np.empty((alphas.size, self.Y.shape[1]))
            slopes = np.empty_like(losses)
            for t in range(self.Y.shape[1]):
                residual, change = self._residuals(lam, Q, z[:, t], alphas)
                losses[:, t] = self.scale * np.sum(residual**2, axis=0)
                slopes[:, t] = 2.0 * self.scale * np.sum(residual * change, axis=0)
            return losses, slopes

        return path

    def residuals(self, alphas, widths):
        """Left-out residuals in the targets' units, shape (n_samples, n_targets)."""
        _, (lam, Q) = self._kernels(widths)
        z = Q.T @ (self.root[:, None] * self.Y)
        out = np.empty_like(self.Y)
        for t, alpha in enumerate(alphas):
            scaled = self._residuals(lam, Q, z[:, t], np.array([alpha]))[0][:, 0]
            out[:, t] = np.divide(
                scaled, self.root, out=np.zeros_like(scaled), where=self.root > 0
            )
        return out

    def loss_grad(self, alphas, widths, need_grad=True, spectral=True):
        """See :meth:`KernelFold.loss_grad` (always through the diagonalization)."""
        K, (lam, Q) = self._kernels(widths)
        z = Q.T @ (self.root[:, None] * self.Y)
        loss = 0.0
        d_alpha = np.zeros(len(alphas))
        N = np.zeros_like(K)
        for t, alpha in enumerate(alphas):
            residual, change = self._residuals(lam, Q, z[:, t], np.array([alpha]))
            residual, change = residual[:, 0], change[:, 0]
            loss += self.scale * float(residual @ residual)
            if not need_grad:
                continue
            d_alpha[t] = 2.0 * self.scale * float(residual @ change)
            if not self.spec.has_widths:
                continue
            # With G = (D K D + alpha I)^{-1}, a' = G D y, e_i = a'_i / G_ii:
            # de_i = -(G dK' a')_i / G_ii + a'_i (G dK' G)_ii / G_ii^2 for
            # dK' = D dK D, so dE = sum_jk dK'_jk Nbar_jk with
            # Nbar = -(G q) a'^T + G diag(h) G.
            inverse = 1.0 / (lam + alpha)
            G = (Q * inverse) @ Q.T
            dual = G @ (self.root * self.Y[:, t])
            diagonal = np.diag(G)
            weight = 2.0 * self.scale * residual
            q = weight / diagonal
            h = weight * dual / diagonal**2
            N -= np.outer(G @ q, dual)
            N += G @ (h[:, None] * G)
        if not need_grad:
            return loss, None, None
        d_width = None
        if self.spec.has_widths:
            N *= self.root[:, None] * self.root[None, :]
            d_width = self.spec.width_contraction(N, self.X, self.X, K, widths)
        return loss, d_alpha, d_width

    def dual(self, alphas, widths, spectral=True):
        """Dual coefficients of all the rows (see :meth:`KernelFold.dual`)."""
        K, spectrum = self._kernels(widths)
        return kernel_dual(K, self.root, self.Y, alphas, spectrum)


def _landmark_factor(spec, Z, widths):
    """``(K_ZZ + jitter I, L)`` with ``L`` its lower Cholesky factor."""
    K_ZZ = spec.matrix(Z, Z, widths)
    K_ZZ[np.diag_indices_from(K_ZZ)] += NYSTROEM_JITTER
    return K_ZZ, robust_cho_factor(K_ZZ)[0].T


def _whitened(K_xZ, L):
    """``K_xZ L^{-T}``: the rows' features in the landmarks' whitened
    coordinates (their Gram matrix is then PSD by construction, where
    ``L^{-1} (K_Zx S K_xZ) L^{-T}`` formed after the product is not: its
    round-off, amplified by ``L^{-1}``, gave eigenvalues of -1e-3 next to a
    strength of 1e-5)."""
    return scipy.linalg.solve_triangular(L, K_xZ.T, lower=True).T


def nystroem_dual(spec, X, Y, sw, Z, alphas, widths):
    """Landmark coefficients of the Nystroem model on all of ``X`` (see
    :class:`NystroemFold`): ``(K_Zx S K_xZ + alpha_t (K_ZZ + jitter I))^{-1}
    K_Zx S y_t`` per target, shape (n_landmarks, n_targets), solved in the
    landmarks' whitened coordinates as the splits are (the system itself
    has the condition number of ``K_ZZ`` over ``alpha``)."""
    _, L = _landmark_factor(spec, Z, widths)
    W = _whitened(spec.matrix(X, Z, widths), L)
    lam, Q = _spectrum(W.T @ (sw[:, None] * W))
    z = Q.T @ (W.T @ (sw[:, None] * Y))
    inner = Q @ (z / (lam[:, None] + np.asarray(alphas)[None, :]))
    return scipy.linalg.solve_triangular(L.T, inner, lower=False)


class NystroemFold:
    """One holdout split of kernel ridge on Nystroem landmarks.

    The model is ``f(x) = K(x, Z) b`` on ``m`` landmark rows ``Z`` (a
    random subset of the training rows), fitted by the same weighted ridge
    objective restricted to those functions:

        b = (K_Zt S K_tZ + alpha K_ZZ)^{-1} K_Zt S y,

    ``O(n m^2)`` operations instead of ``O(n^3)``; with every training row a
    landmark it is the exact kernel ridge (but for a jitter of
    ``NYSTROEM_JITTER`` on ``K_ZZ``'s diagonal). For a fixed width the strength is
    again a closed form: with ``K_ZZ = L L^T`` and ``L^{-1} K_Zt S K_tZ
    L^{-T} = Q diag(lam) Q^T``, ``b = L^{-T} Q (lam + alpha)^{-1} Q^T L^{-1}
    K_Zt S y``. The derivatives follow from ``A b = c`` with ``A`` and ``c``
    above: with the adjoint ``l = A^{-1} K_vZ^T g``, the width contractions
    are ``N_vZ = g b^T``, ``N_Zt = l (S y)^T - l (S K_tZ b)^T - b (S K_tZ
    l)^T`` and ``N_ZZ = -alpha l b^T``, and ``dE/dlog(alpha) = -alpha l^T
    K_ZZ b``.

    Parameters
    ----------
    spec : KernelSpec
    X, Y, sw, X_val, Y_val, sw_val : as :class:`KernelFold`
    landmarks : ndarray of shape (m,)
        Indices of the training rows used as landmarks.
    """

    def __init__(self, spec, X, Y, sw, X_val, Y_val, sw_val, landmarks):
        if not spec.translation_invariant:
            raise ValueError(
                f"The Nystroem approximation serves the rbf and laplacian kernels; "
                f"the {spec.kernel!r} kernel has a finite rank (expand its features "
                "and fit a linear model instead)."
            )
        self.spec = spec
        X, X_val = dense_rows(X), dense_rows(X_val)
        if spec.translation_invariant:
            shift = sw @ X / sw.sum()
            X, X_val = X - shift, X_val - shift
        self.X, self.Y, self.sw = X, Y, sw
        self.Z = np.ascontiguousarray(X[np.sort(landmarks)])
        self.X_val, self.Y_val, self.sw_val = X_val, Y_val, sw_val
        self.scale = 1.0 / (sw_val.sum() * Y.shape[1])
        self._cache = None

    @property
    def basis(self):
        return self.Z

    def _kernels(self, widths):
        """``(K_tZ, K_ZZ, K_vZ, L, Q, lam)`` at ``widths`` (the last kept)."""
        cached = self._cache
        if cached is not None and np.array_equal(cached[0], widths):
            return cached[1]
        K_tZ = self.spec.matrix(self.X, self.Z, widths)
        # Landmarks close together in a wide kernel's units make K_ZZ
        # singular to round-off: a constant jitter (the kernel's diagonal is
        # 1, so NYSTROEM_JITTER of it) keeps it factorizable, and the model
        # smooth in the widths (robust_cho_factor grows it only if needed).
        K_ZZ, L = _landmark_factor(self.spec, self.Z, widths)
        K_vZ = self.spec.matrix(self.X_val, self.Z, widths)
        W = _whitened(K_tZ, L)
        weighted = self.sw[:, None] * K_tZ
        lam, Q = _spectrum(W.T @ (self.sw[:, None] * W))
        state = (K_tZ, K_ZZ, K_vZ, L, Q, lam, weighted)
        self._cache = (widths.copy(), state)
        return state

    def _coefficients(self, state, alphas, rhs):
        """``A_t^{-1} rhs[:, t]`` per target, through the diagonalization."""
        _, _, _, L, Q, lam, _ = state
        inner = Q.T @ scipy.linalg.solve_triangular(L, rhs, lower=True)
        inner = Q @ (inner / (lam[:, None] + alphas[None, :]))
        return scipy.linalg.solve_triangular(L.T, inner, lower=False)

    def dual(self, alphas, widths, spectral=True):
        """Landmark coefficients ``b`` (m, n_targets)."""
        state = self._kernels(widths)
        c = state[6].T @ self.Y  # K_Zt S y
        return (self._coefficients(state, alphas, c),)

    def predict(self, alphas, widths):
        return self._kernels(widths)[2] @ self.dual(alphas, widths)[0]

    def training_predictions(self, alphas, widths):
        return self._kernels(widths)[0] @ self.dual(alphas, widths)[0]

    def strength_path(self, widths):
        """See :meth:`KernelFold.strength_path`."""
        state = self._kernels(widths)
        _, _, K_vZ, L, Q, lam, weighted = state
        z = Q.T @ scipy.linalg.solve_triangular(L, weighted.T @ self.Y, lower=True)
        P = K_vZ @ scipy.linalg.solve_triangular(L.T, Q, lower=False)
        return _holdout_path(P, z, lam, self.Y_val, self.sw_val, self.scale)

    def loss_grad(self, alphas, widths, need_grad=True, spectral=True):
        """See :meth:`KernelFold.loss_grad`."""
        state = self._kernels(widths)
        K_tZ, K_ZZ, K_vZ, _, _, _, weighted = state
        b = self._coefficients(state, alphas, weighted.T @ self.Y)
        residual = K_vZ @ b - self.Y_val
        sw_residual = self.sw_val[:, None] * residual
        loss = self.scale * float(np.sum(sw_residual * residual))
        if not need_grad:
            return loss, None, None
        g = 2.0 * self.scale * sw_residual
        adjoint = self._coefficients(state, alphas, K_vZ.T @ g)
        d_alpha = -alphas * np.sum(adjoint * (K_ZZ @ b), axis=0)
        d_width = None
        if self.spec.has_widths:
            fitted, fitted_adjoint = K_tZ @ b, K_tZ @ adjoint
            s = self.sw[:, None]
            N_Zt = adjoint @ (s * self.Y).T - adjoint @ (s * fitted).T
            N_Zt -= b @ (s * fitted_adjoint).T
            alpha_adjoint = adjoint * alphas[None, :]
            d_width = (
                self.spec.width_contraction(g @ b.T, self.X_val, self.Z, K_vZ, widths)
                + self.spec.width_contraction(N_Zt, self.Z, self.X, K_tZ.T, widths)
                - self.spec.width_contraction(
                    alpha_adjoint @ b.T, self.Z, self.Z, K_ZZ, widths
                )
            )
        return loss, d_alpha, d_width
