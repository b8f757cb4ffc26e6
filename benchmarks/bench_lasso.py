"""BilevelLassoCV against LassoCV, side by side on the same data and folds.

Run:  python benchmarks/bench_lasso.py [--repeat N]

On every dataset, in one process and on the same shuffled 5 folds (data as
users prepare it: standardized columns):

* ``LassoCV(cv=folds)`` (a path of 100 alphas per fold);
* ``BilevelLassoCV(cv=folds)``;

it prints the best wall time of ``--repeat`` runs of each, the speed-up, and
the CV MSE of each method's chosen alpha judged by tightly converged
scikit-learn ``Lasso`` fits on the same folds (lower is better), and how
many coefficients each refit keeps. Targets (issue 14): at most 1/5 of
LassoCV's time (1/10 aimed at) at a CV MSE at or below its own, on a
1000 x 5000 problem with 50 informative features and on diabetes with
pairwise interactions. The elastic net row of the issue waits for
BilevelElasticNetCV.
"""

import argparse

import numpy as np
from _timing import best_time  # benchmarks/_timing.py
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import KFold
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from skbilevel import BilevelLassoCV


def datasets():
    X, y = make_regression(1000, 5000, n_informative=50, noise=10.0, random_state=0)
    yield (
        "make_regression 1000x5000 (50 informative)",
        StandardScaler().fit_transform(X),
        y,
    )
    X, y = load_diabetes(return_X_y=True)
    X = PolynomialFeatures(2, interaction_only=True, include_bias=False).fit_transform(
        X
    )
    yield (
        "diabetes + pairwise interactions 442x55",
        StandardScaler().fit_transform(X),
        y,
    )


def exact_cv_mse(X, y, alpha, folds):
    """CV MSE at ``alpha`` with tightly converged scikit-learn Lasso fits."""
    errors = []
    for train, test in folds:
        model = Lasso(alpha=alpha, tol=1e-10, max_iter=100_000).fit(X[train], y[train])
        errors.append(np.mean((model.predict(X[test]) - y[test]) ** 2))
    return float(np.mean(errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    BilevelLassoCV().fit(*make_regression(60, 8, random_state=0))  # compile
    header = (
        f"{'dataset':44s} {'LassoCV s':>9s} {'ours s':>7s} {'speed-up':>8s} "
        f"{'LassoCV MSE':>12s} {'ours MSE':>12s} {'nnz LassoCV':>11s} {'nnz ours':>8s}"
    )
    print(header)
    print("-" * len(header))
    for name, X, y in datasets():
        folds = list(KFold(5, shuffle=True, random_state=0).split(X))
        t_ref, ref = best_time(
            lambda X=X, y=y, folds=folds: LassoCV(cv=folds).fit(X, y), args.repeat
        )
        t_ours, ours = best_time(
            lambda X=X, y=y, folds=folds: BilevelLassoCV(cv=folds).fit(X, y),
            args.repeat,
        )
        mse_ref = exact_cv_mse(X, y, ref.alpha_, folds)
        mse_ours = exact_cv_mse(X, y, ours.alpha_, folds)
        print(
            f"{name:44s} {t_ref:9.2f} {t_ours:7.2f} {t_ref / t_ours:7.1f}x "
            f"{mse_ref:12.4f} {mse_ours:12.4f} {np.count_nonzero(ref.coef_):11d} "
            f"{np.count_nonzero(ours.coef_):8d}"
        )


if __name__ == "__main__":
    main()
