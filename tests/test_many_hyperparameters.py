"""Many strengths that generalize: the early-stopping guard, per-column groups,
named strengths and their plot (issue 12)."""

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_transformer
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.model_selection import KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

from skbilevel import (
    BilevelLogisticCV,
    BilevelRidgeCV,
    HypergradientSearchCV,
    column_groups,
)
from skbilevel._folds import held_out_samples
from skbilevel._objectives import FoldsObjective
from skbilevel._outer import minimize_box
from skbilevel._problems._logistic import LogisticProblem
from skbilevel._problems._ridge import RidgeProblem
from skbilevel.plotting import StrengthsDisplay

matplotlib.use("Agg")


# ------------------------------------------------------------------ data
def alike(seed, n, d, classification):
    """Every feature matters, by similar amounts: one strength is right."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    if classification:
        p = 1.0 / (1.0 + np.exp(-0.15 * X @ w))
        return X, (rng.random(n) < p).astype(int)
    return X, X @ w + 1.5 * np.linalg.norm(w) * rng.standard_normal(n)


def differing(seed, n, d, classification):
    """Five informative features among noise, columns in different units."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = np.zeros(d)
    w[: min(5, d)] = [2.0, -2.0, 1.5, 1.5, -1.0][: min(5, d)]
    score = X @ w
    X = X * 10.0 ** rng.uniform(-1, 1, d)  # units differ from column to column
    if classification:
        return X, (rng.random(n) < 1.0 / (1.0 + np.exp(-score))).astype(int)
    return X, score + 2.0 * rng.standard_normal(n)


def held_out_ratio(make, seed, classification, n, d, **params):
    """Test loss of per-feature strengths over that of one shared strength."""
    X, y = make(seed, n, d, classification)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, random_state=seed)
    if classification:
        scalar = BilevelLogisticCV().fit(X_tr, y_tr)
        per = BilevelLogisticCV(penalty="per_feature", **params).fit(X_tr, y_tr)
        return log_loss(y_te, per.predict_proba(X_te)) / log_loss(
            y_te, scalar.predict_proba(X_te)
        )
    scalar = BilevelRidgeCV().fit(X_tr, y_tr)
    per = BilevelRidgeCV(penalty="per_feature", **params).fit(X_tr, y_tr)
    return mean_squared_error(y_te, per.predict(X_te)) / mean_squared_error(
        y_te, scalar.predict(X_te)
    )


# ------------------------------------------------------- generalization
@pytest.mark.parametrize("classification", [False, True], ids=["ridge", "logistic"])
@pytest.mark.parametrize("seed", range(3))
def test_per_feature_matches_scalar_where_features_are_alike(classification, seed):
    n = 1500 if classification else 600
    ratio = held_out_ratio(alike, seed, classification, n, 40)
    assert ratio <= 1.005


@pytest.mark.parametrize("classification", [False, True], ids=["ridge", "logistic"])
def test_per_feature_wins_where_features_differ(classification):
    # Never worse than the shared strength; clearly better on average (the
    # guard keeps the shared strength when the held-out samples cannot tell
    # a gain from noise, as on 2 of these 6 logistic data sets). That shared
    # strength comes from the per-feature fit's own 1-D search, the scalar
    # estimator's from another (forward-mode hypergradients for one C): the
    # same minimum of the CV loss, to the search's tolerance, which moves the
    # held-out loss by up to 1e-6 (measured: 5.7e-7).
    ratios = [held_out_ratio(differing, s, classification, 1000, 100) for s in range(6)]
    assert max(ratios) <= 1.0 + 1e-5
    assert np.mean(ratios) <= 0.93


def test_the_guard_is_what_keeps_alike_features_safe():
    # Without the guard, per-feature strengths overfit the folds here: a
    # better CV score, a worse test loss than the guarded fit (which keeps
    # the shared strength).
    X, y = alike(0, 600, 60, classification=False)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, random_state=0)
    free = BilevelRidgeCV(penalty="per_feature", early_stopping=False).fit(X_tr, y_tr)
    guarded = BilevelRidgeCV(penalty="per_feature").fit(X_tr, y_tr)
    assert free.best_score_ > guarded.best_score_
    test = [mean_squared_error(y_te, m.predict(X_te)) for m in (free, guarded)]
    assert test[1] < 0.97 * test[0]
    assert np.ptp(guarded.alpha_) == 0.0  # the shared strength


