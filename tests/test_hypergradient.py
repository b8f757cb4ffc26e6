"""Every hypergradient path against central finite differences of the CV loss.

Bounds: ``direct``, ``cg``, ``fixed_point`` and the closed-form (spectral,
leave-one-out) paths solve the adjoint to 1e-10 and must agree to 1e-5.
``neumann`` and ``itd`` are truncated after ``adjoint_max_iter`` terms/steps;
their error decays like ``(1 - mu / L) ** K``. With K=400 on these
well-conditioned problems we document and test a 1e-4 bound.
"""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from skbilevel._objectives import FoldsObjective
from skbilevel._problems import RidgeProblem
from skbilevel._problems._ridge_spectral import (
    DirectLOOObjective,
    SpectralHoldoutObjective,
    SpectralLOOObjective,
    spectral_holdout_folds,
    spectral_loo,
)
from skbilevel._validation import check_penalty

from ._helpers import central_difference, make_data, penalty_array, relative_error

BOUNDS = {"direct": 1e-5, "cg": 1e-5, "fixed_point": 1e-5, "neumann": 1e-4, "itd": 1e-4}
PENALTIES = ["scalar", "per_feature", "per_target", "groups"]


def _theta(n_hyper, seed=1):
    # Strengths of the order of the Gram eigenvalues, spread out so that the
    # hypergradient is far from zero.
    rng = np.random.RandomState(seed)
    return np.log(10.0) * (1.2 + 0.5 * rng.randn(n_hyper))


def _folds_objective(X, Y, sw, penalty, fit_intercept, method):
    group_idx, n_hyper, _ = check_penalty(
        penalty_array(penalty, X.shape[1]), X.shape[1], Y.shape[1], "per_target"
    )
    folds = list(KFold(4).split(X))
    problems = [
        RidgeProblem(
            X[tr],
            Y[tr],
            sw[tr],
            group_idx,
            n_hyper,
            fit_intercept,
            X_val=X[te],
            Y_val=Y[te],
            sw_val=sw[te],
        )
        for tr, te in folds
    ]
    return FoldsObjective(problems, method, adjoint_max_iter=400), n_hyper, folds


@pytest.mark.parametrize("method", list(BOUNDS))
@pytest.mark.parametrize("penalty", PENALTIES)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_generic_hypergradient_matches_finite_differences(
    method, penalty, sparse, fit_intercept, weights
):
    X, Y, sw = make_data(n_targets=2, sparse=sparse, weights=weights)
    objective, n_hyper, _ = _folds_objective(X, Y, sw, penalty, fit_intercept, method)
    objective.tol = 1e-12
    exact, _, _ = _folds_objective(X, Y, sw, penalty, fit_intercept, "direct")
    theta = _theta(n_hyper)
    f, grad = objective(theta)
    fd = central_difference(lambda t: exact(t, need_grad=False)[0], theta)
    assert relative_error(grad, fd) <= BOUNDS[method]
    if method != "itd":  # itd reports the loss at its last unrolled iterate
        assert f == pytest.approx(exact(theta, need_grad=False)[0], rel=1e-8)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_cv_loss_matches_sklearn_ridge(fit_intercept, weights, sparse):
    # The objective itself, computed independently with scikit-learn's Ridge.
    X, Y, sw = make_data(sparse=sparse, weights=weights)
    objective, _, folds = _folds_objective(X, Y, sw, "scalar", fit_intercept, "direct")
    alpha = 7.0
    expected = []
    Xd = X.toarray() if sparse else X
    for tr, te in folds:
        model = Ridge(
            alpha=alpha, fit_intercept=fit_intercept, solver="cholesky", tol=1e-12
        ).fit(Xd[tr], Y[tr], sample_weight=sw[tr])
        resid = model.predict(Xd[te]).reshape(Y[te].shape) - Y[te]
        expected.append(np.sum(sw[te][:, None] * resid**2) / sw[te].sum())
    f, _ = objective(np.array([np.log(alpha)]))
    assert f == pytest.approx(np.mean(expected), rel=1e-8)


