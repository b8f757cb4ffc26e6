"""HypergradientSearchCV: GridSearchCV's results, surface and plumbing."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_iris,
    make_classification,
    make_regression,
)
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, log_loss, make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    cross_validate,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbilevel import (
    BilevelElasticNetCV,
    BilevelKernelRidgeCV,
    BilevelLogisticCV,
    BilevelRidgeCV,
    HypergradientSearchCV,
)


def _cancer(n=300):
    X, y = load_breast_cancer(return_X_y=True)
    return X[:n], y[:n]


def _pipe(**lr):
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(**lr))])


# Tight fits: GridSearchCV then optimizes the same objective as the search.
TIGHT = dict(tol=1e-10, max_iter=10_000)


def test_logistic_pipeline_matches_fine_grid():
    X, y = _cancer()
    search = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-3, 1e3)}, scoring="neg_log_loss"
    ).fit(X, y)
    grid = GridSearchCV(
        _pipe(**TIGHT), {"clf__C": np.logspace(-3, 3, 121)}, scoring="neg_log_loss"
    ).fit(X, y)
    # No point of a 121-point grid scores better (up to round-off), and the
    # tuned C sits between the grid's neighbours of its best point.
    assert search.best_score_ >= grid.best_score_ - 1e-7
    assert search.best_score_ == pytest.approx(grid.best_score_, abs=1e-4)
    C = search.best_params_["clf__C"]
    assert C == pytest.approx(grid.best_params_["clf__C"], rel=0.15)
    assert isinstance(search.best_estimator_, Pipeline)
    assert search.best_estimator_[-1].C == C


def test_ridge_matches_fine_grid():
    X, y = load_diabetes(return_X_y=True)
    search = HypergradientSearchCV(
        Ridge(), {"alpha": (1e-6, 1e3)}, scoring="neg_mean_squared_error"
    ).fit(X, y)
    grid = GridSearchCV(
        Ridge(), {"alpha": np.logspace(-6, 3, 181)}, scoring="neg_mean_squared_error"
    ).fit(X, y)
    assert search.best_score_ >= grid.best_score_ - 1e-9 * abs(grid.best_score_)
    assert search.best_score_ == pytest.approx(grid.best_score_, rel=1e-5)
    assert type(search.best_estimator_) is Ridge
    assert search.best_estimator_.alpha == search.best_params_["alpha"]


def test_lasso_pipeline_matches_fine_grid():
    """A Pipeline ending with scikit-learn's Lasso: its alpha tuned in a box
    (issue 14), at least as well as a 121-point grid on the same folds."""
    X, y = load_diabetes(return_X_y=True)
    # Tightly converged grid fits: Lasso's default tol moves the CV MSE by
    # more than the differences between neighbouring grid points here.
    pipe = make_pipeline(StandardScaler(), Lasso(tol=1e-10, max_iter=100_000))
    kwargs = dict(
        scoring="neg_mean_squared_error", cv=KFold(5, shuffle=True, random_state=0)
    )
    search = HypergradientSearchCV(pipe, {"lasso__alpha": (1e-3, 1e2)}, **kwargs)
    search.fit(X, y)
    grid = GridSearchCV(pipe, {"lasso__alpha": np.logspace(-3, 2, 121)}, **kwargs)
    grid.fit(X, y)
    assert search.best_score_ >= grid.best_score_ - 1e-9 * abs(grid.best_score_)
    final = search.best_estimator_[-1]
    assert type(final) is Lasso
    assert final.alpha == search.best_params_["lasso__alpha"]
    with pytest.raises(ValueError, match="positive=True"):
        HypergradientSearchCV(Lasso(positive=True), {"alpha": (1e-3, 1.0)}).fit(X, y)


def test_elastic_net_pipeline_alpha_and_l1_ratio_ranges():
    """A Pipeline ending with ElasticNet: alpha and l1_ratio both ranges
    (issue 14), at least as good as GridSearchCV over ElasticNetCV's seven
    l1_ratio and a 41-point alpha grid, on the same folds; a listed l1_ratio
    is kept and alpha tuned at each; a step's own l1_ratio is kept when only
    alpha is a range."""
    X, y = load_diabetes(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), ElasticNet(tol=1e-10, max_iter=100_000))
    kwargs = dict(
        scoring="neg_mean_squared_error", cv=KFold(5, shuffle=True, random_state=0)
    )
    space = {"elasticnet__alpha": (1e-3, 1e2), "elasticnet__l1_ratio": (0.1, 1.0)}
    search = HypergradientSearchCV(pipe, space, **kwargs).fit(X, y)
    grid = GridSearchCV(
        pipe,
        {
            "elasticnet__alpha": np.logspace(-3, 2, 41),
            "elasticnet__l1_ratio": [0.1, 0.5, 0.7, 0.9, 0.95, 0.99, 1],
        },
        **kwargs,
    ).fit(X, y)
    assert search.best_score_ >= grid.best_score_ - 1e-9 * abs(grid.best_score_)
    final = search.best_estimator_[-1]
    assert type(final) is ElasticNet
    assert final.alpha == search.best_params_["elasticnet__alpha"]
    assert final.l1_ratio == search.best_params_["elasticnet__l1_ratio"]
    ratios = search.cv_results_["param_elasticnet__l1_ratio"].astype(float)
    alphas = search.cv_results_["param_elasticnet__alpha"].astype(float)
    assert np.all((ratios >= 0.1 - 1e-12) & (ratios <= 1.0))
    assert np.all((alphas >= 1e-3 * (1 - 1e-12)) & (alphas <= 1e2 * (1 + 1e-12)))

    listed = {"elasticnet__alpha": (1e-3, 1e2), "elasticnet__l1_ratio": [0.3, 0.8]}
    search = HypergradientSearchCV(pipe, listed, **kwargs).fit(X, y)
    ratios = search.cv_results_["param_elasticnet__l1_ratio"].astype(float)
    assert set(ratios) == {0.3, 0.8}  # the listed values, exactly
    for ratio in (0.3, 0.8):
        best_here = search.cv_results_["mean_test_score"][ratios == ratio].max()
        at_ratio = GridSearchCV(
            pipe.set_params(elasticnet__l1_ratio=ratio),
            {"elasticnet__alpha": np.logspace(-3, 2, 41)},
            **kwargs,
        ).fit(X, y)
        assert best_here >= at_ratio.best_score_ - 1e-9 * abs(at_ratio.best_score_)

    pipe.set_params(elasticnet__alpha=0.05)
    only_ratio = {"elasticnet__l1_ratio": (0.2, 0.9)}
    search = HypergradientSearchCV(pipe, only_ratio, **kwargs).fit(X, y)
    assert np.all(search.cv_results_["param_elasticnet__alpha"].astype(float) == 0.05)
    with pytest.raises(ValueError, match="0 < low <= high <= 1"):
        HypergradientSearchCV(pipe, {"elasticnet__l1_ratio": (0.0, 0.5)}).fit(X, y)
    with pytest.raises(ValueError, match="positive=True"):
        HypergradientSearchCV(ElasticNet(positive=True), {"alpha": (1e-3, 1.0)}).fit(
            X, y
        )


def test_bilevel_elastic_net_final_step_refits_at_the_choice():
    X, y = load_diabetes(return_X_y=True)
    search = HypergradientSearchCV(
        BilevelElasticNetCV(), {"l1_ratio": (0.2, 0.8)}, cv=3
    ).fit(X, y)
    best = search.best_params_
    assert 0.2 - 1e-12 <= best["l1_ratio"] <= 0.8 + 1e-12
    assert search.best_estimator_.l1_ratio_ == pytest.approx(best["l1_ratio"])
    assert search.best_estimator_.alpha_ == pytest.approx(best["alpha"])


def test_results_and_attributes_match_gridsearch():
    X, y = _cancer()
    kwargs = dict(scoring="neg_log_loss", return_train_score=True)
    search = HypergradientSearchCV(_pipe(), {"clf__C": (1e-2, 1e2)}, **kwargs)
    search.fit(X, y)
    grid = GridSearchCV(_pipe(), {"clf__C": [0.1, 1.0]}, **kwargs).fit(X, y)
    assert set(grid.cv_results_) <= set(search.cv_results_)
    assert set(search.cv_results_) - set(grid.cv_results_) == {
        "iter",
        "hypergradient_norm",
        "search_choice",
    }
    results = search.cv_results_
    n_rows = len(results["params"])
    for key, value in results.items():
        assert len(value) == n_rows, key
    assert results["params"][search.best_index_] == search.best_params_
    assert results["mean_test_score"][search.best_index_] == search.best_score_
    assert np.all(results["mean_fit_time"] > 0)
    assert np.all(results["mean_score_time"] > 0)
    assert np.isfinite(results["hypergradient_norm"]).any()
    assert search.n_splits_ == 5 and search.refit_time_ > 0
    assert search.scorer_ is not None and search.multimetric_ is False
    np.testing.assert_array_equal(search.classes_, [0, 1])
    assert search.n_features_in_ == X.shape[1]
    for method in (
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
    ):
        np.testing.assert_allclose(
            getattr(search, method)(X), getattr(search.best_estimator_, method)(X)
        )
    assert search.score(X, y) == pytest.approx(-log_loss(y, search.predict_proba(X)))


def test_list_space_is_gridsearch_exactly():
    X, y = _cancer()
    space = {"clf__C": [0.01, 1.0], "clf__fit_intercept": [True, False]}
    search = HypergradientSearchCV(_pipe(), space).fit(X, y)
    grid = GridSearchCV(_pipe(), space).fit(X, y)
    assert search.cv_results_["params"] == grid.cv_results_["params"]
    for key in ["mean_test_score", "split0_test_score", "rank_test_score"]:
        np.testing.assert_allclose(search.cv_results_[key], grid.cv_results_[key])
    assert search.best_params_ == grid.best_params_


def test_mixed_list_and_tuple_space():
    X, y = _cancer()
    space = {"scale": [StandardScaler(), RobustScaler()], "clf__C": (1e-2, 1e2)}
    search = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss").fit(X, y)
    scalers = {type(p["scale"]).__name__ for p in search.cv_results_["params"]}
    assert scalers == {"StandardScaler", "RobustScaler"}
    grid = GridSearchCV(
        _pipe(**TIGHT),
        {"scale": [StandardScaler(), RobustScaler()], "clf__C": np.logspace(-2, 2, 41)},
        scoring="neg_log_loss",
    ).fit(X, y)
    assert search.best_score_ >= grid.best_score_ - 1e-7
    best = search.best_estimator_
    assert type(best.named_steps["scale"]) is type(search.best_params_["scale"])


def test_preprocessing_never_sees_validation_rows():
    """A scaler fit on the whole data would change the validation scores."""

    class Recorder(StandardScaler):
        seen = []

        def fit(self, X, y=None, sample_weight=None):
            Recorder.seen.append(len(X))
            return super().fit(X, y, sample_weight)

    X, y = _cancer(200)
    pipe = Pipeline([("scale", Recorder()), ("clf", LogisticRegression())])
    Recorder.seen = []
    search = HypergradientSearchCV(pipe, {"clf__C": (1e-2, 1e2)}, cv=4, refit=False)
    search.fit(X, y)
    # Once per fold on its 150 training rows, however many outer iterations.
    assert Recorder.seen == [150] * 4
    assert len(search.cv_results_["params"]) > 4


def test_bilevel_final_step_per_feature():
    X, y = _cancer()
    pipe = make_pipeline(StandardScaler(), BilevelLogisticCV(penalty="per_feature"))
    search = HypergradientSearchCV(
        pipe, {"bilevellogisticcv__C": (1e-3, 1e3)}, scoring="neg_log_loss", cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        search.fit(X, y)
    C = search.best_params_["bilevellogisticcv__C"]
    assert C.shape == (X.shape[1],)
    assert np.all((C >= 1e-3 * (1 - 1e-12)) & (C <= 1e3 * (1 + 1e-12)))
    final = search.best_estimator_[-1]
    # Refit at exactly best_params_ (issue 11.6): the final step's box is
    # pinned at the chosen strengths instead of the space's range.
    assert isinstance(final, BilevelLogisticCV)
    np.testing.assert_allclose(final.C_, C, rtol=1e-12)
    assert np.isfinite(final.coef_).all()


def test_bilevel_ridge_final_step_without_tuple():
    X, y = load_diabetes(return_X_y=True)
    search = HypergradientSearchCV(
        BilevelRidgeCV(), {"fit_intercept": [True]}, cv=3
    ).fit(X, y)
    assert isinstance(search.best_params_["alpha"], float)
    assert isinstance(search.best_estimator_, BilevelRidgeCV)


def test_multimetric_scoring_and_refit():
    X, y = _cancer()
    scoring = ["neg_log_loss", "accuracy"]
    search = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring=scoring, refit="neg_log_loss"
    ).fit(X, y)
    for name in scoring:
        for prefix in ("mean_test_", "std_test_", "rank_test_", "split0_test_"):
            assert prefix + name in search.cv_results_
    assert search.multimetric_ and set(search.scorer_) == set(scoring)
    best = search.cv_results_["mean_test_neg_log_loss"][search.best_index_]
    assert search.best_score_ == best
    assert search.score(X, y) == pytest.approx(-log_loss(y, search.predict_proba(X)))
    with pytest.raises(ValueError, match="refit"):
        HypergradientSearchCV(
            _pipe(), {"clf__C": (1e-2, 1e2)}, scoring=scoring, refit="bogus"
        ).fit(X, y)
    no_refit = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring=scoring, refit=False
    ).fit(X, y)
    assert not hasattr(no_refit, "best_estimator_")
    chosen = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring=scoring, refit=lambda r: 0
    ).fit(X, y)
    assert chosen.best_index_ == 0


def test_nested_cross_validate_and_clone():
    X, y = _cancer()
    search = HypergradientSearchCV(_pipe(), {"clf__C": (1e-2, 1e2)}, cv=3)
    result = cross_validate(search, X, y, cv=3, scoring="neg_log_loss")
    assert np.all(np.isfinite(result["test_score"]))
    search.fit(X, y)
    fresh = clone(search)
    assert not hasattr(fresh, "cv_results_")
    # Refitting on other data starts from scratch.
    n_first = len(search.cv_results_["params"])
    search.fit(X[:150], y[:150])
    assert search.best_estimator_[-1].n_features_in_ == X.shape[1]
    assert search.cv_results_["iter"][0] == 0
    assert len(search.cv_results_["params"]) <= n_first + 10


def test_groups_reach_the_splitter():
    X, y = _cancer()
    groups = np.arange(len(y)) % 6
    space = {"clf__C": [0.1, 1.0]}
    kwargs = dict(cv=GroupKFold(3), scoring="neg_log_loss")
    search = HypergradientSearchCV(_pipe(), space, **kwargs).fit(X, y, groups=groups)
    grid = GridSearchCV(_pipe(), space, **kwargs).fit(X, y, groups=groups)
    np.testing.assert_allclose(
        search.cv_results_["split2_test_score"], grid.cv_results_["split2_test_score"]
    )


def _duplicated(X, y, weights, folds):
    """Rows repeated by their integer weight, and the folds mapped to them."""
    index = np.repeat(np.arange(len(y)), weights)
    position = {i: np.flatnonzero(index == i) for i in range(len(y))}
    mapped = [
        (
            np.concatenate([position[i] for i in tr]),
            np.concatenate([position[i] for i in te]),
        )
        for tr, te in folds
    ]
    return X[index], y[index], mapped


def test_sample_weight_equals_repeated_rows():
    X, y = _cancer(200)
    weights = np.random.RandomState(0).randint(1, 4, len(y))
    folds = list(StratifiedKFold(4).split(X, y))
    Xr, yr, folds_r = _duplicated(X, y, weights, folds)
    weighted = HypergradientSearchCV(
        LogisticRegression(), {"C": (1e-2, 1e2)}, cv=folds, scoring="neg_log_loss"
    ).fit(StandardScaler().fit_transform(X), y, sample_weight=weights)
    repeated = HypergradientSearchCV(
        LogisticRegression(), {"C": (1e-2, 1e2)}, cv=folds_r, scoring="neg_log_loss"
    ).fit(StandardScaler().fit_transform(X)[np.repeat(np.arange(len(y)), weights)], yr)
    assert weighted.best_params_["C"] == pytest.approx(
        repeated.best_params_["C"], rel=1e-3
    )
    # Without routing, a top-level sample_weight also weights the scores.
    assert weighted.best_score_ == pytest.approx(repeated.best_score_, rel=1e-6)


def test_pipeline_sample_weight_with_and_without_routing():
    X, y = _cancer(200)
    weights = np.random.RandomState(0).randint(1, 4, len(y)).astype(float)
    space = {"clf__C": (1e-2, 1e2)}
    plain = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss", cv=3)
    plain.fit(X, y, clf__sample_weight=weights)
    unweighted = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss", cv=3)
    unweighted.fit(X, y)
    assert plain.best_params_["clf__C"] != pytest.approx(
        unweighted.best_params_["clf__C"], rel=1e-3
    )
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline(
            [
                ("scale", StandardScaler().set_fit_request(sample_weight=False)),
                ("clf", LogisticRegression().set_fit_request(sample_weight=True)),
            ]
        )
        scorer = make_scorer(
            log_loss, greater_is_better=False, response_method="predict_proba"
        ).set_score_request(sample_weight=False)
        routed = HypergradientSearchCV(pipe, space, scoring=scorer, cv=3)
        routed.fit(X, y, sample_weight=weights)
    assert routed.best_params_["clf__C"] == pytest.approx(
        plain.best_params_["clf__C"], rel=1e-6
    )


def test_failed_candidate_gets_error_score():
    X, y = _cancer()
    space = {"clf__class_weight": [None, {0: -1.0, 1: 1.0}], "clf__C": (1e-2, 1e2)}
    search = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss")
    with pytest.warns(FitFailedWarning, match="failed"):
        search.fit(X, y)
    means = search.cv_results_["mean_test_score"]
    assert (
        np.isnan(means).sum() == 1 and search.best_params_["clf__class_weight"] is None
    )
    with pytest.raises(ValueError, match="class_weight"):
        HypergradientSearchCV(_pipe(), space, error_score="raise").fit(X, y)


def test_parallel_candidates_match_sequential():
    X, y = _cancer()
    space = {"scale": [StandardScaler(), RobustScaler()], "clf__C": (1e-2, 1e2)}
    one = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss").fit(X, y)
    two = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss", n_jobs=2)
    two.fit(X, y)
    np.testing.assert_array_equal(
        one.cv_results_["mean_test_score"], two.cv_results_["mean_test_score"]
    )
    threads = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring="neg_log_loss", n_jobs=2
    ).fit(X, y)
    single = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring="neg_log_loss"
    ).fit(X, y)
    np.testing.assert_array_equal(
        threads.cv_results_["mean_test_score"], single.cv_results_["mean_test_score"]
    )


def test_random_state_shuffles_int_cv():
    X, y = _cancer()
    a = HypergradientSearchCV(_pipe(), {"clf__C": [1.0]}, random_state=0).fit(X, y)
    b = HypergradientSearchCV(_pipe(), {"clf__C": [1.0]}).fit(X, y)
    grid = GridSearchCV(
        _pipe(), {"clf__C": [1.0]}, cv=StratifiedKFold(5, shuffle=True, random_state=0)
    ).fit(X, y)
    assert a.best_score_ == pytest.approx(grid.best_score_)
    assert a.best_score_ != b.best_score_


def test_multiclass_and_verbose(capsys):
    X, y = load_iris(return_X_y=True)
    search = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e3)}, scoring="neg_log_loss", verbose=1
    ).fit(X, y)
    out = capsys.readouterr().out
    assert "candidate" in out and "C=" in out and "|hypergradient|" in out
    assert search.predict_proba(X).shape == (150, 3)


@parametrize_with_checks(
    [
        HypergradientSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression()),
            {"logisticregression__C": (1e-2, 1e2)},
            cv=3,
        ),
        HypergradientSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=KFold(3)),
        HypergradientSearchCV(
            KernelRidge(kernel="rbf"),
            {"alpha": (1e-3, 1e3), "gamma": (1e-3, 1.0)},
            cv=KFold(3),
        ),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


class Recorder:
    """A FitCallback that records the tasks it is told about."""

    def __init__(self):
        self.events = []

    def setup(self, estimator, context):
        self.events.append(("setup", type(estimator).__name__))

    def on_fit_task_begin(self, estimator, context, **kwargs):
        self.events.append(("begin", context.task_name))

    def on_fit_task_end(self, estimator, context, **kwargs):
        self.events.append(("end", context.task_name))
        return False

    def teardown(self, estimator, context):
        self.events.append(("teardown", type(estimator).__name__))


def test_callbacks_follow_the_outer_iterations():
    sklearn_callback = pytest.importorskip("sklearn.callback")
    X, y = _cancer()
    recorder = Recorder()
    model = BilevelLogisticCV().set_callbacks(recorder)
    model.fit(StandardScaler().fit_transform(X), y)
    events = recorder.events
    assert events[0] == ("setup", "BilevelLogisticCV")
    assert events[-1] == ("teardown", "BilevelLogisticCV")
    n_eval = events.count(("begin", "evaluation"))
    assert n_eval == events.count(("end", "evaluation"))
    # One callback subtask per evaluation; cv_results_ shows a point
    # evaluated twice once, and "iter" numbers the evaluations.
    assert n_eval == model.cv_results_["iter"].max() + 1
    assert not hasattr(model, "_callback_fit_ctx")

    recorder = Recorder()
    space = {"scale": [StandardScaler(), RobustScaler()], "clf__C": (1e-2, 1e2)}
    search = HypergradientSearchCV(_pipe(), space).set_callbacks(recorder).fit(X, y)
    assert recorder.events.count(("begin", "candidate")) == 2
    iteration = search.cv_results_["iter"]
    candidate = np.cumsum(np.r_[True, np.diff(iteration) <= 0])
    evaluations = sum(iteration[candidate == k].max() + 1 for k in set(candidate))
    assert recorder.events.count(("end", "evaluation")) == evaluations
    # scikit-learn's own progress bar runs on top of them.
    bar = sklearn_callback.ProgressBar(max_propagation_depth=None)
    BilevelRidgeCV().set_callbacks(bar).fit(*load_diabetes(return_X_y=True))
    search.set_callbacks(bar).fit(X, y)


@pytest.mark.slow
def test_dask_cluster_matches_local():
    """Candidates spread over a real local dask.distributed cluster."""
    import joblib
    from distributed import Client, LocalCluster, get_task_stream

    X, y = _cancer()
    space = {"scale": [StandardScaler(), RobustScaler()], "clf__C": (1e-2, 1e2)}
    local = HypergradientSearchCV(_pipe(), space, scoring="neg_log_loss").fit(X, y)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        joblib.parallel_config(backend="dask"),
        get_task_stream(client) as stream,
    ):
        remote = HypergradientSearchCV(
            _pipe(), space, scoring="neg_log_loss", n_jobs=2
        ).fit(X, y)
    assert len(stream.data) >= 2  # the candidates ran as cluster tasks
    np.testing.assert_array_equal(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    assert remote.best_params_["clf__C"] == local.best_params_["clf__C"]


def test_optimization_path_display():
    """x is the evaluation number of cv_results_ (verbose's "eval N"), one
    labelled line per candidate overlaid, markers explained in the legend,
    the score axis not squashed by the weakest scan points, percentiles
    (not a min-max band) past 20 strengths, and a Pipeline accepted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skbilevel.plotting import OptimizationPathDisplay

    X, y = _cancer()
    space = {"scale": [StandardScaler(), RobustScaler()], "clf__C": (1e-2, 1e2)}
    search = HypergradientSearchCV(_pipe(), space).fit(X, y)
    display = OptimizationPathDisplay.from_estimator(search)
    assert len(display.score_lines_) == 2  # one per candidate
    assert display.ax_[1].get_ylabel() == "clf__C"
    assert display.ax_[1].get_yscale() == "log"
    assert display.ax_[1].get_xlabel() == "evaluation (cv_results_['iter'])"
    results = search.cv_results_
    iteration = results["iter"]
    first = np.cumsum(np.r_[True, np.diff(iteration) <= 0]) == 1  # candidate 0's
    order = np.argsort(iteration[first], kind="stable")
    np.testing.assert_allclose(
        display.score_lines_[0].get_ydata(),
        results["mean_test_score"][first][order],
    )
    np.testing.assert_array_equal(
        display.score_lines_[0].get_xdata(), iteration[first][order]
    )
    n_rows = len(results["params"])
    assert sum(len(line.get_xdata()) for line in display.score_lines_) == n_rows
    texts = [t.get_text() for t in display.ax_[0].get_legend().get_texts()]
    assert texts == [
        "scale=StandardScaler()",
        "scale=RobustScaler()",
        "scan point",
        "with hypergradient",
        "chosen",
    ]
    low, high = display.ax_[0].get_ylim()
    scores = results["mean_test_score"]
    assert high > scores.max() and low > scores.min()  # focused on the best part

    model = make_pipeline(
        StandardScaler(), BilevelLogisticCV(penalty="per_feature", max_iter=3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    fig, axes = plt.subplots(2, 1)
    display = OptimizationPathDisplay.from_estimator(model, ax=axes)
    assert display.figure_ is fig
    # 30 strengths: median, 10th and 90th percentiles.
    assert len(display.param_lines_) == 3
    C = np.vstack(model[-1].cv_results_["param_C"])
    np.testing.assert_allclose(
        display.param_lines_[0].get_ydata(), np.median(C, axis=1)
    )
    np.testing.assert_allclose(
        display.param_lines_[2].get_ydata(), np.percentile(C, 90, axis=1)
    )
    texts = [t.get_text() for t in display.ax_[1].get_legend().get_texts()]
    assert texts == ["median of 30", "10th and 90th percentiles"]
    with pytest.raises(TypeError, match="OptimizationPathDisplay plots skbilevel"):
        OptimizationPathDisplay.from_estimator(LogisticRegression().fit(X, y))
    with pytest.raises(sklearn.exceptions.NotFittedError):
        OptimizationPathDisplay.from_estimator(BilevelRidgeCV())
    plt.close("all")


def test_dataframe_and_string_labels():
    pd = pytest.importorskip("pandas")
    X, y = _cancer()
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    labels = np.array(["benign", "malignant"])[y]
    search = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring="neg_log_loss"
    ).fit(frame, labels)
    np.testing.assert_array_equal(search.feature_names_in_, frame.columns)
    np.testing.assert_array_equal(search.classes_, ["benign", "malignant"])
    assert set(search.predict(frame)) <= {"benign", "malignant"}
    numeric = HypergradientSearchCV(
        _pipe(), {"clf__C": (1e-2, 1e2)}, scoring="neg_log_loss"
    ).fit(X, y)
    assert search.best_score_ == pytest.approx(numeric.best_score_, rel=1e-10)


def test_stochastic_solver_through_the_search(monkeypatch):
    import skbilevel._base as estimator_module

    X, y = _cancer(400)
    pipe = make_pipeline(
        StandardScaler(),
        BilevelLogisticCV(solver="stochastic", max_iter=20, random_state=0),
    )
    search = HypergradientSearchCV(
        pipe, {"bilevellogisticcv__C": (1e-3, 1e3)}, scoring="neg_log_loss", cv=3
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isnan(scores[:-1]).all() and np.isfinite(scores[-1])
    assert search.best_index_ == len(scores) - 1
    assert search.best_estimator_[-1].solver_ == "stochastic"
    # A plain Ridge on "large" data switches to the stochastic solver too.
    monkeypatch.setattr(estimator_module, "STOCHASTIC_MIN_SAMPLES", 300)
    monkeypatch.setattr(estimator_module, "STOCHASTIC_MIN_FLOPS", 0.0)
    monkeypatch.setattr(estimator_module, "STOCHASTIC_COST_RATIO", 0.0)
    Xr, yr = load_diabetes(return_X_y=True)
    ridge = HypergradientSearchCV(
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": (1e-3, 1e3)},
        scoring="neg_mean_squared_error",
    ).fit(Xr, yr)
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": np.logspace(-3, 3, 61)},
        scoring="neg_mean_squared_error",
    ).fit(Xr, yr)
    assert np.isnan(ridge.cv_results_["mean_test_score"][:-1]).all()
    assert ridge.best_score_ >= grid.best_score_ * (1 + 2e-3)  # within 0.2%
    # random_state seeds the stochastic solver of a plain final step.
    seeded = [
        HypergradientSearchCV(
            make_pipeline(StandardScaler(), Ridge()),
            {"ridge__alpha": (1e-3, 1e3)},
            random_state=1,
        ).fit(Xr, yr)
        for _ in range(2)
    ]
    assert seeded[0].best_params_ == seeded[1].best_params_


def test_objects_in_the_space_are_cloned():
    # Estimators listed in the space come back untouched, and best_estimator_
    # holds clones of them, as with GridSearchCV.
    X, y = _cancer(200)
    scalers = [StandardScaler(), RobustScaler()]
    space = {"scale": scalers, "clf__C": (1e-2, 1e2)}
    search = HypergradientSearchCV(_pipe(), space).fit(X, y)
    for scaler in scalers:
        assert not hasattr(scaler, "n_features_in_")
        assert search.best_estimator_.named_steps["scale"] is not scaler
    assert hasattr(search.best_estimator_.named_steps["scale"], "n_features_in_")


def test_folds_of_different_widths():
    # One-hot encoding a rare category gives folds different numbers of
    # columns: a scalar or per-class strength follows them; one strength per
    # feature cannot, and says what to do.
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    X, y = _cancer(200)
    category = np.array(["a", "b"] * 100, dtype=object)
    category[7] = "rare"  # in the training part of 4 folds out of 5
    Xc = np.column_stack([X[:, :5], category]).astype(object)

    def pipe(final):
        encode = ColumnTransformer(
            [("num", StandardScaler(), list(range(5))),
             ("cat", OneHotEncoder(handle_unknown="ignore"), [5])]
        )  # fmt: skip
        return make_pipeline(encode, final)

    search = HypergradientSearchCV(
        pipe(LogisticRegression()), {"logisticregression__C": (1e-2, 1e2)}
    ).fit(Xc, y)
    assert np.isfinite(search.best_score_)
    per_feature = pipe(BilevelLogisticCV(penalty="per_feature"))
    with pytest.raises(ValueError, match="penalty='scalar'"):
        HypergradientSearchCV(
            per_feature, {"bilevellogisticcv__C": (1e-2, 1e2)}, error_score="raise"
        ).fit(Xc, y)


class _MustNotFit(StandardScaler):
    """A transformer whose fit fails: an error from it means work was done."""

    def fit(self, X, y=None, **params):
        raise AssertionError("fitted before the parameters were checked")

    def fit_transform(self, X, y=None, **params):
        return self.fit(X, y)


@pytest.mark.parametrize(
    "scoring", ["not_a_metric", {"a": "not_a_metric"}, ["accuracy", "nope"]]
)
def test_scoring_is_checked_before_any_work(scoring):
    X, y = _cancer(100)
    pipe = make_pipeline(_MustNotFit(), LogisticRegression())
    search = HypergradientSearchCV(
        pipe, {"logisticregression__C": (1e-2, 1e2)}, scoring=scoring
    )
    with pytest.raises(ValueError, match="scoring"):
        search.fit(X, y)


@pytest.mark.parametrize("Estimator", [BilevelRidgeCV, BilevelLogisticCV])
def test_estimator_scoring_is_checked_before_the_search(Estimator, monkeypatch):
    import skbilevel._base

    def no_search(*args, **kwargs):
        raise AssertionError("the search ran before scoring was checked")

    monkeypatch.setattr(skbilevel._base.BaseBilevelCV, "_bilevel_search", no_search)
    X, y = _cancer(100)
    with pytest.raises(ValueError, match="'scoring' parameter"):
        Estimator(scoring="not_a_metric").fit(X, y)


def _coef_aware_score(estimator, X, y):
    """A custom scorer that reads the model and the features, as users write."""
    assert X.shape[1] == estimator.n_features_in_
    return accuracy_score(y, estimator.predict(X)) - 1e-3 * np.sum(
        np.abs(estimator.coef_) > 0.1
    )


def test_custom_scoring_callables_get_the_fold_model_and_its_rows():
    X, y = _cancer(200)
    X = StandardScaler().fit_transform(X)
    folds = list(StratifiedKFold(5).split(X, y))
    clf = BilevelLogisticCV(scoring=_coef_aware_score, cv=folds).fit(X, y)
    expected = np.mean(
        [
            _coef_aware_score(
                LogisticRegression(C=clf.C_, tol=1e-10).fit(X[tr], y[tr]), X[te], y[te]
            )
            for tr, te in folds
        ]
    )
    assert clf.best_score_ == pytest.approx(expected, abs=1e-9)
    search = HypergradientSearchCV(
        LogisticRegression(), {"C": (1e-2, 1e2)}, scoring=_coef_aware_score,
        cv=folds, return_train_score=True,
    ).fit(X, y)  # fmt: skip
    assert np.isfinite(search.cv_results_["mean_train_score"]).all()


def test_search_solver_follows_the_number_of_samples(monkeypatch):
    import skbilevel._base

    monkeypatch.setattr(skbilevel._base, "STOCHASTIC_MIN_SAMPLES", 100)
    monkeypatch.setattr(skbilevel._base, "STOCHASTIC_MIN_FLOPS", 0.0)
    monkeypatch.setattr(skbilevel._base, "STOCHASTIC_COST_RATIO", 0.0)
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:150], y[:150]
    cv = ShuffleSplit(3, test_size=0.2, random_state=0)  # 90 validation rows
    search = HypergradientSearchCV(Ridge(), {"alpha": (1e-3, 1e3)}, cv=cv, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    # The stochastic mode's rows: mini-batch estimates (NaN), then the final one.
    assert np.isnan(search.cv_results_["mean_test_score"][:-1]).all()


@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
def test_bilevel_final_step_is_refit_at_best_params(penalty):
    X, y = _cancer(200)
    pipe = make_pipeline(StandardScaler(), BilevelLogisticCV(penalty=penalty))
    search = HypergradientSearchCV(
        pipe, {"bilevellogisticcv__C": (1e-2, 1e2)}, max_iter=15
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    chosen = search.best_params_["bilevellogisticcv__C"]
    np.testing.assert_allclose(search.best_estimator_[-1].C_, chosen, rtol=1e-12)


def test_per_hyperparameter_bounds():
    X, y = load_diabetes(return_X_y=True)
    low = np.full(10, 1e-3)
    high = np.full(10, 1e3)
    high[0] = low[0] = 5.0  # one strength fixed
    reg = BilevelRidgeCV(penalty="per_feature", alpha_bounds=(low, high)).fit(X, y)
    assert reg.alpha_[0] == pytest.approx(5.0, rel=1e-12)
    assert np.all(
        (reg.alpha_ >= low * (1 - 1e-12)) & (reg.alpha_ <= high * (1 + 1e-12))
    )
    with pytest.raises(ValueError, match="must hold 10 values"):
        BilevelRidgeCV(penalty="per_feature", alpha_bounds=(low[:3], 1e3)).fit(X, y)


def test_space_ranges_are_pairs_of_numbers():
    X, y = load_diabetes(return_X_y=True)
    space = {"alpha": (np.full(10, 1e-3), np.full(10, 1e3))}
    with pytest.raises(ValueError, match="pair of numbers; one box per"):
        HypergradientSearchCV(BilevelRidgeCV(penalty="per_feature"), space).fit(X, y)


def test_per_feature_bilevel_elastic_net_final_step():
    """A per-feature BilevelElasticNetCV final step: its refit pins one
    alpha and one l1_ratio per feature (arrays as boxes); a box of the wrong
    size is named."""
    X, y = load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = HypergradientSearchCV(
            BilevelElasticNetCV(penalty="per_feature", max_iter=10),
            {"l1_ratio": (0.2, 0.8)},
            cv=3,
        ).fit(X, y)
    final = search.best_estimator_
    assert final.l1_ratio_.shape == (10,)
    np.testing.assert_allclose(final.alpha_, search.best_params_["alpha"])
    np.testing.assert_allclose(final.l1_ratio_, search.best_params_["l1_ratio"])
    assert np.all((final.l1_ratio_ >= 0.2 - 1e-12) & (final.l1_ratio_ <= 0.8 + 1e-12))
    with pytest.raises(ValueError, match="l1_ratio_bounds arrays must hold 10"):
        BilevelElasticNetCV(
            penalty="per_feature", l1_ratio_bounds=(np.full(3, 0.2), 0.8)
        ).fit(X, y)


def test_kernel_ridge_alpha_and_gamma_ranges_beat_a_10_by_10_grid():
    """A Pipeline ending with KernelRidge: alpha and gamma as ranges reach
    a CV score at or above GridSearchCV's best of 10 x 10 values (same
    folds, same scorer), training scores included, and the refit is the
    user's Pipeline at best_params_."""
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:250], y[:250]
    pipe = make_pipeline(StandardScaler(), KernelRidge(kernel="rbf"))
    cv = KFold(5, shuffle=True, random_state=0)
    search = HypergradientSearchCV(
        pipe,
        {"kernelridge__alpha": (1e-6, 1e2), "kernelridge__gamma": (1e-5, 1.0)},
        cv=cv, scoring="neg_mean_squared_error", return_train_score=True,
    ).fit(X, y)  # fmt: skip
    grid = GridSearchCV(
        pipe,
        {"kernelridge__alpha": np.logspace(-4, 1, 10),
         "kernelridge__gamma": np.logspace(-3, 1, 10) / 10},
        cv=cv, scoring="neg_mean_squared_error",
    ).fit(X, y)  # fmt: skip
    assert search.best_score_ >= grid.best_score_
    best = search.best_params_
    refit = clone(pipe).set_params(**best).fit(X, y)
    np.testing.assert_allclose(search.predict(X), refit.predict(X), rtol=1e-9)
    check = cross_validate(
        clone(pipe).set_params(**best), X, y, cv=cv,
        scoring="neg_mean_squared_error", return_train_score=True,
    )  # fmt: skip
    row = search.best_index_
    for key in ("test", "train"):
        np.testing.assert_allclose(
            [search.cv_results_[f"split{k}_{key}_score"][row] for k in range(5)],
            check[f"{key}_score"], rtol=1e-7,
        )  # fmt: skip


def test_kernel_ridge_listed_gamma_and_own_per_feature_step():
    """Listed gammas are candidates whose alpha is tuned; a
    BilevelKernelRidgeCV final step with one width per feature is refit at
    exactly the chosen widths and strength."""
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:200], y[:200]
    cv = KFold(4, shuffle=True, random_state=0)
    pipe = make_pipeline(StandardScaler(), KernelRidge(kernel="rbf"))
    listed = HypergradientSearchCV(
        pipe, {"kernelridge__alpha": (1e-6, 1e2), "kernelridge__gamma": [0.01, 0.1]},
        cv=cv,
    ).fit(X, y)  # fmt: skip
    assert sorted(listed.cv_results_["param_kernelridge__gamma"]) == [0.01, 0.1]
    assert len(set(listed.cv_results_["param_kernelridge__alpha"])) == 2
    own = make_pipeline(StandardScaler(), BilevelKernelRidgeCV(gamma="per_feature"))
    search = HypergradientSearchCV(
        own, {"bilevelkernelridgecv__alpha": (1e-6, 1e2)}, cv=cv, max_iter=15
    ).fit(X, y)
    widths = search.best_params_["bilevelkernelridgecv__gamma"]
    assert np.shape(widths) == (10,)
    final = search.best_estimator_[-1]
    np.testing.assert_array_equal(final.gamma_, widths)
    assert final.alpha_ == pytest.approx(
        search.best_params_["bilevelkernelridgecv__alpha"], rel=1e-12
    )


def test_kernel_ridge_steps_that_cannot_be_tuned():
    X, y = load_diabetes(return_X_y=True)
    for step, message in [
        (KernelRidge(kernel="sigmoid"), "kernel must be one of"),
        (KernelRidge(kernel="rbf", kernel_params={"gamma": 1.0}), "kernel_params"),
    ]:
        search = HypergradientSearchCV(
            step, {"alpha": (1e-3, 1.0)}, cv=3, error_score="raise"
        )
        with pytest.raises(ValueError, match=message):
            search.fit(X[:60], y[:60])


def test_scoring_that_disagrees_with_the_search_warns_and_refit_by_objective():
    """A class-weighted LogisticRegression scored by the unweighted log-loss:
    the scorer ranks a scan point first, not the search's optimum of the
    weighted loss. refit_by='scoring' (GridSearchCV's rule) says so, naming
    both rows; refit_by='objective' refits at the search's own choice."""
    X, y = make_classification(600, 20, weights=[0.9], random_state=0)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    space = {"logisticregression__C": (1e-4, 1e2)}
    with pytest.warns(UserWarning, match="best_params_ follows scoring") as record:
        by_score = HypergradientSearchCV(pipe, space, scoring="neg_log_loss").fit(X, y)
    choice = np.flatnonzero(by_score.cv_results_["search_choice"])
    assert len(choice) == 1 and by_score.best_index_ != choice[0]
    message = str(record[0].message)
    assert f"row {by_score.best_index_}" in message and f"row {choice[0]}" in message
    by_loss = HypergradientSearchCV(
        pipe, space, scoring="neg_log_loss", refit_by="objective"
    ).fit(X, y)
    assert by_loss.best_index_ == choice[0]
    assert by_loss.best_params_ == by_score.cv_results_["params"][choice[0]]
    # Scan points come back as the numbers they were (1.0, not
    # 1.0000000000000009).
    assert 1.0 in list(by_score.cv_results_["param_logisticregression__C"])


def test_a_point_evaluated_twice_is_one_row():
    """A scan point evaluated again with its hypergradient appears once in
    cv_results_ (its last evaluation), rows numbered by evaluation, and the
    best row is still the chosen point (estimator and search alike)."""
    X, y = make_classification(600, 20, weights=[0.9], random_state=0)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
    search = HypergradientSearchCV(
        pipe, {"logisticregression__C": (1e-4, 1e2)}, refit_by="objective"
    ).fit(X, y)
    model = make_pipeline(StandardScaler(), BilevelLogisticCV()).fit(X, y)[-1]
    for results, key in (
        (search.cv_results_, "param_logisticregression__C"),
        (model.cv_results_, "param_C"),
    ):
        values = [float(v) for v in results[key]]
        assert len(set(values)) == len(values)
        assert np.all(np.diff(results["iter"]) > 0)
    assert model.cv_results_["param_C"][model.best_index_] == model.C_
    assert search.cv_results_["params"][search.best_index_] == search.best_params_


def test_a_two_value_list_that_looks_like_a_range_warns():
    """{"alpha": [1e-3, 1e3]} is a grid of two points, as in GridSearchCV,
    but probably meant as a range: the warning says how to write one. Lists
    of listed values (close, or more than two) stay silent."""
    X, y = load_diabetes(return_X_y=True)
    with pytest.warns(UserWarning, match=r"give a tuple: \(0\.001, 1000\.0\)"):
        search = HypergradientSearchCV(Ridge(), {"alpha": [1e-3, 1e3]}, cv=3).fit(X, y)
    assert sorted(search.cv_results_["param_alpha"]) == [1e-3, 1e3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HypergradientSearchCV(Ridge(), {"alpha": [0.5, 1.0]}, cv=3).fit(X, y)
        HypergradientSearchCV(Ridge(), {"alpha": [1e-3, 1.0, 1e3]}, cv=3).fit(X, y)


def test_validation_curve_display():
    """The CV score against the strength: one curve per candidate (labelled
    by its listed values), a fold band, the chosen point starred at its
    strength, the range's ends dashed; a Pipeline ending with a skbilevel
    estimator is accepted, per-feature points are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from skbilevel.plotting import ValidationCurveDisplay

    X, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), BilevelRidgeCV()).fit(X, y)
    display = ValidationCurveDisplay.from_estimator(model)
    ax, reg = display.ax_, model[-1]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "alpha"
    assert ax.get_ylabel() == "mean CV score" and len(display.lines_) == 1
    star = [line for line in ax.get_lines() if line.get_marker() == "*"][0]
    assert star.get_xdata()[0] == pytest.approx(reg.alpha_)
    assert star.get_ydata()[0] == pytest.approx(reg.best_score_)
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_xdata()[0] for line in dashed) == list(reg.alpha_bounds_)
    assert len(ax.collections) == 1  # the fold band
    curve = display.lines_[0]
    assert np.all(np.diff(curve.get_xdata()) > 0)  # sorted by strength

    X, y = _cancer()
    space = {"scale": [StandardScaler(), RobustScaler()], "clf__C": (1e-2, 1e2)}
    search = HypergradientSearchCV(_pipe(), space).fit(X, y)
    display = ValidationCurveDisplay.from_estimator(search)
    assert len(display.lines_) == 2
    texts = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert texts[:2] == ["scale=StandardScaler()", "scale=RobustScaler()"]
    assert "chosen" in texts
    lines = display.ax_.get_lines()
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    assert sorted(line.get_xdata()[0] for line in dashed) == [1e-2, 1e2]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_feature = BilevelRidgeCV(
            penalty="per_feature", max_iter=5, early_stopping=False
        ).fit(X, y)
    display = ValidationCurveDisplay.from_estimator(per_feature)
    common = [
        np.all(np.asarray(v) == np.ravel(v)[0])
        for v in per_feature.cv_results_["param_alpha"]
    ]
    assert len(display.lines_[0].get_xdata()) == sum(common) < len(common)
    with pytest.raises(TypeError, match="ValidationCurveDisplay plots skbilevel"):
        ValidationCurveDisplay.from_estimator(Ridge().fit(X, y))
    lists = HypergradientSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=3).fit(X, y)
    with pytest.raises(ValueError, match="had lists only"):
        ValidationCurveDisplay.from_estimator(lists)


def _log_price_data():
    """Positive, right-skewed targets: the usual log-price pattern."""
    X, y = make_regression(
        n_samples=240, n_features=8, n_informative=5, noise=15.0, random_state=3
    )
    return X, np.exp((y - y.mean()) / y.std())


def test_transformed_target_regressor_lists_match_gridsearch():
    """TransformedTargetRegressor(pipeline, func=np.log, inverse_func=np.exp)
    with lists: the same cv_results_ scores as GridSearchCV, which trains on
    log(y) and scores the exponentiated predictions against y; train scores
    and a sample weight included."""
    X, y = _log_price_data()
    ttr = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), Ridge()), func=np.log, inverse_func=np.exp
    )
    grid = {"regressor__ridge__alpha": [0.1, 3.0, 100.0]}
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    options = dict(cv=KFold(4), return_train_score=True)
    ours = HypergradientSearchCV(ttr, grid, **options).fit(X, y)
    theirs = GridSearchCV(ttr, grid, **options).fit(X, y)
    for key in ("mean_test_score", "split0_test_score", "mean_train_score"):
        np.testing.assert_allclose(ours.cv_results_[key], theirs.cv_results_[key])
    assert ours.best_params_ == theirs.best_params_
    assert isinstance(ours.best_estimator_, TransformedTargetRegressor)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X))

    scoring = "neg_mean_absolute_error"
    weighted = dict(cv=KFold(4), scoring=scoring)
    ours = HypergradientSearchCV(ttr, grid, **weighted)
    theirs = GridSearchCV(ttr, grid, **weighted)
    ours.fit(X, y, ridge__sample_weight=weight)
    theirs.fit(X, y, ridge__sample_weight=weight)
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )


def test_transformed_target_regressor_range():
    """A range inside a TransformedTargetRegressor is tuned on the scale the
    regressor is trained on (the CV MSE of log(y) at the chosen alpha is the
    best of a fine grid's), and its rows are scored as GridSearchCV scores
    them, on y's own scale; a transformer works as func/inverse_func do."""
    X, y = _log_price_data()
    pipe = make_pipeline(StandardScaler(), Ridge())
    ttr = TransformedTargetRegressor(pipe, func=np.log, inverse_func=np.exp)
    space = {"regressor__ridge__alpha": (1e-2, 1e4)}
    cv = KFold(5)
    search = HypergradientSearchCV(ttr, space, cv=cv, refit_by="objective").fit(X, y)
    alpha = search.best_params_["regressor__ridge__alpha"]
    check = GridSearchCV(ttr, {"regressor__ridge__alpha": [alpha]}, cv=cv).fit(X, y)
    assert search.best_score_ == pytest.approx(check.best_score_, rel=1e-9)
    # The search minimized the CV MSE of log(y).
    log_mse = GridSearchCV(
        pipe,
        {"ridge__alpha": np.r_[np.logspace(-2, 4, 49), alpha]},
        cv=cv,
        scoring="neg_mean_squared_error",
    ).fit(X, np.log(y))
    scores = log_mse.cv_results_["mean_test_score"]
    assert scores[-1] >= scores[:-1].max() - 1e-6 * abs(scores[:-1].max())

    quantile = TransformedTargetRegressor(
        Ridge(), transformer=StandardScaler()
    )  # a fitted transform: learned on each fold's training targets
    ours = HypergradientSearchCV(quantile, {"regressor__alpha": (1e-2, 1e3)}, cv=cv)
    ours.fit(X, y)
    alpha = ours.best_params_["regressor__alpha"]
    check = GridSearchCV(quantile, {"regressor__alpha": [alpha]}, cv=cv).fit(X, y)
    assert ours.best_score_ == pytest.approx(check.best_score_, rel=1e-9)


def test_transformed_target_regressor_errors():
    X, y = _log_price_data()
    nested = make_pipeline(
        StandardScaler(),
        TransformedTargetRegressor(Ridge(), func=np.log, inverse_func=np.exp),
    )
    with pytest.raises(ValueError, match="wrap the whole Pipeline"):
        HypergradientSearchCV(nested, {"transformedtargetregressor__regressor__alpha": (
            1e-2, 1e2)}).fit(X, y)  # fmt: skip
    half = TransformedTargetRegressor(Ridge(), func=np.log)
    with pytest.raises(ValueError, match="both func and inverse_func"):
        HypergradientSearchCV(half, {"regressor__alpha": (1e-2, 1e2)}).fit(X, y)
    both = TransformedTargetRegressor(
        Ridge(), transformer=StandardScaler(), func=np.log, inverse_func=np.exp
    )
    with pytest.raises(ValueError, match="cannot both be set"):
        HypergradientSearchCV(both, {"regressor__alpha": (1e-2, 1e2)}).fit(X, y)


def _same_results(ours, theirs):
    """cv_results_ equal key for key (times aside), and the same choice."""
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    for key, value in theirs.cv_results_.items():
        if key.endswith("_time"):
            continue
        if key == "params":
            assert ours.cv_results_[key] == value
        elif np.asarray(value).dtype.kind == "f":
            np.testing.assert_allclose(ours.cv_results_[key], value)
        else:
            np.testing.assert_array_equal(ours.cv_results_[key], value)
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_index_ == theirs.best_index_


@pytest.mark.parametrize(
    "final, grid",
    [
        (SVC(), {"svc__C": [0.1, 1, 10], "svc__kernel": ("linear", "rbf")}),
        (
            HistGradientBoostingClassifier(max_iter=20, random_state=0),
            {"histgradientboostingclassifier__learning_rate": [0.05, 0.2]},
        ),
        (KNeighborsClassifier(), [{"kneighborsclassifier__n_neighbors": [3, 9]}]),
        # Lists only over a final step that has a hypergradient: a grid too.
        (LogisticRegression(), {"logisticregression__C": [0.1, 1.0]}),
    ],
    ids=["svc", "hist_gradient_boosting", "knn", "logistic_lists"],
)
def test_lists_over_any_estimator_are_gridsearch(final, grid):
    """A space of lists searches any estimator exactly as GridSearchCV does
    (a tuple of strings is a list of values there too)."""
    X, y = _cancer(200)
    pipe = make_pipeline(StandardScaler(), final)
    options = dict(cv=3, scoring=["accuracy", "roc_auc"], refit="roc_auc")
    options["return_train_score"] = True
    ours = HypergradientSearchCV(pipe, grid, **options).fit(X, y)
    theirs = GridSearchCV(pipe, grid, **options).fit(X, y)
    _same_results(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.score(X, y) == theirs.score(X, y)


def test_loguniform_is_a_range():
    """RandomizedSearchCV's loguniform(a, b) is the range (a, b)."""
    from scipy.stats import loguniform

    X, y = _cancer()
    as_tuple = HypergradientSearchCV(_pipe(), {"clf__C": (1e-2, 1e2)}).fit(X, y)
    as_law = HypergradientSearchCV(_pipe(), {"clf__C": loguniform(1e-2, 1e2)})
    as_law.fit(X, y)
    _same_results(as_law, as_tuple)
