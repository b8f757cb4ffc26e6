"""BilevelKernelRidgeCV: the fold maths against finite differences and
scikit-learn's KernelRidge, leave-one-out against refits, and the search
against a 10 x 10 grid."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

import skbilevel._kernel_ridge as _kernel_ridge
import skbilevel._problems._kernel as _kernel_problem
from skbilevel import BilevelKernelRidgeCV
from skbilevel._problems._kernel import (
    KernelFold,
    KernelLeaveOneOut,
    KernelSpec,
    NystroemFold,
)

KERNEL_SPECS = [
    KernelSpec("rbf"),
    KernelSpec("laplacian"),
    KernelSpec("poly", degree=2, coef0=1.0),
    KernelSpec("linear"),
]


def _data(n_samples=40, n_features=3, n_targets=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features) + 1.0  # off-center: centering matters
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2][:n_targets]) + 0.1 * rng.randn(
        n_samples, n_targets
    )
    sw = rng.uniform(0.5, 2.0, n_samples)
    sw[3] = 0.0  # a zero weight: a row that must not count
    return X, Y, sw


def _folds(spec, X, Y, sw, loo):
    if loo:
        return KernelLeaveOneOut(spec, X, Y, sw)
    train, test = np.arange(30), np.arange(30, X.shape[0])
    return KernelFold(spec, X[train], Y[train], sw[train], X[test], Y[test], sw[test])


@pytest.mark.parametrize("spec", KERNEL_SPECS, ids=lambda s: s.kernel)
@pytest.mark.parametrize("loo", [False, True], ids=["holdout", "loo"])
@pytest.mark.parametrize("spectral", [False, True])
def test_derivatives_match_finite_differences(spec, loo, spectral):
    """Per-target log strengths and per-feature log widths, two targets,
    weights with a zero: central differences of the loss to 1e-5."""
    X, Y, sw = _data()
    fold = _folds(spec, X, Y, sw, loo)
    theta = np.r_[np.log([0.3, 0.05]), np.log([0.4, 0.2, 0.7])]

    def loss(th):
        return fold.loss_grad(np.exp(th[:2]), np.exp(th[2:]), False, spectral)[0]

    _, d_alpha, d_width = fold.loss_grad(
        np.exp(theta[:2]), np.exp(theta[2:]), True, spectral
    )
    grad = np.r_[d_alpha, d_width if spec.has_widths else np.zeros(3)]
    step = 1e-5
    numeric = np.array(
        [
            (loss(theta + step * e) - loss(theta - step * e)) / (2 * step)
            for e in np.eye(5)
        ]
    )
    assert np.max(np.abs(grad - numeric)) <= 1e-5 * np.max(np.abs(numeric))


@pytest.mark.parametrize("loo", [False, True], ids=["holdout", "loo"])
def test_strength_path_matches_the_solves(loo):
    """The closed-form path at fixed widths gives the losses and strength
    derivatives of the solves, target by target."""
    X, Y, sw = _data()
    fold = _folds(KernelSpec("rbf"), X, Y, sw, loo)
    widths = np.array([0.4, 0.2, 0.7])
    alphas = np.array([1e-3, 0.05, 2.0])
    losses, slopes = fold.strength_path(widths)(alphas)
    for i, alpha in enumerate(alphas):
        for t in range(2):
            both = np.array([alpha, alpha])
            single = np.array([alpha, 1.0]) if t == 0 else np.array([1.0, alpha])
            loss_both = fold.loss_grad(both, widths, False)[0]
            _, d_alpha, _ = fold.loss_grad(single, widths, True)
            assert slopes[i, t] == pytest.approx(d_alpha[t], rel=1e-7)
        assert losses[i].sum() == pytest.approx(loss_both, rel=1e-9)


@pytest.mark.parametrize("spec", KERNEL_SPECS, ids=lambda s: s.kernel)
def test_fold_is_sklearn_kernel_ridge(spec):
    """A split's validation predictions equal KernelRidge's, fitted on the
    training rows with the same weights (scalar width)."""
    X, Y, sw = _data()
    fold = _folds(spec, X, Y, sw, loo=False)
    alphas, gamma = np.array([0.2, 0.2]), 0.3
    ours = fold.predict(alphas, np.full(3, gamma))
    theirs = KernelRidge(
        alpha=0.2, kernel=spec.kernel, gamma=gamma, degree=spec.degree,
        coef0=spec.coef0,
    ).fit(X[:30], Y[:30], sample_weight=sw[:30]).predict(X[30:])  # fmt: skip
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


def test_per_feature_rbf_widths_are_scaled_features():
    """One RBF width per feature is the scalar-width kernel on the features
    scaled by the square roots of the widths."""
    X, Y, sw = _data()
    widths = np.array([0.4, 0.02, 1.5])
    fold = _folds(KernelSpec("rbf"), X, Y, sw, loo=False)
    ours = fold.predict(np.array([0.1, 0.1]), widths)
    scaled = X * np.sqrt(widths)
    theirs = KernelRidge(alpha=0.1, kernel="rbf", gamma=1.0).fit(
        scaled[:30], Y[:30], sample_weight=sw[:30]
    ).predict(scaled[30:])  # fmt: skip
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("spec", KERNEL_SPECS[:3], ids=lambda s: s.kernel)
def test_leave_one_out_is_refits(spec):
    """The closed-form leave-one-out residuals equal those of KernelRidge
    refitted without each row (weighted rows; the zero-weight row's
    residual is its own, its loss weight zero)."""
    X, Y, sw = _data(n_samples=25)
    loo = KernelLeaveOneOut(spec, X, Y, sw)
    alphas, widths = np.array([0.05, 0.3]), np.array([0.4, 0.2, 0.7])
    residuals = loo.residuals(alphas, widths)
    for i in range(X.shape[0]):
        if sw[i] == 0:
            continue
        keep = np.arange(X.shape[0]) != i
        for t in range(2):
            ours = KernelFold(
                spec, X[keep], Y[keep, t : t + 1], sw[keep], X[i : i + 1],
                Y[i : i + 1, t : t + 1], np.ones(1),
            ).predict(alphas[t : t + 1], widths)  # fmt: skip
            assert residuals[i, t] == pytest.approx(Y[i, t] - ours[0, 0], rel=1e-7)
    expected = np.sum(sw[:, None] * residuals**2) / (sw.sum() * 2)
    assert loo.loss_grad(alphas, widths, False)[0] == pytest.approx(expected)


def _diabetes(n_samples=200):
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X[:n_samples]), y[:n_samples]


def _cv_mse(X, y, folds, alpha, gamma, kernel="rbf"):
    errors = []
    for train, test in folds:
        model = KernelRidge(alpha=alpha, kernel=kernel, gamma=gamma)
        model.fit(X[train], y[train])
        errors.append(mean_squared_error(y[test], model.predict(X[test])))
    return float(np.mean(errors))


def test_search_at_or_below_a_10_by_10_grid():
    """The chosen (alpha, gamma)'s CV MSE, judged by KernelRidge on the same
    folds, is at or below the best point of a 10 x 10 grid, and the model
    refitted on all the rows is KernelRidge's at those values."""
    X, y = _diabetes()
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    model = BilevelKernelRidgeCV(cv=folds).fit(X, y)
    grid = min(
        _cv_mse(X, y, folds, alpha, gamma)
        for alpha in np.logspace(-4, 1, 10)
        for gamma in np.logspace(-3, 1, 10) / X.shape[1]
    )
    ours = _cv_mse(X, y, folds, model.alpha_, model.gamma_)
    assert ours <= grid * (1 + 1e-9)
    assert -model.best_score_ == pytest.approx(ours, rel=1e-8)
    reference = KernelRidge(alpha=model.alpha_, kernel="rbf", gamma=model.gamma_)
    reference.fit(X, y)
    np.testing.assert_allclose(model.dual_coef_, reference.dual_coef_, rtol=1e-6)
    np.testing.assert_allclose(model.predict(X), reference.predict(X), rtol=1e-8)


