"""``python -m skbilevel compare``: skbilevel next to grid and random search.

Tunes ``StandardScaler -> Ridge`` (or ``-> LogisticRegression``) on a dataset
with HypergradientSearchCV, GridSearchCV, RandomizedSearchCV and, when it is
installed, an Optuna study, on the same folds, and prints one line per
method: wall time, best CV score, held-out score, number of fits.
"""

import time
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "load_dataset", "make_preprocessing", "compare", "format_table"]

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
    empty = [c for c in features.columns if features[c].isna().all()]
    if empty:
        raise ValueError(
            f"Feature columns {empty} of {source!r} are entirely blank: drop them."
        )
    # Text, categories and missing values are left to the preprocessing
    # (see make_preprocessing): the columns keep their types.
    return features, frame[column].to_numpy(), path.name


def make_preprocessing(X):
    """The preprocessing a practitioner would write for ``X``, and what it does.

    Numeric columns: median imputation (where values are missing), then
    standardization. Other columns (text, categories, booleans): most
    frequent imputation, then one-hot encoding, with every category seen in
    ``X`` listed up front so that every fold produces the same columns (a
    category absent from a training part gets a column of zeros there).

    Parameters
    ----------
    X : ndarray or DataFrame of shape (n_samples, n_features)

    Returns
    -------
    preprocessing : transformer
        Unfitted.
    description : str
        One line saying what it does to which columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if not hasattr(X, "columns"):  # an array: every column is numeric
        n_missing = int(np.sum(np.isnan(X).any(axis=0)))
        if not n_missing:
            return StandardScaler(), f"{X.shape[1]} numeric columns: standardized"
        return (
            make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
            f"{X.shape[1]} numeric columns: median imputation ({n_missing} with "
            "missing values), standardized",
        )
    numeric = [c for c in X.columns if X[c].dtype.kind in "iuf"]
    categorical = [c for c in X.columns if c not in numeric]
    parts, said = [], []
    if numeric:
        with_missing = int(X[numeric].isna().any().sum())
        steps = [StandardScaler()]
        text = f"{len(numeric)} numeric columns: standardized"
        if with_missing:
            steps.insert(0, SimpleImputer(strategy="median"))
            text = (
                f"{len(numeric)} numeric columns: median imputation "
                f"({with_missing} with missing values), standardized"
            )
        parts.append(("numeric", make_pipeline(*steps), numeric))
        said.append(text)
    if categorical:
        categories = [sorted(X[c].dropna().astype(str).unique()) for c in categorical]
        with_missing = int(X[categorical].isna().any().sum())
        encode = make_pipeline(
            # Text throughout, so that True and "True" are one category.
            _text_columns(),
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(categories=categories, handle_unknown="ignore"),
        )
        parts.append(("categorical", encode, categorical))
        n_out = sum(len(c) for c in categories)
        text = f"{len(categorical)} categorical columns"
        if with_missing:
            text += f": most frequent imputation ({with_missing} with missing values),"
        else:
            text += ":"
        said.append(f"{text} one-hot encoded into {n_out} columns")
    return ColumnTransformer(parts), "; ".join(said)


def _as_text(X):
    """Categorical cells as strings, blanks kept blank (NaN)."""
    import pandas as pd

    frame = pd.DataFrame(X)
    return frame.where(frame.isna(), frame.astype(str)).to_numpy(dtype=object)


def _text_columns():
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(_as_text, feature_names_out="one-to-one")


def _optuna_search(pipe, key, X, y, cv, scoring, n_trials, seed):
    """An Optuna study over the strength; returns (best params, trials).

    Every trial is ``(seconds, mean CV score, its standard deviation)``.
    """
    import optuna
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = []

    def objective(trial):
        value = trial.suggest_float(key, LOW, HIGH, log=True)
        start = time.perf_counter()
        model = clone(pipe).set_params(**{key: value})
        scores = cross_val_score(model, X, y, cv=cv, scoring=scoring)
        trials.append((time.perf_counter() - start, scores.mean(), scores.std()))
        return scores.mean()

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
    )
    study.optimize(objective, n_trials=n_trials)
    return study.best_params, trials


def _warm_up(final, classification, n_classes):
    """Fit a small skbilevel search once, untimed: loading (or, the first
    time, compiling) its Numba kernels would otherwise count as search time."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from ._search import HypergradientSearchCV

    if classification:
        X, y = make_classification(
            n_samples=90, n_features=4, n_informative=3, n_redundant=0,
            n_classes=2 if n_classes == 2 else 3, random_state=0,
        )  # fmt: skip
    else:
        X, y = make_regression(n_samples=90, n_features=4, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()), ("model", final)])
    name = "model__C" if classification else "model__alpha"
    HypergradientSearchCV(pipe, {name: (LOW, HIGH)}, cv=3).fit(X, y)


