"""Behaviour of BilevelRidgeCV as a scikit-learn user sees it."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    ShuffleSplit,
    TimeSeriesSplit,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelRidgeCV

from ._helpers import make_data


def _cv_mse(X, y, alpha, cv, sample_weight=None):
    """Cross-validated MSE of sklearn's Ridge (independent of skbilevel)."""
    losses = []
    for tr, te in cv.split(X):
        sw_tr = None if sample_weight is None else sample_weight[tr]
        model = Ridge(alpha=alpha).fit(X[tr], y[tr], sample_weight=sw_tr)
        w = np.ones(len(te)) if sample_weight is None else sample_weight[te]
        losses.append(np.sum(w * (model.predict(X[te]) - y[te]) ** 2) / w.sum())
    return float(np.mean(losses))


@pytest.mark.parametrize("weights", [False, True])
def test_scalar_alpha_beats_a_dense_grid_kfold(weights):
    X, y = load_diabetes(return_X_y=True)
    sw = np.random.RandomState(0).uniform(0.5, 2.0, len(y)) if weights else None
    cv = KFold(5, shuffle=True, random_state=0)
    reg = BilevelRidgeCV(cv=cv).fit(X, y, sample_weight=sw)
    ours = _cv_mse(X, y, reg.alpha_, cv, sw)
    assert ours == pytest.approx(-reg.best_score_, rel=1e-8)
    grid = np.logspace(-6, 3, 400)
    best_grid = min(_cv_mse(X, y, a, cv, sw) for a in grid)
    assert ours <= best_grid * (1 + 1e-9)


def test_scalar_alpha_beats_a_dense_grid_loo():
    X, y = make_regression(80, 30, noise=20.0, random_state=0)
    reg = BilevelRidgeCV(cv=None).fit(X, y)
    grid = np.logspace(-4, 6, 300)
    from sklearn.linear_model import RidgeCV

    ref = RidgeCV(alphas=grid).fit(X, y)  # sklearn's own leave-one-out
    assert -reg.best_score_ <= -ref.best_score_ * (1 + 1e-9)
    # Our leave-one-out value is sklearn's at the same alpha.
    same = RidgeCV(alphas=[reg.alpha_]).fit(X, y)
    assert -reg.best_score_ == pytest.approx(-same.best_score_, rel=1e-7)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("cv", [5, None])
@pytest.mark.parametrize("n_features", [8, 90])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_coef_is_the_ridge_refit_at_alpha(sparse, cv, n_features, fit_intercept):
    X, Y, sw = make_data(60, n_features, sparse=sparse, weights=True)
    y = Y[:, 0]
    reg = BilevelRidgeCV(cv=cv, fit_intercept=fit_intercept).fit(X, y, sample_weight=sw)
    Xd = X.toarray() if sparse else X
    ref = Ridge(alpha=reg.alpha_, fit_intercept=fit_intercept, solver="svd").fit(
        Xd, y, sample_weight=sw
    )
    # With n < d the optimum can sit at the lower bound (near interpolation,
    # condition number ~1e6): agreement is then limited to ~1e-9 by round-off.
    assert np.allclose(reg.coef_, ref.coef_, rtol=1e-6, atol=1e-7)
    assert reg.intercept_ == pytest.approx(ref.intercept_, rel=1e-6, abs=1e-7)
    assert reg.coef_.shape == (n_features,) and isinstance(reg.intercept_, float)


def test_dense_and_sparse_agree():
    X, Y, sw = make_data(60, 8, sparse=True)
    dense = BilevelRidgeCV().fit(X.toarray(), Y[:, 0])
    sparse = BilevelRidgeCV().fit(X, Y[:, 0])
    assert sparse.alpha_ == pytest.approx(dense.alpha_, rel=1e-6)
    assert np.allclose(sparse.coef_, dense.coef_, rtol=1e-6)


