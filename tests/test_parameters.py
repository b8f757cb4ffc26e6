"""Bad parameters of every public class: one table.

Types and ranges are declared in ``_parameter_constraints`` and raise
scikit-learn's ``InvalidParameterError`` (a ValueError and a TypeError) with
its usual message; scikit-learn's own ``check_param_validation`` tries an
invalid value for every parameter. The hand-written checks (what the
constraint language cannot say: a penalty array of the right length, bounds
that depend on each other, combinations of parameters) follow in the table.
"""

import numpy as np
import pytest
from scipy.stats import uniform
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from skbilevel import BilevelLogisticCV, BilevelRidgeCV, HypergradientSearchCV

REGRESSION = load_diabetes(return_X_y=True)
_X, _y = load_breast_cancer(return_X_y=True)
CLASSIFICATION = (_X[:150], _y[:150])


def _pipe(**params):
    return make_pipeline(StandardScaler(), LogisticRegression(**params))


def _search(**params):
    return HypergradientSearchCV(
        _pipe(), {"logisticregression__C": (1e-2, 1e2)}, **params
    )


PUBLIC = [
    BilevelRidgeCV(),
    BilevelLogisticCV(),
    _search(),
]


@pytest.mark.parametrize("estimator", PUBLIC, ids=lambda e: type(e).__name__)
def test_every_parameter_is_validated(estimator):
    # Every constructor parameter has constraints, and an invalid value of
    # each raises InvalidParameterError from fit.
    check_param_validation(type(estimator).__name__, estimator)


INVALID = InvalidParameterError
CASES = [
    # --- BilevelRidgeCV: constraints
    (BilevelRidgeCV, {"max_iter": 0}, INVALID, "'max_iter' parameter"),
    (BilevelRidgeCV, {"max_iter": 2.5}, INVALID, "'max_iter' parameter"),
    (BilevelRidgeCV, {"adjoint_max_iter": -3}, INVALID, "'adjoint_max_iter'"),
    (BilevelRidgeCV, {"tol": -1.0}, INVALID, "'tol' parameter"),
    (BilevelRidgeCV, {"tol": 0.0}, INVALID, "'tol' parameter"),
    (BilevelRidgeCV, {"penalty": "lasso"}, INVALID, "'penalty' parameter"),
    (BilevelRidgeCV, {"penalty": "per_class"}, INVALID, "'penalty' parameter"),
    (BilevelRidgeCV, {"hypergradient": "newton"}, INVALID, "'hypergradient'"),
    (BilevelRidgeCV, {"cv": 1}, INVALID, "'cv' parameter"),
    (BilevelRidgeCV, {"cv": "five"}, INVALID, "'cv' parameter"),
    (BilevelRidgeCV, {"scoring": "not_a_metric"}, INVALID, "'scoring'"),
    (BilevelRidgeCV, {"fit_intercept": "yes"}, INVALID, "'fit_intercept'"),
    (BilevelRidgeCV, {"verbose": -1}, INVALID, "'verbose' parameter"),
    (BilevelRidgeCV, {"verbose": 1.5}, INVALID, "'verbose' parameter"),
    (BilevelRidgeCV, {"solver": "sgd"}, INVALID, "'solver' parameter"),
    (BilevelRidgeCV, {"batch_size": 0}, INVALID, "'batch_size' parameter"),
    (BilevelRidgeCV, {"batch_size": 1.5}, INVALID, "'batch_size' parameter"),
    (BilevelRidgeCV, {"alpha_init": -1.0}, INVALID, "'alpha_init' parameter"),
    (BilevelRidgeCV, {"warm_start": "no"}, INVALID, "'warm_start' parameter"),
    (BilevelRidgeCV, {"n_jobs": 1.5}, INVALID, "'n_jobs' parameter"),
    (BilevelRidgeCV, {"random_state": "seed"}, INVALID, "'random_state'"),
    (BilevelRidgeCV, {"early_stopping": "yes"}, INVALID, "'early_stopping'"),
    # --- BilevelRidgeCV: what the constraints cannot say
    (BilevelRidgeCV, {"penalty": "per_column"}, ValueError, "column_groups"),
    (
        BilevelRidgeCV,
        {"penalty": "per_feature", "early_stopping": True, "solver": "stochastic"},
        ValueError,
        "cannot hold samples out with the stochastic",
    ),
    (BilevelRidgeCV, {"penalty": [0, 1]}, ValueError, r"expected shape \(10,\)"),
    (BilevelRidgeCV, {"alpha_bounds": (1.0,)}, ValueError, "alpha_bounds must be a"),
    (BilevelRidgeCV, {"alpha_bounds": (10.0, 1.0)}, ValueError, "0 < low <= high"),
    (BilevelRidgeCV, {"alpha_bounds": (0.0, 1.0)}, ValueError, "0 < low <= high"),
    (BilevelRidgeCV, {"alpha_bounds": (1e-3, np.inf)}, ValueError, "finite"),
    (BilevelRidgeCV, {"alpha_bounds": ("a", "b")}, TypeError, "hold real numbers"),
    (BilevelRidgeCV, {"alpha_init": [1.0, 2.0]}, ValueError, "scalar or hold 1"),
    (
        BilevelRidgeCV,
        {"alpha_init": [1.0, -2.0] + [1.0] * 8, "penalty": "per_feature"},
        ValueError,
        "alpha_init must hold positive",
    ),
    (
        BilevelRidgeCV,
        {"hypergradient": "cg", "cv": None},
        ValueError,
        "cv=None uses the closed-form",
    ),
    (
        BilevelRidgeCV,
        {"solver": "stochastic", "cv": None},
        ValueError,
        "leave-one-out",
    ),
    (
        BilevelRidgeCV,
        {"solver": "stochastic", "hypergradient": "cg"},
        ValueError,
        "applies to the deterministic",
    ),
    # --- BilevelLogisticCV: constraints
    (BilevelLogisticCV, {"penalty": "per_target"}, INVALID, "'penalty' parameter"),
    (BilevelLogisticCV, {"hypergradient": "bfgs"}, INVALID, "'hypergradient'"),
    (BilevelLogisticCV, {"max_iter": 0}, INVALID, "'max_iter' parameter"),
    (BilevelLogisticCV, {"C_init": 0.0}, INVALID, "'C_init' parameter"),
    (BilevelLogisticCV, {"class_weight": "weighted"}, INVALID, "'class_weight'"),
    (BilevelLogisticCV, {"solver": "sgd"}, INVALID, "'solver' parameter"),
    (BilevelLogisticCV, {"batch_size": 0}, INVALID, "'batch_size' parameter"),
    (BilevelLogisticCV, {"verbose": True, "tol": "small"}, INVALID, "'tol'"),
    (BilevelLogisticCV, {"early_stopping": 2}, INVALID, "'early_stopping'"),
    # --- BilevelLogisticCV: what the constraints cannot say
    (BilevelLogisticCV, {"penalty": "per_column"}, ValueError, "column_groups"),
    (BilevelLogisticCV, {"C_bounds": (2.0, 1.0)}, ValueError, "0 < low <= high"),
    (
        BilevelLogisticCV,
        {"class_weight": {0: -1.0, 1: 1.0}},
        ValueError,
        "class_weight must be",
    ),
    (
        BilevelLogisticCV,
        {"solver": "stochastic", "hypergradient": "cg"},
        ValueError,
        "applies to the deterministic",
    ),
    # --- HypergradientSearchCV: constraints
    (_search, {"max_iter": 0}, INVALID, "'max_iter' parameter"),
    (_search, {"tol": -1.0}, INVALID, "'tol' parameter"),
    (_search, {"error_score": "ignore"}, INVALID, "'error_score' parameter"),
    (_search, {"return_train_score": "no"}, INVALID, "'return_train_score'"),
    (_search, {"verbose": -2}, INVALID, "'verbose' parameter"),
    (_search, {"n_jobs": "all"}, INVALID, "'n_jobs' parameter"),
    (_search, {"scoring": "not_a_metric"}, INVALID, "'scoring' parameter"),
]


