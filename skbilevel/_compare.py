"""``python -m skbilevel compare``: skbilevel next to grid and random search.

Tunes ``StandardScaler -> Ridge`` (or ``-> LogisticRegression``) on a dataset
with HypergradientSearchCV, GridSearchCV, RandomizedSearchCV and, when it is
installed, an Optuna study, on the same folds, and prints one line per
method: wall time, best CV score, held-out score, number of fits.
"""

import time
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "load_dataset", "compare", "format_table"]

# scikit-learn's bundled datasets (no download needed).
DATASETS = {
    "diabetes": "load_diabetes",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
    "wine": "load_wine",
    "digits": "load_digits",
}

# Range of the strength searched by every method.
LOW, HIGH = 1e-4, 1e4
N_CANDIDATES = 20


def load_dataset(source, target=None):
    """``(X, y, name)`` from a bundled dataset's name, or a CSV/NPY file.

    Parameters
    ----------
    source : str
        One of :data:`DATASETS`, or the path of a ``.csv`` file (with a
        header row) or of a ``.npy`` file holding a 2-D array.
    target : str, default=None
        Target column: a column name for CSV files, an integer index for
        NPY files. None takes the last column.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    name : str
    """
    if source in DATASETS:
        import sklearn.datasets

        if target is not None:
            raise ValueError(
                f"--target applies to CSV/NPY files; {source!r} has its own target."
            )
        X, y = getattr(sklearn.datasets, DATASETS[source])(return_X_y=True)
        return X, y, source
    path = Path(source)
    if path.suffix.lower() not in (".csv", ".npy"):
        raise ValueError(
            f"Unknown dataset {source!r}: give one of {sorted(DATASETS)} or the "
            "path of a .csv or .npy file."
        )
    if not path.is_file():
        raise ValueError(f"No such file: {source!r}.")
    if path.suffix.lower() == ".npy":
        data = np.load(path, allow_pickle=False)
        if data.ndim != 2 or data.shape[1] < 2:
            raise ValueError(
                f"{source!r} must hold a 2-D array with at least two columns; "
                f"got shape {data.shape}."
            )
        try:
            column = -1 if target is None else int(target)
            column = range(data.shape[1])[column]
        except (ValueError, IndexError):
            raise ValueError(
                f"--target must be a column index of {source!r} (0 to "
                f"{data.shape[1] - 1}); got {target!r}."
            ) from None
        X = np.delete(data, column, axis=1).astype(float)
        return X, data[:, column], path.name
    import pandas as pd

    frame = pd.read_csv(path)
    if frame.shape[1] < 2:
        raise ValueError(f"{source!r} must have at least two columns.")
    column = frame.columns[-1] if target is None else target
    if column not in frame.columns:
        raise ValueError(
            f"Column {target!r} is not in {source!r}; its columns are "
            f"{list(frame.columns)}."
        )
    missing = np.flatnonzero(frame[column].isna().to_numpy())
    if missing.size:
        raise ValueError(
            f"The target column {column!r} of {source!r} has {missing.size} blank "
            f"cell(s) (data rows {(missing + 1)[:5].tolist()}...): drop or fill them."
        )
    features = frame.drop(columns=[column])
    non_numeric = [c for c in features.columns if features[c].dtype.kind not in "biuf"]
    if non_numeric:
        raise ValueError(
            f"Non-numeric feature columns {non_numeric} in {source!r}: encode them "
            "first (or drop them)."
        )
    return features.to_numpy(dtype=float), frame[column].to_numpy(), path.name


def _optuna_search(pipe, key, X, y, cv, scoring, n_trials, seed):
    """An Optuna study over the strength; returns (best params, trials)."""
    import optuna
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = []

    def objective(trial):
        value = trial.suggest_float(key, LOW, HIGH, log=True)
        start = time.perf_counter()
        model = clone(pipe).set_params(**{key: value})
        score = cross_val_score(model, X, y, cv=cv, scoring=scoring).mean()
        trials.append((time.perf_counter() - start, score))
        return score

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
    )
    study.optimize(objective, n_trials=n_trials)
    return study.best_params, trials


