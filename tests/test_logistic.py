"""BilevelLogisticCV: hypergradients, optimality, behaviour and errors."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import skbilevel._problems._logistic as _logistic_problem
from skbilevel import BilevelLogisticCV, _rows
from skbilevel._hypergradient import FoldState, fold_value_and_grad
from skbilevel._objectives import FoldsObjective
from skbilevel._problems import LogisticProblem
from skbilevel._validation import check_penalty

from ._helpers import central_difference, penalty_array, relative_error

# Same bounds as for ridge (see test_hypergradient.py).
BOUNDS = {"direct": 1e-5, "cg": 1e-5, "fixed_point": 1e-5, "neumann": 1e-4, "itd": 1e-4}


def _count_calls(monkeypatch, owner, name, counts):
    """Count calls of ``owner.name`` in ``counts[-1]``."""
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        counts[-1] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


def _data(n_classes, sparse, weights, seed=0):
    X, y = make_classification(
        90,
        6,
        n_informative=4,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=seed,
    )
    sw = (
        np.random.RandomState(seed).uniform(0.3, 2.0, len(y))
        if weights
        else np.ones(len(y))
    )
    if sparse:
        X[np.abs(X) < 0.5] = 0.0
        X = sp.csr_matrix(X)
    return X, y, sw


def _objective(X, y, sw, penalty, n_classes, fit_intercept, method):
    n_out = 1 if n_classes == 2 else n_classes
    groups, n_hyper, _ = check_penalty(
        penalty_array(penalty, X.shape[1]), X.shape[1], n_out, "per_class"
    )
    if fit_intercept:
        groups = np.vstack([groups, np.full((1, n_out), -1, np.int64)])
    folds = list(StratifiedKFold(3).split(X, y))
    problems = [
        LogisticProblem(
            X[tr],
            y[tr],
            sw[tr],
            n_out,
            groups,
            n_hyper,
            fit_intercept,
            X_val=X[te],
            targets_val=y[te],
            sw_val=sw[te],
        )
        for tr, te in folds
    ]
    objective = FoldsObjective(problems, method, adjoint_max_iter=2000)
    objective.tol = 1e-12
    return objective, n_hyper


@pytest.mark.parametrize("method", list(BOUNDS))
@pytest.mark.parametrize("penalty", ["scalar", "per_feature", "per_class", "groups"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_hypergradient_matches_finite_differences(
    method, penalty, n_classes, sparse, fit_intercept, weights
):
    X, y, sw = _data(n_classes, sparse, weights)
    objective, n_hyper = _objective(X, y, sw, penalty, n_classes, fit_intercept, method)
    exact, _ = _objective(X, y, sw, penalty, n_classes, fit_intercept, "direct")
    rng = np.random.RandomState(1)
    theta = np.log(3.0) + 0.4 * rng.randn(n_hyper)
    _, grad = objective(theta)
    # Values with need_grad=True: solves at full accuracy (value-only
    # evaluations are allowed a looser tolerance, see FoldsObjective).
    fd = central_difference(lambda t: exact(t)[0], theta, h=1e-4)
    assert relative_error(grad, fd) <= BOUNDS[method]


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("sparse", [False, True])
def test_inner_solution_is_sklearn_logistic_regression(n_classes, sparse):
    X, y, sw = _data(n_classes, sparse, weights=True)
    n_out = 1 if n_classes == 2 else n_classes
    groups = np.zeros((7, n_out), np.int64)
    groups[-1] = -1
    C = 0.7
    W, ok = LogisticProblem(X, y, sw, n_out, groups, 1, True).solve(
        np.array([np.log(1 / C)]), tol=1e-12
    )
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(
        X, y, sample_weight=sw
    )
    assert ok
    assert np.allclose(W[:6].T, ref.coef_, atol=1e-6)
    assert np.allclose(W[6], ref.intercept_, atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("at_zero", [False, True])
@pytest.mark.parametrize("float32", [False, True])
def test_data_hessian_matches_hessian_vector_products(
    n_classes, sparse, fit_intercept, at_zero, float32, monkeypatch
):
    """The formed Hessian against Hessian-vector products, at a random point
    and at W = 0 (where the multinomial one has a closed form); the dense
    multinomial one in float64 (small products) and in float32 (large)."""
    if float32:
        monkeypatch.setattr(_logistic_problem, "_FLOAT32_MIN_PRODUCT", 0.0)
    X, y, sw = _data(n_classes, sparse, weights=True, seed=3)
    n_out = 1 if n_classes == 2 else n_classes
    groups = np.zeros((6 + fit_intercept, n_out), np.int64)
    if fit_intercept:
        groups[-1] = -1
    problem = LogisticProblem(X, y, sw, n_out, groups, 1, fit_intercept)
    W = np.random.RandomState(4).randn(*groups.shape) * (not at_zero)
    H = problem._data_hessian(W).copy()
    if n_out > 1 and fit_intercept:
        # The softmax's null direction (one constant on every intercept) is
        # filled on purpose; compare on the other directions.
        u = np.zeros(groups.shape)
        u[-1] = 1.0 / np.sqrt(n_out)
        u = u.ravel()
        # H = H0 + mean(diag(H0)) u u^T, and u u^T has trace 1.
        H -= np.mean(np.diag(H)) / (1.0 + 1.0 / u.size) * np.outer(u, u)
    columns = [
        problem._data_hvp(W, e.reshape(groups.shape)).ravel()
        for e in np.eye(groups.size)
    ]
    # Binary dense Hessians are float32 products (1e-7 relative), and so are
    # large multinomial ones; not the multinomial one at W = 0 (a closed
    # form).
    exact = sparse or (n_out > 1 and (at_zero or not float32))
    rtol = 1e-10 if exact else 1e-6
    np.testing.assert_allclose(H, np.array(columns).T, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fused_dense_binary_terms_match_the_sparse_path(monkeypatch, fit_intercept):
    """Dense binary problems use fused row-block kernels (in threads), sparse
    ones SciPy's products: same loss, gradient and Hessian-vector product."""
    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 7 * 12)  # blocks of 7 rows
    X, y, sw = _data(2, True, weights=True, seed=7)
    groups = np.zeros((6 + fit_intercept, 1), np.int64)
    if fit_intercept:
        groups[-1] = -1
    rng = np.random.RandomState(8)
    W, V = rng.randn(*groups.shape), rng.randn(*groups.shape)
    theta = np.array([np.log(2.0)])
    with threadpool_limits(limits=2, user_api="blas"):
        dense, sparse = (
            LogisticProblem(data, y, sw, 1, groups, 1, fit_intercept)
            for data in (X.toarray(), X)
        )
        assert len(_rows.map_row_blocks(lambda lo, hi: hi, X.shape[0], 12)) == 2
        for problem in (dense, sparse):
            problem.terms = (
                problem.value(W, theta),
                problem.gradient(W, theta),
                problem.hvp(W, theta, V),
            )
    np.testing.assert_allclose(dense.terms[0], sparse.terms[0], rtol=1e-12)
    for a, b in zip(dense.terms[1:], sparse.terms[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_adjoint_with_a_hessian_from_another_point_is_exact(n_classes):
    """hessian_solve preconditions CG with a stale Hessian: same solution."""
    X, y, sw = _data(n_classes, False, weights=True, seed=5)
    n_out = 1 if n_classes == 2 else n_classes
    groups = np.zeros((7, n_out), np.int64)
    groups[-1] = -1
    problem = LogisticProblem(X, y, sw, n_out, groups, 1, True)
    theta = np.array([np.log(2.0)])
    W_far, _ = problem.solve(np.array([np.log(50.0)]), tol=1e-10)
    W, _ = problem.solve(theta, W_far, tol=1e-12)
    problem._data_hessian(W_far)  # the Hessian left over from elsewhere
    rhs = np.random.RandomState(6).randn(*W.shape)
    # Like every gradient of a softmax problem, no component along one shift
    # of all the intercepts (the direction _data_hessian fills).
    rhs[-1] -= rhs[-1].mean()
    v = problem.hessian_solve(W, theta, rhs)
    np.testing.assert_allclose(
        problem.hvp(W, theta, v), rhs, rtol=1e-8, atol=1e-8 * np.abs(rhs).max()
    )


def _krylov_problem(penalty="scalar", **options):
    """A softmax problem with many coefficients for its rows: its Hessian's
    factorization costs several passes (Krylov mode, see
    LogisticProblem.solve)."""
    X, y = make_classification(160, 30, n_informative=10, n_classes=4, random_state=3)
    X = StandardScaler().fit_transform(X)
    sw = np.random.RandomState(3).uniform(0.5, 2.0, len(y))
    groups, n_hyper, _ = check_penalty(penalty_array(penalty, 30), 30, 4, "per_class")
    groups = np.vstack([groups, np.full((1, 4), -1, np.int64)])
    tr, te = np.arange(120), np.arange(120, 160)
    problem = LogisticProblem(
        X[tr], y[tr], sw[tr], 4, groups, n_hyper, True,
        X_val=X[te], targets_val=y[te], sw_val=sw[te], **options,
    )  # fmt: skip
    return problem, n_hyper


def test_krylov_newton_steps_reach_the_factorized_solutions(monkeypatch):
    """Along a path of penalties, Newton steps by conjugate gradients on the
    stale factorization reach the solutions of factorized Newton steps
    (chord mode), with fewer factorizations; so do steps whose conjugate
    gradients stop short of their tolerance (a fresh Hessian follows)."""
    problems = [_krylov_problem()[0] for _ in range(3)]
    assert problems[0]._krylov  # the mode under test
    problems[1]._krylov = False
    problems[2]._krylov_products = 1
    factorizations = []
    original = _logistic_problem.robust_cho_factor

    def counted(H):
        factorizations[-1] += 1
        return original(H)

    monkeypatch.setattr(_logistic_problem, "robust_cho_factor", counted)
    paths = []
    for problem in problems:
        factorizations.append(0)
        W, path = None, []
        for C in [0.01, 0.05, 0.2, 1.0, 3.0, 10.0]:
            W, ok = problem.solve(np.array([np.log(1 / C)]), W, tol=1e-10)
            assert ok
            path.append(W)
        paths.append(path)
    for W_krylov, W_chord, W_short in zip(*paths, strict=True):
        for W in (W_krylov, W_short):
            np.testing.assert_allclose(W, W_chord, atol=1e-7 * np.abs(W_chord).max())
    assert factorizations[0] < factorizations[1]


@pytest.mark.parametrize("penalty", ["scalar", "per_class"])
def test_krylov_mode_hypergradient_matches_finite_differences(penalty):
    """The adjoint preconditioned by a factorization made at another penalty
    (Krylov mode) gives the exact hypergradient."""
    problem, n_hyper = _krylov_problem(penalty)
    assert problem._krylov
    state = FoldState()
    theta = np.log(2.0) + 0.3 * np.random.RandomState(4).randn(n_hyper)
    # A factorization left over from a far penalty, as along a search.
    fold_value_and_grad(problem, theta + 2.0, state, method="direct")

    def loss(t):
        fresh = FoldState(w=state.w.copy())
        return fold_value_and_grad(problem, t, fresh, method="direct", inner_tol=1e-12)[
            0
        ]

    _, grad, _ = fold_value_and_grad(
        problem, theta, state, method="direct", inner_tol=1e-12, adjoint_tol=1e-12
    )
    assert not state.failures
    fd = central_difference(loss, theta, h=1e-4)
    assert relative_error(grad, fd) <= 1e-5


@pytest.mark.parametrize("method", ["direct", "cg"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("sparse", [False, True])
def test_forward_mode_tangent_and_hypergradient(method, n_classes, sparse):
    """tangent=True: the hypergradient equals the adjoint's, and the kept
    tangent is the solution's derivative (central differences of solves)."""
    X, y, sw = _data(n_classes, sparse, weights=True, seed=2)
    n_out = 1 if n_classes == 2 else n_classes
    groups = np.zeros((7, n_out), np.int64)
    groups[-1] = -1
    tr, te = np.arange(60), np.arange(60, 90)
    problem = LogisticProblem(
        X[tr], y[tr], sw[tr], n_out, groups, 1, True,
        X_val=X[te], targets_val=y[te], sw_val=sw[te],
    )  # fmt: skip
    theta = np.array([np.log(1.5)])
    options = dict(method=method, inner_tol=1e-12, adjoint_tol=1e-12)
    forward = FoldState()
    _, grad, w = fold_value_and_grad(problem, theta, forward, tangent=True, **options)
    _, adjoint_grad, _ = fold_value_and_grad(problem, theta, FoldState(), **options)
    np.testing.assert_allclose(grad, adjoint_grad, rtol=1e-8)

    def solution(t):
        return problem.solve(np.array([t]), w, tol=1e-12, method="direct")[0]

    h = 1e-5
    fd = (solution(theta[0] + h) - solution(theta[0] - h)) / (2 * h)
    assert relative_error(forward.tangent, fd) <= 1e-6


def test_warm_start_takes_the_guess_only_where_it_is_better():
    """A predicted solution replaces the nearest one as the warm start when
    its training objective is lower, and is used once."""
    from skbilevel._hypergradient import _warm_start

    problem, _ = _krylov_problem()
    theta = np.array([np.log(2.0)])
    w, _ = problem.solve(theta, tol=1e-10)
    near = w + 1e-3 * np.random.RandomState(0).randn(*w.shape)
    state = FoldState(w=near, guess=w)
    assert _warm_start(problem, theta, state) is w
    assert state.guess is None
    state = FoldState(w=w, guess=near + 10.0)
    assert _warm_start(problem, theta, state) is w
    assert _warm_start(problem, theta, FoldState(w=None, guess=w)) is None


def test_tangent_starts_keep_the_search_and_save_products(monkeypatch):
    """Forward-mode hypergradients with tangent warm starts (the logistic
    default for one C) find the C of adjoint hypergradients, and the
    predicted warm starts save Hessian-vector products on word counts (as
    on benchmarks/bench_logistic.py's text-like problem; not everywhere:
    dense 400 x 300 spent 9% more)."""
    rng = np.random.RandomState(0)
    X = sp.random(
        2000, 5000, density=0.005, format="csr", random_state=rng,
        data_rvs=lambda k: rng.poisson(2.0, k) + 1.0,
    )  # fmt: skip
    coef = np.where(rng.rand(5000) < 0.05, 2.0 * rng.randn(5000), 0.0)
    scores = X @ coef
    y = (rng.rand(2000) < 1 / (1 + np.exp(np.median(scores) - scores))).astype(int)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    products = []
    _count_calls(monkeypatch, _logistic_problem.LogisticProblem, "_data_hvp", products)
    # Sparse binary solves run compiled: their products are counted as they report.
    compiled = _logistic_problem.sparse_binary_cg

    def counted(*args):
        out = compiled(*args)
        products[-1] += out[1]
        return out

    monkeypatch.setattr(_logistic_problem, "sparse_binary_cg", counted)
    models = []
    for tangents in [True, False]:
        monkeypatch.setattr(
            FoldsObjective,
            "tangent_starts",
            property(lambda self, on=tangents: on, lambda self, value: None),
        )
        products.append(0)
        models.append(BilevelLogisticCV(cv=folds).fit(X, y))
    assert models[0].C_ == pytest.approx(models[1].C_, rel=1e-3)
    assert models[0].best_score_ == pytest.approx(models[1].best_score_, rel=1e-7)
    assert products[0] < products[1]


def test_sparse_compiled_path_weights_equal_repeated_rows():
    """Past the factorizable size, binary folds on sparse X are solved by
    the compiled conjugate gradients (settled Newton steps included): an
    integer sample weight still equals the row repeated that many times,
    folds mapped to the repeats."""
    rng = np.random.RandomState(3)
    X = sp.random(240, 1600, density=0.02, format="csr", random_state=rng)
    y = (rng.rand(240) < 1 / (1 + np.exp(-X @ rng.randn(1600)))).astype(int)
    weights = rng.randint(1, 4, 240)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    index = np.repeat(np.arange(240), weights)
    position = np.split(np.arange(len(index)), np.cumsum(weights)[:-1])
    repeated_folds = [
        tuple(np.concatenate([position[i] for i in part]) for part in fold)
        for fold in folds
    ]
    calls = []
    compiled = _logistic_problem.sparse_binary_cg

    def counted(*args):
        calls.append(1)
        return compiled(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_logistic_problem, "sparse_binary_cg", counted)
        weighted = BilevelLogisticCV(cv=folds, solver="deterministic").fit(
            X, y, sample_weight=weights
        )
    assert calls  # the compiled path ran
    repeated = BilevelLogisticCV(cv=repeated_folds, solver="deterministic").fit(
        X[index], y[index]
    )
    # (Equal to round-off when measured: same points, same iterates.)
    assert weighted.C_ == pytest.approx(repeated.C_, rel=1e-9)
    assert weighted.best_score_ == pytest.approx(repeated.best_score_, rel=1e-12)
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-8, atol=1e-12)


def _cv_log_loss(X, y, C, folds):
    """CV log-loss of sklearn's LogisticRegression at C (independent code)."""
    losses = []
    for tr, te in folds:
        model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X[tr], y[tr])
        proba = model.predict_proba(X[te])
        p_true = proba[np.arange(len(te)), y[te]]
        losses.append(-np.mean(np.log(np.maximum(p_true, 1e-300))))
    return float(np.mean(losses))


def _grid_dataset(name):
    if name == "flat":
        # Many samples per coefficient, standardized: the CV loss is flat
        # over decades of weak penalties (the 1-D search's ties and its
        # curvature certificate at work).
        X, y = make_classification(6000, 10, n_informative=4, random_state=0)
        return StandardScaler().fit_transform(X), y
    if name == "sparse":
        rng = np.random.RandomState(0)
        X = sp.random(600, 2000, density=0.01, format="csr", random_state=rng)
        coef = np.where(rng.rand(2000) < 0.05, rng.randn(2000) * 3.0, 0.0)
        scores = X @ coef
        y = rng.rand(600) < 1.0 / (1.0 + np.exp(-(scores - np.median(scores))))
        return X, y.astype(int)
    X, y = (load_breast_cancer if name == "breast_cancer" else load_iris)(
        return_X_y=True
    )
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", "flat", "sparse"])
def test_scalar_C_beats_a_dense_grid(dataset):
    X, y = _grid_dataset(dataset)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    clf = BilevelLogisticCV(cv=folds).fit(X, y)
    ours = _cv_log_loss(X, y, clf.C_, folds)
    assert ours == pytest.approx(-clf.best_score_, rel=1e-6)
    grid = np.logspace(-3, 3, 61)
    assert ours <= min(_cv_log_loss(X, y, C, folds) for C in grid) * (1 + 1e-7)


def test_attributes_and_predictions():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = BilevelLogisticCV(cv=3).fit(X, labels)
    assert list(clf.classes_) == list(labels[[0, 50, 100]])
    assert clf.coef_.shape == (3, 4) and clf.intercept_.shape == (3,)
    proba = clf.predict_proba(X)
    assert np.allclose(proba.sum(1), 1.0)
    assert np.allclose(np.exp(clf.predict_log_proba(X)), proba)
    assert (clf.predict(X) == labels).mean() > 0.9
    assert clf.decision_function(X).shape == (150, 3)
    binary = BilevelLogisticCV().fit(X[:100], labels[:100])
    assert binary.coef_.shape == (1, 4)
    assert binary.decision_function(X[:100]).shape == (100,)
    res = clf.cv_results_
    assert res["params"][clf.best_index_] == {"C": clf.C_}
    assert "param_C" in res and "split2_test_score" in res


def test_per_feature_lowers_held_out_log_loss_with_useless_features():
    X, y = make_classification(1200, 60, n_informative=5, n_redundant=0, random_state=0)
    X_train, y_train, X_test, y_test = X[:600], y[:600], X[600:], y[600:]
    scalar = BilevelLogisticCV().fit(X_train, y_train)
    free = BilevelLogisticCV(penalty="per_feature", early_stopping=False)
    guarded = BilevelLogisticCV(penalty="per_feature")

    def held_out(model):
        model.fit(X_train, y_train)
        p = model.predict_proba(X_test)[np.arange(len(y_test)), y_test]
        return -np.mean(np.log(p))

    # The unguarded search finds the gain (2.8%); the guard, with 200
    # held-out samples, cannot tell it from noise and keeps the shared
    # strength (see tests/test_many_hyperparameters.py for clearer gains).
    assert held_out(free) < held_out(scalar)
    assert held_out(guarded) <= 1.005 * held_out(scalar)


def test_class_weight_and_scoring():
    X, y = make_classification(300, 5, weights=[0.9], random_state=0)
    balanced = BilevelLogisticCV(class_weight="balanced").fit(X, y)
    plain = BilevelLogisticCV().fit(X, y)
    assert balanced.predict(X).mean() > plain.predict(X).mean()
    acc = BilevelLogisticCV(scoring="accuracy").fit(X, y)
    assert 0.5 < acc.best_score_ <= 1.0
    assert acc.score(X, y) == pytest.approx((acc.predict(X) == y).mean())


def test_separable_data_tiny_classes_and_extreme_bounds_stay_finite():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 3)
    y = (X[:, 0] > 0).astype(int)  # perfectly separable
    clf = BilevelLogisticCV(C_bounds=(1e-8, 1e8)).fit(X, y)
    assert np.all(np.isfinite(clf.coef_)) and 1e-8 <= clf.C_ <= 1e8
    y3 = y.copy()
    y3[:3] = 2  # a class of 3 samples: some training folds miss it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the tiny class
        clf = BilevelLogisticCV(cv=3).fit(X, y3)
    assert np.all(np.isfinite(clf.coef_)) and np.all(np.isfinite(clf.predict_proba(X)))


def test_bad_targets_and_values():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="only one class"):
        BilevelLogisticCV().fit(X, np.zeros(150))
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        BilevelLogisticCV().fit(X, np.linspace(0, 1, 150))
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        BilevelLogisticCV().fit(Xn, y)