def test_per_feature_widths_switch_off_irrelevant_features():
    """Where one feature of three matters, one width per feature lowers the
    CV loss far below the scalar width's and shrinks the others' widths."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-3, 3, (150, 3))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.randn(150)
    scalar = BilevelKernelRidgeCV().fit(X, y)
    ard = BilevelKernelRidgeCV(gamma="per_feature", max_iter=200).fit(X, y)
    assert -ard.best_score_ < 0.5 * -scalar.best_score_  # 0.011 vs 0.093
    assert ard.gamma_[0] > 50 * max(ard.gamma_[1:])  # 100x today
    # 150 samples for 3 widths: the early-stopping guard judged the path on
    # held-out samples and kept a point of it.
    path = ard.held_out_path_
    assert path["chosen"] > 0
    held = path["held_out_loss"]
    assert held[path["chosen"]] == held.min() < 0.5 * held[0]
    unguarded = BilevelKernelRidgeCV(
        gamma="per_feature", max_iter=200, early_stopping=False
    ).fit(X, y)
    assert unguarded.held_out_path_ is None
    assert unguarded.best_score_ >= ard.best_score_ - 0.01 * abs(ard.best_score_)


def test_guard_keeps_one_width_where_more_do_not_generalize():
    """Pure-noise features next to one smooth signal, few samples: the path
    of per-feature widths lowers the CV loss, but the held-out samples see
    no gain beyond their noise, and the scalar width is kept."""
    rng = np.random.RandomState(1)
    X = rng.randn(120, 6)
    y = X[:, 0] + X[:, 1] + X[:, 2] + 0.5 * rng.randn(120)
    scalar = BilevelKernelRidgeCV().fit(X, y)
    guarded = BilevelKernelRidgeCV(gamma="per_feature").fit(X, y)
    assert guarded.held_out_path_ is None
    assert guarded.best_score_ == pytest.approx(scalar.best_score_, rel=1e-6)
    assert np.all(guarded.gamma_ == guarded.gamma_[0])


def test_leave_one_out_search_and_fixed_width():
    """cv=None searches the closed-form leave-one-out loss; a fixed gamma
    tunes alpha alone, exactly (at or below a fine grid of alphas)."""
    X, y = _diabetes(120)
    loo = BilevelKernelRidgeCV(cv=None).fit(X, y)
    assert loo.n_splits_ == 1 and np.isnan(loo.cv_results_["std_test_score"]).all()
    fixed = BilevelKernelRidgeCV(gamma=0.05, cv=None).fit(X, y)
    assert fixed.gamma_ == 0.05
    assert loo.best_score_ >= fixed.best_score_  # the width tuned does better
    refit = KernelLeaveOneOut(KernelSpec("rbf"), X, y[:, None], np.ones(len(y)))
    fine = min(
        refit.loss_grad(np.array([a]), np.full(X.shape[1], 0.05), False)[0]
        for a in np.logspace(-6, 3, 200)
    )
    assert -fixed.best_score_ <= fine * (1 + 1e-9)


def test_multi_target_strengths_and_scoring():
    """Two targets with a strength each; a scoring string and a plain
    callable report what scikit-learn computes from each split's fit."""
    X, Y, _ = _data(n_samples=80)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    model = BilevelKernelRidgeCV(penalty="per_target", cv=folds, scoring="r2")
    model.fit(X, Y)
    assert model.alpha_.shape == (2,) and model.dual_coef_.shape == (80, 2)
    row = model.best_index_
    expected = [
        r2_score(
            Y[test],
            KernelRidge(alpha=model.alpha_, kernel="rbf", gamma=model.gamma_)
            .fit(X[train], Y[train])
            .predict(X[test]),
        )
        for train, test in folds
    ]
    scores = [model.cv_results_[f"split{k}_test_score"][row] for k in range(4)]
    np.testing.assert_allclose(scores, expected, rtol=1e-7)

    def negative_mse(estimator, X_val, y_val):
        return -mean_squared_error(y_val, estimator.predict(X_val))

    plain = BilevelKernelRidgeCV(cv=folds, scoring=negative_mse).fit(X, Y)
    default = BilevelKernelRidgeCV(cv=folds).fit(X, Y)
    np.testing.assert_allclose(
        plain.cv_results_["mean_test_score"], default.cv_results_["mean_test_score"]
    )