def compare(X, y, *, estimator=None, penalty="scalar", cv=5, test_size=0.25,
            random_state=0, progress=None):  # fmt: skip
    """Run every method; returns a list of result dicts (one per method).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    estimator : {"ridge", "logistic"}, default=None
        None picks "logistic" for class labels (strings, or at most 20
        distinct numbers), else "ridge".
    penalty : {"scalar", "per_feature"}, default="scalar"
        skbilevel's penalty; the grid and random searches always tune one
        strength (one per feature is out of their reach).
    cv : int, default=5
    test_size : float, default=0.25
        Held-out fraction, scored once by each method's refit model.
    random_state : int, default=0
    progress : callable, default=None
        Called with a message before each method runs.

    Returns
    -------
    results : list of dict
        Keys: method, seconds, cv_score, test_score, n_fits, scoring (the
        scorer's name), curve (cumulative fitting seconds and best CV score
        so far, per candidate).
    """
    from scipy.stats import loguniform
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import (
        GridSearchCV,
        KFold,
        RandomizedSearchCV,
        StratifiedKFold,
        train_test_split,
    )
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.multiclass import type_of_target

    from ._logistic import BilevelLogisticCV
    from ._ridge import BilevelRidgeCV
    from ._search import HypergradientSearchCV

    kind = type_of_target(y)
    # Numbers with integer values (counts, diabetes' progression) are class
    # labels only when there are few of them; strings always are.
    classification = kind in ("binary", "multiclass") and (
        np.asarray(y).dtype.kind not in "iuf" or len(np.unique(y)) <= 20
    )
    if estimator is None:
        estimator = "logistic" if classification else "ridge"
    if estimator not in ("ridge", "logistic"):
        raise ValueError(f"estimator must be 'ridge' or 'logistic'; got {estimator!r}.")
    if estimator == "logistic" and not classification:
        raise ValueError(
            f"The target looks continuous ({kind}, {len(np.unique(y))} distinct "
            "values): the logistic estimator needs class labels."
        )
    if penalty not in ("scalar", "per_feature"):
        raise ValueError(f"penalty must be 'scalar' or 'per_feature'; got {penalty!r}.")
    logistic = estimator == "logistic"
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state,
        stratify=y if logistic else None,
    )  # fmt: skip
    splitter = StratifiedKFold if logistic else KFold
    folds = list(
        splitter(cv, shuffle=True, random_state=random_state).split(X_train, y_train)
    )
    scoring = "neg_log_loss" if logistic else "neg_mean_squared_error"
    name = "C" if logistic else "alpha"
    final = LogisticRegression(max_iter=1000) if logistic else Ridge()
    pipe = Pipeline([("scale", StandardScaler()), ("model", final)])
    key = f"model__{name}"
    scorer = check_scoring(pipe, scoring=scoring)
    grid = np.logspace(np.log10(LOW), np.log10(HIGH), N_CANDIDATES)

    def searched(search):
        results = search.cv_results_
        fit = np.asarray(results["mean_fit_time"]) + np.asarray(
            results["mean_score_time"]
        )
        return np.cumsum(fit * len(folds)), np.asarray(results["mean_test_score"])

    runs = []
    ours_pipe = pipe
    if penalty == "per_feature":
        bilevel = BilevelLogisticCV if logistic else BilevelRidgeCV
        ours_pipe = Pipeline(
            [("scale", StandardScaler()), ("model", bilevel(penalty="per_feature"))]
        )
    methods = [
        (
            f"skbilevel ({penalty})",
            lambda: HypergradientSearchCV(
                ours_pipe, {key: (LOW, HIGH)}, scoring=scoring, cv=folds
            ),
        ),
        (
            f"GridSearchCV ({N_CANDIDATES})",
            lambda: GridSearchCV(pipe, {key: grid}, scoring=scoring, cv=folds),
        ),
        (
            f"RandomizedSearchCV ({N_CANDIDATES})",
            lambda: RandomizedSearchCV(
                pipe,
                {key: loguniform(LOW, HIGH)},
                n_iter=N_CANDIDATES,
                scoring=scoring,
                cv=folds,
                random_state=random_state,
            ),
        ),
    ]
    for method, make in methods:
        if progress is not None:
            progress(f"running {method} ...")
        start = time.perf_counter()
        search = make().fit(X_train, y_train)
        seconds = time.perf_counter() - start
        times, scores = searched(search)
        n_evaluations = len(search.cv_results_["params"])
        runs.append(
            dict(
                method=method,
                seconds=seconds,
                cv_score=float(search.best_score_),
                test_score=float(scorer(search.best_estimator_, X_test, y_test)),
                n_fits=n_evaluations * len(folds) + 1,
                scoring=scoring,
                curve=(times, np.fmax.accumulate(np.nan_to_num(scores, nan=-np.inf))),
            )
        )
    try:
        import optuna  # noqa: F401
    except ImportError:
        if progress is not None:
            progress("Optuna is not installed: its study is skipped.")
        return runs
    method = f"Optuna TPE ({N_CANDIDATES} trials)"
    if progress is not None:
        progress(f"running {method} ...")
    start = time.perf_counter()
    best, trials = _optuna_search(
        pipe, key, X_train, y_train, folds, scoring, N_CANDIDATES, random_state
    )
    model = pipe.set_params(**best).fit(X_train, y_train)
    seconds = time.perf_counter() - start
    durations, scores = map(np.asarray, zip(*trials, strict=True))
    runs.append(
        dict(
            method=method,
            seconds=seconds,
            cv_score=float(scores.max()),
            test_score=float(scorer(model, X_test, y_test)),
            n_fits=N_CANDIDATES * len(folds) + 1,
            scoring=scoring,
            curve=(np.cumsum(durations), np.fmax.accumulate(scores)),
        )
    )
    return runs


def format_table(runs, scoring_name):
    """The comparison as aligned text lines."""
    header = (
        f"{'method':<30} {'time (s)':>9} {'best CV ' + scoring_name:>28} "
        f"{'held-out ' + scoring_name:>28} {'fits':>6}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        lines.append(
            f"{run['method']:<30} {run['seconds']:>9.2f} {run['cv_score']:>28.6g} "
            f"{run['test_score']:>28.6g} {run['n_fits']:>6d}"
        )
    return lines


def plot_curves(runs, path, scoring_name):
    """Save the best CV score so far against cumulative fitting time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for run in runs:
        times, best = run["curve"]
        ax.step(times, best, where="post", label=run["method"], marker=".")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative fitting time (s)")
    ax.set_ylabel(f"best CV {scoring_name} so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
