"""The stochastic mode: hypergradient error, optimum, reproducibility, inputs."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import ShuffleSplit, StratifiedKFold

import skbilevel._base
from skbilevel import BilevelLassoCV, BilevelLogisticCV, BilevelRidgeCV
from skbilevel._hypergradient import FoldState, fold_value_and_grad
from skbilevel._problems._lasso import LassoProblem, lasso_alpha_max
from skbilevel._problems._logistic import LogisticProblem, LogLossFit
from skbilevel._problems._ridge import RidgeProblem, SquaredFit
from skbilevel._stochastic import ProximalStochasticFold, RowReader, StochasticFold


def _split_problem(model):
    """One hold-out split, per-feature strengths, and its exact hypergradient."""
    if model == "logistic":
        X, y = make_classification(
            6000, 8, n_informative=6, n_redundant=0, random_state=0
        )
    else:
        X, y = make_regression(6000, 8, noise=10.0, random_state=0)
    train, test = np.arange(4000), np.arange(4000, 6000)
    d = X.shape[1]
    groups = np.arange(d, dtype=np.int64)[:, None]
    theta = np.log(np.full(d, 20.0)) + np.linspace(-1.0, 1.0, d)
    sw = np.ones(len(y))
    if model == "logistic":
        with_intercept = np.vstack([groups, [[-1]]])
        problem = LogisticProblem(
            X[train], y[train], sw[train], 1, with_intercept, d, True,
            X_val=X[test], targets_val=y[test], sw_val=sw[test],
        )  # fmt: skip
        fit = LogLossFit(y.astype(np.int64), sw, 1)
    else:
        Y = y[:, None]
        problem = RidgeProblem(
            X[train], Y[train], sw[train], groups, d, True,
            X_val=X[test], Y_val=Y[test], sw_val=sw[test],
        )  # fmt: skip
        fit = SquaredFit(Y, sw)
    _, exact, _ = fold_value_and_grad(
        problem,
        theta,
        FoldState(),
        method="direct",
        need_grad=True,
        inner_tol=1e-12,
        adjoint_tol=1e-12,
        adjoint_max_iter=100,
    )

    def error(inner, adjoint, n_val, seeds=range(6)):
        """Mean relative squared error of the stochastic hypergradient."""
        errors = []
        for seed in seeds:
            fold = StochasticFold(
                RowReader(X), fit, train, test, groups, d, True, 64, seed,
            )  # fmt: skip
            _, estimate = fold.evaluate(theta, inner, adjoint, n_val)
            errors.append(np.sum((estimate - exact) ** 2) / np.sum(exact**2))
        return np.mean(errors)

    return error


@pytest.mark.parametrize("model", ["logistic", "ridge"])
def test_hypergradient_error_shrinks_with_each_budget(model):
    """error ~ O(1/t) + O(1/k) + O(1/J): each budget, grown alone, lowers it."""
    error = _split_problem(model)
    large = dict(inner=2000, adjoint=2000, n_val=100)
    reference = error(**large)
    assert reference < 0.15
    # (The preconditioned adjoint of ridge, whose Hessian is constant,
    # converges in a few steps: a one-step adjoint shows its share.)
    for name, small in [("inner", 20), ("adjoint", 1), ("n_val", 1)]:
        assert error(**{**large, name: small}) > 1.5 * reference, name
    # All three together, a decade at a time.
    errors = [error(t, t, j) for t, j in [(30, 1), (300, 10), (3000, 100)]]
    assert errors[0] > errors[1] > errors[2]


def test_stochastic_lands_near_the_deterministic_optimum():
    X, y = make_classification(40000, 10, n_informative=5, random_state=0)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    exact = BilevelLogisticCV(cv=cv, solver="deterministic").fit(X, y)
    noisy = BilevelLogisticCV(cv=cv, solver="stochastic", random_state=0).fit(X, y)
    assert noisy.solver_ == "stochastic" and exact.solver_ == "deterministic"

    def cv_log_loss(C):  # computed independently, with scikit-learn's fits
        losses = []
        for train, test in cv.split(X, y):
            model = LogisticRegression(C=C, tol=1e-10, max_iter=1000)
            model.fit(X[train], y[train])
            losses.append(log_loss(y[test], model.predict_proba(X[test])))
        return np.mean(losses)

    # Within 0.1% of the optimum of the CV log-loss.
    assert cv_log_loss(noisy.C_) <= cv_log_loss(exact.C_) * (1 + 1e-3)
    assert -noisy.best_score_ == pytest.approx(-exact.best_score_, rel=1e-2)
    # The final model is the deterministic refit at C_.
    refit = LogisticRegression(C=noisy.C_, tol=1e-10, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(noisy.coef_, refit.coef_, rtol=1e-4, atol=1e-6)


def test_stochastic_ridge_per_feature_near_deterministic():
    X, y = make_regression(30000, 20, n_informative=5, noise=20.0, random_state=0)
    cv = ShuffleSplit(1, test_size=0.25, random_state=0)
    kwargs = dict(penalty="per_feature", cv=cv)
    exact = BilevelRidgeCV(**kwargs).fit(X, y)
    noisy = BilevelRidgeCV(**kwargs, solver="stochastic", random_state=0).fit(X, y)
    assert -noisy.best_score_ <= -exact.best_score_ * (1 + 2e-3)
    assert np.isfinite(noisy.coef_).all() and noisy.alpha_.shape == (20,)
    # cv_results_: the noisy estimates along the way, the chosen point last.
    results = noisy.cv_results_
    assert len(results["params"]) == noisy.n_iter_ + 1 <= noisy.max_iter + 1
    assert noisy.best_index_ == len(results["params"]) - 1
    assert np.isfinite(results["hypergradient_norm"][:-1]).all()


def test_reproducible_and_independent_of_n_jobs():
    X, y = make_classification(3000, 6, random_state=0)
    kwargs = dict(solver="stochastic", penalty="per_feature", max_iter=20, cv=3)
    a = BilevelLogisticCV(**kwargs, random_state=3).fit(X, y)
    b = BilevelLogisticCV(**kwargs, random_state=3, n_jobs=2).fit(X, y)
    c = BilevelLogisticCV(**kwargs, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.C_, b.C_)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(
        a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"]
    )
    assert not np.array_equal(a.C_, c.C_)


def test_folds_share_the_cores_with_n_jobs_none(monkeypatch):
    """With n_jobs=None the stochastic folds run in the folds' threads, as many
    as BLAS may use (here 2), and give the search of the folds in order."""
    import threading

    import skbilevel._objectives as objectives

    X, y = make_classification(3000, 6, random_state=0)
    kwargs = dict(solver="stochastic", penalty="per_feature", max_iter=10, cv=3)
    threads = set()
    original = StochasticFold.evaluate

    def spy(self, *args):
        threads.add(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(StochasticFold, "evaluate", spy)
    monkeypatch.setattr(objectives, "row_threads", lambda: 2)
    shared = BilevelLogisticCV(**kwargs, random_state=0).fit(X, y)
    assert threads and all(name.startswith("skbilevel-folds") for name in threads)
    threads.clear()
    monkeypatch.setattr(objectives, "row_threads", lambda: 1)
    alone = BilevelLogisticCV(**kwargs, random_state=0).fit(X, y)
    assert threads == {threading.main_thread().name}
    np.testing.assert_array_equal(shared.C_, alone.C_)
    np.testing.assert_array_equal(
        shared.cv_results_["mean_test_score"], alone.cv_results_["mean_test_score"]
    )


def test_sparse_and_memory_mapped_inputs(tmp_path, monkeypatch):
    X, y = make_classification(4000, 12, random_state=0)
    kwargs = dict(solver="stochastic", max_iter=15, random_state=0, batch_size=256)
    dense = BilevelLogisticCV(**kwargs).fit(X, y)
    sparse = BilevelLogisticCV(**kwargs).fit(sp.csr_matrix(X), y)
    # The same samples and the same arithmetic, through the CSR kernels.
    np.testing.assert_allclose(sparse.C_, dense.C_, rtol=1e-6)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")  # read-only memory map
    readers = []

    class Recording(RowReader):
        def __init__(self, X):
            super().__init__(X)
            readers.append(self)

    monkeypatch.setattr(skbilevel._base, "RowReader", Recording)
    for Estimator, target in [
        (BilevelLogisticCV, y),
        (BilevelRidgeCV, y.astype(float)),
    ]:
        from_map = Estimator(**kwargs).fit(mapped, target)
        # The estimator's folds read the memory map in place.
        assert np.shares_memory(readers[-1].dense, mapped)
        in_memory = Estimator(**kwargs).fit(X, target)
        np.testing.assert_allclose(from_map.coef_, in_memory.coef_, rtol=1e-10)


def test_multinomial_and_scoring():
    X, y = make_classification(3000, 8, n_informative=5, n_classes=3, random_state=0)
    clf = BilevelLogisticCV(
        solver="stochastic", max_iter=20, random_state=0, scoring="accuracy"
    ).fit(X, y)
    assert clf.coef_.shape == (3, 8) and np.isfinite(clf.coef_).all()
    scores = clf.cv_results_["mean_test_score"]
    # Only the final point is scored with `scoring` (the others are estimates
    # of the log-loss on mini-batches).
    assert np.isnan(scores[:-1]).all() and 0.5 < scores[-1] <= 1.0
    assert clf.score(X, y) > 0.6


_PER_FEATURE = BilevelLogisticCV(penalty="per_feature")
_RIDGE_PER_FEATURE = BilevelRidgeCV(penalty="per_feature")


@pytest.mark.parametrize(
    "estimator, shape, n_out, n_hyper, expected",
    [
        # The case: 122 s deterministic against 3.5 s stochastic, and
        # binary with few coefficients for the rows: the quadratic mode's.
        (_PER_FEATURE, (400_000, 200), 1, 200, "quadratic"),
        (_PER_FEATURE, (1_000_000, 50), 1, 50, "quadratic"),
        (BilevelLogisticCV(), (1_000_000, 50), 1, 1, "quadratic"),
        (BilevelLogisticCV(), (100_000, 100), 1, 1, "quadratic"),
        # Multinomial, or too many coefficients for the quadratic mode.
        (BilevelLogisticCV(), (1_000_000, 50), 5, 1, "stochastic"),
        (_PER_FEATURE, (400_000, 2000), 1, 2000, "stochastic"),
        # A few seconds deterministically (bench_logistic.py): not worth it.
        (_PER_FEATURE, (50_000, 200), 1, 200, "deterministic"),
        (BilevelLogisticCV(), (1797, 64), 10, 1, "deterministic"),
        # Ridge searches its Gram matrices, not the data.
        (BilevelRidgeCV(), (1_000_000, 50), 1, 1, "deterministic"),
        (_RIDGE_PER_FEATURE, (1_000_000, 50), 1, 50, "deterministic"),
        (_RIDGE_PER_FEATURE, (200_000, 5000), 1, 5000, "stochastic"),
    ],
)
def test_auto_solver_weighs_costs(estimator, shape, n_out, n_hyper, expected):
    X = np.broadcast_to(0.0, shape)
    chosen = estimator._choose_solver(shape, X, n_out, n_hyper, "auto", False)
    assert chosen == expected
    assert estimator._choose_solver(shape, X, n_out, n_hyper, "cg", False) == (
        "deterministic"
    )
    assert estimator._choose_solver(shape, X, n_out, n_hyper, "auto", True) == (
        "deterministic"
    )


def test_auto_switches_on_cost(monkeypatch):
    import skbilevel._base as estimator_module

    X, y = make_classification(2000, 5, random_state=0)
    assert BilevelLogisticCV(max_iter=5).fit(X, y).solver_ == "deterministic"
    monkeypatch.setattr(estimator_module, "STOCHASTIC_MIN_SAMPLES", 1000)
    monkeypatch.setattr(estimator_module, "STOCHASTIC_MIN_FLOPS", 0.0)
    monkeypatch.setattr(estimator_module, "STOCHASTIC_COST_RATIO", 0.0)
    assert BilevelLogisticCV(max_iter=5).fit(X, y).solver_ == "stochastic"
    # An explicit hypergradient method keeps the deterministic solver.
    chosen = BilevelLogisticCV(max_iter=5, hypergradient="cg").fit(X, y)
    assert chosen.solver_ == "deterministic"
    # Exact leave-one-out stays deterministic.
    assert BilevelRidgeCV(cv=None).fit(X, y).solver_ == "deterministic"


@pytest.mark.parametrize("per_feature", [False, True])
def test_proximal_fold_full_batch_matches_lasso_hypergradient(per_feature):
    """With a batch as large as the training part and constant steps, the
    proximal fold is deterministic proximal gradient plus the adjoint's
    fixed-point steps on the support: its solution and hypergradient are the
    Lasso's exact ones (weights and an intercept included), for the L1 and
    an L2 group."""
    X, y = make_regression(300, 12, n_informative=5, noise=5.0, random_state=1)
    sw = np.random.RandomState(0).uniform(0.5, 2.0, 300)
    train, test = np.arange(200), np.arange(200, 300)
    d = X.shape[1]
    l1 = (
        np.arange(d, dtype=np.int64)[:, None]
        if per_feature
        else np.zeros((d, 1), dtype=np.int64)
    )
    n_l1 = d if per_feature else 1
    l2 = np.full((d, 1), n_l1, dtype=np.int64)  # one elastic-net L2 strength
    alpha_max = lasso_alpha_max(X[train], y[train, None], sw[train], True)[0]
    theta = np.r_[np.log(0.05 * alpha_max) + np.linspace(0, 0.5, n_l1), np.log(0.3)]
    problem = LassoProblem(
        X[train], y[train, None], sw[train], l1, n_l1 + 1, True,
        X_val=X[test], Y_val=y[test, None], sw_val=sw[test], l2_group_idx=l2,
    )  # fmt: skip
    _, exact, w = fold_value_and_grad(
        problem, theta, FoldState(), method="direct", inner_tol=1e-12
    )
    fold = ProximalStochasticFold(
        RowReader(X), SquaredFit(y[:, None], sw), train, test, l1, n_l1 + 1,
        True, 10_000, 0, l2_groups=l2,
    )  # fmt: skip
    fold.epoch = np.inf  # constant steps: plain (proximal) gradient descent
    _, estimate = fold.evaluate(theta, 5000, 5000, 1)
    np.testing.assert_allclose(fold.W, w, atol=1e-8)
    np.testing.assert_allclose(estimate, exact, rtol=1e-6, atol=1e-9 * abs(exact).max())


def test_stochastic_lasso_near_deterministic():
    """solver="stochastic" (proximal SGD, adjoint on the support): held-out
    MSE within 0.2% of the deterministic search's, reproducible, and the
    final model is the deterministic refit at alpha_."""
    X, y = make_regression(30000, 40, n_informative=8, noise=20.0, random_state=0)
    X_test, y_test, X, y = X[25000:], y[25000:], X[:25000], y[:25000]
    exact = BilevelLassoCV().fit(X, y)
    noisy = BilevelLassoCV(solver="stochastic", random_state=0).fit(X, y)
    assert noisy.solver_ == "stochastic" and exact.solver_ == "deterministic"

    def test_mse(model):
        return np.mean((model.predict(X_test) - y_test) ** 2)

    assert test_mse(noisy) <= test_mse(exact) * 1.002
    again = BilevelLassoCV(solver="stochastic", random_state=0).fit(X, y)
    assert again.alpha_ == noisy.alpha_
    refit = Lasso(alpha=noisy.alpha_, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(noisy.coef_, refit.coef_, atol=1e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_weighted_means_of_all_folds_in_one_pass(sparse):
    """RowReader.weighted_means gives every row set's weighted column means,
    as NumPy does; a fit's folds get them from it (one pass for all)."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 7)
    X[X < 0.3] = 0.0
    sw = rng.rand(200) + 0.1
    row_sets = [rng.choice(200, 150, replace=False) for _ in range(3)]
    reader = RowReader(sp.csr_matrix(X) if sparse else X)
    means = reader.weighted_means(row_sets, sw)
    assert means.shape == (3, 7)
    for rows, mean in zip(row_sets, means, strict=True):
        expected = sw[rows] @ X[rows] / sw[rows].sum()
        np.testing.assert_allclose(mean, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(reader.weighted_mean(rows, sw), expected, rtol=1e-12)

    y = (X @ rng.randn(7) > 0.2).astype(int)
    folds = []
    original = StochasticFold.evaluate

    def spy(self, *args):
        folds.append(self)
        return original(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StochasticFold, "evaluate", spy)
        BilevelLogisticCV(solver="stochastic", max_iter=3, cv=3, random_state=0).fit(
            sp.csr_matrix(X) if sparse else X, y
        )
    assert len({id(fold) for fold in folds}) == 3
    for fold in folds:
        expected = X[fold.train].mean(axis=0)
        np.testing.assert_allclose(fold.mean, expected, rtol=1e-12, atol=1e-15)