def test_sparse_input_is_the_dense_fit():
    """Sparse X (as KernelRidge accepts) gives the fit of its dense copy."""
    X, y = _diabetes(80)
    X[np.abs(X) < 0.5] = 0.0
    dense = BilevelKernelRidgeCV().fit(X, y)
    sparse = BilevelKernelRidgeCV().fit(sp.csr_matrix(X), y)
    assert sparse.alpha_ == dense.alpha_ and sparse.gamma_ == dense.gamma_
    np.testing.assert_allclose(sparse.predict(sp.csr_matrix(X)), dense.predict(X))


def test_clear_errors(monkeypatch):
    X, y = _diabetes(60)
    with pytest.raises(ValueError, match="kernel"):
        BilevelKernelRidgeCV(kernel="sigmoid").fit(X, y)
    with pytest.raises(ValueError, match="gamma"):
        BilevelKernelRidgeCV(gamma=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="gamma_bounds"):
        BilevelKernelRidgeCV(gamma_bounds=(1.0, 0.1)).fit(X, y)
    with pytest.raises(ValueError, match="one \\(low, high\\) pair"):
        BilevelKernelRidgeCV(gamma_bounds=([0.1, 0.2], 1.0)).fit(X, y)
    with pytest.raises(ValueError, match="alpha_bounds"):
        BilevelKernelRidgeCV(alpha_bounds=(0.0, 1.0)).fit(X, y)
    with pytest.raises(ValueError, match="more than 40 entries"):
        monkeypatch.setattr(_kernel_problem, "DENSE_MAX_ENTRIES", 40)
        BilevelKernelRidgeCV().fit(sp.csr_matrix(X), y)
    with pytest.raises(ValueError, match="finite rank"):
        BilevelKernelRidgeCV(kernel="poly", approximation="nystroem").fit(X, y)
    with pytest.raises(ValueError, match="exact closed form"):
        BilevelKernelRidgeCV(cv=None, approximation="nystroem").fit(X, y)
    monkeypatch.setattr(_kernel_ridge, "KERNEL_MAX_SAMPLES", 40)
    with pytest.raises(ValueError, match="exceed its limit of 40"):
        BilevelKernelRidgeCV(approximation="exact").fit(X, y)


