"""Shared test data builders."""

import numpy as np
import scipy.sparse as sp


def make_data(
    n_samples=40,
    n_features=6,
    n_targets=1,
    sparse=False,
    weights=False,
    seed=0,
    scales=None,
):
    """A small regression problem; sparse matrices keep about half the entries."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features)
    if scales is not None:
        X *= scales
    if sparse:
        X[rng.rand(*X.shape) < 0.5] = 0.0
    coef = rng.randn(n_features, n_targets)
    Y = X @ coef + 0.5 * rng.randn(n_samples, n_targets) + 3.0
    sw = rng.uniform(0.2, 2.0, n_samples) if weights else np.ones(n_samples)
    if sparse:
        X = sp.csr_matrix(X)
    return X, Y, sw


def penalty_array(kind, n_features):
    """Penalty argument for a kind name; groups are explicit ids."""
    if kind == "groups":
        return np.array([f"g{j % 3}" for j in range(n_features)])
    return kind


def central_difference(fun, theta, h=1e-5):
    """Central finite differences of a scalar function of a vector."""
    grad = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        grad[i] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return grad


def relative_error(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b)
