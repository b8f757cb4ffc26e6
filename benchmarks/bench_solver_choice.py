"""Where solver="auto" switches: the three solvers side by side.

Run:  python benchmarks/bench_solver_choice.py [--quick]

On standardized make_classification data (20 informative features of
``n_features``), for several sizes, ``BilevelLogisticCV`` with
``solver="deterministic"``, ``"stochastic"`` and ``"quadratic"`` (5
stratified folds, ``random_state=0``), each the best of two runs (default
thread pools, then BLAS on one thread: see ``_timing.best_time``), next to
one plain ``LogisticRegression().fit`` on the same rows; every model is
scored on 20,000 separate rows. The last column is what ``solver="auto"``
picks for that shape (see the user guide). Target on 400000 x 200 with
``penalty="per_feature"``: the default solver within one plain fit's time,
at a held-out log-loss within 1% of the deterministic solver's.
"""

import argparse
import warnings

from _timing import best_time  # benchmarks/_timing.py
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelLogisticCV

TEST_ROWS = 20_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    cases = (
        [("scalar", 50_000, 50), ("per_feature", 50_000, 100)]
        if args.quick
        else [
            ("scalar", 100_000, 100),
            ("scalar", 400_000, 100),
            ("per_feature", 100_000, 200),
            ("per_feature", 200_000, 200),
            ("per_feature", 400_000, 200),
        ]
    )
    for solver in ["stochastic", "quadratic"]:  # compile the kernels first
        BilevelLogisticCV(solver=solver, max_iter=5).fit(
            *make_classification(2000, 5, random_state=0)
        )
    solvers = ["deterministic", "stochastic", "quadratic"]
    header = (
        f"{'penalty':<12} {'n x p':>12} {'det s':>7} {'stoch s':>8} {'quad s':>7} "
        f"{'1 fit s':>8} {'det loss':>9} {'stoch/det':>9} {'quad/det':>9} "
        f"{'auto':>14} {'auto/fit':>8}"
    )
    print(header)
    print("-" * len(header))
    for penalty, n, p in cases:
        X, y = make_classification(n + TEST_ROWS, p, n_informative=20, random_state=0)
        X = StandardScaler().fit_transform(X)
        X, X_test, y, y_test = X[:n], X[n:], y[:n], y[n:]
        losses, seconds = {}, {}
        for solver in solvers:
            seconds[solver], model = best_time(
                lambda solver=solver, penalty=penalty, X=X, y=y: BilevelLogisticCV(
                    penalty=penalty, solver=solver, random_state=0
                ).fit(X, y)
            )
            losses[solver] = log_loss(y_test, model.predict_proba(X_test))
        plain, _ = best_time(lambda X=X, y=y: LogisticRegression().fit(X, y))
        auto = BilevelLogisticCV(penalty=penalty)
        n_hyper = 1 if penalty == "scalar" else p
        chosen = auto._choose_solver(X.shape, X, 1, n_hyper, "auto", False)
        det = losses["deterministic"]
        print(
            f"{penalty:<12} {f'{n}x{p}':>12} {seconds['deterministic']:>7.2f} "
            f"{seconds['stochastic']:>8.2f} {seconds['quadratic']:>7.2f} "
            f"{plain:>8.2f} {det:>9.5f} {losses['stochastic'] / det:>9.4f} "
            f"{losses['quadratic'] / det:>9.4f} {chosen:>14} "
            f"{seconds[chosen] / plain:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