# ------------------------------------------------------ guard mechanics
def test_guard_path_and_choice():
    X, y = differing(1, 600, 30, classification=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = BilevelRidgeCV(penalty="per_feature").fit(X, y)
    path = reg.held_out_path_
    n_path = len(path["held_out_loss"])
    assert len(path["alpha"]) == len(path["fit_loss"]) == n_path
    assert np.ptp(path["alpha"][0]) == 0.0  # starts at the shared strength
    chosen = path["chosen"]
    assert chosen == int(np.argmin(path["held_out_loss"])) or chosen == 0
    # The guard's point, moved by the difference of the common values of the
    # two sets of folds, is the last evaluation on the user's folds; the
    # estimator keeps it unless a common value scores better there.
    results = reg.cv_results_
    shift = results["params"][-1]["alpha"] / path["alpha"][chosen]
    np.testing.assert_allclose(shift, shift[0], rtol=1e-10)
    assert np.ptp(path["alpha"][chosen]) > 0  # these features differ
    assert reg.best_score_ == np.max(results["mean_test_score"])
    assert reg.best_index_ == len(results["params"]) - 1 or np.ptp(reg.alpha_) == 0
    assert reg.n_iter_ > 0


def test_guard_off_is_the_best_cv_score():
    X, y = alike(1, 400, 30, classification=False)
    reg = BilevelRidgeCV(penalty="per_feature", early_stopping=False).fit(X, y)
    assert reg.held_out_path_ is None
    assert reg.best_score_ == np.max(reg.cv_results_["mean_test_score"])


def test_auto_leaves_per_output_strengths_unguarded():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    Y = np.column_stack([X @ rng.standard_normal(5), rng.standard_normal(120)])
    auto = BilevelRidgeCV(penalty="per_target").fit(X, Y)
    off = BilevelRidgeCV(penalty="per_target", early_stopping=False).fit(X, Y)
    np.testing.assert_array_equal(auto.alpha_, off.alpha_)
    assert auto.held_out_path_ is None
    forced = BilevelRidgeCV(penalty="per_target", early_stopping=True).fit(X, Y)
    assert forced.held_out_path_ is not None


def test_guard_needs_a_hundred_samples():
    X, y = alike(0, 80, 3, classification=False)
    with pytest.raises(ValueError, match="fewer than 100 samples"):
        BilevelRidgeCV(penalty="per_feature", early_stopping=True).fit(X, y)
    # "auto" steps aside on such small data.
    small = BilevelRidgeCV(penalty="per_feature").fit(X, y)
    assert small.held_out_path_ is None and small.alpha_.shape == (3,)


def test_guard_leave_one_out_groups_and_the_search():
    X, y = differing(0, 200, 12, classification=False)
    loo = BilevelRidgeCV(penalty="per_feature", cv=None).fit(X, y)
    assert loo.held_out_path_ is not None
    groups = np.repeat(["a", "b", "c"], 4)
    grouped = BilevelLogisticCV(penalty=groups).fit(X, (y > 0).astype(int))
    assert list(grouped.strengths_.index) == ["a", "b", "c"]
    assert grouped.held_out_path_ is not None
    search = HypergradientSearchCV(
        make_pipeline(StandardScaler(), BilevelRidgeCV(penalty="per_feature")),
        {"bilevelridgecv__alpha": (1e-3, 1e3)},
    ).fit(X, y)
    assert search.best_params_["bilevelridgecv__alpha"].shape == (12,)
    # The search's candidate ran under the guard: its rows are the common
    # values and the guard's point (none of the guard's path).
    strengths = search.cv_results_["param_bilevelridgecv__alpha"]
    assert sum(np.ptp(a) > 0 for a in strengths) <= 1


def test_guard_steps_aside_where_it_cannot_judge():
    # Splits that do not validate every sample once (time series), boxes
    # that differ per strength: "auto" runs the plain search; True says why.
    from sklearn.model_selection import TimeSeriesSplit

    X, y = differing(0, 300, 6, classification=False)
    pipe = make_pipeline(StandardScaler(), BilevelRidgeCV(penalty="per_feature"))
    search = HypergradientSearchCV(
        pipe, {"bilevelridgecv__alpha": (1e-3, 1e3)}, cv=TimeSeriesSplit(3)
    ).fit(X, y)
    assert search.best_estimator_[-1].alpha_.shape == (6,)
    series = BilevelRidgeCV(penalty="per_feature", cv=TimeSeriesSplit(3)).fit(X, y)
    assert series.held_out_path_ is None
    with pytest.raises(ValueError, match="validate every sample exactly once"):
        BilevelRidgeCV(
            penalty="per_feature", cv=TimeSeriesSplit(3), early_stopping=True
        ).fit(X, y)
    bounds = ([1e-3] * 5 + [1e-2], [1e5] * 6)
    boxed = BilevelRidgeCV(penalty="per_feature", alpha_bounds=bounds).fit(X, y)
    assert boxed.held_out_path_ is None and len(boxed.cv_results_["params"]) > 1


def test_auto_leaves_plenty_of_samples_per_strength_unguarded():
    # 1000 samples per strength: the folds' optimism is negligible.
    X, y = differing(0, 2000, 2, classification=False)
    assert BilevelRidgeCV(penalty="per_feature").fit(X, y).held_out_path_ is None
    forced = BilevelRidgeCV(penalty="per_feature", early_stopping=True).fit(X, y)
    assert forced.held_out_path_ is not None


def test_guard_holds_out_whole_groups():
    from sklearn.model_selection import GroupKFold

    X, y = differing(0, 300, 6, classification=False)
    groups = np.repeat(np.arange(30), 10)
    held = held_out_samples(y, stratify=False, groups=groups)
    per_group = held.reshape(30, 10)
    assert np.all(per_group.all(axis=1) | ~per_group.any(axis=1))
    assert per_group.all(axis=1).sum() == 10
    reg = BilevelRidgeCV(penalty="per_feature", cv=GroupKFold(5))
    assert reg.fit(X, y, groups=groups).held_out_path_ is not None


def test_held_out_samples_are_stratified_and_reproducible():
    targets = np.r_[np.zeros(60, int), np.ones(12, int)]
    held = held_out_samples(targets, stratify=True)
    assert held[targets == 1].sum() == 4 and held[targets == 0].sum() == 20
    np.testing.assert_array_equal(held, held_out_samples(targets, stratify=True))
    assert held_out_samples(np.arange(30.0), stratify=False).sum() == 10


def test_guarded_splits_keep_held_out_samples_out_of_training():
    from skbilevel._folds import Splits

    X, y = differing(0, 90, 4, classification=False)
    folds = list(KFold(3).split(X))
    splits = Splits.from_indices(X, y[:, None], np.ones(90), folds, y, None)
    guarded, masks = splits.guarded(stratify=False)
    held = held_out_samples(y[:, None], stratify=False)
    for (train, test), mask in zip(guarded.whole[3], masks, strict=True):
        assert not held[train].any()
        np.testing.assert_array_equal(test[mask], np.flatnonzero(held))
    # Given parts (the search) give the same rows.
    parts = [
        ((X[tr], y[tr, None], np.ones(len(tr))), (X[te], y[te, None], np.ones(len(te))))
        for tr, te in folds
    ]
    from_parts = Splits.from_parts(parts, 90, indices=folds)
    parts_guarded, parts_masks = from_parts.guarded(stratify=False)
    for (train, test), mine, theirs, (tr, te) in zip(
        parts_guarded.parts(), parts_masks, masks, guarded.whole[3], strict=True
    ):
        np.testing.assert_array_equal(train[0], X[tr])
        np.testing.assert_array_equal(test[0], X[te])
        np.testing.assert_array_equal(mine, theirs)


# ------------------------------- hypergradient of the kept validation rows
@pytest.mark.parametrize("model", ["ridge", "logistic"])
def test_held_out_rows_leave_the_hypergradient(model):
    X, y = differing(0, 150, 6, classification=model == "logistic")
    problems, masks = [], []
    for train, test in KFold(3).split(X):
        sw_tr, sw_te = np.ones(len(train)), np.ones(len(test))
        if model == "ridge":
            problem = RidgeProblem(
                X[train], y[train][:, None], sw_tr,
                group_idx=np.arange(6)[:, None], n_hyper=6, fit_intercept=True,
                X_val=X[test], Y_val=y[test][:, None], sw_val=sw_te,
            )  # fmt: skip
        else:
            group_idx = np.r_[np.arange(6), -1][:, None]
            problem = LogisticProblem(
                X[train], y[train], sw_tr, 1, group_idx, 6, True,
                X_val=X[test], targets_val=y[test], sw_val=sw_te,
            )  # fmt: skip
        problems.append(problem)
        masks.append(np.arange(len(test)) >= len(test) - 20)  # the last 20 rows
    objective = FoldsObjective(problems, "direct", 200)
    objective.tighten(1e-9)
    objective.hold_out(masks)
    theta = np.linspace(-1.0, 1.0, 6)
    f, grad = objective(theta, True)
    direction = np.random.default_rng(0).standard_normal(6)
    h = 1e-5
    up = objective(theta + h * direction, False)[0]
    down = objective(theta - h * direction, False)[0]
    assert grad @ direction == pytest.approx((up - down) / (2 * h), rel=1e-5)
    record = objective.records[0]
    assert record.holdout_losses.shape == (3,) and record.holdout_rows.shape == (20,)
    # The loss and hypergradient are those of the kept rows alone.
    w = objective.solutions[0][0]
    kept = ~masks[0]
    rows = problems[0].row_losses(w, np.flatnonzero(kept))
    assert record.split_losses[0] == pytest.approx(rows.mean())
    held = problems[0].row_losses(w, np.flatnonzero(masks[0]))
    assert record.holdout_losses[0] == pytest.approx(held.mean())


# ------------------------------------------------------- loss window
def test_box_stops_when_the_monitored_loss_stalls():
    # The fitted loss keeps falling; the monitored one stops improving: the
    # search stops `patience` iterations after its best, flagged converged.
    calls = []

    def fun(theta, need_grad):
        calls.append(theta.copy())
        return float(np.sum((theta - 3.0) ** 2)), 2.0 * (theta - 3.0)

    def monitor():
        return float(abs(calls[-1][0] - 1.0))  # best near theta = 1

    res = minimize_box(fun, np.zeros(2), -5.0, 5.0, monitor=monitor, patience=3)
    assert res.converged
    assert res.n_iter < 20


def test_box_window_ignores_a_non_monotone_return():
    # Values that go up and come back to the same best are no progress.
    from skbilevel._outer import _no_recent_gain

    assert _no_recent_gain([1.0, 1.2, 1.1, 1.0, 1.05, 1.0], 1e-4, 5)
    assert not _no_recent_gain([1.0, 1.2, 1.1, 0.9, 1.05, 1.0], 1e-4, 5)
    assert not _no_recent_gain([np.nan] * 7, 1e-4, 5)


# ------------------------------------------------------- column groups
def _frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(10, 1, n),
            "city": rng.choice(["paris", "lyon", "nice", "new_york"], n),
            "plan": rng.choice(["a", "b"], n),
        }
    )


