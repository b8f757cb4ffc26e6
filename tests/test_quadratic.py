"""The quadratic mode: shared passes, Grams, models, hypergradients, search."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ShuffleSplit, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import skbilevel._quadratic as quadratic
from skbilevel import BilevelLogisticCV, HypergradientSearchCV, _rows
from skbilevel._linalg import robust_cho_factor
from skbilevel._problems._logistic import (
    LogisticProblem,
    labelled_terms_and_grams,
    logistic_curvature,
    weighted_grams,
)
from skbilevel._quadratic import QuadraticObjective, minimize_quadratic


def _data(n=3000, d=8, sparse=False, weights=False, seed=0):
    X, y = make_classification(
        n, d, n_informative=min(d, 5), n_redundant=0, random_state=seed
    )
    X = StandardScaler().fit_transform(X)
    if sparse:
        X[np.abs(X) < 0.7] = 0.0
        X = sp.csr_matrix(X)
    sw = np.random.default_rng(seed).uniform(0.2, 3.0, n) if weights else np.ones(n)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y))
    return X, y.astype(np.int64), sw, folds


def _objective(X, y, sw, folds, groups, fit_intercept=True, theta0=None):
    n_hyper = int(groups.max()) + 1
    theta0 = np.zeros(n_hyper) if theta0 is None else theta0
    readers = [(X, y, sw, train, test) for train, test in folds]
    return QuadraticObjective(
        readers, [groups] * len(folds), n_hyper, fit_intercept, theta0
    )


def _scalar_objective(sparse, fit_intercept):
    """Weighted data, its folds, one strength's groups and their objective."""
    X, y, sw, folds = _data(sparse=sparse, weights=True)
    groups = np.zeros((X.shape[1], 1), dtype=np.int64)
    objective = _objective(X, y, sw, folds, groups, fit_intercept)
    return X, y, sw, folds, groups, objective


def _fold_problems(X, y, sw, folds, groups, fit_intercept=True):
    group_idx = np.vstack([groups, [[-1]]]) if fit_intercept else groups
    return [
        LogisticProblem(
            X[tr],
            y[tr],
            sw[tr],
            1,
            group_idx,
            int(groups.max()) + 1,
            fit_intercept,
            X_val=X[te],
            targets_val=y[te],
            sw_val=sw[te],
        )  # fmt: skip
        for tr, te in folds
    ]


