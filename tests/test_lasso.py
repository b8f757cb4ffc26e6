"""BilevelLassoCV and BilevelElasticNetCV: coordinate descent against
scikit-learn, hypergradients on the support against finite differences, and
the searches against LassoCV and ElasticNetCV."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, logit
from sklearn.datasets import load_diabetes, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, ElasticNetCV, Lasso, LassoCV
from sklearn.model_selection import KFold, ShuffleSplit

import skbilevel._lasso as _lasso_module
import skbilevel._problems._lasso as _lasso_problem
from skbilevel import BilevelElasticNetCV, BilevelLassoCV
from skbilevel._elastic_net import (
    phi_from_strengths,
    phi_gradient,
    strengths_from_phi,
)
from skbilevel._objectives import FoldsObjective
from skbilevel._problems._lasso import (
    LassoProblem,
    SupportGram,
    fold_gram_sums,
    gram_sums,
    lasso_alpha_max,
)
from skbilevel._validation import check_penalty

from ._helpers import central_difference, penalty_array, relative_error


@pytest.fixture(params=["gram", "columns"])
def cd_mode(request, monkeypatch):
    """Dense coordinate descent on the Gram matrix (tall data, the default
    on these shapes) or on the columns (forced): both are tested."""
    if request.param == "columns":
        monkeypatch.setattr(_lasso_problem, "GRAM_ROWS_PER_FEATURE", 10**9)
    return request.param


def _tight_cv_mse(X, y, folds, alpha, l1_ratio=1.0):
    """CV MSE at ``(alpha, l1_ratio)`` by tightly converged scikit-learn
    fits on ``folds`` (``l1_ratio=1``: the Lasso)."""
    errors = []
    for train, test in folds:
        model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-12,
                           max_iter=100_000).fit(X[train], y[train])  # fmt: skip
        errors.append(np.mean((model.predict(X[test]) - y[test]) ** 2))
    return np.mean(errors)


def _data(sparse, weights, n_samples=60, n_features=12, n_targets=1, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features) + 2.0  # off-center: the intercept matters
    coef = np.zeros((n_features, n_targets))
    coef[:4] = rng.randn(4, n_targets) * 3.0
    Y = X @ coef + rng.randn(n_samples, n_targets)
    sw = rng.uniform(0.3, 3.0, n_samples) if weights else np.ones(n_samples)
    if sparse:
        X[rng.rand(*X.shape) < 0.4] = 0.0
        X = sp.csr_matrix(X)
    return X, Y, sw


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("fraction", [0.3, 0.01])
def test_coordinate_descent_is_sklearn_lasso(
    sparse, fit_intercept, weights, fraction, cd_mode
):
    X, Y, sw = _data(sparse, weights, n_targets=2)
    alpha = fraction * lasso_alpha_max(X, Y, sw, fit_intercept).min()
    groups = np.zeros((X.shape[1], 2), np.int64)
    problem = LassoProblem(X, Y, sw, groups, 1, fit_intercept)
    w, converged = problem.solve(np.array([np.log(alpha)]), tol=1e-8)
    assert converged
    reference = Lasso(alpha=alpha, fit_intercept=fit_intercept, tol=1e-14,
                      max_iter=100_000).fit(X, Y, sample_weight=sw)  # fmt: skip
    np.testing.assert_allclose(w.T, reference.coef_, atol=1e-6)
    np.testing.assert_allclose(problem.intercept(w), reference.intercept_, atol=1e-6)
    # Exact zeros off the support, as scikit-learn's.
    assert np.array_equal(w.T == 0.0, reference.coef_ == 0.0)


def test_nothing_is_selected_from_alpha_max_on():
    X, Y, sw = _data(False, True)
    alpha_max = lasso_alpha_max(X, Y, sw, True)[0]
    problem = LassoProblem(X, Y, sw, np.zeros((12, 1), np.int64), 1, True)
    above, _ = problem.solve(np.array([np.log(alpha_max * 1.001)]))
    below, _ = problem.solve(np.array([np.log(alpha_max * 0.99)]))
    assert not above.any() and below.any()


def _objective(X, Y, sw, penalty, fit_intercept, method):
    groups, n_hyper, _ = check_penalty(
        penalty_array(penalty, X.shape[1]), X.shape[1], Y.shape[1], "per_target"
    )
    problems = [
        LassoProblem(
            X[tr],
            Y[tr],
            sw[tr],
            groups,
            n_hyper,
            fit_intercept,
            X_val=X[te],
            Y_val=Y[te],
            sw_val=sw[te],
        )  # fmt: skip
        for tr, te in KFold(3, shuffle=True, random_state=0).split(X)
    ]
    objective = FoldsObjective(problems, method, adjoint_max_iter=2000)
    objective.tol = 1e-12
    return objective, n_hyper, problems


def _supports(problems, theta):
    return [problem.solve(theta, tol=1e-9)[0] != 0.0 for problem in problems]


def _same(supports, others):
    return all(np.array_equal(a, b) for a, b in zip(supports, others, strict=True))


@pytest.mark.parametrize("method", ["direct", "cg", "implicit_forward"])
@pytest.mark.parametrize("penalty", ["scalar", "per_feature", "groups"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_hypergradient_matches_finite_differences(
    method, penalty, sparse, fit_intercept, weights, cd_mode
):
    """Away from support changes (checked: the supports at theta +- h are the
    same), the support-restricted implicit derivative is the derivative."""
    X, Y, sw = _data(sparse, weights)
    objective, n_hyper, problems = _objective(X, Y, sw, penalty, fit_intercept, method)
    exact, _, _ = _objective(X, Y, sw, penalty, fit_intercept, "direct")
    alpha_max = lasso_alpha_max(X, Y, sw, fit_intercept)[0]
    rng = np.random.RandomState(1)
    h = 1e-5
    for _ in range(20):
        theta = np.log(0.05 * alpha_max) + 0.3 * rng.randn(n_hyper)
        supports = _supports(problems, theta)
        neighbours = [theta + step for step in np.eye(n_hyper) * h]
        neighbours += [theta - step for step in np.eye(n_hyper) * h]
        if all(_same(supports, _supports(problems, near)) for near in neighbours):
            break
    else:
        pytest.fail("no point away from a support change was found")
    assert any(support.any() for support in supports)
    _, grad = objective(theta)
    fd = central_difference(lambda t: exact(t)[0], theta, h=h)
    assert relative_error(grad, fd) <= 1e-5


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_elastic_net_problem_is_sklearn_elastic_net(
    sparse, fit_intercept, weights, cd_mode
):
    """The L2 part (the elastic net's inner problem, groups of their own)."""
    X, Y, sw = _data(sparse, weights)
    alpha, l1_ratio = 0.05 * lasso_alpha_max(X, Y, sw, fit_intercept)[0], 0.4
    problem = LassoProblem(
        X, Y, sw, np.zeros((12, 1), np.int64), 2, fit_intercept,
        l2_group_idx=np.ones((12, 1), np.int64),
    )  # fmt: skip
    theta = np.log([alpha * l1_ratio, alpha * (1 - l1_ratio)])
    w, converged = problem.solve(theta, tol=1e-8)
    assert converged
    reference = ElasticNet(
        alpha=alpha, l1_ratio=l1_ratio, fit_intercept=fit_intercept, tol=1e-14,
        max_iter=100_000,
    ).fit(X, Y[:, 0], sample_weight=sw)  # fmt: skip
    np.testing.assert_allclose(w[:, 0], reference.coef_, atol=1e-6)
    np.testing.assert_allclose(problem.intercept(w)[0], reference.intercept_, atol=1e-6)


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("method", ["direct", "cg", "implicit_forward"])
def test_elastic_net_hypergradient_matches_finite_differences(
    per_feature, sparse, method, cd_mode
):
    """Both kinds of strength (L1 and L2 groups) against finite differences,
    away from support changes."""
    X, Y, sw = _data(sparse, True)
    n_features = X.shape[1]
    l1 = np.arange(n_features) if per_feature else np.zeros(n_features, np.int64)
    n_l1 = int(l1.max()) + 1
    l1, l2 = l1[:, None], (l1 + n_l1)[:, None]

    def objective(kind):
        problems = [
            LassoProblem(
                X[tr],
                Y[tr],
                sw[tr],
                l1,
                2 * n_l1,
                True,
                X_val=X[te],
                Y_val=Y[te],
                sw_val=sw[te],
                l2_group_idx=l2,
            )  # fmt: skip
            for tr, te in KFold(3, shuffle=True, random_state=0).split(X)
        ]
        result = FoldsObjective(problems, kind, adjoint_max_iter=2000)
        result.tol = 1e-12
        return result, problems

    tested, problems = objective(method)
    exact, _ = objective("direct")
    alpha_max = lasso_alpha_max(X, Y, sw, True)[0]
    rng = np.random.RandomState(2)
    h = 1e-5
    for _ in range(20):
        theta = np.log(0.03 * alpha_max) + 0.3 * rng.randn(2 * n_l1)
        supports = _supports(problems, theta)
        neighbours = [theta + step for step in np.eye(2 * n_l1) * h]
        neighbours += [theta - step for step in np.eye(2 * n_l1) * h]
        if all(_same(supports, _supports(problems, near)) for near in neighbours):
            break
    else:
        pytest.fail("no point away from a support change was found")
    _, grad = tested(theta)
    fd = central_difference(lambda t: exact(t)[0], theta, h=h)
    assert np.abs(grad[n_l1:]).max() > 0  # the L2 strengths matter here
    assert relative_error(grad, fd) <= 1e-5


@pytest.mark.parametrize("dataset", ["diabetes", "regression"])
def test_cv_mse_at_or_below_lassocv(dataset):
    """Judged by scikit-learn's own Lasso fits on the same folds."""
    if dataset == "diabetes":
        X, y = load_diabetes(return_X_y=True)
    else:
        X, y = make_regression(200, 60, n_informative=10, noise=20.0, random_state=0)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))

    def cv_mse(alpha):
        return _tight_cv_mse(X, y, folds, alpha)

    ours = BilevelLassoCV(cv=folds).fit(X, y)
    theirs = LassoCV(cv=folds).fit(X, y)
    assert cv_mse(ours.alpha_) <= cv_mse(theirs.alpha_) * (1 + 1e-6)
    assert -ours.best_score_ == pytest.approx(cv_mse(ours.alpha_), rel=1e-6)
    # The refit is scikit-learn's Lasso at alpha_, zeros included.
    reference = Lasso(alpha=ours.alpha_, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-6 * np.abs(
        reference.coef_).max())  # fmt: skip
    assert np.array_equal(ours.coef_ == 0, reference.coef_ == 0)