@pytest.mark.parametrize("cv", [5, None])
def test_primal_and_dual_paths_agree(cv):
    # n > d uses the Gram matrix, n < d the kernel matrix: same answer.
    X, Y, _ = make_data(30, 12)
    wide = np.hstack([X, np.zeros((30, 30))])  # zero columns: same problem, d > n
    a = BilevelRidgeCV(cv=cv, alpha_bounds=(1e-3, 1e4)).fit(X, Y[:, 0])
    b = BilevelRidgeCV(cv=cv, alpha_bounds=(1e-3, 1e4)).fit(wide, Y[:, 0])
    assert b.alpha_ == pytest.approx(a.alpha_, rel=1e-5)
    assert np.allclose(b.coef_[:12], a.coef_, rtol=1e-5)
    assert np.allclose(b.coef_[12:], 0.0)


def test_multi_target_and_per_target():
    X, Y, _ = make_data(80, 6, n_targets=3)
    Y[:, 2] = np.random.RandomState(1).randn(80)  # pure noise: wants a big alpha
    shared = BilevelRidgeCV().fit(X, Y)
    assert shared.coef_.shape == (3, 6) and shared.intercept_.shape == (3,)
    assert np.isscalar(shared.alpha_)
    per = BilevelRidgeCV(penalty="per_target").fit(X, Y)
    assert per.alpha_.shape == (3,)
    assert per.alpha_[2] > 10 * per.alpha_[0]
    assert -per.best_score_ <= -shared.best_score_ * (1 + 1e-9)
    # Each target's strength is that target's own optimum.
    for t in range(3):
        alone = BilevelRidgeCV().fit(X, Y[:, t])
        assert per.alpha_[t] == pytest.approx(alone.alpha_, rel=1e-2)


def test_per_feature_beats_scalar_on_useless_features():
    X, y = make_regression(300, 40, n_informative=5, noise=10.0, random_state=0)
    X_test, y_test = make_regression(
        300, 40, n_informative=5, noise=10.0, random_state=0
    )
    scalar = BilevelRidgeCV().fit(X, y)
    per = BilevelRidgeCV(penalty="per_feature").fit(X, y)
    assert -per.best_score_ < -scalar.best_score_
    assert per.alpha_.shape == (40,)


def test_groups_penalty():
    X, y = make_regression(200, 9, n_informative=3, noise=5.0, random_state=0)
    groups = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    reg = BilevelRidgeCV(penalty=groups).fit(X, y)
    assert reg.alpha_.shape == (3,)
    assert list(reg.penalty_groups_) == ["a", "b", "c"]


def test_groups_reach_the_splitter():
    X, Y, _ = make_data(60, 5)
    groups = np.repeat(np.arange(6), 10)
    reg = BilevelRidgeCV(cv=GroupKFold(3)).fit(X, Y[:, 0], groups=groups)
    assert reg.n_splits_ == 3
    splits = list(GroupKFold(3).split(X, Y[:, 0], groups))
    ref = BilevelRidgeCV(cv=splits).fit(X, Y[:, 0])
    assert reg.alpha_ == pytest.approx(ref.alpha_, rel=1e-12)


def test_cv_results_shape_like_gridsearch():
    X, y = load_diabetes(return_X_y=True)
    reg = BilevelRidgeCV(cv=4).fit(X, y)
    res = reg.cv_results_
    n = len(res["params"])
    for key in [
        "params",
        "param_alpha",
        "mean_test_score",
        "std_test_score",
        "rank_test_score",
        "iter",
        "time",
        "hypergradient_norm",
    ] + [f"split{k}_test_score" for k in range(4)]:
        assert len(res[key]) == n, key
    assert res["rank_test_score"][reg.best_index_] == 1
    assert res["params"][reg.best_index_] == {"alpha": reg.alpha_}
    assert reg.best_score_ == res["mean_test_score"].max()
    assert np.all(np.diff(res["time"]) >= 0)
    # Gradient rows have a finite hypergradient norm; scan rows NaN.
    assert np.isfinite(res["hypergradient_norm"]).sum() >= 1


