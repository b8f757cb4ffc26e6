"""BilevelLogisticCV against LogisticRegressionCV and GridSearchCV, side by side.

Run:  python benchmarks/bench_logistic.py [--quick]

On every dataset, in one process and on the same stratified 5 folds:

* ``LogisticRegressionCV(Cs=20, cv=folds, scoring="neg_log_loss")``;
* ``GridSearchCV(LogisticRegression(), {"C": the same 20 values},
  scoring="neg_log_loss")``;
* ``BilevelLogisticCV(cv=folds)``.

It prints wall times (LogisticRegressionCV and BilevelLogisticCV: best of
``--repeat`` runs; the grid search: of two; each method's runs alternate
between the default thread pools and BLAS on one thread, see
``_timing.best_time``), the speed-up of
BilevelLogisticCV over each, and the CV log-loss each reached (lower is
better). Targets: a CV log-loss equal to
or lower than the 20-point grid everywhere; at most 1/3 of
LogisticRegressionCV's time on make_classification 100000 x 100, raw and
standardized, and at most 1/2 on digits and on the sparse text-like problem
(all run with n_jobs=None). A last part shows ``penalty="per_feature"`` lowering the
held-out log-loss when most features are useless.
"""

import argparse
import warnings

import numpy as np
import scipy.sparse as sp
from _timing import best_time  # benchmarks/_timing.py
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

from skbilevel import BilevelLogisticCV

CS = np.logspace(-4, 4, 20)  # LogisticRegressionCV(Cs=20)'s grid


def text_like(n_samples, n_features, density, seed=0):
    """A sparse bag-of-words-like problem: CSR counts, labels from a sparse model."""
    rng = np.random.RandomState(seed)
    X = sp.random(
        n_samples,
        n_features,
        density=density,
        format="csr",
        random_state=rng,
        data_rvs=lambda k: rng.poisson(2.0, k) + 1.0,
    )
    coef = np.zeros(n_features)
    informative = rng.choice(n_features, n_features // 20, replace=False)
    coef[informative] = rng.randn(len(informative)) * 2.0
    logits = X @ coef
    y = (rng.rand(n_samples) < 1 / (1 + np.exp(-(logits - np.median(logits))))).astype(
        int
    )
    return X, y


def datasets(quick):
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast_cancer 569x30", StandardScaler().fit_transform(X), y
    X, y = load_digits(return_X_y=True)
    yield "digits 1797x64 (10 classes)", X / 16.0, y
    n = 20000 if quick else 100000
    X, y = make_classification(n, 100, n_informative=20, random_state=0)
    yield f"make_classification {n}x100", X, y
    # As users prepare it: standardized (the loss is flat over many decades
    # of weak penalties there, a harder case for the 1-D search).
    yield "  the same, standardized", StandardScaler().fit_transform(X), y
    n, d = (2000, 20000) if quick else (10000, 50000)
    X, y = text_like(n, d, 0.001)
    yield f"text-like CSR {n}x{d} (0.1%)", X, y


def exact_cv_log_loss(X, y, C, folds):
    """CV log-loss at C with tightly converged LogisticRegression fits.

    The searches report scores of their own (inexact, differently stopped)
    fits; this scores every method's chosen C the same way.
    """
    losses = []
    for train, test in folds:
        model = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(
            X[train], y[train]
        )
        losses.append(
            log_loss(y[test], model.predict_proba(X[test]), labels=np.unique(y))
        )
    return float(np.mean(losses))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller datasets")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of LogisticRegressionCV and ours (best time kept); the "
        "grid search runs twice",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV's notices
    # Compile the kernels first: compilation is not part of the comparison.
    Xw, yw = make_classification(200, 5, random_state=0)
    BilevelLogisticCV().fit(Xw, yw)
    BilevelLogisticCV().fit(sp.csr_matrix(Xw), yw)
    BilevelLogisticCV(hypergradient="cg").fit(Xw, np.arange(200) % 3)
    BilevelLogisticCV(solver="quadratic").fit(Xw, yw)

    print(
        "CV log-loss: as each search reports it, then [exact] at its chosen C "
        "(tight refits, same folds); ours-grid: the exact ones' difference"
    )
    header = (
        f"{'dataset':<32} {'LRCV s':>7} {'Grid s':>7} {'ours s':>7} "
        f"{'vs LRCV':>8} {'vs Grid':>8} {'LRCV loss':>19} {'Grid loss':>19} "
        f"{'ours loss':>19} {'C ours':>8} {'ours-grid':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, X, y in datasets(args.quick):
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
        lrcv_t, lrcv = best_time(
            lambda X=X, y=y, folds=folds: LogisticRegressionCV(
                Cs=20, cv=folds, scoring="neg_log_loss", max_iter=1000
            ).fit(X, y),
            args.repeat,
        )
        lrcv_loss = -np.max(np.mean(next(iter(lrcv.scores_.values())), axis=0))
        grid_t, grid = best_time(
            lambda X=X, y=y, folds=folds: GridSearchCV(
                LogisticRegression(max_iter=1000),
                {"C": CS},
                cv=folds,
                scoring="neg_log_loss",
            ).fit(X, y)
        )
        ours_t, ours = best_time(
            lambda X=X, y=y, folds=folds: BilevelLogisticCV(cv=folds).fit(X, y),
            args.repeat,
        )
        exact = [
            exact_cv_log_loss(X, y, C, folds)
            for C in (lrcv.C_[0], grid.best_params_["C"], ours.C_)
        ]
        print(
            f"{name:<32} {lrcv_t:>7.2f} {grid_t:>7.2f} {ours_t:>7.2f} "
            f"{lrcv_t / ours_t:>7.1f}x {grid_t / ours_t:>7.1f}x "
            f"{lrcv_loss:>8.5f} [{exact[0]:.5f}] "
            f"{-grid.best_score_:>8.5f} [{exact[1]:.5f}] "
            f"{-ours.best_score_:>8.5f} [{exact[2]:.5f}] {ours.C_:>8.3g} "
            f"{exact[2] - exact[1]:>+9.1e}",
            flush=True,
        )

    print("\nMany useless features: one C per feature (penalty='per_feature')")
    X, y = make_classification(
        3000, 200, n_informative=8, n_redundant=0, random_state=1
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, random_state=0
    )
    for penalty in ["scalar", "per_feature"]:
        seconds, model = best_time(
            lambda penalty=penalty: BilevelLogisticCV(penalty=penalty).fit(
                X_train, y_train
            )
        )
        held_out = log_loss(y_test, model.predict_proba(X_test))
        print(
            f"  {penalty:<12} CV log-loss {-model.best_score_:.4f}  held-out "
            f"log-loss {held_out:.4f}  ({seconds:.1f} s)"
        )


if __name__ == "__main__":
    main()
