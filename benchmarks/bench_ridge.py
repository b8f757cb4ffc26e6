"""BilevelRidgeCV against RidgeCV, side by side on the same data and folds.

Run:  python benchmarks/bench_ridge.py [--quick]

For each dataset it times, in one process:

* ``RidgeCV(alphas=np.logspace(-6, 6, 50), cv=KFold(5))`` (scored by MSE)
  against ``BilevelRidgeCV(cv=KFold(5))``;
* the leave-one-out ``RidgeCV(alphas=np.logspace(-6, 6, 50))`` against
  ``BilevelRidgeCV(cv=None)``;

and prints the CV MSE each reached and the time ratio (RidgeCV / ours).
Targets: with cv=5, >= 20x faster at an equal or lower CV MSE; with
leave-one-out, no slower at an equal or lower LOO MSE. It also measures the
Numba first-call (compile) time and the import + first fit time with a warm
cache, each in a fresh interpreter.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from skbilevel import BilevelRidgeCV

ALPHAS = np.logspace(-6, 6, 50)


def best_time(func, repeat):
    """Smallest wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def datasets(quick):
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes 442x10", X, y, 20
    n1 = 5000 if quick else 20000
    X, y = make_regression(n1, 200, n_informative=50, noise=50.0, random_state=0)
    yield f"make_regression {n1}x200", X, y, 3
    n2, d2 = (500, 2000) if quick else (2000, 5000)
    X, y = make_regression(n2, d2, n_informative=100, noise=20.0, random_state=0)
    yield f"make_regression {n2}x{d2}", X, y, 1


def compile_times():
    """First call with an empty Numba cache, then import + fit with it warm."""
    code = (
        "import time; t0 = time.perf_counter();"
        "import numpy as np; from skbilevel import BilevelRidgeCV;"
        "t1 = time.perf_counter();"
        "X = np.random.RandomState(0).randn(50, 4); y = X.sum(1);"
        "BilevelRidgeCV().fit(X, y); BilevelRidgeCV(cv=None).fit(X, y);"
        "BilevelRidgeCV(hypergradient='cg').fit(X, y);"
        "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        # Numba caches next to the sources when it can; point it elsewhere so
        # that the first run really starts cold.
        env["NUMBA_CACHE_DIR"] = cache
        runs = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            runs.append([float(v) for v in out])
    return runs


def report(name, cv, ref_t, our_t, ref, ours):
    """One line: times, speed-up, both CV MSEs and (ours - RidgeCV) / RidgeCV."""
    ref_mse, our_mse = -ref.best_score_, -ours.best_score_
    print(
        f"{name:<26} {cv:<6} {ref_t:>10.3f} {our_t:>9.4f} "
        f"{ref_t / our_t:>8.1f}x {ref_mse:>13.7g} {our_mse:>13.7g} "
        f"{(our_mse - ref_mse) / ref_mse:>10.1e} {ref.alpha_:>13.4g} "
        f"{ours.alpha_:>11.4g}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller datasets")
    args = parser.parse_args()
    # Warm the kernels so that compile time is not counted in the fits.
    Xw, yw = make_regression(60, 5, random_state=0)
    BilevelRidgeCV().fit(Xw, yw)
    BilevelRidgeCV(cv=None).fit(Xw, yw)

    header = (
        f"{'dataset':<26} {'cv':<6} {'RidgeCV s':>10} {'ours s':>9} "
        f"{'speed-up':>9} {'RidgeCV MSE':>13} {'ours MSE':>13} {'rel. diff':>10} "
        f"{'alpha RidgeCV':>13} {'alpha ours':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, X, y, repeat in datasets(args.quick):
        folds = list(KFold(5, shuffle=True, random_state=0).split(X))
        ref_t, ref = best_time(
            lambda X=X, y=y, folds=folds: RidgeCV(
                alphas=ALPHAS, cv=folds, scoring="neg_mean_squared_error"
            ).fit(X, y),
            max(1, repeat // 5),
        )
        our_t, ours = best_time(
            lambda X=X, y=y, folds=folds: BilevelRidgeCV(cv=folds).fit(X, y), repeat
        )
        report(name, "5-fold", ref_t, our_t, ref, ours)
        ref_t, ref = best_time(
            lambda X=X, y=y: RidgeCV(alphas=ALPHAS).fit(X, y), repeat
        )
        our_t, ours = best_time(
            lambda X=X, y=y: BilevelRidgeCV(cv=None).fit(X, y), repeat
        )
        report(name, "LOO", ref_t, our_t, ref, ours)

    (imp_cold, first_cold), (imp_warm, first_warm) = compile_times()
    print()
    print(
        f"import skbilevel: {imp_cold:.2f} s; first fits with an empty Numba cache "
        f"(compilation): {first_cold:.2f} s"
    )
    print(
        f"import skbilevel: {imp_warm:.2f} s; first fits with a warm cache: "
        f"{first_warm:.2f} s"
    )


if __name__ == "__main__":
    main()