@pytest.mark.parametrize("kernel", ["rbf", "laplacian"])
@pytest.mark.parametrize("every_row", [True, False], ids=["all", "subset"])
def test_nystroem_fold_derivatives_and_exact_limit(kernel, every_row):
    """Nystroem splits: derivatives against finite differences (1e-5), the
    strength path against the solves, and with every training row a
    landmark the exact split's loss (up to the landmarks' jitter)."""
    X, Y, sw = _data()
    spec = KernelSpec(kernel)
    landmarks = (
        np.arange(30) if every_row else np.array([0, 2, 5, 7, 11, 13, 17, 19, 23, 29])
    )
    fold = NystroemFold(
        spec, X[:30], Y[:30], sw[:30], X[30:], Y[30:], sw[30:], landmarks
    )
    theta = np.r_[np.log([0.3, 0.05]), np.log([0.4, 0.2, 0.7])]

    def loss(th):
        return fold.loss_grad(np.exp(th[:2]), np.exp(th[2:]), False)[0]

    value, d_alpha, d_width = fold.loss_grad(np.exp(theta[:2]), np.exp(theta[2:]))
    step = 1e-5
    numeric = np.array(
        [
            (loss(theta + step * e) - loss(theta - step * e)) / (2 * step)
            for e in np.eye(5)
        ]
    )
    grad = np.r_[d_alpha, d_width]
    assert np.max(np.abs(grad - numeric)) <= 1e-5 * np.max(np.abs(numeric))
    losses, slopes = fold.strength_path(np.exp(theta[2:]))(np.exp(theta[:2]))
    assert losses.diagonal().sum() == pytest.approx(value, rel=1e-9)
    np.testing.assert_allclose(slopes.diagonal(), d_alpha, rtol=1e-7)
    if every_row:
        exact = _folds(spec, X, Y, sw, loo=False)
        expected = exact.loss_grad(np.exp(theta[:2]), np.exp(theta[2:]), False)[0]
        assert value == pytest.approx(expected, rel=1e-6)