def test_per_feature_does_not_overfit_alike_features():
    """Twenty features with the same role: one strength per feature must not
    do worse on new data than one shared strength (the guard keeps it)."""
    rng = np.random.RandomState(0)
    X = rng.randn(2300, 20)
    y = X @ np.full(20, 0.5) + 2.0 * rng.randn(2300)
    X_train, y_train, X_test, y_test = X[:300], y[:300], X[300:], y[300:]
    scalar = BilevelLassoCV().fit(X_train, y_train)
    per_feature = BilevelLassoCV(penalty="per_feature").fit(X_train, y_train)
    test_mse = {
        name: np.mean((model.predict(X_test) - y_test) ** 2)
        for name, model in [("scalar", scalar), ("per_feature", per_feature)]
    }
    assert test_mse["per_feature"] <= 1.01 * test_mse["scalar"]


def test_multi_target_and_sparse_input():
    X, Y, sw = _data(True, True, n_samples=120, n_targets=2)
    model = BilevelLassoCV(penalty="per_target").fit(X, Y, sample_weight=sw)
    assert model.alpha_.shape == (2,)
    assert model.coef_.shape == (2, 12) and model.intercept_.shape == (2,)
    for t in range(2):
        reference = Lasso(alpha=model.alpha_[t], tol=1e-12, max_iter=100_000)
        reference.fit(X, Y[:, t], sample_weight=sw)
        np.testing.assert_allclose(model.coef_[t], reference.coef_, atol=1e-5)


