"""HypergradientSearchCV against GridSearchCV over the same pipeline and folds.

Run:  python benchmarks/bench_search.py [--quick] [--repeat N]

``StandardScaler -> LogisticRegression`` on make_classification 30000 x 60,
scored by CV log-loss on the same 5 stratified folds:

* ``GridSearchCV(pipe, {"clf__C": 20 values in [1e-4, 1e4]})``;
* ``HypergradientSearchCV(pipe, {"clf__C": (1e-4, 1e4)})``.

Both run with n_jobs=None; each time is the best of two runs, one with the
default thread pools and one with BLAS on one thread (see
``_timing.best_time``). Target: at most 1/3 of GridSearchCV's wall time at
an equal or better ``best_score_``. The same comparison follows for a
``StandardScaler -> Ridge`` pipeline (CV mean squared error).
"""

import argparse
import warnings

import numpy as np
from _timing import best_time  # benchmarks/_timing.py
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skbilevel import HypergradientSearchCV


def compare(name, X, y, final, key, bounds, scoring, folds, repeat):
    pipe = Pipeline([("scale", StandardScaler()), ("clf", final)])
    grid_values = np.logspace(np.log10(bounds[0]), np.log10(bounds[1]), 20)
    for _ in range(repeat):
        grid_t, grid = best_time(
            lambda: GridSearchCV(
                pipe, {key: grid_values}, scoring=scoring, cv=folds
            ).fit(X, y)
        )
        ours_t, ours = best_time(
            lambda: HypergradientSearchCV(
                pipe, {key: bounds}, scoring=scoring, cv=folds
            ).fit(X, y)
        )
        print(
            f"{name:<34} {grid_t:>7.2f} {ours_t:>7.2f} {grid_t / ours_t:>7.1f}x "
            f"{grid.best_score_:>12.6f} {ours.best_score_:>12.6f} "
            f"{grid.best_params_[key]:>10.4g} {ours.best_params_[key]:>10.4g} "
            f"{len(ours.cv_results_['params']):>5d}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # lbfgs' notices at the grid's weak penalties
    # Compile the kernels first: compilation is not part of the comparison.
    Xw, yw = make_classification(300, 5, random_state=0)
    HypergradientSearchCV(LogisticRegression(), {"C": (1e-2, 1e2)}).fit(Xw, yw)
    n = 5000 if args.quick else 30000
    header = (
        f"{'problem':<34} {'Grid s':>7} {'ours s':>7} {'speedup':>8} "
        f"{'Grid best':>12} {'ours best':>12} {'Grid param':>10} "
        f"{'ours param':>10} {'evals':>5}"
    )
    print(header)
    print("-" * len(header))
    X, y = make_classification(n, 60, n_informative=15, random_state=0)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    compare(
        f"scaler+logistic {n}x60 (log-loss)",
        X,
        y,
        LogisticRegression(),
        "clf__C",
        (1e-4, 1e4),
        "neg_log_loss",
        folds,
        args.repeat,
    )
    X, y = make_regression(n, 60, n_informative=15, noise=30.0, random_state=0)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X, y))
    compare(
        f"scaler+ridge {n}x60 (MSE)",
        X,
        y,
        Ridge(),
        "clf__alpha",
        (1e-4, 1e6),
        "neg_mean_squared_error",
        folds,
        args.repeat,
    )


if __name__ == "__main__":
    main()