def test_non_converged_outer_loop_warns_and_predicts():
    X, y = make_classification(200, 10, random_state=0)
    with pytest.warns(ConvergenceWarning):
        clf = BilevelLogisticCV(penalty="per_feature", max_iter=1).fit(X, y)
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_balanced_class_weight_counts_classes_by_sample_weight():
    # "balanced" weighs classes by their weighted counts, as LogisticRegression
    # does: the tuned model is LogisticRegression(C=C_, class_weight="balanced").
    X, y = make_classification(300, 5, weights=[0.8], random_state=0)
    sw = np.random.RandomState(0).uniform(0.1, 3.0, len(y)) * (1 + 4 * y)
    clf = BilevelLogisticCV(class_weight="balanced").fit(X, y, sample_weight=sw)
    reference = LogisticRegression(
        C=clf.C_, class_weight="balanced", tol=1e-12, max_iter=10_000
    ).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(clf.coef_, reference.coef_, rtol=1e-4, atol=1e-6)


def test_loose_value_solves_read_the_float32_copy(monkeypatch):
    """A loose solve of a value alone (a scan point) reads the float32 copy
    of X for its passes, and lands within its tolerance of the float64
    solution; an accurate solve, or one for a hypergradient, reads X."""
    X, y, sw = _data(2, False, weights=True)
    groups = np.zeros((7, 1), np.int64)
    groups[-1] = -1
    problem = LogisticProblem(X, y, sw, 1, groups, 1, True, X32=X.astype(np.float32))
    seen = []
    original = _logistic_problem._loss_grad

    def recording(X_pass, *args):
        seen.append(X_pass.dtype)
        return original(X_pass, *args)

    monkeypatch.setattr(_logistic_problem, "_loss_grad", recording)
    theta = np.array([np.log(0.5)])
    rough, _ = problem.solve(theta, tol=1e-3, for_adjoint=False)
    assert set(seen) == {np.dtype(np.float32)}
    seen.clear()
    exact, _ = problem.solve(theta, tol=1e-10)
    assert set(seen) == {np.dtype(np.float64)}
    seen.clear()
    problem.solve(theta, tol=1e-3, for_adjoint=True)
    assert set(seen) == {np.dtype(np.float64)}
    np.testing.assert_allclose(rough, exact, rtol=1e-3, atol=1e-3)