def _space_case(estimator, space):
    return lambda **params: HypergradientSearchCV(estimator, space, **params)


SPACE_CASES = [
    # --- HypergradientSearchCV: the space and the final step
    ({"standardscaler__with_mean": (0, 1)}, _pipe(), ValueError, "differentiable"),
    ({"logisticregression__C": (0.0, 1.0)}, _pipe(), ValueError, "low <= high"),
    ({"logisticregression__C": []}, _pipe(), ValueError, "non-empty sequence"),
    ({"logisticregression__C": "abc"}, _pipe(), TypeError, "a list or a numpy"),
    ([], _pipe(), TypeError, "param_space"),
    ("abc", _pipe(), INVALID, "'param_space' parameter"),
    (
        {"svc__C": (1, 2)},
        make_pipeline(StandardScaler(), SVC()),
        ValueError,
        "this final step has none .*Give 'svc__C' a list",
    ),
    (
        {"logisticregression__C": uniform(1, 2)},
        _pipe(),
        TypeError,
        "uniform distribution.*loguniform",
    ),
    (
        {"logisticregression__C": (1, 2)},
        _pipe(l1_ratio=1.0, solver="saga"),
        ValueError,
        "L2",
    ),
    ({"alpha": (1, 2)}, Ridge(positive=True), ValueError, "positive"),
    ({"alpha": [1.0, 2.0]}, BilevelRidgeCV(), ValueError, "always tuned"),
]
CASES += [
    (_space_case(estimator, space), {}, error, match)
    for space, estimator, error, match in SPACE_CASES
]


def _data(make):
    regression = make is BilevelRidgeCV or "Ridge" in repr(make())
    return REGRESSION if regression else CLASSIFICATION


@pytest.mark.parametrize(
    "make, params, error, match",
    CASES,
    ids=[f"{getattr(c[0], '__name__', 'space')}-{i}" for i, c in enumerate(CASES)],
)
def test_bad_parameter_raises(make, params, error, match):
    X, y = _data(make)
    with pytest.raises(error, match=match):
        make(**params).fit(X, y)