def _exact_cv_loss(problems, theta):
    losses = []
    for problem in problems:
        W, converged = problem.solve(theta, None, tol=1e-12)
        assert converged
        losses.append(problem.outer_loss_grad(W)[0])
    return float(np.mean(losses))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_shared_passes_match_every_fold_problem(sparse, fit_intercept):
    # One pass for all the splits gives each one's training gradient,
    # validation loss and gradient, and training Hessian products.
    X, y, sw, folds, groups, objective = _scalar_objective(sparse, fit_intercept)
    rows = objective.groups[0]["rows"]
    problems = _fold_problems(X, y, sw, folds, groups, fit_intercept)
    rng = np.random.default_rng(1)
    A = 0.3 * rng.standard_normal((rows.n_params, len(folds)))
    V = rng.standard_normal(A.shape)
    g, E, e = rows.split_terms(A)
    HV = rows.hessian_products(V)
    for k, problem in enumerate(problems):
        W = A[:, k : k + 1]
        loss, grad = problem.outer_loss_grad(W)
        np.testing.assert_allclose(E[k], loss, rtol=1e-12)
        np.testing.assert_allclose(e[:, k], grad[:, 0], rtol=1e-10, atol=1e-14)
        zero = np.full(1, -np.inf)  # no penalty: the data terms alone
        np.testing.assert_allclose(
            g[:, k], problem.gradient(W, zero)[:, 0], rtol=1e-8, atol=1e-10
        )
        np.testing.assert_allclose(
            HV[:, k], problem.hvp(W, zero, V[:, k : k + 1])[:, 0], rtol=1e-9,
            atol=1e-9,
        )  # fmt: skip


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_pattern_sums_at_the_anchor_are_those_of_their_rows(sparse, fit_intercept):
    # The anchor's passes sum the log-loss and gradient per pattern of rows
    # (in K-fold: per validation fold), which make the splits' first terms.
    X, y, sw, folds, groups, objective = _scalar_objective(sparse, fit_intercept)
    rows = objective.groups[0]["rows"]
    a = np.random.default_rng(0).standard_normal(rows.n_params) * 0.3
    losses, grads, P = rows.labelled_terms(a)
    group_idx = np.vstack([groups, [[-1]]]) if fit_intercept else groups
    zero = np.full(1, -np.inf)
    for label in range(len(rows.pattern_trains)):
        mine = np.flatnonzero(rows.labels == label)
        problem = LogisticProblem(
            X[mine], y[mine], sw[mine], 1, group_idx, 1, fit_intercept
        )
        W = a[:, None]
        assert losses[label] == pytest.approx(problem.value(W, zero), rel=1e-10)
        np.testing.assert_allclose(
            grads[label], problem.gradient(W, zero)[:, 0], rtol=1e-9, atol=1e-9
        )
    # Every split's terms at the anchor, from the pattern sums, are those of
    # a pass of their own.
    state = objective.groups[0]
    g, E, e = rows.split_terms(state["A"])
    np.testing.assert_allclose(state["g"], g, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(state["E"], E, rtol=1e-12)
    np.testing.assert_allclose(state["e"], e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_labelled_grams_are_the_grams_of_their_rows(sparse):
    X, _, sw, _ = _data(n=2000, sparse=sparse)
    rng = np.random.default_rng(0)
    root = np.sqrt(sw * rng.uniform(0.01, 0.25, len(sw)))
    labels = rng.integers(-1, 3, len(sw))
    grams = weighted_grams(X, root, labels, 3, float32=False)
    Xa = np.hstack([X.toarray() if sparse else X, np.ones((len(sw), 1))])
    for label in range(3):
        B = Xa[labels == label] * root[labels == label, None]
        np.testing.assert_allclose(grams[label], B.T @ B, rtol=1e-10, atol=1e-10)
    # float32 products: ~1e-7 relative.
    if not sparse:
        grams32 = weighted_grams(X, root, labels, 3, float32=True)
        np.testing.assert_allclose(grams32, grams, rtol=1e-4, atol=1e-3)
        # The compiled grouping of C-contiguous float64 rows gives the Grams
        # of NumPy's float32 rows to the bit (a Fortran-ordered X takes the
        # NumPy path).
        numpy_path = weighted_grams(np.asfortranarray(X), root, labels, 3, float32=True)
        np.testing.assert_array_equal(grams32, numpy_path)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_labelled_terms_and_grams_in_one_pass(fit_intercept, monkeypatch):
    """The fused pass (losses, gradients and float32 Grams of every label's
    rows at one point) gives the Grams of the two-pass path (to float32's
    round-off: the roots are rounded from scores summed in another order),
    and its terms."""
    monkeypatch.setattr(_rows, "row_threads", lambda: 3)
    X, y, sw, _ = _data(n=40000, d=6, weights=True)  # several chunks, 3 blocks
    labels = np.random.default_rng(1).integers(-1, 4, len(y))
    a = np.random.default_rng(2).normal(size=7)[: 6 + fit_intercept]
    losses, grads, grams = labelled_terms_and_grams(
        X, a, y, sw, labels, 4, fit_intercept
    )
    z = X @ a[:6] + (a[6] if fit_intercept else 0.0)
    p = 1.0 / (1.0 + np.exp(-z))
    root = np.sqrt(logistic_curvature(p[:, None], sw)[:, 0])
    expected = weighted_grams(
        X, root, labels, 4, fit_intercept=fit_intercept, float32=True
    )
    d = 6
    exact = weighted_grams(X, root, labels, 4, fit_intercept=fit_intercept)
    np.testing.assert_allclose(grams, expected, rtol=0, atol=1e-6 * abs(exact).max())
    np.testing.assert_allclose(grams, exact, rtol=0, atol=1e-5 * abs(exact).max())
    Xa = np.hstack([X, np.ones((len(y), 1))])[:, : d + fit_intercept]
    for label in range(4):
        mine = labels == label
        loss = sw[mine] @ (np.logaddexp(0.0, z[mine]) - y[mine] * z[mine])
        grad = Xa[mine].T @ (sw[mine] * (p[mine] - y[mine]))
        np.testing.assert_allclose(losses[label], loss, rtol=1e-12)
        np.testing.assert_allclose(grads[label], grad, rtol=1e-9, atol=1e-9)


def test_fold_hessians_are_sums_of_pattern_grams():
    # In K-fold, a fold's training Hessian at the common point is the sum of
    # the other folds' Grams.
    X, y, sw, folds = _data()
    groups = np.zeros((X.shape[1], 1), dtype=np.int64)
    objective = _objective(X, y, sw, folds, groups)
    state = objective.groups[0]
    a = state["anchor"][:, None]
    for k, problem in enumerate(_fold_problems(X, y, sw, folds, groups)):
        problem._float32 = False
        H = problem._data_hessian(a)
        np.testing.assert_allclose(state["H"][k], H, rtol=1e-5)


@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
def test_model_hypergradient_matches_finite_differences(penalty):
    X, y, sw, folds = _data(weights=True)
    d = X.shape[1]
    groups = (
        np.zeros((d, 1), dtype=np.int64)
        if penalty == "scalar"
        else np.arange(d, dtype=np.int64)[:, None]
    )
    objective = _objective(X, y, sw, folds, groups)
    theta = np.linspace(-1.0, 3.0, groups.max() + 1)
    objective(theta)  # anchored at exact solutions, with the exact gradient
    point = theta + 0.3
    _, grad = objective.model(point)
    eps = 1e-5
    for j in range(len(point)):
        step = np.zeros_like(point)
        step[j] = eps
        numeric = objective.model(point + step)[0] - objective.model(point - step)[0]
        np.testing.assert_allclose(grad[j], numeric / (2 * eps), rtol=1e-5, atol=1e-11)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("matrices", ["one", "per split"])
def test_stacked_model_is_the_model_split_by_split(fit_intercept, matrices):
    """The batched model (small factorizations) gives every split's values and
    hypergradients of the one-split-at-a-time path, one design matrix for all
    the splits or one each (a search's folds), with a model of any groups."""
    X, y, sw, folds = _data(weights=True)
    groups = (np.arange(X.shape[1]) % 3).astype(np.int64)[:, None]
    if matrices == "one":
        readers = [(X, y, sw, train, test) for train, test in folds]
    else:
        readers = _own_matrices(X, y, sw, folds)
    objective = QuadraticObjective(
        readers, [groups] * len(folds), 3, fit_intercept, np.zeros(3)
    )
    theta = np.array([-1.0, 0.5, 2.0])
    objective(theta)
    point = theta + np.array([0.3, -0.2, 0.1])
    assert objective._stack() is not None
    stacked = objective.model(point)
    objective._stacked_fixed = False  # one split at a time
    apart = objective.model(point)
    assert stacked[0] == pytest.approx(apart[0], rel=1e-12)
    np.testing.assert_allclose(stacked[1], apart[1], rtol=1e-9, atol=1e-14)


def _own_matrices(X, y, sw, folds):
    """Every split on a matrix of its own rows (training, then validation),
    as a search's preprocessed folds."""
    readers = []
    for train, test in folds:
        rows = np.concatenate([train, test])
        own = np.arange(len(rows))
        readers.append(
            (X[rows], y[rows], sw[rows], own[: len(train)], own[len(train) :])
        )
    return readers


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_groups_in_threads_match_one_after_the_other(n_jobs):
    """Splits on matrices of their own build their models and evaluate in
    threads (as n_jobs asks, or on the cores BLAS may use): the same losses,
    hypergradients and coefficients as one after the other."""
    X, y, sw, folds = _data(weights=True)
    groups = np.zeros((X.shape[1], 1), dtype=np.int64)
    readers = _own_matrices(X, y, sw, folds)
    theta = np.array([0.7])
    outs = []
    for threads in [1, 2]:
        with threadpool_limits(threads):
            objective = QuadraticObjective(
                readers, [groups] * len(folds), 1, True, np.zeros(1), n_jobs=n_jobs
            )
            loss, grad = objective(theta)
            outs.append((loss, grad, objective.split_coefficients(0)))
    assert outs[0][0] == outs[1][0]
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    for (c0, b0), (c1, b1) in zip(outs[0][2], outs[1][2], strict=True):
        np.testing.assert_array_equal(c0, c1)
        np.testing.assert_array_equal(b0, b1)


@pytest.mark.parametrize("penalty", ["scalar", "groups"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_hypergradient_matches_finite_differences_of_the_cv_loss(
    penalty, fit_intercept, monkeypatch
):
    # The models' Hessians come from another point; the adjoint's conjugate
    # gradients on exact products make the hypergradient exact anyway.
    # (Solves and adjoints made tight: the test is of the maths.)
    monkeypatch.setattr(quadratic, "_SOLVE_TOL", 1e-9)
    monkeypatch.setattr(quadratic, "_ADJOINT_TOL", 1e-9)
    X, y, sw, folds = _data(weights=True)
    d = X.shape[1]
    groups = (
        np.zeros((d, 1), dtype=np.int64)
        if penalty == "scalar"
        else (np.arange(d, dtype=np.int64) % 3)[:, None]
    )
    objective = _objective(X, y, sw, folds, groups, fit_intercept)
    problems = _fold_problems(X, y, sw, folds, groups, fit_intercept)
    theta = np.linspace(2.0, 4.0, groups.max() + 1)
    f, grad = objective(theta)
    assert f == pytest.approx(_exact_cv_loss(problems, theta), rel=1e-8)
    eps = 1e-4
    for j in range(len(theta)):
        step = np.zeros_like(theta)
        step[j] = eps
        numeric = (
            _exact_cv_loss(problems, theta + step)
            - _exact_cv_loss(problems, theta - step)
        ) / (2 * eps)
        np.testing.assert_allclose(grad[j], numeric, rtol=1e-3, atol=1e-9)
    assert objective.failures() == (0, 0)


def test_split_coefficients_are_the_folds_solutions():
    X, y, sw, folds = _data()
    groups = np.zeros((X.shape[1], 1), dtype=np.int64)
    objective = _objective(X, y, sw, folds, groups)
    theta = np.array([1.5])
    objective(theta)
    problems = _fold_problems(X, y, sw, folds, groups)
    predictions = objective.validation_predictions(0)
    for k, (coef, intercept) in enumerate(objective.split_coefficients(0)):
        W, _ = problems[k].solve(theta, None, tol=1e-12)
        np.testing.assert_allclose(coef[:, 0], W[:-1, 0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(intercept, W[-1], rtol=1e-4, atol=1e-6)
        test = folds[k][1]
        np.testing.assert_allclose(predictions[k], X[test] @ coef + intercept)
    assert objective.split_coefficients(5) is None


def test_chord_steps_that_fail_fall_back_to_newton(monkeypatch):
    X, y, sw, folds = _data()
    groups = np.zeros((X.shape[1], 1), dtype=np.int64)
    theta = np.array([0.5])
    expected = _objective(X, y, sw, folds, groups)(theta)
    monkeypatch.setattr(quadratic, "_MAX_CHORD_STEPS", 0)
    fallback = _objective(X, y, sw, folds, groups)(theta)
    assert fallback[0] == pytest.approx(expected[0], rel=1e-6)
    np.testing.assert_allclose(fallback[1], expected[1], rtol=2e-3)


def test_refit_reaches_its_tolerance(monkeypatch):
    """The refit's chord steps end within tolerance, with or without the rate
    the splits' chord steps showed (which here bounds the refit's own)."""
    X, y, sw, folds = _data(n=20000, weights=True)
    groups = np.arange(X.shape[1], dtype=np.int64)[:, None]
    objective = _objective(X, y, sw, folds, groups)
    theta = np.linspace(-2.0, 1.0, X.shape[1])
    objective(theta)
    assert 0.0 < objective.contraction < 0.1
    (full,) = _fold_problems(X, y, sw, [(np.arange(len(y)), [])], groups)
    W, _ = full.solve(theta, None, tol=1e-12)
    loss_grad = quadratic._loss_grad
    passes = []
    monkeypatch.setattr(
        quadratic, "_loss_grad", lambda *a, **k: passes.append(1) or loss_grad(*a, **k)
    )
    counts = []
    for contraction in [objective.contraction, None]:
        objective.contraction = contraction
        passes.clear()
        coef, intercept, converged = objective.refit(X, theta)
        counts.append(len(passes))
        assert converged
        np.testing.assert_allclose(coef[:, 0], W[:-1, 0], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(intercept, W[-1], rtol=1e-6, atol=1e-8)
    assert counts[0] <= counts[1]


def test_chord_steps_trust_a_known_rate():
    """With a bound on the ratio of successive decrements, the step that the
    bound takes under the threshold is taken without a pass, and its end is
    within the tolerance; without one, a pass confirms it."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((40, 6))
    exact = M.T @ M
    # The factorized Hessian is 2% off the exact one.
    factor = robust_cho_factor(exact * (1.0 + 0.02 * np.eye(6)) + 0.01 * exact)
    target = rng.standard_normal(6)
    passes = []

    def pass_at(A):
        passes.append(1)
        return (exact @ A - target[:, None],)

    zero = np.zeros((6, 1))
    tol, total = 1e-6, 40.0
    A, _, _, converged, ratio = quadratic._chord_steps(
        pass_at, zero, [factor], zero, [total], tol, 30
    )
    untrusted = len(passes)
    assert converged and 0.0 < ratio < 1e-2
    passes.clear()
    A, last, _, converged, _ = quadratic._chord_steps(
        pass_at, zero, [factor], zero, [total], tol, 30, contraction=ratio
    )
    assert converged and last is None and len(passes) == untrusted - 1
    gradient = exact @ A[:, 0] - target
    assert gradient @ np.linalg.solve(exact, gradient) <= tol**2 * total


@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
def test_search_reaches_the_deterministic_optimum(penalty):
    X, y = make_classification(
        20000, 12, n_informative=4, n_redundant=0, random_state=3
    )
    X = StandardScaler().fit_transform(X)
    quad = BilevelLogisticCV(solver="quadratic", penalty=penalty).fit(X, y)
    det = BilevelLogisticCV(
        solver="deterministic", penalty=penalty, early_stopping=False
    ).fit(X, y)
    assert quad.solver_ == "quadratic"
    assert quad.hypergradient_ == "newton-model"
    # The CV loss at the chosen strengths (exact) is the deterministic
    # search's, to the outer tolerance.
    assert -quad.best_score_ <= -det.best_score_ * (1 + 1e-4)
    assert quad.cv_results_["mean_test_score"][quad.best_index_] == quad.best_score_
    # The refit is LogisticRegression at the chosen C.
    if penalty == "scalar":
        reference = LogisticRegression(C=quad.C_, tol=1e-12, max_iter=1000).fit(X, y)
        np.testing.assert_allclose(quad.coef_, reference.coef_, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(quad.intercept_, reference.intercept_, rtol=1e-5)
    assert np.all(np.isfinite(quad.coef_))


def test_search_starts_from_C_init_and_stays_in_the_box():
    X, y, sw, folds = _data()
    groups = np.zeros((X.shape[1], 1), dtype=np.int64)
    objective = _objective(X, y, sw, folds, groups, theta0=np.array([2.0]))
    result = minimize_quadratic(
        objective, np.array([2.0]), -1.0, 3.0, max_iter=20, tol=1e-4
    )
    assert -1.0 <= result.theta[0] <= 3.0
    assert result.f == min(r.loss for r in objective.records)
    assert result.converged


def test_separable_classes_reach_the_end_of_the_range():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BilevelLogisticCV(solver="quadratic").fit(X, y)
    assert model.C_ == model.C_bounds_[1]
    assert np.all(np.isfinite(model.coef_))


def test_auto_takes_the_quadratic_mode_where_it_pays():
    def chosen(shape, n_out=1, n_hyper=1, sparse=False, **params):
        estimator = BilevelLogisticCV(**params)
        X = sp.csr_matrix((2, 2)) if sparse else np.zeros((2, 2))
        return estimator._choose_solver(shape, X, n_out, n_hyper, "auto", False)

    assert chosen((30000, 20)) == "quadratic"
    assert chosen((400000, 200), n_hyper=200) == "quadratic"
    assert chosen((5000, 20)) == "deterministic"  # few samples
    assert chosen((30000, 200)) == "deterministic"  # few per coefficient
    assert chosen((30000, 20), n_out=3) == "deterministic"  # multinomial
    assert chosen((30000, 20), sparse=True) == "quadratic"  # one-hot columns
    assert chosen((10000, 50000), sparse=True) == "deterministic"  # text
    # Many strengths with fewer than 1000 samples each: the guard's place,
    # unless the alternative is the (unguarded) stochastic mode.
    assert chosen((50000, 200), n_hyper=200) == "deterministic"
    assert chosen((50000, 200), n_hyper=200, early_stopping=False) == "quadratic"
    assert chosen((100000, 200), n_hyper=200) == "quadratic"
    assert chosen((30000, 20), solver="deterministic") == "deterministic"
    assert (
        BilevelLogisticCV(hypergradient="cg")._choose_solver(
            (30000, 20), np.zeros((2, 2)), 1, 1, "cg", False
        )
        == "deterministic"
    )


def test_bad_settings_raise_and_auto_falls_back():
    X, y = make_classification(600, 5, n_informative=3, n_classes=3, random_state=0)
    with pytest.raises(ValueError, match="Only binary classification"):
        BilevelLogisticCV(solver="quadratic").fit(X, y)
    y2 = (y > 0).astype(int)
    with pytest.raises(ValueError, match="hypergradient='cg' applies"):
        BilevelLogisticCV(solver="quadratic", hypergradient="cg").fit(X, y2)
    wide = np.random.default_rng(0).standard_normal((60, 1500))
    with pytest.raises(ValueError, match="at most 1500 coefficients"):
        BilevelLogisticCV(solver="quadratic").fit(wide, np.arange(60) % 2)
    many = ShuffleSplit(n_splits=7, test_size=0.3, random_state=0)  # 2**7 groups
    with pytest.raises(ValueError, match="groups with the same part"):
        BilevelLogisticCV(solver="quadratic", cv=many).fit(X, y2)
    # "auto" takes the deterministic search for these splits instead.
    estimator = BilevelLogisticCV(cv=many)
    estimator._quadratic_pays = lambda *args: True
    assert estimator.fit(X, y2).solver_ == "deterministic"


def test_pipeline_search_with_splits_of_their_own(monkeypatch):
    # A search's preprocessing gives every split its own matrix: one model
    # group each.
    import skbilevel._base

    X, y = make_classification(3000, 6, n_informative=4, random_state=0)

    def search():
        return HypergradientSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression()),
            {"logisticregression__C": (1e-3, 1e3)},
            scoring="neg_log_loss",
        ).fit(X, y)

    reference = search()
    runs = []
    original = skbilevel._base.minimize_quadratic

    def counted(objective, *args, **kwargs):
        runs.append(len(objective.groups))
        return original(objective, *args, **kwargs)

    monkeypatch.setattr(skbilevel._base, "minimize_quadratic", counted)
    monkeypatch.setattr(BilevelLogisticCV, "_quadratic_pays", lambda *args: True)
    quad = search()
    assert runs == [5]
    assert quad.best_score_ >= reference.best_score_ - 1e-4 * abs(reference.best_score_)