def _record_fold_threads(monkeypatch, n_threads):
    """The names of the threads that evaluate logistic folds (a set filled as
    fits run), with ``n_threads`` threads that BLAS may use."""
    import threading

    import skbilevel._objectives as objectives

    threads = set()
    original = LogisticProblem.outer_loss_grad

    def spy(self, W):
        threads.add(threading.current_thread().name)
        return original(self, W)

    monkeypatch.setattr(LogisticProblem, "outer_loss_grad", spy)
    monkeypatch.setattr(objectives, "row_threads", lambda: n_threads)
    return threads


@pytest.mark.parametrize("sparse", [False, True])
def test_folds_that_do_not_split_in_row_blocks_share_the_cores(monkeypatch, sparse):
    """With n_jobs=None, multinomial and sparse folds run in the folds' threads,
    as many as BLAS may use (here 2), each with BLAS on one thread: the same
    model as the folds in order, which BLAS limited to one thread keeps."""
    import threading

    # Passes of 2400 x 80 x 3 multiply-adds, and over about 2400 x 1500 x 0.2
    # stored entries: enough work for the folds to share the cores
    # (_MIN_SHARED_PASS_WORK).
    X, y = make_classification(3000, 80, n_informative=10, n_classes=3, random_state=0)
    if sparse:  # binary and sparse: no row blocks either
        rng = np.random.RandomState(0)
        X = sp.random(3000, 1500, density=0.2, format="csr", random_state=rng)
        y = (X @ rng.randn(1500) + 0.5 * rng.randn(3000) > 0).astype(int)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    threads = _record_fold_threads(monkeypatch, 2)
    shared = BilevelLogisticCV(cv=folds).fit(X, y)
    assert threads and all(name.startswith("skbilevel-folds") for name in threads)

    threads = _record_fold_threads(monkeypatch, 1)
    alone = BilevelLogisticCV(cv=folds).fit(X, y)
    assert threads == {threading.main_thread().name}
    assert shared.C_ == pytest.approx(alone.C_, rel=1e-12)
    np.testing.assert_allclose(shared.coef_, alone.coef_, rtol=1e-12, atol=1e-14)