def test_clear_errors():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="hypergradient"):
        BilevelLassoCV(hypergradient="neumann").fit(X, y)


def _correlated(n_samples=300, seed=0):
    """Groups of 5 nearly equal features, two groups informative."""
    rng = np.random.RandomState(seed)
    X = np.repeat(rng.randn(n_samples, 8), 5, axis=1)
    X += 0.3 * rng.randn(*X.shape)
    coef = np.zeros(40)
    coef[:10] = 1.0
    return X, X @ coef + 2.0 * rng.randn(n_samples)


def test_elastic_net_cv_mse_at_or_below_elasticnetcv():
    """Both strengths continuous against ElasticNetCV's grid of l1_ratio (the
    issue's), judged by tightly converged ElasticNet fits on the same folds."""
    X, y = _correlated()
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))

    def cv_mse(alpha, l1_ratio):
        return _tight_cv_mse(X, y, folds, alpha, l1_ratio)

    ours = BilevelElasticNetCV(cv=folds).fit(X, y)
    grid = ElasticNetCV(l1_ratio=[0.1, 0.5, 0.7, 0.9, 0.95, 0.99, 1], cv=folds)
    grid.fit(X, y)
    assert cv_mse(ours.alpha_, ours.l1_ratio_) <= cv_mse(grid.alpha_, grid.l1_ratio_)
    assert -ours.best_score_ == pytest.approx(cv_mse(ours.alpha_, ours.l1_ratio_),
                                              rel=1e-6)  # fmt: skip
    # Reported as scikit-learn's parameters; the strengths are their parts.
    assert 0.0 < ours.l1_ratio_ < 1.0
    l1, l2 = ours.strengths_.to_numpy()
    assert ours.alpha_ == pytest.approx(l1 + l2)
    assert ours.l1_ratio_ == pytest.approx(l1 / (l1 + l2))
    best = ours.cv_results_["params"][ours.best_index_]
    assert best == {"alpha": ours.alpha_, "l1_ratio": ours.l1_ratio_}
    assert ours.cv_results_["param_l1_ratio"][ours.best_index_] == ours.l1_ratio_
    reference = ElasticNet(alpha=ours.alpha_, l1_ratio=ours.l1_ratio_, tol=1e-12,
                           max_iter=100_000).fit(X, y)  # fmt: skip
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-6)


