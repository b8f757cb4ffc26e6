"""The stochastic mode against the deterministic one on a million rows.

Run:  python benchmarks/bench_stochastic.py [--quick] [--repeat N] [--plot FILE]

``BilevelLogisticCV(penalty="per_feature")`` (one strength per feature) on
make_classification 1,000,000 x 50, tuned on one hold-out split
(``ShuffleSplit(1, test_size=0.2)`` of the training rows), then scored on
separate held-out rows:

* ``solver="deterministic"``: Newton solves and exact adjoints;
* ``solver="stochastic"``: stochastic implicit differentiation on
  mini-batches, then a deterministic refit;
* ``solver="quadratic"`` (what ``solver="auto"`` picks here): the
  strengths searched on the split's Newton model, candidates solved
  exactly;
* one plain ``LogisticRegression().fit`` on the same training rows.

Targets: a held-out log-loss within 1% of the deterministic mode's, in at
most half its time and at most 3x the plain fit's. Times are the best of
``--repeat`` runs (1 s pause before each). The peak memory each fit
allocates on top of the data is measured with tracemalloc (NumPy reports its
buffers to it). ``--plot`` saves the validation loss against time of both
modes.
"""

import argparse
import tracemalloc
import warnings

import numpy as np
from _timing import best_time  # benchmarks/_timing.py
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import ShuffleSplit, train_test_split

from skbilevel import BilevelLogisticCV


def measured(func, repeat):
    """Best time over ``repeat`` runs, the last result, and its peak memory."""
    best, result = best_time(func, repeat)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    func()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return best, result, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each")
    parser.add_argument("--plot", default=None, help="save loss-vs-time to FILE")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # per_feature runs to max_iter by design
    n = 100_000 if args.quick else 1_000_000
    X, y = make_classification(n, 50, n_informative=10, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0
    )
    del X
    split = ShuffleSplit(1, test_size=0.2, random_state=0)
    # Compile the kernels first: compilation is not part of the comparison.
    for solver in ["stochastic", "quadratic"]:
        BilevelLogisticCV(solver=solver, max_iter=3, cv=split).fit(
            X_train[:5000], y_train[:5000]
        )
    data_mb = X_train.nbytes / 2**20
    print(f"make_classification {n} x 50, training rows {len(y_train)} "
          f"({data_mb:.0f} MB), penalty='per_feature', one hold-out split")  # fmt: skip
    header = (
        f"{'method':<28} {'time s':>7} {'held-out log-loss':>18} "
        f"{'vs deterministic':>17} {'peak extra MB':>14}"
    )
    print(header)
    print("-" * len(header))
    rows = {}
    for solver in ["deterministic", "stochastic", "quadratic"]:
        seconds, model, peak = measured(
            lambda solver=solver: BilevelLogisticCV(
                penalty="per_feature", cv=split, solver=solver, random_state=0
            ).fit(X_train, y_train),
            args.repeat,
        )
        rows[solver] = (seconds, model, log_loss(y_test, model.predict_proba(X_test)))
        print(
            f"BilevelLogisticCV {solver:<10} {seconds:>7.2f} {rows[solver][2]:>18.6f} "
            f"{seconds / rows['deterministic'][0]:>16.2f}x {peak / 2**20:>14.0f}",
            flush=True,
        )
    seconds, plain, peak = measured(
        lambda: LogisticRegression().fit(X_train, y_train), args.repeat
    )
    print(
        f"{'LogisticRegression().fit':<28} {seconds:>7.2f} "
        f"{log_loss(y_test, plain.predict_proba(X_test)):>18.6f} "
        f"{seconds / rows['deterministic'][0]:>16.2f}x {peak / 2**20:>14.0f}"
    )
    stochastic, deterministic = rows["stochastic"], rows["deterministic"]
    print(
        f"\nstochastic / deterministic time {stochastic[0] / deterministic[0]:.2f} "
        f"(target <= 0.5); stochastic / plain fit {stochastic[0] / seconds:.2f} "
        f"(target <= 3); held-out log-loss relative difference "
        f"{stochastic[2] / deterministic[2] - 1:+.2e} (target within 1%)"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4))
        results = deterministic[1].cv_results_
        ax.plot(
            results["time"],
            -np.asarray(results["mean_test_score"]),
            "o-",
            ms=4,
            lw=1,
            label="deterministic (each evaluation)",
        )
        results = stochastic[1].cv_results_
        times, loss = results["time"], -np.asarray(results["mean_test_score"])
        ax.plot(times[:-1], loss[:-1], ".", color="C1", alpha=0.3, ms=3)
        window = 10  # running mean of the mini-batch estimates
        smooth = np.convolve(loss[:-1], np.ones(window) / window, mode="valid")
        ax.plot(
            times[window - 1 : -1],
            smooth,
            "-",
            color="C1",
            label="stochastic (mini-batch estimates, running mean of 10)",
        )
        ax.plot(times[-1], loss[-1], "*", color="C1", ms=12, label="stochastic, final")
        results = rows["quadratic"][1].cv_results_
        ax.plot(
            results["time"],
            -np.asarray(results["mean_test_score"]),
            "s",
            color="C2",
            ms=6,
            label="quadratic (each exact evaluation)",
        )
        ax.set_ylabel("validation log-loss (hold-out split)")
        ax.set_title(f"per-feature C, make_classification {n} x 50")
        det_loss = -np.asarray(deterministic[1].cv_results_["mean_test_score"])
        bottom = min(det_loss.min(), loss[-1]) * 0.999
        ax.set_ylim(bottom, bottom * 1.03)
        ax.set_xlabel("time since the start of fit (s; the final refit follows)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
