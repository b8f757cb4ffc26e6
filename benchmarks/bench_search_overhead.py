"""HypergradientSearchCV with lists only against GridSearchCV: no overhead.

Run:  python benchmarks/bench_search_overhead.py [--repeat N]

A space of lists is GridSearchCV's search whatever the estimator (issue 17):
HypergradientSearchCV hands it to scikit-learn's BaseSearchCV. Target: the
same wall time within noise, and the same ``best_score_``, on pipelines
ending in non-linear models, on data as users prepare it:

* ``hmda`` (AER::HMDA, 2380 mortgage applications, 12% denied): a
  ColumnTransformer (median imputation + scaling, one-hot encoding of the
  yes/no factors) -> HistGradientBoostingClassifier, a 3 x 2 list grid;
* breast cancer, standardized -> SVC, a 4 x 2 list grid (C, kernel);
* breast cancer, standardized -> KNeighborsClassifier, 5 values of k.

5 stratified folds, ROC AUC, n_jobs=None, best of ``--repeat`` runs
(alternating the two methods).
"""

import argparse
import sys
from functools import partial
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).parent))
from _real_data import load, make_preprocessor  # noqa: E402
from _timing import best_time  # noqa: E402

from skbilevel import HypergradientSearchCV  # noqa: E402


def cases():
    X, y, _, numeric, categorical = load("hmda")
    yield (
        "hmda: ColumnTransformer -> HGB",
        X,
        y,
        make_pipeline(
            make_preprocessor(numeric, categorical),
            HistGradientBoostingClassifier(max_iter=100, random_state=0),
        ),
        {
            "histgradientboostingclassifier__learning_rate": [0.03, 0.1, 0.3],
            "histgradientboostingclassifier__max_leaf_nodes": [15, 31],
        },
    )
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    yield (
        "breast_cancer: scaler -> SVC",
        X,
        y,
        make_pipeline(StandardScaler(), SVC()),
        {"svc__C": [0.1, 1, 10, 100], "svc__kernel": ["linear", "rbf"]},
    )
    yield (
        "breast_cancer: scaler -> KNN",
        X,
        y,
        make_pipeline(StandardScaler(), KNeighborsClassifier()),
        {"kneighborsclassifier__n_neighbors": [3, 5, 9, 15, 25]},
    )


def search(cls, pipe, grid, X, y, cv):
    return cls(pipe, grid, cv=cv, scoring="roc_auc").fit(X, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    print(
        f"{'pipeline':<32} {'Grid (s)':>9} {'ours (s)':>9} {'ratio':>6} "
        f"{'Grid AUC':>9} {'ours AUC':>9} same params"
    )
    for name, X, y, pipe, grid in cases():
        grid_time = ours_time = float("inf")
        for _ in range(args.repeat):  # alternate, so drifts hit both alike
            t, theirs = best_time(partial(search, GridSearchCV, pipe, grid, X, y, cv))
            grid_time = min(grid_time, t)
            t, ours = best_time(
                partial(search, HypergradientSearchCV, pipe, grid, X, y, cv)
            )
            ours_time = min(ours_time, t)
        print(
            f"{name:<32} {grid_time:>9.2f} {ours_time:>9.2f} "
            f"{ours_time / grid_time:>6.2f} {theirs.best_score_:>9.4f} "
            f"{ours.best_score_:>9.4f} {ours.best_params_ == theirs.best_params_}",
            flush=True,
        )


if __name__ == "__main__":
    main()
