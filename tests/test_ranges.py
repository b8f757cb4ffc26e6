"""The range of every strength: exposed, reported exactly, warned at its ends."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning

from skbilevel import (
    BilevelElasticNetCV,
    BilevelLassoCV,
    BilevelLogisticCV,
    BilevelRidgeCV,
)

X, Y = load_diabetes(return_X_y=True)


def _edge_warnings(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit()
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ConvergenceWarning)
        and "end of its range" in str(w.message)
    ]
    return model, messages


def test_a_strength_at_an_end_of_the_users_range_warns_and_is_exact():
    model, messages = _edge_warnings(
        lambda: BilevelRidgeCV(alpha_bounds=(1.0, 10.0)).fit(X, Y)
    )
    assert model.alpha_ == 1.0 and type(model.alpha_) is float
    assert model.alpha_bounds_ == (1.0, 10.0)
    assert messages == [
        "alpha_ = 1 is at the lower end of its range (1, 10): the CV loss may keep "
        "falling past it. Widen alpha_bounds (the range used is in alpha_bounds_)."
    ]
    Xs = load_breast_cancer(return_X_y=True)
    scaled = (Xs[0] - Xs[0].mean(0)) / Xs[0].std(0)
    clf, messages = _edge_warnings(
        lambda: BilevelLogisticCV(C_bounds=(1e-3, 1e-2)).fit(scaled, Xs[1])
    )
    assert clf.C_ == 0.01 and type(clf.C_) is float  # not 0.010000000000000004
    assert clf.C_bounds_ == (1e-3, 1e-2)
    assert len(messages) == 1 and "C_ = 0.01 is at the upper end" in messages[0]


def test_inside_the_range_and_many_strengths_are_silent():
    model, messages = _edge_warnings(lambda: BilevelRidgeCV().fit(X, Y))
    assert not messages
    low, high = model.alpha_bounds_
    assert low < model.alpha_ < high and type(low) is float
    # Per-feature strengths at an end are features switched off or left free.
    model, messages = _edge_warnings(
        lambda: BilevelRidgeCV(penalty="per_feature", alpha_bounds=(1e-2, 1e2)).fit(
            X, Y
        )
    )
    assert not messages
    assert model.alpha_bounds_ == (1e-2, 1e2)


def test_lasso_and_elastic_net_ranges():
    lasso = BilevelLassoCV().fit(X, Y)
    low, high = lasso.alpha_bounds_
    assert high == pytest.approx(
        np.max(np.abs((X - X.mean(0)).T @ (Y - Y.mean()))) / len(Y)
    )
    assert low == pytest.approx(1e-3 * high)
    net = BilevelElasticNetCV().fit(X, Y)
    assert net.l1_ratio_ == 1.0  # the top of the default range, not 0.99999999
    assert np.all(np.asarray(net.alpha_bounds_) > 0)
    model, messages = _edge_warnings(
        lambda: BilevelElasticNetCV(alpha_bounds=(0.5, 1.0)).fit(X, Y)
    )
    assert model.alpha_ == 0.5 and model.alpha_bounds_ == (0.5, 1.0)
    assert len(messages) == 1 and messages[0].startswith("alpha_ = 0.5 is at the lower")