def test_elastic_net_per_feature_and_errors():
    X, y = _correlated(200, seed=1)
    with warnings.catch_warnings():
        # 80 strengths: the search may stop at max_iter (a ConvergenceWarning
        # and the best point), which does not matter for the attributes.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BilevelElasticNetCV(penalty="per_feature").fit(X, y)
    assert model.alpha_.shape == model.l1_ratio_.shape == (40,)
    assert np.all((model.l1_ratio_ > 0) & (model.l1_ratio_ < 1))
    assert list(model.strength_names_[:2]) == ["l1: x0", "l1: x1"]
    assert model.strength_names_[40] == "l2: x0"
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="l1_ratio_init"):
            BilevelElasticNetCV(l1_ratio_init=bad).fit(X, y)
    with pytest.raises(ValueError, match="BilevelElasticNetCV has no stochastic"):
        BilevelElasticNetCV(solver="stochastic").fit(X, y)
    # A warm start from a fit with another number of strengths starts afresh.
    model.set_params(warm_start=True, penalty="scalar", max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert np.ndim(model.fit(X, y).alpha_) == 0
        again = model.fit(X, y)  # from the scalar fit's strengths
    assert np.isfinite(again.alpha_) and 0 < again.l1_ratio_ < 1


def test_elastic_net_alpha_ratio_coordinates():
    """The outer method's coordinates (log alpha, logit l1_ratio): round trip
    with the strengths, and the chain rule against finite differences."""
    rng = np.random.RandomState(0)
    phi = np.r_[rng.randn(3), rng.randn(3) * 2.0]
    theta = strengths_from_phi(phi)
    np.testing.assert_allclose(np.exp(theta[:3]) + np.exp(theta[3:]), np.exp(phi[:3]))
    np.testing.assert_allclose(phi_from_strengths(theta), phi)
    weights = rng.randn(6)

    def loss(p):  # any smooth function of the strengths
        return float(weights @ np.sin(strengths_from_phi(p)))

    grad = phi_gradient(weights * np.cos(theta), phi)
    np.testing.assert_allclose(grad, central_difference(loss, phi), rtol=1e-6)


def test_elastic_net_ranges_of_alpha_and_l1_ratio():
    """l1_ratio_bounds and alpha_bounds are boxes of the reported parameters;
    equal sides fix one, and the fixed-l1_ratio search is ElasticNetCV's 1-D
    problem (judged by tight ElasticNet fits against a fine grid)."""
    X, y = _correlated(150, seed=2)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    inside = BilevelElasticNetCV(cv=folds, l1_ratio_bounds=(0.2, 0.6),
                                 alpha_bounds=(0.01, 1.0)).fit(X, y)  # fmt: skip
    assert 0.2 - 1e-12 <= inside.l1_ratio_ <= 0.6 + 1e-12
    assert 0.01 - 1e-12 <= inside.alpha_ <= 1.0 + 1e-12
    assert all(
        0.2 - 1e-12 <= p["l1_ratio"] <= 0.6 + 1e-12
        for p in inside.cv_results_["params"]
    )
    fixed = BilevelElasticNetCV(cv=folds, l1_ratio_bounds=(0.7, 0.7)).fit(X, y)
    assert fixed.l1_ratio_ == 0.7  # as given, not its round trip
    assert np.all(fixed.cv_results_["param_l1_ratio"].astype(float) == 0.7)

    def cv_mse(alpha):
        return _tight_cv_mse(X, y, folds, alpha, 0.7)

    grid = np.geomspace(fixed.alpha_ / 2, fixed.alpha_ * 2, 21)
    assert cv_mse(fixed.alpha_) <= min(cv_mse(a) for a in grid) * (1 + 1e-6)
    for bad in [(0.0, 0.5), (0.6, 0.5), (0.5, 1.2), "x"]:
        with pytest.raises(ValueError, match="l1_ratio_bounds"):
            BilevelElasticNetCV(l1_ratio_bounds=bad).fit(X, y)


def test_implicit_forward_warm_starts_and_matches_direct():
    """The implicit forward Jacobian (Gauss-Seidel on the support) gives the
    direct solve's hypergradient, reuses its Jacobian when the support holds,
    and the searches of both methods choose the same alpha."""
    X, y = make_regression(120, 60, n_informative=8, noise=5.0, random_state=3)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    problem = LassoProblem(
        X[folds[0][0]], y[folds[0][0], None], np.ones(len(folds[0][0])),
        np.zeros((60, 1), dtype=np.int64), 1, True,
        X_val=X[folds[0][1]], Y_val=y[folds[0][1], None],
        sw_val=np.ones(len(folds[0][1])),
    )  # fmt: skip
    theta = np.log([0.1 * lasso_alpha_max(X, y[:, None], np.ones(120), True)[0]])
    w, _ = problem.solve(theta)
    _, g = problem.outer_loss_grad(w)
    direct = -problem.cross(w, theta, problem.hessian_solve(w, theta, g))
    grad, memory, converged = problem.forward_hypergradient(
        w, theta, g, None, 1e-12, 10_000
    )
    assert converged
    np.testing.assert_allclose(grad, direct, rtol=1e-8)
    again, _, _ = problem.forward_hypergradient(w, theta, g, memory, 1e-12, 1)
    np.testing.assert_allclose(again, direct, rtol=1e-8)  # one sweep suffices
    fits = [
        BilevelLassoCV(cv=folds, hypergradient=method).fit(X, y)
        for method in ("direct", "implicit_forward")
    ]
    assert fits[1].alpha_ == pytest.approx(fits[0].alpha_, rel=1e-4)
    assert fits[1].best_score_ == pytest.approx(fits[0].best_score_, rel=1e-8)


def test_elastic_net_profile_ratios():
    """The profile's ratios: the range's top, ElasticNetCV's suggested ratios
    inside it, and its bottom unless below them all (the default 0.01)."""

    def ratios(low, high):
        logits = BilevelElasticNetCV._profile_logits(logit(low), logit(high))
        return np.round(expit(logits), 6).tolist()

    cap = 1 - 1e-8
    assert ratios(0.01, cap) == [1.0, 0.99, 0.95, 0.9, 0.7, 0.5, 0.1]
    assert ratios(0.1, cap) == [1.0, 0.99, 0.95, 0.9, 0.7, 0.5, 0.1]
    assert ratios(0.2, 0.4) == [0.4, 0.2]
    assert ratios(0.05, 0.6) == [0.6, 0.5, 0.1]
    assert ratios(0.7, 0.7) == [0.7]


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_validation_moments_match_the_rows(fit_intercept, monkeypatch):
    """The validation loss and gradient from a fold's validation moments
    equal those from its rows: sparse and dense coefficients, two targets,
    weights, a column mean 1e4 times its spread; once the validation weights
    change (the early-stopping guard), the rows are gathered and read."""
    rng = np.random.RandomState(1)
    X = rng.randn(400, 8)
    X[:, 3] = 1e4 + X[:, 3]
    Y = X[:, :3] @ rng.randn(3, 2) + rng.randn(400, 2)
    sw = rng.uniform(0.5, 2.0, 400)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    sums, _, held = fold_gram_sums(X, Y, sw, folds, fit_intercept)
    assert all(moments is not None for moments in held)
    group_idx = np.zeros((8, 2), dtype=np.int64)
    for gram, moments, (_, test) in zip(sums, held, folds, strict=True):
        validation = dict(Y_val=Y[test], sw_val=sw[test])
        fast = LassoProblem(None, None, None, group_idx, 1, fit_intercept,
                            gram=gram, val_moments=moments, val_source=(X, test),
                            **validation)  # fmt: skip
        rows = LassoProblem(None, None, None, group_idx, 1, fit_intercept,
                            gram=gram, X_val=X[test], **validation)  # fmt: skip
        for w in (
            np.zeros((8, 2)),
            rng.randn(8, 2),
            np.r_[rng.randn(2, 2), np.zeros((6, 2))],
        ):
            loss, grad = fast.outer_loss_grad(w)
            expected_loss, expected_grad = rows.outer_loss_grad(w)
            assert loss == pytest.approx(expected_loss, rel=1e-9)
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-8)
        assert fast._X_val is None  # the rows were never gathered
        # Pickled (a dask worker's fold): its validation rows, not all of X.
        copy = pickle.loads(pickle.dumps(fast))
        assert copy._val_source is None
        np.testing.assert_array_equal(copy.X_val, X[test])
        assert copy.outer_loss_grad(w)[0] == fast.outer_loss_grad(w)[0]
        fast.sw_val = np.where(np.arange(len(test)) % 2 == 0, fast.sw_val, 0.0)
        assert fast.val_moments is None
        rows.sw_val = fast.sw_val
        # The rows are then read in place from the C-ordered X where they
        # are many (here: made so), else gathered.
        monkeypatch.setattr(_lasso_problem, "_IN_PLACE_MIN_ENTRIES", 0)
        for w in (rng.randn(8, 2), np.r_[rng.randn(2, 2), np.zeros((6, 2))]):
            loss, grad = fast.outer_loss_grad(w)
            expected_loss, expected_grad = rows.outer_loss_grad(w)
            assert loss == pytest.approx(expected_loss, rel=1e-12)
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-10)
        assert fast._X_val is None
        monkeypatch.undo()
        assert fast.outer_loss_grad(w)[0] == rows.outer_loss_grad(w)[0]
        np.testing.assert_array_equal(fast._X_val, X[test])
        # A Fortran-ordered X: its rows are gathered once, then read.
        column_major = LassoProblem(None, None, None, group_idx, 1, fit_intercept,
                                    gram=gram, val_source=(np.asfortranarray(X), test),
                                    Y_val=Y[test], sw_val=fast.sw_val)  # fmt: skip
        assert column_major.outer_loss_grad(w)[0] == rows.outer_loss_grad(w)[0]
        np.testing.assert_array_equal(column_major._X_val, X[test])


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(
    "splitter",
    [KFold(4, shuffle=True, random_state=0), ShuffleSplit(3, random_state=0)],
)
def test_fold_gram_sums_match_each_folds_own(fit_intercept, splitter):
    """Every fold's Gram sums from the shared moments (all rows minus the
    validation rows, K-fold) or its own rows (shuffle-split) equal those of
    its training rows alone, also for columns whose mean is 1e4 times their
    spread."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 6)
    X[:, 2] = 1e4 + X[:, 2]  # a large mean next to a unit spread
    Y = X[:, :2] @ [[1.0], [2.0]] + rng.randn(200, 1)
    sw = rng.uniform(0.5, 2.0, 200)
    folds = list(splitter.split(X))
    per_fold, whole, _ = fold_gram_sums(X, Y, sw, folds, fit_intercept)
    every = gram_sums(X, Y, sw, fit_intercept)
    for name in ("G", "b", "yy", "xbar", "ybar"):  # all the rows: the refit's
        np.testing.assert_allclose(
            getattr(whole, name), getattr(every, name), rtol=1e-10, atol=1e-10
        )
    for sums, (train, _) in zip(per_fold, folds, strict=True):
        alone = gram_sums(X[train], Y[train], sw[train], fit_intercept)
        for name in ("G", "b", "yy", "xbar", "ybar"):
            np.testing.assert_allclose(
                getattr(sums, name), getattr(alone, name), rtol=1e-9, atol=1e-9
            )
        assert sums.total == pytest.approx(alone.total)
        assert sums.n_samples == len(train)


def test_gram_and_column_searches_agree(monkeypatch):
    """The search on shared Gram sums chooses the alpha of the search on the
    folds' columns (forced), with the same CV loss."""
    X, y = make_regression(400, 20, n_informative=5, noise=5.0, random_state=2)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    gram = BilevelLassoCV(cv=folds).fit(X, y)
    monkeypatch.setattr(_lasso_problem, "GRAM_ROWS_PER_FEATURE", 10**9)
    columns = BilevelLassoCV(cv=folds).fit(X, y)
    assert gram.alpha_ == pytest.approx(columns.alpha_, rel=1e-5)
    assert gram.best_score_ == pytest.approx(columns.best_score_, rel=1e-9)
    np.testing.assert_allclose(gram.coef_, columns.coef_, atol=1e-7)


