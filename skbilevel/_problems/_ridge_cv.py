"""Cross-validation objectives specialised to ridge regression.

* :class:`SpectralHoldoutObjective` - K-fold, penalty shared by all features
  of a target: exact loss and hypergradient from one eigendecomposition per
  fold (the ``direct`` method with ridge's structure).
* :class:`SpectralLOOObjective` - exact leave-one-out, same penalties.
* :class:`DirectLOOObjective` - exact leave-one-out for per-feature or grouped
  penalties, differentiating the hat-matrix diagonal in closed form.
"""

import numpy as np
import scipy.linalg

from .._cv import CVObjective, map_folds
from .._kernels import spectral_loo_loss_grad
from .._linalg import robust_cho_factor
from ._ridge import weighted_means

__all__ = ["SpectralHoldoutObjective", "SpectralLOOObjective", "DirectLOOObjective"]


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
        return float(losses.mean()), (grad if need_grad else None), losses

    def _scan(self, ts):
        split_losses = np.column_stack([fold.scan(np.exp(ts)) for fold in self.folds])
        f = split_losses.mean(axis=1)
        for t, row_f, row_split in zip(ts, f, split_losses, strict=True):
            self._log(np.full(self.n_hyper, t), row_f, row_split, None)
        return f

    def predictions(self, theta):
        """Validation predictions of every fold at ``theta``."""
        alpha = np.exp(theta)[self.target_group]
        return [fold.predict(alpha) for fold in self.folds]


class SpectralLOOObjective(CVObjective):
    """Exact leave-one-out MSE for penalties shared by all features of a target.

    Parameters
    ----------
    P, Z, s2, y_tilde, q2 : ndarrays
        As returned by :func:`~skbilevel._problems._ridge.spectral_loo`.
    sw : ndarray of shape (n_samples,)
    target_group : ndarray of shape (n_targets,)
    n_hyper : int
    verbose : int
    """

    cheap_scan = True

    def __init__(self, P, Z, s2, y_tilde, q2, sw, target_group, n_hyper, verbose=0):
        super().__init__(n_hyper, 1, verbose)
        self.P, self.Z, self.s2, self.y_tilde, self.q2 = P, Z, s2, y_tilde, q2
        self.sw = sw
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
        return f, (grad if need_grad else None), np.array([f])

    def _scan(self, ts):
        # Many strengths at once with matrix products (BLAS), target by target.
        inv = 1.0 / (self.s2[:, None] + np.exp(ts)[None, :])  # rank x n_points
        leverage = self.q2[:, None] + (self.P**2) @ inv
        den = np.maximum(1.0 - leverage, 1e-12)
        f = np.zeros(len(ts))
        for t in range(self.Z.shape[1]):
            fit = self.P @ (self.Z[:, t : t + 1] * inv)
            f += np.sum(((self.y_tilde[:, t : t + 1] - fit) / den) ** 2, axis=0)
        f *= self.scale
        for t, value in zip(ts, f, strict=True):
            self._log(np.full(self.n_hyper, t), value, np.array([value]), None)
        return f

    def loo_residuals(self, theta):
        """Leave-one-out residuals ``y_i - prediction_without_i`` (tilde units)."""
        alpha = np.exp(theta)[self.target_group]
        inv = 1.0 / (self.s2[:, None] + alpha[None, :])  # rank x n_targets
        fit = self.P @ (self.Z * inv)
        h = self.q2[:, None] + (self.P**2) @ inv
        return (self.y_tilde - fit) / np.maximum(1.0 - h, 1e-12)


class DirectLOOObjective(CVObjective):
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
        return f, grad, np.array([f])

    def loo_residuals(self, theta):
        """Leave-one-out residuals in tilde units."""
        return self._parts(theta)[4]
