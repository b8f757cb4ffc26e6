"""BilevelLassoCV against LassoCV, side by side on the same data and folds.

Run:  python benchmarks/bench_lasso.py [--repeat N]

On every dataset, in one process and on the same shuffled 5 folds (data as
users prepare it: standardized columns):

* ``LassoCV(cv=folds)`` (a path of 100 alphas per fold) against
  ``BilevelLassoCV(cv=folds)``, and on the tall problem also against
  ``BilevelLassoCV(solver="stochastic")``;
* on correlated data, ``ElasticNetCV(l1_ratio=[.1, .5, .7, .9, .95, .99, 1],
  cv=folds)`` (a path per l1_ratio) against ``BilevelElasticNetCV(cv=folds)``
  (both strengths continuous);

it prints the best wall time of ``--repeat`` runs of each, the speed-up, and
the CV MSE of each method's chosen alpha judged by tightly converged
scikit-learn ``Lasso`` fits on the same folds (lower is better), and how
many coefficients each refit keeps. Targets (issue 14): at most 1/5 of
LassoCV's time (1/10 aimed at) at a CV MSE at or below its own, on a
1000 x 5000 problem with 50 informative features and on diabetes with
pairwise interactions, and against ElasticNetCV on correlated data.
"""

import argparse

import numpy as np
from _timing import best_time  # benchmarks/_timing.py
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import ElasticNet, ElasticNetCV, LassoCV
from sklearn.model_selection import KFold
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from skbilevel import BilevelElasticNetCV, BilevelLassoCV


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
    X, y = make_regression(400_000, 100, n_informative=10, noise=50.0, random_state=0)
    yield (
        "make_regression 400000x100 (10 informative)",
        StandardScaler().fit_transform(X),
        y,
    )


def correlated(n_samples=2000, n_groups=40, size=5, seed=0):
    """Groups of ``size`` nearly equal columns, a quarter of them informative."""
    rng = np.random.RandomState(seed)
    X = np.repeat(rng.randn(n_samples, n_groups), size, axis=1)
    X += 0.3 * rng.randn(*X.shape)
    coef = np.zeros(X.shape[1])
    coef[: X.shape[1] // 4] = rng.randn(X.shape[1] // 4)
    return StandardScaler().fit_transform(X), X @ coef + 3.0 * rng.randn(n_samples)


def exact_cv_mse(X, y, model, folds):
    """CV MSE of ``model``'s chosen strengths with tightly converged fits."""
    l1_ratio = getattr(model, "l1_ratio_", 1.0)
    errors = []
    for train, test in folds:
        fit = ElasticNet(alpha=model.alpha_, l1_ratio=l1_ratio, tol=1e-10,
                         max_iter=100_000).fit(X[train], y[train])  # fmt: skip
        errors.append(np.mean((fit.predict(X[test]) - y[test]) ** 2))
    return float(np.mean(errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    BilevelLassoCV().fit(*make_regression(60, 8, random_state=0))  # compile
    header = (
        f"{'dataset':44s} {'sklearn s':>9s} {'ours s':>7s} {'speed-up':>8s} "
        f"{'sklearn MSE':>12s} {'ours MSE':>12s} {'nnz sklearn':>11s} {'nnz ours':>8s}"
    )
    print(header)
    print("-" * len(header))
    rows = [(name, X, y, LassoCV, BilevelLassoCV, {}) for name, X, y in datasets()]
    # The stochastic mode on the tall problem (same LassoCV reference).
    X, y = rows[-1][1:3]
    rows.append(("the same, solver='stochastic'", X, y, LassoCV,
                 lambda **o: BilevelLassoCV(solver="stochastic", random_state=0, **o),
                 {}))  # fmt: skip
    X, y = correlated()
    grid = dict(l1_ratio=[0.1, 0.5, 0.7, 0.9, 0.95, 0.99, 1])
    rows.append(("elastic net, correlated 2000x200", X, y, ElasticNetCV,
                 BilevelElasticNetCV, grid))  # fmt: skip
    for name, X, y, reference, bilevel, options in rows:
        folds = list(KFold(5, shuffle=True, random_state=0).split(X))
        t_ref, ref = best_time(
            lambda X=X, y=y, f=folds, r=reference, o=options: r(cv=f, **o).fit(X, y),
            args.repeat,
        )
        t_ours, ours = best_time(
            lambda X=X, y=y, f=folds, b=bilevel: b(cv=f).fit(X, y), args.repeat
        )
        mse_ref = exact_cv_mse(X, y, ref, folds)
        mse_ours = exact_cv_mse(X, y, ours, folds)
        print(
            f"{name:44s} {t_ref:9.2f} {t_ours:7.2f} {t_ref / t_ours:7.1f}x "
            f"{mse_ref:12.4f} {mse_ours:12.4f} {np.count_nonzero(ref.coef_):11d} "
            f"{np.count_nonzero(ours.coef_):8d}"
        )


if __name__ == "__main__":
    main()
