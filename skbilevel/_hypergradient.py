"""Hypergradients by implicit or iterative differentiation, written once.

Every method works on any :class:`~skbilevel._problems.InnerProblem`. For a
fold with inner solution ``w`` and validation gradient ``g = dE/dw``:

* ``direct``: solve ``H v = g`` with a factorization of the Hessian ``H``;
* ``cg``: conjugate gradient on ``H v = g`` (AID-CG), warm-started and
  Jacobi-preconditioned when the problem knows its Hessian's diagonal;
* ``fixed_point``: ``v <- v - eta (H v - g)`` with ``eta = 1 / L`` (AID-FP),
  warm-started, run to tolerance;
* ``neumann``: the same series started from zero and truncated after
  ``max_iter`` terms, ``v = eta * sum_k (I - eta H)^k g``;
* ``itd``: reverse-mode differentiation through ``max_iter`` steps of
  gradient descent on the training loss, started at ``w``;
* ``implicit_forward`` (problems with ``forward_hypergradient``, the
  Lasso's): the Jacobian ``dw/dtheta`` iterated on the support by
  Gauss-Seidel sweeps, forward mode (one column per hyperparameter met).

With one hyperparameter, ``direct`` and ``cg`` may run in forward mode
instead (``tangent=True``): ``H u = -d2L/dw dtheta`` gives the solution's
derivative ``u = dw/dtheta`` and the hypergradient ``g . u``, at the cost of
the adjoint's one solve. The tangent predicts the solution at the next
``theta`` (a warm start closer by an order of the step).

The hypergradient is then ``-(d2L/dw dtheta)^T v`` (validation losses here do
not depend on ``theta`` directly).
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["HYPERGRADIENT_METHODS", "FoldState", "fold_value_and_grad"]

# Iteration cap of the inner solves of fold_value_and_grad.
INNER_MAX_ITER = 1000

HYPERGRADIENT_METHODS = ("direct", "cg", "fixed_point", "neumann", "itd")


@dataclass
class FoldState:
    """Warm-start memory of one fold across outer iterations."""

    w: np.ndarray = None
    v: np.ndarray = None
    # dw/dtheta at w (forward mode), and a predicted solution at the next
    # theta, tried as the warm start when it is given.
    tangent: np.ndarray = None
    guess: np.ndarray = None
    failures: list = field(default_factory=list)


def _warm_start(problem, theta, state):
    """``state.w``, or ``state.guess`` where its training objective is
    lower (a prediction along the last tangent: closer unless the step was
    long for the path's curvature); the guess is used once."""
    guess, state.guess = state.guess, None
    if guess is None or state.w is None:
        return state.w
    # The guess is evaluated last: the solver's first pass finds it cached.
    kept = problem.value(state.w, theta)
    return guess if problem.value(guess, theta) <= kept else state.w


def _tangent(problem, theta, w, state, method, tol, max_iter):
    """``dw/dtheta`` for one hyperparameter: ``H u = -d2L/dw dtheta``."""
    rhs = -problem.cross_entries(w, theta)
    if method == "direct":
        return problem.hessian_solve(w, theta, rhs)
    return _cg_solve(problem, theta, w, rhs, state.tangent, state, tol, max_iter)


def _cg_solve(problem, theta, w, rhs, x0, state, tol, max_iter):
    """``H x = rhs`` by conjugate gradients, warm-started at ``x0`` and
    Jacobi-preconditioned; stopping short is recorded as an adjoint failure."""
    x, _, converged = problem.cg_solve(w, theta, rhs, x0=x0, tol=tol, max_iter=max_iter)
    if not converged:
        state.failures.append("adjoint")
    return x


def _adjoint_fixed_point(problem, theta, w, g, v0, tol, max_iter):
    eta = 1.0 / problem.lipschitz(w, theta)
    v = np.zeros_like(g) if v0 is None else v0.copy()
    g_norm = np.linalg.norm(g)
    if g_norm == 0.0:
        return np.zeros_like(g), 0, True
    for it in range(max_iter):
        residual = problem.hvp(w, theta, v) - g
        if np.linalg.norm(residual) <= tol * g_norm:
            return v, it + 1, True
        v -= eta * residual
    return v, max_iter, False


def _adjoint_neumann(problem, theta, w, g, n_terms):
    eta = 1.0 / problem.lipschitz(w, theta)
    term = eta * g
    v = term.copy()
    for _ in range(n_terms - 1):
        term = term - eta * problem.hvp(w, theta, term)
        v += term
    return v


def _itd(problem, theta, w0, n_steps):
    """Unroll ``n_steps`` of gradient descent from ``w0`` and differentiate back.

    Returns the last iterate, its validation loss and the hypergradient of
    that loss through the unrolled map (``w0`` is treated as a constant).
    """
    eta = 1.0 / problem.lipschitz(w0, theta)
    iterates = [w0]
    w = w0
    for _ in range(n_steps):
        w = w - eta * problem.gradient(w, theta)
        iterates.append(w)
    loss, p = problem.outer_loss_grad(w)
    grad = np.zeros(problem.n_hyper)
    for w_t in reversed(iterates[:-1]):
        # Step map phi(w, theta) = w - eta * dL/dw: its theta-Jacobian is
        # -eta * d2L/dw dtheta, its w-Jacobian I - eta * H (symmetric).
        grad -= eta * problem.cross(w_t, theta, p)
        p = p - eta * problem.hvp(w_t, theta, p)
    return w, loss, grad


def fold_value_and_grad(
    problem,
    theta,
    state,
    *,
    method="direct",
    need_grad=True,
    inner_tol=1e-10,
    adjoint_tol=1e-10,
    adjoint_max_iter=1000,
    inner_max_iter=INNER_MAX_ITER,
    tangent=False,
):
    """Validation loss of one fold at ``theta`` and, optionally, its hypergradient.

    Parameters
    ----------
    problem : InnerProblem
    theta : ndarray of shape (n_hyper,)
    state : FoldState
        Warm starts; updated in place.
    method : {"direct", "cg", "fixed_point", "neumann", "itd", "implicit_forward"}
    need_grad : bool, default=True
    inner_tol, adjoint_tol : float
        Relative residual tolerances of the iterative inner and adjoint solves.
    adjoint_max_iter : int
        Iteration cap of cg / fixed_point; number of terms of neumann and of
        unrolled steps of itd.
    inner_max_iter : int
    tangent : bool, default=False
        With one hyperparameter and ``method`` "direct" or "cg", compute the
        hypergradient in forward mode and keep ``dw/dtheta`` in
        ``state.tangent`` (see the module's docstring).

    Returns
    -------
    loss : float
    grad : ndarray of shape (n_hyper,) or None
    w : ndarray of shape (n_features, n_targets)
        The inner solution the loss was computed at.
    """
    inner_method = "direct" if method == "direct" else "cg"
    w, converged = problem.solve(
        theta,
        _warm_start(problem, theta, state),
        tol=inner_tol,
        method=inner_method,
        max_iter=inner_max_iter,
        for_adjoint=need_grad,
    )
    if not converged:
        state.failures.append("inner")
    state.w = w
    if method == "itd" and need_grad:
        w_last, loss, grad = _itd(problem, theta, w, adjoint_max_iter)
        return loss, grad, w_last
    loss, g = problem.outer_loss_grad(w)
    if not need_grad:
        return loss, None, w
    if tangent and problem.n_hyper == 1 and method in ("direct", "cg"):
        u = _tangent(problem, theta, w, state, method, adjoint_tol, adjoint_max_iter)
        state.tangent = u
        return loss, np.array([float(np.vdot(g, u))]), w
    if method == "direct":
        v = problem.hessian_solve(w, theta, g)
    elif method == "cg":
        v = _cg_solve(
            problem, theta, w, g, state.v, state, adjoint_tol, adjoint_max_iter
        )
    elif method == "fixed_point":
        v, _, ok = _adjoint_fixed_point(
            problem, theta, w, g, state.v, adjoint_tol, adjoint_max_iter
        )
        if not ok:
            state.failures.append("adjoint")
    elif method == "neumann":
        v = _adjoint_neumann(problem, theta, w, g, adjoint_max_iter)
    elif method == "implicit_forward":
        grad, state.v, ok = problem.forward_hypergradient(
            w, theta, g, state.v, adjoint_tol, adjoint_max_iter
        )
        if not ok:
            state.failures.append("adjoint")
        return loss, grad, w
    else:
        raise ValueError(f"Unknown hypergradient method {method!r}.")
    state.v = v
    return loss, -problem.cross(w, theta, v), w
