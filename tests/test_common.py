"""scikit-learn's estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbilevel import BilevelLogisticCV, BilevelRidgeCV

ESTIMATORS = [
    BilevelRidgeCV(),
    BilevelRidgeCV(cv=None),
    BilevelRidgeCV(penalty="per_feature"),
    BilevelRidgeCV(penalty="per_feature", cv=None),
    BilevelRidgeCV(hypergradient="cg"),
    BilevelLogisticCV(),
    BilevelLogisticCV(penalty="per_feature"),
    BilevelLogisticCV(hypergradient="cg"),
    BilevelRidgeCV(solver="stochastic", max_iter=10, random_state=0),
    BilevelLogisticCV(solver="stochastic", max_iter=10, random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
