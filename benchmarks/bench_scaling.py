"""How the estimators and the search use the cores: n_jobs = 1, 2, 4, 8, 16.

Run:  python benchmarks/bench_scaling.py [--quick] [--max-jobs N] [--jobs K ...]

For every ``n_jobs`` up to the machine's cores (and ``--max-jobs``), in one
process, on the same stratified 5 folds:

* ``BilevelLogisticCV(n_jobs=k)`` and ``LogisticRegressionCV(Cs=20,
  n_jobs=k)`` on standardized make_classification 100000 x 100;
* ``HypergradientSearchCV(n_jobs=k)`` and ``GridSearchCV(n_jobs=k)`` (the
  same 20 values of C) over StandardScaler -> LogisticRegression, 30000 x 60;
* ``BilevelLogisticCV(penalty="per_feature", n_jobs=k)`` (the default
  solver) on 1,000,000 x 50 next to one plain ``LogisticRegression().fit``.

Times are the best of ``--repeat`` runs (1 s pause before each); the first
line says how many cores the machine has. Targets (16 cores):
``BilevelLogisticCV(n_jobs=-1)`` at least 3x faster than with
``n_jobs=1`` and at most 1/3 of ``LogisticRegressionCV(n_jobs=-1)``; the
search at most 1/5 of GridSearchCV's time; the per-feature fit at most 2x
one plain fit.

``n_jobs=1`` is not one core: like scikit-learn's BLAS calls, the fused
passes of a fold take the cores BLAS may use (in blocks of rows), and
``n_jobs`` adds threads over folds. The one-core time of
``BilevelLogisticCV`` (every thread pool limited to 1 by threadpoolctl) is
printed first, and the "x 1 core" column is its speed-up over it.
"""

import argparse
import warnings

import numpy as np
from _timing import best_time  # benchmarks/_timing.py
from joblib import cpu_count
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skbilevel import BilevelLogisticCV, HypergradientSearchCV

CS = np.logspace(-4, 4, 20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller datasets")
    parser.add_argument("--max-jobs", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--jobs", type=int, nargs="+", default=[1, 2, 4, 8, 16],
        help="the n_jobs values to time",
    )  # fmt: skip
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", ConvergenceWarning)
    cores = cpu_count()
    jobs = [k for k in args.jobs if k <= min(cores, args.max_jobs)]
    scale = 10 if args.quick else 1
    BilevelLogisticCV().fit(*make_classification(2000, 5, random_state=0))

    X, y = make_classification(100_000 // scale, 100, n_informative=20, random_state=0)
    X = StandardScaler().fit_transform(X)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    Xs, ys = make_classification(30_000 // scale, 60, n_informative=10, random_state=1)
    Xb, yb = make_classification(
        1_000_000 // scale, 50, n_informative=10, random_state=2
    )
    Xb = StandardScaler().fit_transform(Xb)
    plain, _ = best_time(lambda: LogisticRegression().fit(Xb, yb), args.repeat)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))

    with threadpool_limits(1):
        one_core, _ = best_time(
            lambda: BilevelLogisticCV(cv=folds, n_jobs=1).fit(X, y), args.repeat
        )
    print(
        f"{cores} cores; one LogisticRegression fit on {Xb.shape}: {plain:.2f} s; "
        f"BilevelLogisticCV on {X.shape} on one core: {one_core:.2f} s"
    )
    header = (
        f"{'n_jobs':>6} {'ours s':>7} {'x 1 core':>8} {'LRCV s':>7} {'ratio':>6} "
        f"{'search s':>9} {'grid s':>7} {'ratio':>6} {'per-feature s':>14} "
        f"{'/ 1 fit':>8}"
    )
    print(header)
    print("-" * len(header))
    for k in jobs:
        ours, _ = best_time(
            lambda k=k: BilevelLogisticCV(cv=folds, n_jobs=k).fit(X, y), args.repeat
        )
        lrcv, _ = best_time(
            lambda k=k: LogisticRegressionCV(
                Cs=20, cv=folds, scoring="neg_log_loss", max_iter=1000, n_jobs=k
            ).fit(X, y),
            args.repeat,
        )
        search, _ = best_time(
            lambda k=k: HypergradientSearchCV(
                pipe, {"logisticregression__C": (1e-4, 1e4)},
                scoring="neg_log_loss", n_jobs=k,
            ).fit(Xs, ys),
            args.repeat,
        )  # fmt: skip
        grid, _ = best_time(
            lambda k=k: GridSearchCV(
                pipe, {"logisticregression__C": CS}, scoring="neg_log_loss", n_jobs=k
            ).fit(Xs, ys),
            args.repeat,
        )
        per_feature, _ = best_time(
            lambda k=k: BilevelLogisticCV(
                penalty="per_feature", n_jobs=k, random_state=0
            ).fit(Xb, yb),
            args.repeat,
        )
        print(
            f"{k:>6} {ours:>7.2f} {one_core / ours:>8.2f} {lrcv:>7.2f} "
            f"{ours / lrcv:>6.2f} {search:>9.2f} "
            f"{grid:>7.2f} {search / grid:>6.2f} {per_feature:>14.2f} "
            f"{per_feature / plain:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
