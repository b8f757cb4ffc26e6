"""Command line: ``python -m skbilevel demo`` and ``python -m skbilevel compare``.

The demo tunes ridge regression on scikit-learn's diabetes data with
BilevelRidgeCV and with GridSearchCV over 50 strengths, on the same folds, and
prints what each chose and what it cost; then it shows per-feature strengths
on data where most features are useless.
"""

import argparse
import sys
import time

import numpy as np


def _demo():
    from sklearn.datasets import load_diabetes, make_regression
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import GridSearchCV, KFold, train_test_split

    from skbilevel import BilevelRidgeCV

    X, y = load_diabetes(return_X_y=True)
    cv = KFold(5, shuffle=True, random_state=0)
    print("Ridge on the diabetes data (442 samples, 10 features), 5-fold CV\n")

    start = time.perf_counter()
    BilevelRidgeCV(cv=cv).fit(X, y)
    first = time.perf_counter() - start  # includes one-time Numba compilation

    start = time.perf_counter()
    ours = BilevelRidgeCV(cv=cv).fit(X, y)
    ours_time = time.perf_counter() - start

    grid = np.logspace(-6, 6, 50)
    start = time.perf_counter()
    search = GridSearchCV(
        Ridge(), {"alpha": grid}, cv=cv, scoring="neg_mean_squared_error"
    ).fit(X, y)
    grid_time = time.perf_counter() - start

    rows = [
        (
            "BilevelRidgeCV",
            ours.alpha_,
            -ours.best_score_,
            ours_time,
            f"{len(ours.cv_results_['params'])} CV evaluations, 5 eigendecompositions",
        ),
        (
            "GridSearchCV (50 alphas)",
            search.best_params_["alpha"],
            -search.best_score_,
            grid_time,
            f"{50 * 5 + 1} Ridge fits",
        ),
    ]
    print(f"{'method':<26} {'alpha':>10} {'CV MSE':>10} {'time (s)':>9}  work")
    for name, alpha, mse, seconds, work in rows:
        print(f"{name:<26} {alpha:>10.4g} {mse:>10.2f} {seconds:>9.4f}  {work}")
    verdict = "at or below" if -ours.best_score_ <= -search.best_score_ else "above"
    print(
        f"\nBilevelRidgeCV was {grid_time / ours_time:.0f}x faster, at a CV MSE "
        f"{verdict} the grid's (its alpha is not limited to grid points)."
    )
    print(
        f"(The first fit of this session took {first:.2f} s: it includes loading "
        "or compiling the Numba kernels.)\n"
    )

    X, y, coef = make_regression(
        600, 60, n_informative=6, noise=50.0, coef=True, random_state=0
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scalar = BilevelRidgeCV().fit(X_train, y_train)
    start = time.perf_counter()
    per_feature = BilevelRidgeCV(penalty="per_feature").fit(X_train, y_train)
    per_time = time.perf_counter() - start
    print(
        "60 features, 6 informative: one alpha per feature "
        f"(60 hyperparameters, tuned in {per_time:.2f} s)"
    )
    for name, model in [
        ("one shared alpha", scalar),
        ("one alpha per feature", per_feature),
    ]:
        mse = mean_squared_error(y_test, model.predict(X_test))
        print(f"  {name:<22} held-out MSE {mse:8.2f}")
    log_alpha = np.log10(per_feature.alpha_)
    informative = coef != 0
    print(
        "  median log10(alpha): informative features "
        f"{np.median(log_alpha[informative]):.1f}, useless features "
        f"{np.median(log_alpha[~informative]):.1f}"
    )


def _check_plot_path(path, parser):
    """Exit with a message unless matplotlib can write ``path``."""
    from pathlib import Path

    try:
        from matplotlib.figure import Figure
    except ImportError:
        parser.error("--plot needs matplotlib: pip install matplotlib")
    path = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        parser.error(
            f"--plot {str(path)!r}: the extension must be one of "
            f"{sorted('.' + f for f in formats)}."
        )
    if not path.resolve().parent.is_dir():
        parser.error(
            f"--plot {str(path)!r}: the folder {str(path.parent)!r} does not exist."
        )


def _compare(args, parser):
    from ._compare import compare, format_table, load_dataset, plot_curves

    def progress(message):
        print(f"[compare] {message}", file=sys.stderr, flush=True)

    if args.plot:  # checked before the comparison runs, not after
        _check_plot_path(args.plot, parser)
    try:
        X, y, name = load_dataset(args.dataset, args.target)
        progress(f"{name}: {X.shape[0]} samples, {X.shape[1]} features")
        runs = compare(
            X,
            y,
            estimator=args.estimator,
            penalty=args.penalty,
            cv=args.cv,
            test_size=args.test_size,
            random_state=args.random_state,
            progress=progress,
        )
    except ValueError as error:
        parser.error(str(error))
    scoring_name = runs[0]["scoring"]
    for line in format_table(runs, scoring_name):
        print(line)
    if args.plot:
        plot_curves(runs, args.plot, scoring_name)
        progress(f"saved {args.plot}")
    return 0


def main(argv=None):
    """Entry point of ``python -m skbilevel``."""
    parser = argparse.ArgumentParser(
        prog="python -m skbilevel",
        description="skbilevel: hypergradient tuning of scikit-learn models.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="tune ridge on the diabetes data next to GridSearchCV")
    compare = sub.add_parser(
        "compare",
        help="skbilevel vs grid, random and Optuna search on a dataset",
        description="Tune StandardScaler -> Ridge/LogisticRegression on DATASET "
        "with skbilevel, GridSearchCV, RandomizedSearchCV and (when installed) "
        "Optuna, on the same folds; print time, best CV score, held-out score "
        "and number of fits.",
    )
    compare.add_argument(
        "dataset",
        help="a scikit-learn dataset (diabetes, breast_cancer, iris, wine, "
        "digits) or a .csv/.npy file",
    )
    compare.add_argument(
        "--target",
        default=None,
        help="target column of a CSV (name) or NPY (index) file; default: last",
    )
    compare.add_argument(
        "--estimator",
        choices=["ridge", "logistic"],
        default=None,
        help="default: logistic for class labels (strings, or at most 20 "
        "distinct numbers), else ridge",
    )
    compare.add_argument(
        "--penalty", choices=["scalar", "per_feature"], default="scalar"
    )
    compare.add_argument("--cv", type=int, default=5, help="number of folds")
    compare.add_argument(
        "--test-size", type=float, default=0.25, help="held-out fraction"
    )
    compare.add_argument("--random-state", type=int, default=0)
    compare.add_argument(
        "--plot", default=None, help="save best CV score vs time to FILE.png"
    )
    args = parser.parse_args(argv)
    if args.command in (None, "demo"):
        _demo()
        return 0
    if args.command == "compare":
        return _compare(args, parser)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
