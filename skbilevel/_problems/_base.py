"""The inner-problem protocol that every hypergradient method is written against."""

import numpy as np

from .._linalg import conjugate_gradient

__all__ = ["InnerProblem", "penalty_weights"]


def penalty_weights(theta, group_idx):
    """Map log-hyperparameters to the per-coefficient L2 weights.

    Parameters
    ----------
    theta : ndarray of shape (n_hyper,)
        Log-regularization strengths, one per hyperparameter group.
    group_idx : ndarray of shape (n_params, n_outputs), dtype int64
        Hyperparameter group of every coefficient; -1 marks an unpenalized
        one (an intercept).

    Returns
    -------
    weights : ndarray of shape (n_params, n_outputs)
        ``exp(theta)[group_idx]``, and 0 where ``group_idx`` is -1.
    """
    weights = np.exp(theta)[group_idx]
    if group_idx.size and group_idx.min() < 0:
        weights[group_idx < 0] = 0.0
    return weights


class InnerProblem:
    """A training problem ``w(theta) = argmin_w L(w, theta)`` and its validation loss.

    Coefficients ``w`` are arrays of shape (n_features, n_targets) and the
    penalty is ``0.5 * sum(exp(theta)[group_idx] * w ** 2)``. Subclasses
    implement the data-fit part; the penalty's contribution to the
    cross-derivative is shared here because it is the same for every model:
    ``d/dtheta_g (dL/dw) = exp(theta_g) * w`` on the coefficients of group g.

    The validation loss ``E(w)`` does not depend on ``theta`` directly, so the
    hypergradient is ``-cross(w, theta, v)`` with ``H v = grad E``.
    """

    group_idx = None  # ndarray of shape (n_features, n_targets)
    n_hyper = 0

    def value(self, w, theta):
        """Training objective ``L(w, theta)``."""
        raise NotImplementedError

    def gradient(self, w, theta):
        """``dL/dw`` at ``w``, shape (n_features, n_targets)."""
        raise NotImplementedError

    def hvp(self, w, theta, v):
        """Hessian-vector product ``d2L/dw2 @ v``."""
        raise NotImplementedError

    def hessian_diagonal(self, w, theta):
        """Diagonal of the Hessian (a preconditioner), or None if unavailable."""
        return None

    def cg_solve(self, w, theta, rhs, x0=None, tol=1e-10, max_iter=1000, settle=0.0):
        """``(d2L/dw2) x = rhs`` by conjugate gradients, Jacobi-preconditioned
        where :meth:`hessian_diagonal` is known; returns
        :func:`~skbilevel._linalg.conjugate_gradient`'s ``(x, n_products,
        converged)`` (``settle``: a Newton step's early end, see there).
        Problems may run it in a compiled loop instead."""
        return conjugate_gradient(
            lambda v: self.hvp(w, theta, v),
            rhs,
            x0=x0,
            tol=tol,
            max_iter=max_iter,
            diagonal=self.hessian_diagonal(w, theta),
            settle=settle,
        )

    def hessian_solve(self, w, theta, rhs):
        """``(d2L/dw2)^{-1} @ rhs`` by a factorization (or NotImplementedError)."""
        raise NotImplementedError

    def lipschitz(self, w, theta):
        """An upper estimate of the largest eigenvalue of the Hessian."""
        raise NotImplementedError

    def solve(
        self,
        theta,
        w0=None,
        tol=1e-10,
        method="direct",
        max_iter=1000,
        for_adjoint=True,
    ):
        """Minimize ``L(., theta)``, warm-started from ``w0``.

        ``for_adjoint=False`` says that only the validation loss will be
        computed at the solution (no hypergradient), which some solvers use
        to skip work the adjoint would need.

        Returns
        -------
        w : ndarray of shape (n_features, n_targets)
        converged : bool
        """
        raise NotImplementedError

    def outer_loss_grad(self, w):
        """Validation loss ``E(w)`` and its gradient in ``w``: a weighted mean
        over the validation rows, with the weights ``sw_val``."""
        raise NotImplementedError

    def row_losses(self, w, rows):
        """Unweighted validation loss of each of the validation rows ``rows``
        (the early-stopping guard's paired comparisons)."""
        raise NotImplementedError

    def coefficients(self, w):
        """``(coef, intercept)`` of ``w`` in the original coordinates: shapes
        (n_features, n_outputs) and (n_outputs,) (scoring, warm starts)."""
        raise NotImplementedError

    # Whether hessian_solve and solve(method="direct") fit in memory.
    can_factorize = False

    def cross(self, w, theta, v):
        """``(d2L / dw dtheta)^T v``: one number per hyperparameter group.

        Parameters
        ----------
        w, v : ndarray of shape (n_features, n_targets)
        theta : ndarray of shape (n_hyper,)

        Returns
        -------
        out : ndarray of shape (n_hyper,)
        """
        penalized = self.group_idx >= 0
        return np.bincount(
            self.group_idx[penalized],
            weights=(self.cross_entries(w, theta) * v)[penalized],
            minlength=self.n_hyper,
        )

    def cross_entries(self, w, theta):
        """``exp(theta_g) * w`` on the coefficients of group g, 0 on
        unpenalized ones: the nonzero entries of ``d2L / dw dtheta``, each
        coefficient's in its group's column (with one hyperparameter, that
        column itself, shape of ``w``)."""
        weights = penalty_weights(theta, self.group_idx)
        return np.where(self.group_idx >= 0, weights * w, 0.0)