def test_elastic_net_fixed_alpha_tunes_l1_ratio_continuously():
    """With alpha fixed, l1_ratio is still searched continuously (the box
    method after the profile), not only at the profile's ratios."""
    X, y = _correlated(150, seed=2)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    model = BilevelElasticNetCV(
        cv=folds, alpha_bounds=(0.05, 0.05), l1_ratio_bounds=(0.2, 0.9)
    ).fit(X, y)
    assert model.alpha_ == 0.05
    ratios = model.cv_results_["param_l1_ratio"].astype(float)
    profile = {0.9, 0.7, 0.5, 0.2}
    assert any(round(r, 9) not in profile for r in ratios)
    best = -model.best_score_

    assert best <= min(_tight_cv_mse(X, y, folds, 0.05, r) for r in profile) * (
        1 + 1e-9
    )


def test_support_gram_grows_and_restarts():
    """Blocks read from the lazily grown Gram matrix equal the products of
    the support's columns, as supports grow, shrink and reorder, and past
    the column limit (where the kept set restarts)."""
    rng = np.random.RandomState(0)
    A = rng.randn(30, 12)
    G = A.T @ A
    computed = []

    def products(rows, cols):
        computed.append(len(rows) * len(cols))
        return A[:, rows].T @ A[:, cols]

    cache = SupportGram(products, limit=8)
    for support in ([1, 4], [1, 4, 7], [0, 4, 7, 9], [4, 9], [2, 3, 5, 6], [0, 11]):
        support = np.array(support)
        np.testing.assert_allclose(cache.block(support), G[np.ix_(support, support)])
    # [4, 9] was all kept (nothing formed); [2, 3, 5, 6] passed the limit
    # of 8 columns (restart from it); [0, 11] grew it again.
    assert computed == [2 * 2, 1 * 3, 2 * 5, 4 * 4, 2 * 6]