def test_column_groups_follow_the_input_columns():
    X = _frame()
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(), StandardScaler()),
                ["age", "income"],
            ),
            ("cat", OneHotEncoder(drop="first"), ["city", "plan"]),
        ]
    ).fit(X)
    groups = column_groups(pre)
    assert groups.tolist() == ["age", "income"] + ["city"] * 3 + ["plan"]
    # Rare categories pooled, a remainder passed through, names from a list.
    pre = make_column_transformer(
        (OneHotEncoder(min_frequency=40), ["city"]), remainder="passthrough"
    ).fit(X[["city", "age"]])
    assert set(column_groups(pre)) == {"city", "age"}
    assert column_groups(StandardScaler().fit(X[["age"]].to_numpy())).tolist() == ["x0"]
    # Named suffixes map to their input; mixtures are their own groups.
    splines = column_groups(SplineTransformer(n_knots=3).fit(X[["age", "income"]]))
    assert set(splines) == {"age", "income"}
    pca = column_groups(PCA(2).fit(X[["age", "income"]]))
    assert pca.tolist() == ["pca0", "pca1"]


def test_per_column_in_the_search_and_its_refit():
    X = _frame(300)
    rng = np.random.default_rng(1)
    y = (X["age"] - 40) / 10 + (X["city"] == "paris") + 0.5 * rng.standard_normal(300)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(categories=[["paris", "lyon", "nice", "new_york"],
                                             ["a", "b"]]), ["city", "plan"]),
        ]
    )  # fmt: skip
    pipe = make_pipeline(pre, BilevelRidgeCV(penalty="per_column"))
    with pytest.raises(ValueError, match="column_groups"):
        pipe.fit(X, y)  # alone it cannot see the preprocessing
    search = HypergradientSearchCV(pipe, {"bilevelridgecv__alpha": (1e-3, 1e4)})
    search.fit(X, y)
    final = search.best_estimator_[-1]
    assert final.strength_names_.tolist() == ["age", "city", "income", "plan"]
    np.testing.assert_allclose(
        final.alpha_, search.best_params_["bilevelridgecv__alpha"]
    )
    # "per_column" as a listed value of the search: its refit follows it.
    listed = HypergradientSearchCV(
        make_pipeline(pre, BilevelRidgeCV()),
        {
            "bilevelridgecv__penalty": ["per_column"],
            "bilevelridgecv__alpha": (1e-3, 1e4),
        },
    ).fit(X, y)
    assert listed.best_estimator_[-1].alpha_.shape == (4,)
    # The same groups given by hand to the estimator in a Pipeline.
    groups = column_groups(pre.fit(X))
    by_hand = make_pipeline(pre, BilevelRidgeCV(penalty=groups)).fit(X, y)
    assert by_hand[-1].alpha_.shape == (4,)