def test_scoring_reports_another_metric():
    X, y = load_diabetes(return_X_y=True)
    mse = BilevelRidgeCV(cv=5).fit(X, y)
    r2 = BilevelRidgeCV(cv=5, scoring="r2").fit(X, y)
    assert r2.alpha_ == pytest.approx(mse.alpha_, rel=1e-12)
    expected = cross_val_score(Ridge(alpha=r2.alpha_), X, y, cv=KFold(5)).mean()
    assert r2.best_score_ == pytest.approx(expected, rel=1e-6)
    loo = BilevelRidgeCV(cv=None, scoring="neg_mean_absolute_error").fit(X, y)
    assert loo.best_score_ < 0 and "split0_test_score" not in loo.cv_results_


@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
def test_n_jobs_does_not_change_results(penalty):
    X, y = make_regression(200, 10, noise=5.0, random_state=0)
    a = BilevelRidgeCV(penalty=penalty, n_jobs=1).fit(X, y)
    b = BilevelRidgeCV(penalty=penalty, n_jobs=2).fit(X, y)
    assert np.allclose(a.coef_, b.coef_, rtol=1e-12)


def test_float32_input():
    X, y = load_diabetes(return_X_y=True)
    reg32 = BilevelRidgeCV().fit(X.astype(np.float32), y.astype(np.float32))
    reg64 = BilevelRidgeCV().fit(X, y)
    assert reg32.coef_.dtype == np.float32
    # The outer tolerance bounds the CV loss (1e-8 relative), not alpha.
    assert reg32.best_score_ == pytest.approx(reg64.best_score_, rel=1e-8)
    assert reg32.alpha_ == pytest.approx(reg64.alpha_, rel=1e-2)


def test_warm_start_and_alpha_init():
    X, y = load_diabetes(return_X_y=True)
    cold = BilevelRidgeCV().fit(X, y)
    reg = BilevelRidgeCV(warm_start=True).fit(X, y)
    n_first = len(reg.cv_results_["params"])
    reg.fit(X, y)
    assert len(reg.cv_results_["params"]) < n_first
    # As below: the tolerance bounds the CV loss, alpha agrees less closely.
    assert reg.best_score_ == pytest.approx(cold.best_score_, rel=1e-8)
    assert reg.alpha_ == pytest.approx(cold.alpha_, rel=1e-2)
    init = BilevelRidgeCV(alpha_init=1.0).fit(X, y)
    # The outer tolerance is on the CV loss (relative 1e-8 at tol=1e-4); the
    # loss is flat near its minimum, so alpha itself agrees less closely.
    assert init.best_score_ == pytest.approx(cold.best_score_, rel=1e-8)
    assert init.alpha_ == pytest.approx(cold.alpha_, rel=1e-2)


def test_in_a_pipeline_with_feature_names():
    pd = pytest.importorskip("pandas")
    data = load_diabetes(as_frame=True)
    model = make_pipeline(StandardScaler(), BilevelRidgeCV()).fit(
        data.data, data.target
    )
    assert model.score(data.data, data.target) > 0.45
    reg = BilevelRidgeCV().fit(data.data, data.target)
    assert list(reg.feature_names_in_) == list(data.data.columns)
    assert isinstance(data.data, pd.DataFrame)