def _chosen(params, key):
    """The chosen strength, for the table: a number, or the median of many."""
    value = np.asarray(params[key], dtype=float)
    if value.ndim == 0:
        return f"{float(value):.4g}"
    return f"median {np.median(value):.3g} of {value.size}"


def compare(X, y, *, estimator=None, penalty="scalar", cv=5, test_size=0.25,
            random_state=0, progress=None):  # fmt: skip
    """Run every method; returns a list of result dicts (one per method).

    The features are preprocessed as :func:`make_preprocessing` says
    (imputation, scaling, one-hot encoding of text columns), fitted inside
    every fold. skbilevel is warmed up once before the timed runs.

    Parameters
    ----------
    X : ndarray or DataFrame of shape (n_samples, n_features)
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
        Keys: method, seconds, cv_score, cv_std (over the folds, at the
        chosen point), test_score, chosen (the strength, as text), param
        (its name), n_evaluations (evaluations of all the folds),
        n_hypergradients (those that also computed a hypergradient), n_fits
        (fold fits: evaluations times folds, plus the refit), scoring (the
        scorer's name), preprocessing (what was done to the features),
        curve (cumulative fitting seconds and best CV score so far, per
        evaluation).
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
    from sklearn.utils.multiclass import type_of_target

    from ._logistic import BilevelLogisticCV
    from ._ridge import BilevelRidgeCV
    from ._search import HypergradientSearchCV

    def say(message):
        if progress is not None:
            progress(message)

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
    preprocessing, described = make_preprocessing(X)
    say(f"preprocessing (fitted in every fold): {described}")
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
    pipe = Pipeline([("prep", preprocessing), ("model", final)])
    key = f"model__{name}"
    scorer = check_scoring(pipe, scoring=scoring)
    grid = np.logspace(np.log10(LOW), np.log10(HIGH), N_CANDIDATES)

    ours_final = final
    if penalty == "per_feature":
        bilevel = BilevelLogisticCV if logistic else BilevelRidgeCV
        ours_final = bilevel(penalty="per_feature")
    ours_pipe = Pipeline([("prep", preprocessing), ("model", ours_final)])
    start = time.perf_counter()
    _warm_up(ours_final, logistic, len(np.unique(y)))
    say(
        f"warm-up of skbilevel's compiled kernels: {time.perf_counter() - start:.2f}"
        " s, not counted"
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
    common = dict(scoring=scoring, preprocessing=described, param=name)
    runs = []
    for method, make in methods:
        say(f"running {method} ...")
        start = time.perf_counter()
        search = make().fit(X_train, y_train)
        seconds = time.perf_counter() - start
        results = search.cv_results_
        fit = np.asarray(results["mean_fit_time"]) + np.asarray(
            results["mean_score_time"]
        )
        scores = np.asarray(results["mean_test_score"])
        if "iter" in results:
            # A point evaluated twice (a scan point, then with its
            # hypergradient) is one row: count the evaluations themselves.
            n_evaluations = int(np.max(results["iter"])) + 1
            n_hypergradients = int(np.sum(np.isfinite(results["hypergradient_norm"])))
        else:
            n_evaluations, n_hypergradients = len(scores), 0
        runs.append(
            dict(
                method=method,
                seconds=seconds,
                cv_score=float(search.best_score_),
                cv_std=float(results["std_test_score"][search.best_index_]),
                test_score=float(scorer(search.best_estimator_, X_test, y_test)),
                chosen=_chosen(search.best_params_, key),
                n_evaluations=n_evaluations,
                n_hypergradients=n_hypergradients,
                n_fits=n_evaluations * len(folds) + 1,
                curve=(
                    np.cumsum(fit * len(folds)),
                    np.fmax.accumulate(np.nan_to_num(scores, nan=-np.inf)),
                ),
                **common,
            )
        )
    try:
        import optuna  # noqa: F401
    except ImportError:
        say("Optuna is not installed: its study is skipped.")
        return runs
    method = f"Optuna TPE ({N_CANDIDATES} trials)"
    say(f"running {method} ...")
    start = time.perf_counter()
    best, trials = _optuna_search(
        pipe, key, X_train, y_train, folds, scoring, N_CANDIDATES, random_state
    )
    model = pipe.set_params(**best).fit(X_train, y_train)
    seconds = time.perf_counter() - start
    durations, means, stds = map(np.asarray, zip(*trials, strict=True))
    runs.append(
        dict(
            method=method,
            seconds=seconds,
            cv_score=float(means.max()),
            cv_std=float(stds[np.argmax(means)]),
            test_score=float(scorer(model, X_test, y_test)),
            chosen=_chosen(best, key),
            n_evaluations=N_CANDIDATES,
            n_hypergradients=0,
            n_fits=N_CANDIDATES * len(folds) + 1,
            curve=(np.cumsum(durations), np.fmax.accumulate(means)),
            **common,
        )
    )
    return runs


def format_table(runs, scoring_name):
    """The comparison as aligned text lines.

    The scorer is named once above the table, so that the columns stay
    narrow; every column is as wide as its widest cell.
    """
    n_folds = (runs[0]["n_fits"] - 1) // max(runs[0]["n_evaluations"], 1)
    header = [
        "method", runs[0]["param"], "time (s)", "best CV", "CV std",
        "held-out", "fits",
    ]  # fmt: skip
    rows = []
    for run in runs:
        fits = f"{run['n_fits']}"
        if run["n_hypergradients"]:
            fits += f" ({run['n_hypergradients']} with hypergradient)"
        rows.append(
            [
                run["method"],
                run["chosen"],
                f"{run['seconds']:.2f}",
                f"{run['cv_score']:.6g}",
                f"{run['cv_std']:.3g}",
                f"{run['test_score']:.6g}",
                fits,
            ]
        )
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]

    def line(cells):
        # Text on the left; numbers right-aligned; the fits column last,
        # left-aligned so that its note trails.
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        return "  ".join(out + [cells[-1]]).rstrip()

    lines = [
        f"features: {runs[0]['preprocessing']} (fitted in every fold)",
        f"scoring: {scoring_name} (greater is better); CV std: standard "
        "deviation of the chosen point's fold scores",
        f"fits: fold fits, {n_folds} per evaluation of all the folds, plus the "
        "final refit",
        line(header),
    ]
    lines.append("-" * len(lines[-1]))
    for row in rows:
        lines.append(line(row))
    return lines


def plot_curves(runs, path, scoring_name):
    """Save the best CV score so far against cumulative fitting time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = curves_figure(runs, scoring_name)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_figure(runs, scoring_name):
    """The figure of :func:`plot_curves` (matplotlib's current backend)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
    for run in runs:
        times, best = run["curve"]
        ax.step(times, best, where="post", label=run["method"], marker=".")
    ax.set_xscale("log")
    # Plain seconds (0.01, 0.02, 0.05, 0.1) rather than powers of ten.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("cumulative fitting time (s)")
    ax.set_ylabel(f"best CV {scoring_name} so far")
    ax.legend()
    return fig
