"""Bad input gets a clear error; hard but valid input gets a finite model."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning

from skbilevel import BilevelRidgeCV

X_OK, Y_OK = load_diabetes(return_X_y=True)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(bad):
    X = X_OK.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        BilevelRidgeCV().fit(X, Y_OK)
    y = Y_OK.copy()
    y[5] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        BilevelRidgeCV().fit(X_OK, y)


def test_shape_mismatch_and_bad_weights():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        BilevelRidgeCV().fit(X_OK, Y_OK[:-1])
    with pytest.raises(ValueError, match="sample_weight"):
        BilevelRidgeCV().fit(X_OK, Y_OK, sample_weight=np.ones(3))
    sw = np.ones(len(Y_OK))
    sw[0] = -1
    with pytest.raises(ValueError, match="non-negative|negative"):
        BilevelRidgeCV().fit(X_OK, Y_OK, sample_weight=sw)
    with pytest.raises(ValueError, match="at least one non-zero"):
        BilevelRidgeCV().fit(X_OK, Y_OK, sample_weight=np.zeros(len(Y_OK)))
    with pytest.raises(ValueError, match="zero total sample_weight"):
        sw = np.ones(len(Y_OK))
        sw[:100] = 0.0  # the whole first fold
        BilevelRidgeCV(cv=[(np.arange(100, 442), np.arange(100))]).fit(
            X_OK, Y_OK, sample_weight=sw
        )
    with pytest.raises(ValueError, match="expecting 10 features"):
        BilevelRidgeCV().fit(X_OK, Y_OK).predict(X_OK[:, :3])


def test_too_few_samples():
    with pytest.raises(ValueError, match="1 sample"):
        BilevelRidgeCV(cv=None).fit(X_OK[:1], Y_OK[:1])
    with pytest.raises(ValueError, match="n_samples=3"):
        BilevelRidgeCV(cv=5).fit(X_OK[:3], Y_OK[:3])


def test_non_numeric_target():
    with pytest.raises(ValueError):
        BilevelRidgeCV().fit(X_OK[:10], np.array(["a", "b"] * 5, dtype=object))


@pytest.mark.parametrize("cv", [5, None])
@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
@pytest.mark.parametrize("sparse", [False, True])
def test_hard_but_valid_input_gives_a_finite_model(cv, penalty, sparse):
    rng = np.random.RandomState(0)
    n = 60
    base = rng.randn(n, 4)
    X = np.column_stack(
        [
            base,
            base[:, 0],  # an exact duplicate (collinear)
            base[:, 1] - 2 * base[:, 2],  # a linear combination
            np.full(n, 3.0),  # a constant column
            1e6 * rng.randn(n),  # a huge scale
            1e-6 * rng.randn(n),  # a tiny scale
        ]
    )
    y = base @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.randn(n)
    Xs = sp.csr_matrix(X) if sparse else X
    reg = BilevelRidgeCV(cv=cv, penalty=penalty).fit(Xs, y)
    assert np.all(np.isfinite(reg.coef_)) and np.isfinite(reg.intercept_)
    assert np.all(np.isfinite(reg.predict(Xs)))
    assert reg.score(Xs, y) > 0.9


@pytest.mark.parametrize("cv", [5, None])
@pytest.mark.parametrize("penalty", ["scalar", "per_feature"])
def test_many_more_features_than_samples(cv, penalty):
    rng = np.random.RandomState(0)
    X = rng.randn(25, 400)
    y = X[:, :3] @ [1.0, 2.0, -1.0] + 0.1 * rng.randn(25)
    with warnings.catch_warnings():
        # 400 per-feature strengths tuned on 25 samples keep lowering the CV
        # loss for many iterations (they overfit it): the cap is expected.
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = BilevelRidgeCV(cv=cv, penalty=penalty).fit(X, y)
    assert np.all(np.isfinite(reg.coef_))


def test_all_constant_columns_and_constant_target():
    X = np.ones((30, 3))
    y = np.full(30, 2.5)
    reg = BilevelRidgeCV().fit(X, y)
    assert np.allclose(reg.predict(X), 2.5)
    reg = BilevelRidgeCV(cv=None).fit(X, y)
    assert np.allclose(reg.predict(X), 2.5)


def test_works_without_a_writable_numba_cache():
    # Simulate an install where Numba finds no cache locator: the package
    # must still import, compile without caching, and fit.
    code = textwrap.dedent(
        """
        import numba.core.caching as caching
        class Nowhere(caching._CacheLocator):
            @classmethod
            def from_function(cls, py_func, py_file):
                return None
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        impl._locator_classes = [Nowhere]
        import numpy as np
        from skbilevel import BilevelRidgeCV, _ridge_kernels
        X = np.random.RandomState(0).randn(40, 3)
        print(BilevelRidgeCV(cv=None).fit(X, X.sum(1)).score(X, X.sum(1)) > 0.99)
        print(type(_ridge_kernels.spectral_loo_loss_grad._cache).__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "NullCache"]


