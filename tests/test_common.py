"""scikit-learn's estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbilevel import (
    BilevelElasticNetCV,
    BilevelKernelRidgeCV,
    BilevelLassoCV,
    BilevelLogisticCV,
    BilevelRidgeCV,
)

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
    BilevelLogisticCV(solver="quadratic"),
    BilevelLassoCV(),
    BilevelLassoCV(penalty="per_feature"),
    BilevelLassoCV(hypergradient="cg"),
    BilevelLassoCV(hypergradient="implicit_forward"),
    BilevelLassoCV(solver="stochastic", max_iter=10, random_state=0),
    BilevelElasticNetCV(),
    BilevelElasticNetCV(penalty="per_feature"),
    BilevelKernelRidgeCV(),
    BilevelKernelRidgeCV(gamma="per_feature", max_iter=20),
    BilevelKernelRidgeCV(cv=None, kernel="laplacian"),
    BilevelKernelRidgeCV(kernel="poly", degree=2, penalty="per_target"),
    BilevelKernelRidgeCV(kernel="linear"),
    BilevelKernelRidgeCV(approximation="nystroem", n_components=200, random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_one_fit_pipeline_for_every_estimator():
    # Every Bilevel*CV estimator inherits the same fit (callbacks wrapper and
    # parameter validation included); models differ by their hooks only.
    from skbilevel._base import BaseBilevelCV

    estimators = (
        BilevelRidgeCV,
        BilevelLogisticCV,
        BilevelLassoCV,
        BilevelElasticNetCV,
    )
    assert all(estimator.fit is BaseBilevelCV.fit for estimator in estimators)
    assert all("fit" not in vars(estimator) for estimator in estimators)