@pytest.mark.parametrize("weights", [False, True])
def test_shared_design_folds_match_copied_folds(monkeypatch, weights):
    """Dense K-fold folds solved on one shared column-major X with zero
    weights off their training rows give the search of copied folds (a
    custom split repeating a training row counts it twice in both)."""
    X, y = make_regression(120, 200, n_informative=8, noise=5.0, random_state=3)
    sw = np.random.RandomState(0).uniform(0.5, 2.0, 120) if weights else None
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    folds[0] = (np.r_[folds[0][0], folds[0][0][:5]], folds[0][1])
    shared = BilevelLassoCV(cv=folds).fit(X, y, sample_weight=sw)
    monkeypatch.setattr(_lasso_module, "SHARED_DESIGN_MIN_SHARE", 2.0)  # copies
    copied = BilevelLassoCV(cv=folds).fit(X, y, sample_weight=sw)
    assert shared.alpha_ == pytest.approx(copied.alpha_, rel=1e-6)
    assert shared.best_score_ == pytest.approx(copied.best_score_, rel=1e-9)
    np.testing.assert_allclose(shared.coef_, copied.coef_, atol=1e-7)
    np.testing.assert_allclose(shared.intercept_, copied.intercept_, atol=1e-7)


def test_hessian_solve_reuses_only_a_matching_factor():
    """The support's Cholesky factor kept from the solve serves the
    hypergradient's solve, and a different L2 part or support is
    factorized anew: results equal those of a fresh problem."""
    X, Y, sw = _data(False, True, n_samples=80, n_features=40)
    groups = np.zeros((40, 1), dtype=np.int64)
    l2 = np.ones((40, 1), dtype=np.int64)
    rhs = np.random.RandomState(1).randn(40, 1)
    problem = LassoProblem(X, Y, sw, groups, 2, True, l2_group_idx=l2)
    for theta in ([np.log(0.05), np.log(0.3)], [np.log(0.05), np.log(0.03)],
                  [np.log(0.2), np.log(0.03)]):  # fmt: skip
        theta = np.array(theta)
        w, converged = problem.solve(theta)
        assert converged
        fresh = LassoProblem(X, Y, sw, groups, 2, True, l2_group_idx=l2)
        np.testing.assert_allclose(
            problem.hessian_solve(w, theta, rhs),
            fresh.hessian_solve(w, theta, rhs),
            rtol=1e-10,
        )


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gap_safe_screening_is_safe_and_screens(sparse, fit_intercept, monkeypatch):
    """Columns screened by the gap (wide data, weights) are zero in the exact
    solution; most columns are screened near the optimum; the solve with
    screening is scikit-learn's Lasso."""
    monkeypatch.setattr(_lasso_problem, "GRAM_ROWS_PER_FEATURE", 10**9)
    X, Y, sw = _data(sparse, True, n_samples=80, n_features=400, seed=3)
    alpha = 0.2 * lasso_alpha_max(X, Y, sw, fit_intercept)[0]
    groups = np.zeros((X.shape[1], 1), np.int64)
    problem = LassoProblem(X, Y, sw, groups, 1, fit_intercept)
    theta = np.array([np.log(alpha)])
    reference = Lasso(alpha=alpha, fit_intercept=fit_intercept, tol=1e-14,
                      max_iter=100_000).fit(X, Y[:, 0], sample_weight=sw)  # fmt: skip
    coef = np.zeros(X.shape[1])
    alpha_t = np.ascontiguousarray(problem._alpha(theta)[:, 0])
    beta_t = np.ascontiguousarray(problem._beta(theta)[:, 0])
    screened = np.zeros(X.shape[1], dtype=bool)
    for tol in (1e-2, 1e-4, 1e-8):  # the mask grows as the gap shrinks
        problem._coordinate_descent(
            0, coef, alpha_t, beta_t, tol * problem.null_loss[0], 10_000, screened
        )
        assert np.all(reference.coef_[screened] == 0.0)
    assert screened.sum() > 0.8 * (reference.coef_ == 0.0).sum()
    np.testing.assert_allclose(coef, reference.coef_, atol=1e-6)
    w, converged = problem.solve(theta, tol=1e-8)
    assert converged
    np.testing.assert_allclose(w[:, 0], reference.coef_, atol=1e-6)