@pytest.mark.parametrize("penalty", ["scalar", "per_target"])
@pytest.mark.parametrize(
    "mode,n_samples,n_features", [("primal", 40, 6), ("dual", 20, 30)]
)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_spectral_holdout_matches_generic_and_finite_differences(
    penalty, mode, n_samples, n_features, sparse, fit_intercept, weights
):
    X, Y, sw = make_data(
        n_samples, n_features, n_targets=2, sparse=sparse, weights=weights
    )
    generic, n_hyper, folds = _folds_objective(
        X, Y, sw, penalty, fit_intercept, "direct"
    )
    spectral_folds, _ = spectral_holdout_folds(X, Y, sw, folds, fit_intercept, mode)
    group_idx, _, _ = check_penalty(penalty, n_features, 2, "per_target")
    spectral = SpectralHoldoutObjective(spectral_folds, group_idx[0], n_hyper)
    theta = _theta(n_hyper)
    f, grad = spectral(theta)
    f_ref, _ = generic(theta)
    assert f == pytest.approx(f_ref, rel=1e-8)
    fd = central_difference(lambda t: spectral(t, need_grad=False)[0], theta)
    assert relative_error(grad, fd) <= 1e-5
    # The vectorized scan agrees with single evaluations.
    ts = np.array([theta[0] - 1.0, theta[0] + 2.0])
    assert np.allclose(
        spectral.common_scan(ts), [spectral.common(t, False)[0] for t in ts], rtol=1e-10
    )


def _brute_force_loo(X, Y, sw, alpha_per_feature, fit_intercept):
    """Leave-one-out MSE by refitting without each sample (independent code)."""
    n = X.shape[0]
    X = X.toarray() if hasattr(X, "toarray") else X
    errors = []
    for i in range(n):
        keep = np.arange(n) != i
        Xk, Yk, swk = X[keep], Y[keep], sw[keep]
        if fit_intercept:
            xm = swk @ Xk / swk.sum()
            ym = swk @ Yk / swk.sum()
        else:
            xm, ym = np.zeros(X.shape[1]), np.zeros(Y.shape[1])
        Xc = Xk - xm
        A = Xc.T @ (swk[:, None] * Xc) + np.diag(alpha_per_feature)
        w = np.linalg.solve(A, Xc.T @ (swk[:, None] * (Yk - ym)))
        pred = (X[i] - xm) @ w + ym
        errors.append(sw[i] * np.sum((pred - Y[i]) ** 2))
    return np.sum(errors) / (sw.sum() * Y.shape[1])


@pytest.mark.parametrize(
    "mode,n_samples,n_features", [("primal", 30, 5), ("dual", 15, 25)]
)
@pytest.mark.parametrize("penalty", ["scalar", "per_target"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_spectral_loo(
    mode, n_samples, n_features, penalty, fit_intercept, weights, sparse
):
    X, Y, sw = make_data(
        n_samples, n_features, n_targets=2, weights=weights, sparse=sparse
    )
    group_idx, n_hyper, _ = check_penalty(penalty, n_features, 2, "per_target")
    P, Z, s2, y_tilde, q2, _ = spectral_loo(X, Y, sw, fit_intercept, mode)
    objective = SpectralLOOObjective(
        P, Z, s2, y_tilde, q2, Y, sw, group_idx[0], n_hyper
    )
    theta = _theta(n_hyper)
    f, grad = objective(theta)
    if penalty == "scalar":
        expected = _brute_force_loo(
            X, Y, sw, np.full(n_features, np.exp(theta[0])), fit_intercept
        )
        assert f == pytest.approx(expected, rel=1e-8)
    fd = central_difference(lambda t: objective(t, need_grad=False)[0], theta)
    assert relative_error(grad, fd) <= 1e-5


@pytest.mark.parametrize("n_samples,n_features", [(30, 5), (15, 25)])
@pytest.mark.parametrize("penalty", ["per_feature", "groups"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_direct_loo(n_samples, n_features, penalty, fit_intercept, weights):
    X, Y, sw = make_data(n_samples, n_features, n_targets=2, weights=weights)
    group_idx, n_hyper, _ = check_penalty(
        penalty_array(penalty, n_features), n_features, 2, "per_target"
    )
    objective = DirectLOOObjective(X, Y, sw, fit_intercept, group_idx[:, 0], n_hyper)
    theta = _theta(n_hyper)
    f, grad = objective(theta)
    expected = _brute_force_loo(X, Y, sw, np.exp(theta)[group_idx[:, 0]], fit_intercept)
    assert f == pytest.approx(expected, rel=1e-8)
    fd = central_difference(lambda t: objective(t, need_grad=False)[0], theta)
    assert relative_error(grad, fd) <= 1e-5
