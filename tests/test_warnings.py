"""Warnings point at the user's line, whatever the entry point.

``warn_user`` walks the stack out of skbilevel, scikit-learn and joblib, so a
warning raised deep inside a fit is attributed to the line that called
``fit`` (directly, through a Pipeline, or through the search).
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelLogisticCV, BilevelRidgeCV, HypergradientSearchCV

X_REG, Y_REG = make_regression(120, 12, n_informative=4, noise=5.0, random_state=0)
X_CLF, Y_CLF = make_classification(150, 10, random_state=0)


def _caught(category, fit):
    """Run ``fit()`` and return the warnings of ``category`` it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    found = [w for w in caught if issubclass(w.category, category)]
    assert found, f"no {category.__name__} was raised"
    return found


def _assert_here(found):
    for w in found:
        assert w.filename == __file__, (w.filename, str(w.message))


def test_ridge_fit_warns_at_the_callers_line():
    reg = BilevelRidgeCV(penalty="per_feature", max_iter=1)
    _assert_here(_caught(ConvergenceWarning, lambda: reg.fit(X_REG, Y_REG)))


def test_logistic_fit_warns_at_the_callers_line():
    clf = BilevelLogisticCV(penalty="per_feature", max_iter=1)
    _assert_here(_caught(ConvergenceWarning, lambda: clf.fit(X_CLF, Y_CLF)))


def test_pipeline_fit_warns_at_the_callers_line():
    pipe = make_pipeline(
        StandardScaler(), BilevelRidgeCV(penalty="per_feature", max_iter=1)
    )
    _assert_here(_caught(ConvergenceWarning, lambda: pipe.fit(X_REG, Y_REG)))


def test_search_fit_warns_at_the_callers_line():
    search = HypergradientSearchCV(
        make_pipeline(StandardScaler(), BilevelLogisticCV(penalty="per_feature")),
        {"bilevellogisticcv__C": (1e-2, 1e2)},
        max_iter=1,
    )
    found = _caught(ConvergenceWarning, lambda: search.fit(X_CLF, Y_CLF))
    # One candidate (no list in the space): the message need not name it.
    assert str(found[0].message).startswith("The outer loop did not converge")
    _assert_here(found)
    search.set_params(param_space={**search.param_space, "standardscaler": [
        StandardScaler(), StandardScaler(with_mean=False)]})  # fmt: skip
    found = _caught(ConvergenceWarning, lambda: search.fit(X_CLF, Y_CLF))
    assert "of candidate {'standardscaler': StandardScaler()}" in str(found[0].message)
    _assert_here(found)


def test_search_failed_candidate_warns_at_the_callers_line():
    # A list value that makes one candidate fail: LogisticRegression rejects it.
    search = HypergradientSearchCV(
        LogisticRegression(), {"C": (1e-2, 1e2), "fit_intercept": [True, "x"]}
    )
    found = _caught(FitFailedWarning, lambda: search.fit(X_CLF, Y_CLF))
    _assert_here(found)
    assert np.isnan(search.cv_results_["mean_test_score"]).any()


@pytest.mark.parametrize("Estimator", [Ridge, LogisticRegression])
def test_no_warning_on_ordinary_data(Estimator):
    X, y = (X_REG, Y_REG) if Estimator is Ridge else (X_CLF, Y_CLF)
    name = "alpha" if Estimator is Ridge else "C"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HypergradientSearchCV(Estimator(), {name: (1e-3, 1e3)}).fit(X, y)