def test_nystroem_search_and_auto_switch(monkeypatch):
    """approximation='auto' switches to Nystroem landmarks past
    NYSTROEM_FROM training rows; with as many landmarks as rows the search
    gives the exact one's CV score, and the final model predicts from
    n_components landmarks of all the rows."""
    X, y = _diabetes(150)
    folds = list(KFold(4, shuffle=True, random_state=0).split(X))
    exact = BilevelKernelRidgeCV(cv=folds).fit(X, y)
    assert exact.approximation_ == "exact"
    monkeypatch.setattr(_kernel_ridge, "NYSTROEM_FROM", 100)
    every = BilevelKernelRidgeCV(cv=folds, n_components=150, random_state=0).fit(X, y)
    assert every.approximation_ == "nystroem" and every.X_fit_.shape == X.shape
    assert every.best_score_ == pytest.approx(exact.best_score_, rel=1e-4)
    np.testing.assert_allclose(
        every.predict(X), exact.predict(X), rtol=1e-3, atol=1e-3 * np.std(y)
    )
    few = BilevelKernelRidgeCV(cv=folds, n_components=40, random_state=0).fit(X, y)
    assert few.X_fit_.shape == (40, X.shape[1]) and few.dual_coef_.shape == (40,)
    assert np.all(np.isfinite(few.predict(X)))
    again = BilevelKernelRidgeCV(cv=folds, n_components=40, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), few.predict(X))


def test_ranges_are_kept():
    """User ranges bound every strength and width, scalar and per feature,
    and the cv_results_ rows stay inside them."""
    X, y = _diabetes(120)
    for gamma in ("scalar", "per_feature"):
        model = BilevelKernelRidgeCV(
            gamma=gamma, gamma_bounds=(0.05, 2.0), alpha_bounds=(1e-3, 10.0),
            max_iter=10,
        ).fit(X, y)  # fmt: skip
        widths = np.concatenate(
            [np.atleast_1d(g) for g in model.cv_results_["param_gamma"]]
        )
        alphas = model.cv_results_["param_alpha"].astype(float)
        assert widths.min() >= 0.05 * (1 - 1e-12) and widths.max() <= 2.0 * (1 + 1e-12)
        assert alphas.min() >= 1e-3 * (1 - 1e-12) and alphas.max() <= 10 * (1 + 1e-12)


def test_ranges_used_are_reported():
    X, y = _diabetes(100)
    model = BilevelKernelRidgeCV(alpha_bounds=(1e-3, 10.0)).fit(X, y)
    assert model.alpha_bounds_ == (1e-3, 10.0)
    low, high = model.gamma_bounds_
    assert low <= model.gamma_ <= high and type(low) is float
    assert BilevelKernelRidgeCV(gamma=0.1).fit(X, y).gamma_bounds_ is None