def test_folds_that_split_in_row_blocks_stay_in_order(monkeypatch):
    """Dense binary folds whose passes split in row blocks keep n_jobs=None's
    folds in order (the blocks take the cores); so do folds too small to
    gain from threads."""
    import threading

    # 2400 x 250 multiply-adds a pass: enough for the folds to share the
    # cores, unless the rows split in blocks.
    X, y = make_classification(3000, 250, n_informative=10, random_state=0)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    threads = _record_fold_threads(monkeypatch, 2)
    BilevelLogisticCV(cv=folds, max_iter=2).fit(X, y)
    assert threads and all(name.startswith("skbilevel-folds") for name in threads)
    threads.clear()
    # The rows split in blocks once a block's work may be this small.
    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 1000)
    BilevelLogisticCV(cv=folds, max_iter=2).fit(X, y)
    assert threads == {threading.main_thread().name}
    monkeypatch.undo()
    threads = _record_fold_threads(monkeypatch, 2)
    small = X[:600, :10]  # 480 x 10 x 1: far below _MIN_SHARED_PASS_WORK
    BilevelLogisticCV(cv=3).fit(small, y[:600])
    assert threads == {threading.main_thread().name}


def test_scan_points_past_the_minimum_stop_once_clearly_worse(monkeypatch):
    """A loose scan point whose folds' validation loss rises 10% above the
    best stops solving there (FoldsObjective._screen): the search ends at the
    same C, with fewer passes over the data (Hessian-vector products
    included), and no solve counts as failed."""
    from sklearn.datasets import load_digits

    import skbilevel._objectives as objectives

    X, y = load_digits(return_X_y=True)
    X = X[:900] / 16.0
    y = y[:900]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    passes = []
    _count_calls(monkeypatch, _logistic_problem, "_loss_grad", passes)
    # Hessian-vector products read the data as a pass does (Newton steps by
    # conjugate gradients, see LogisticProblem.solve).
    _count_calls(monkeypatch, _logistic_problem.LogisticProblem, "_data_hvp", passes)
    stopped = []
    screen = objectives.FoldsObjective._screen

    def spy(self, run, kwargs):
        results, seconds = screen(self, run, kwargs)
        if results is not None:
            stopped.append(np.mean([r[0] for r in results]) > self.cutoff)
        return results, seconds

    monkeypatch.setattr(objectives.FoldsObjective, "_screen", spy)
    passes.append(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        screened = BilevelLogisticCV(cv=folds).fit(X, y)
    assert any(stopped)  # a point was settled above the cutoff

    # The same search with every scan point solved to its tolerance.
    monkeypatch.setattr(objectives.FoldsObjective, "screen", lambda self, c: None)
    passes.append(0)
    solved = BilevelLogisticCV(cv=folds).fit(X, y)
    assert screened.C_ == pytest.approx(solved.C_, rel=1e-5)
    assert screened.best_score_ == pytest.approx(solved.best_score_, rel=1e-8)
    assert passes[0] < passes[1]