def test_unclear_inputs_get_clear_errors():
    from sklearn.linear_model import Ridge

    from skbilevel import HypergradientSearchCV

    search = HypergradientSearchCV(Ridge(), {"alpha": (1e-2, 1e2)})
    with pytest.raises(ValueError, match="fit needs y"):
        search.fit(X_OK)
    with pytest.raises(ValueError, match="sample_weight"):
        search.fit(X_OK, Y_OK, sample_weight=np.ones(len(Y_OK) - 1))
    with pytest.raises(ValueError, match="numbers or strings that can be sorted"):
        BilevelRidgeCV(penalty=[None] * X_OK.shape[1]).fit(X_OK, Y_OK)


def test_one_estimator_fitted_from_two_threads():
    # Fit-time state is local: two threads fitting one object do not trip
    # over each other (the result is the last fit's, as for RidgeCV).
    import threading

    from skbilevel import BilevelLogisticCV

    for estimator, y in [
        (BilevelRidgeCV(), Y_OK),
        (BilevelRidgeCV(cv=None), Y_OK),
        (BilevelLogisticCV(), Y_OK > np.median(Y_OK)),
    ]:
        errors = []

        def run(start, estimator=estimator, y=y, errors=errors):
            try:
                for _ in range(5):
                    estimator.fit(X_OK[start::2], y[start::2])
            except Exception as error:  # reported below, in the main thread
                errors.append(error)

        threads = [threading.Thread(target=run, args=(s,)) for s in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert np.all(np.isfinite(estimator.coef_))


def test_values_whose_squares_overflow_get_a_clear_error():
    # Before: y >= 1e160 gave a -inf CV loss and an arbitrary alpha_.
    with pytest.raises(ValueError, match="y holds values up to .* overflow"):
        BilevelRidgeCV().fit(X_OK, Y_OK * 1e160)
    with pytest.raises(ValueError, match="X holds values up to .* overflow"):
        BilevelRidgeCV().fit(X_OK * 1e160, Y_OK)


def test_huge_features_and_weights_give_the_same_logistic_model():
    # Before: features of 1e19 or weights of 1e40 overflowed the float32
    # Hessian products, and the model came back with all-zero coefficients.
    from sklearn.datasets import make_classification

    from skbilevel import BilevelLogisticCV

    X, y = make_classification(300, 5, random_state=0)
    reference = BilevelLogisticCV().fit(X, y)
    scaled = BilevelLogisticCV().fit(X * 1e19, y)
    weighted = BilevelLogisticCV().fit(X, y, sample_weight=np.full(len(y), 1e40))
    np.testing.assert_allclose(scaled.coef_ * 1e19, reference.coef_, rtol=1e-6)
    np.testing.assert_allclose(weighted.coef_, reference.coef_, rtol=1e-6)
    assert scaled.C_ * 1e38 == pytest.approx(reference.C_, rel=1e-6)