# -------------------------------------------------- names and the plot
def test_strengths_are_named():
    X, y = differing(0, 200, 4, classification=True)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = BilevelLogisticCV(penalty="per_feature").fit(frame, y)
    assert isinstance(clf.strengths_, pd.Series)
    assert clf.strengths_.index.tolist() == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(clf.strengths_.to_numpy(), clf.C_)
    assert BilevelLogisticCV().fit(X, y).strength_names_.tolist() == ["all"]
    three = np.r_[y, 2 * np.ones(20, int)]
    X3 = np.r_[X, np.random.default_rng(0).standard_normal((20, 4)) + 3]
    per_class = BilevelLogisticCV(penalty="per_class").fit(
        X3, np.array(["x", "y", "z"])[three]
    )
    assert per_class.strength_names_.tolist() == ["x", "y", "z"]
    plain = BilevelRidgeCV(penalty="per_feature").fit(X, y.astype(float))
    assert plain.strength_names_.tolist() == ["x0", "x1", "x2", "x3"]


def test_strengths_display_from_estimator_pipeline_and_search():
    X = _frame(200)
    y = ((X["age"] > 40) ^ (X["city"] == "nice")).astype(int)
    pre = make_column_transformer(
        (StandardScaler(), ["age", "income"]), (OneHotEncoder(), ["city", "plan"])
    )
    pipe = make_pipeline(pre, BilevelLogisticCV(penalty="per_feature")).fit(X, y)
    display = StrengthsDisplay.from_estimator(pipe)
    # Named by the preprocessing's output columns, least penalized first.
    assert "standardscaler__age" in display.shown_
    order = pipe[-1].strengths_.sort_values(ascending=False)  # large C first
    assert len(display.shown_) == len(order)
    assert display.ax_.get_xlabel().startswith("C")
    cut = StrengthsDisplay.from_estimator(pipe, max_display=4)
    assert len(cut.shown_) == 4 and "not shown" in cut.ax_.get_title()
    search = HypergradientSearchCV(
        make_pipeline(pre, BilevelLogisticCV(penalty="per_column")),
        {"bilevellogisticcv__C": (1e-3, 1e3)},
    ).fit(X, y)
    shown = StrengthsDisplay.from_estimator(search).shown_
    assert sorted(shown) == ["age", "city", "income", "plan"]
    with pytest.raises(TypeError, match="skbilevel estimator"):
        StrengthsDisplay.from_estimator(StandardScaler())


def test_the_chosen_evaluation_is_the_one_cv_results_shows():
    """A point evaluated twice (the guard's kept point, evaluated again on
    the user's folds at a value searched before) is reported as its last
    evaluation: that one is chosen and polished, even where the earlier,
    loosely solved record had the lower loss."""
    from skbilevel import BilevelRidgeCV
    from skbilevel._objectives import CVObjective, Evaluation

    class Polishing(CVObjective):
        def polish(self, index):
            seen = self.records[index].loss
            self.records[index].loss = 1.0  # the accurate value
            return seen

    objective = Polishing(n_hyper=2, n_splits=1)
    for theta, loss in [([0.0, 0.0], 0.5), ([1.0, 2.0], 1.2), ([0.0, 0.0], 0.9)]:
        objective.records.append(
            Evaluation(np.array(theta), loss, np.array([loss]), 1.0, 0.0, True)
        )
    with pytest.warns(ConvergenceWarning, match="too loosely"):
        best = BilevelRidgeCV()._choose(objective, "cg", "")
    assert best == 2
    assert objective.records[2].loss == 1.0  # polished: cv_results_'s row
    assert objective.records[0].loss == 0.5  # hidden, left alone