def test_support_cholesky_shifts_a_singular_block_by_round_off():
    """The fused Gram solver's factorization: exact for a positive definite
    block; a singular one (duplicate columns on the support) is factorized
    after a diagonal shift of the order of round-off; an indefinite one
    gives no factor (the Newton step is skipped)."""
    from skbilevel._lasso_kernels import _support_cholesky

    H = np.array([[4.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(_support_cholesky(H), np.linalg.cholesky(H))
    singular = np.ones((3, 3))
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(singular)
    lower = _support_cholesky(singular)
    assert np.all(np.isfinite(lower))
    np.testing.assert_allclose(lower @ lower.T, singular, atol=1e-8)
    assert _support_cholesky(-np.eye(2)).shape == (0, 0)


def test_elastic_net_profile_stops_once_the_loss_has_turned(monkeypatch):
    """On Lasso-like data the profile's loss rises from the top ratio down:
    it stops after two ratios in a row above the best, with the result of
    the full profile (every ratio searched) and fewer evaluations; with the
    best ratio pinned at the top, no box search follows."""
    import skbilevel._elastic_net as _elastic_net_module

    rng = np.random.RandomState(3)
    X = rng.randn(150, 300)
    y = X[:, :5] @ np.full(5, 3.0) + rng.randn(150)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    turned = BilevelElasticNetCV(cv=folds).fit(X, y)
    monkeypatch.setattr(_elastic_net_module, "PROFILE_TURN", np.inf)
    full = BilevelElasticNetCV(cv=folds).fit(X, y)

    def ratios(model):
        return set(np.round(model.cv_results_["param_l1_ratio"].astype(float), 6))

    assert 0.1 in ratios(full) and 0.1 not in ratios(turned)
    assert len(turned.cv_results_["iter"]) < len(full.cv_results_["iter"])
    assert turned.alpha_ == full.alpha_ and turned.l1_ratio_ == full.l1_ratio_
    np.testing.assert_array_equal(turned.coef_, full.coef_)
    # The top ratio wins and the loss falls towards it: the projected method,
    # which could only move alpha there, is skipped, at the same CV loss.
    assert turned.l1_ratio_ == 1.0
    monkeypatch.setattr(
        BilevelElasticNetCV, "_ratio_pinned", staticmethod(lambda *args: False)
    )
    boxed = BilevelElasticNetCV(cv=folds).fit(X, y)
    assert boxed.l1_ratio_ == 1.0
    assert len(boxed.cv_results_["iter"]) > len(full.cv_results_["iter"])
    assert -full.best_score_ == pytest.approx(-boxed.best_score_, rel=1e-5)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_folds_in_lockstep_take_each_folds_own_steps(fit_intercept):
    """cd_dense_folds on K folds of one design (their rows weighted, the
    validation rows zero) gives each fold what cd_dense gives it alone: the
    same coefficients to the bit, sweeps, gaps and screened columns, from
    cold and warm starts, with a sweep cap that stops some folds."""
    from skbilevel._lasso_kernels import (
        cd_dense,
        cd_dense_folds,
        centered_column_curvature,
    )

    rng = np.random.RandomState(0)
    n, d, K = 120, 300, 4
    X = np.asfortranarray(rng.randn(n, d))
    y = X[:, :6] @ rng.randn(6) + rng.randn(n)
    S = np.tile(rng.uniform(0.5, 2.0, n), (K, 1))
    for k, rows in enumerate(np.array_split(rng.permutation(n), K)):
        S[k, rows] = 0.0
    if fit_intercept:
        xbar = np.array([S[k] @ X / S[k].sum() for k in range(K)])
        yc = np.array([y - S[k] @ y / S[k].sum() for k in range(K)])
    else:
        xbar, yc = np.zeros((K, d)), np.tile(y, (K, 1))
    curvature = np.array(
        [centered_column_curvature(X, xbar[k], S[k]) for k in range(K)]
    )
    top = np.array([np.abs(X.T @ (S[k] * yc[k])).max() / S[k].sum() for k in range(K)])
    W = np.zeros((K, d))
    for fraction, cap in [(0.5, 1000), (0.1, 1000), (0.02, 1000), (0.01, 7)]:
        alpha, beta = np.outer(fraction * top, np.ones(d)), np.zeros((K, d))
        tol, caps = np.full(K, 1e-12), np.full(K, cap, dtype=np.int64)
        alone_w, alone_masks = W.copy(), np.zeros((K, d), dtype=bool)
        alone = [
            cd_dense(
                X,
                xbar[k],
                curvature[k],
                yc[k],
                S[k],
                alone_w[k],
                alpha[k],
                beta[k],
                tol[k],
                cap,
                alone_masks[k],
            )  # fmt: skip
            for k in range(K)
        ]
        masks, gaps = np.zeros((K, d), dtype=bool), np.empty(K)
        sweeps = np.zeros(K, dtype=np.int64)
        cd_dense_folds(X, xbar, curvature, yc, S, W, alpha, beta, tol, caps, masks,
                       gaps, sweeps)  # fmt: skip
        np.testing.assert_array_equal(W, alone_w)
        np.testing.assert_array_equal(masks, alone_masks)
        assert sweeps.tolist() == [a[1] for a in alone]
        np.testing.assert_array_equal(gaps, [a[0] for a in alone])
    assert (sweeps == 7).any()  # the cap stopped some fold


def test_shared_design_search_is_the_same_in_lockstep(monkeypatch):
    """The folds solved together (shared design) give the search of the
    folds solved one by one: the same evaluations, strength and model."""
    X, y = make_regression(200, 400, n_informative=10, noise=5.0, random_state=1)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    sw = np.random.RandomState(0).uniform(0.5, 2.0, 200)
    together = BilevelLassoCV(cv=folds).fit(X, y, sample_weight=sw)
    original = _lasso_module.BilevelLassoCV._folds_objective

    def one_by_one(self, *args, **kwargs):
        objective = original(self, *args, **kwargs)
        assert objective.batch_solve is not None  # the shared design applies
        objective.batch_solve = None
        return objective

    monkeypatch.setattr(_lasso_module.BilevelLassoCV, "_folds_objective", one_by_one)
    alone = BilevelLassoCV(cv=folds).fit(X, y, sample_weight=sw)
    assert together.alpha_ == alone.alpha_
    np.testing.assert_array_equal(together.coef_, alone.coef_)
    for key in ("mean_test_score", "param_alpha", "hypergradient_norm"):
        np.testing.assert_array_equal(
            np.asarray(together.cv_results_[key], dtype=float),
            np.asarray(alone.cv_results_[key], dtype=float),
        )