def test_verbose_prints_progress(capsys):
    """Level 1 prints the evaluations with a hypergradient, level 2 every
    evaluation; "eval N" is cv_results_'s iter N."""
    X, y = load_diabetes(return_X_y=True)
    model = BilevelRidgeCV(verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "cv_loss=" in out and "|hypergradient|=" in out
    assert "scan point" not in out
    printed = [int(line.split()[2]) for line in out.splitlines()]
    assert set(printed) <= set(model.cv_results_["iter"]) | set(
        range(model.n_iter_ + 50)
    )
    BilevelRidgeCV(verbose=2).fit(X, y)
    every = capsys.readouterr().out.splitlines()
    assert len(every) > len(printed) and any("scan point" in line for line in every)
    numbers = [int(line.split()[2]) for line in every]
    assert numbers == list(range(len(numbers)))  # 0, 1, 2, ... as iter


def test_max_iter_reached_warns_and_gives_a_usable_model():
    X, y = make_regression(200, 20, n_informative=4, noise=5.0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        reg = BilevelRidgeCV(penalty="per_feature", max_iter=2).fit(X, y)
    assert np.all(np.isfinite(reg.coef_))


@pytest.mark.parametrize("method", ["cg", "fixed_point", "neumann", "itd"])
def test_iterative_methods_find_the_direct_optimum(method):
    X, y = make_regression(150, 8, noise=10.0, random_state=0)
    direct = BilevelRidgeCV(penalty="per_feature").fit(X, y)
    other = BilevelRidgeCV(penalty="per_feature", hypergradient=method).fit(X, y)
    assert other.hypergradient_ == method
    assert -other.best_score_ == pytest.approx(-direct.best_score_, rel=1e-3)


def test_iterative_path_on_wide_sparse_data():
    rng = np.random.RandomState(0)
    X = sp.random(300, 2000, density=0.01, format="csr", random_state=rng)
    y = X @ rng.randn(2000) + 0.1 * rng.randn(300)
    with warnings.catch_warnings():
        # The tiniest strengths of the box are too ill-conditioned for CG's
        # iteration cap; those (far from optimal) points warn.
        warnings.simplefilter("ignore", ConvergenceWarning)
        cg = BilevelRidgeCV(hypergradient="cg").fit(X, y)
    direct = BilevelRidgeCV().fit(X, y)
    # The optimum is flat (the CV loss changes by 3e-6 relative between
    # alpha = 0.09 and 0.10) and CG's solves carry ~1e-6 relative noise:
    # compare the CV losses tightly, the alphas loosely.
    assert -cg.best_score_ == pytest.approx(-direct.best_score_, rel=1e-5)
    assert cg.alpha_ == pytest.approx(direct.alpha_, rel=0.25)


def test_no_warnings_on_ordinary_data():
    X, y = load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BilevelRidgeCV().fit(X, y)
        BilevelRidgeCV(cv=None).fit(X, y)


@pytest.mark.parametrize(
    "cv",
    [
        TimeSeriesSplit(4),
        ShuffleSplit(3, train_size=0.3, test_size=0.2, random_state=0),
        [(np.arange(300), np.arange(300))],  # train == test
    ],
    ids=["time-series", "shuffle-split", "train-is-test"],
)
def test_custom_splits_train_on_their_own_rows(cv):
    # The spectral path used "all rows but the validation rows" as every
    # fold's training set: future rows for TimeSeriesSplit.
    X, y = load_diabetes(return_X_y=True)
    reg = BilevelRidgeCV(cv=cv).fit(X, y)
    assert reg.hypergradient_ == "direct"
    truth = cross_val_score(
        Ridge(alpha=reg.alpha_), X, y, cv=cv, scoring="neg_mean_squared_error"
    ).mean()
    assert reg.best_score_ == pytest.approx(truth, rel=1e-6)


def test_max_iter_bounds_both_phases_together():
    # The 1-D phase and the many-hyperparameter phase share max_iter.
    X, y = make_regression(200, 20, n_informative=4, noise=5.0, random_state=0)
    for max_iter in (3, 8):
        with pytest.warns(ConvergenceWarning, match=f"in {max_iter} iterations"):
            reg = BilevelRidgeCV(penalty="per_feature", max_iter=max_iter).fit(X, y)
        assert reg.n_iter_ <= max_iter


def _ill_conditioned(seed=0, n=200, d=30):
    """Singular values from 10 down to 1e-7."""
    rng = np.random.RandomState(seed)
    U, _ = np.linalg.qr(rng.randn(n, d))
    V, _ = np.linalg.qr(rng.randn(d, d))
    X = (U * np.logspace(1, -7, d)) @ V.T
    return X, X @ rng.randn(d) * 1e3 + 0.01 * rng.randn(n)


def _sklearn_cv_mse(X, y, alpha, cv):
    """CV MSE of Ridge at per-feature strengths ``alpha`` (scaled columns)."""
    scale = 1.0 / np.sqrt(np.broadcast_to(alpha, (X.shape[1],)))
    return -cross_val_score(
        Ridge(alpha=1.0, solver="svd"), X * scale, y, cv=cv,
        scoring="neg_mean_squared_error",
    ).mean()  # fmt: skip


@pytest.mark.parametrize(
    "method, penalty",
    [(m, "scalar") for m in ["direct", "cg", "fixed_point", "neumann", "itd"]]
    + [("cg", "per_feature"), ("fixed_point", "per_feature")],
)
def test_reported_cv_loss_is_the_chosen_models(method, penalty):
    # Iterative solves stop on a residual, which on ill-conditioned data does
    # not bound the loss: the chosen point is re-solved accurately.
    X, y = _ill_conditioned()
    cv = KFold(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = BilevelRidgeCV(cv=cv, hypergradient=method, penalty=penalty).fit(X, y)
    truth = _sklearn_cv_mse(X, y, reg.alpha_, cv)
    rel = 1e-6 if method == "direct" else 1e-4
    assert -reg.best_score_ == pytest.approx(truth, rel=rel)
    best = reg.best_index_
    assert reg.cv_results_["mean_test_score"][best] == reg.best_score_


def test_loosely_solved_loss_warns():
    X, y = _ill_conditioned()
    with pytest.warns(ConvergenceWarning, match="too loosely for this data"):
        BilevelRidgeCV(cv=KFold(5), hypergradient="cg").fit(X, y)


@pytest.mark.parametrize("factor", [1e6, 1e7, 1e8])
@pytest.mark.parametrize("method", ["auto", "cg"])
def test_one_feature_in_other_units(factor, method):
    # A price in cents beside z-scores: the default box used to stop at
    # 1e-14 x the largest column's sum of squares, over-penalizing the others.
    X, y = make_regression(500, 10, n_informative=5, noise=10.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    X[:, 0] *= factor
    cv = KFold(5, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = BilevelRidgeCV(cv=cv, hypergradient=method).fit(X, y)
    truth = _sklearn_cv_mse(X, y, reg.alpha_, cv)
    assert -reg.best_score_ == pytest.approx(
        truth, rel=1e-6 if method == "auto" else 1e-4
    )
    grid = RidgeCV(alphas=np.logspace(-6, 6, 50), cv=cv).fit(X, y)
    assert truth <= _sklearn_cv_mse(X, y, grid.alpha_, cv) * (1 + 1e-3)
    refit = Ridge(alpha=reg.alpha_, solver="svd").fit(X, y)
    np.testing.assert_allclose(reg.coef_ * X.std(0), refit.coef_ * X.std(0), rtol=1e-5)
    if method == "auto":  # exact leave-one-out, against RidgeCV's SVD mode
        loo = BilevelRidgeCV(cv=None).fit(X, y)
        exact = RidgeCV(alphas=[loo.alpha_], gcv_mode="svd").fit(X, y)
        assert loo.best_score_ == pytest.approx(exact.best_score_, rel=1e-6)


def test_constant_columns_keep_the_eigendecomposition(monkeypatch):
    # A constant column centres to round-off, not zero: it must not count as a
    # scale (the SVD branch, for columns on very different scales, would copy
    # the rows of every fold for nothing).
    import skbilevel._problems._ridge_spectral as spectral

    def no_svd(*args, **kwargs):
        raise AssertionError("SVD branch taken for a constant column")

    rng = np.random.RandomState(0)
    X = rng.randn(5000, 20)
    y = X @ rng.randn(20) + rng.randn(5000)
    X[:, -1] = 0.1  # not exactly representable: its centered sum of squares > 0
    monkeypatch.setattr(spectral.np.linalg, "svd", no_svd)
    for cv in (5, None):
        assert np.isfinite(BilevelRidgeCV(cv=cv).fit(X, y).best_score_)


def test_one_box_given_as_arrays_is_the_same_box():
    X, y = make_regression(300, 5, noise=10, random_state=0)
    scalar = BilevelRidgeCV(alpha_bounds=(1e-3, 1e3)).fit(X, y)
    arrays = BilevelRidgeCV(alpha_bounds=([1e-3], [1e3])).fit(X, y)
    assert arrays.alpha_ == scalar.alpha_
