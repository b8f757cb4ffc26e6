"""``cv_results_`` in GridSearchCV's shape, and scoring of computed predictions.

One builder serves the estimators and :class:`~skbilevel.HypergradientSearchCV`.
Scores are computed from decision values the search already has (validation
predictions of every fold at every evaluation): scikit-learn's scorers see a
stand-in estimator whose ``predict`` (``predict_proba``, ``decision_function``)
reads its input as those decision values, so any scorer applies unchanged.
"""

import numpy as np
from scipy.special import log_softmax
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

__all__ = [
    "ClassifierScoresAsInput",
    "RegressorPredictionsAsInput",
    "build_cv_results",
    "log_probabilities",
    "labels_from_scores",
    "rank_scores",
]


def rank_scores(mean):
    """GridSearchCV's ranks: 1 is best, ties share the best rank, NaN ranks last."""
    mean = np.asarray(mean, dtype=float)
    if np.isnan(mean).all():
        return np.ones(len(mean), dtype=np.int32)
    filled = np.where(np.isnan(mean), np.nanmin(mean) - 1.0, mean)
    return rankdata(-filled, method="min").astype(np.int32)


def build_cv_results(params, test_scores, *, train_scores=None, times=None, extra=()):
    """Assemble a GridSearchCV-shaped ``cv_results_`` dict.

    Parameters
    ----------
    params : list of dict
        Parameters of every row.
    test_scores : dict of str to ndarray of shape (n_rows, n_splits)
        Validation score of every row on every split, per metric; a metric
        named ``"score"`` gives GridSearchCV's single-metric keys.
    train_scores : dict, default=None
        Same for the training parts (``return_train_score``).
    times : dict, default=None
        ``{"fit_time": (n_rows, n_splits), "score_time": ...}`` arrays; their
        mean and standard deviation over the splits are reported.
    extra : iterable of (str, ndarray)
        More columns (``iter``, ``time``, ``hypergradient_norm``).

    Returns
    -------
    cv_results : dict
    """
    n_rows = len(params)
    results = {}
    for name, values in (times or {}).items():
        values = np.asarray(values, dtype=float).reshape(n_rows, -1)
        results[f"mean_{name}"] = values.mean(axis=1)
        results[f"std_{name}"] = values.std(axis=1)
    for name in sorted({key for p in params for key in p}):
        column = np.ma.MaskedArray(np.empty(n_rows, dtype=object), mask=True)
        for i, p in enumerate(params):
            if name in p:
                column[i] = p[name]
        results[f"param_{name}"] = column
    results["params"] = [dict(p) for p in params]
    for side, scores in (("test", test_scores), ("train", train_scores or {})):
        for metric, values in scores.items():
            values = np.asarray(values, dtype=float).reshape(n_rows, -1)
            for k in range(values.shape[1]):
                results[f"split{k}_{side}_{metric}"] = values[:, k]
            mean = values.mean(axis=1)
            results[f"mean_{side}_{metric}"] = mean
            results[f"std_{side}_{metric}"] = values.std(axis=1)
            if side == "test":
                results[f"rank_test_{metric}"] = rank_scores(mean)
    results.update(extra)
    return results


def log_probabilities(scores):
    """Log class probabilities from decision values (sigmoid or softmax).

    Parameters
    ----------
    scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        One column (or a 1-D array) for binary problems.

    Returns
    -------
    log_proba : ndarray of shape (n_samples, n_classes)
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1 or scores.shape[1] == 1:
        scores = scores.reshape(-1)
        scores = np.column_stack([np.zeros_like(scores), scores])
    return log_softmax(scores, axis=1)


class RegressorPredictionsAsInput(RegressorMixin, BaseEstimator):
    """Stand-in regressor whose ``predict`` returns its input (for scorers);
    one column becomes a 1-D array when ``single_output`` (1-D ``y``)."""

    def __init__(self, single_output=True):
        self.single_output = single_output

    def predict(self, X):
        X = np.asarray(X)
        return X[:, 0] if self.single_output and X.ndim == 2 else X


class ClassifierScoresAsInput(ClassifierMixin, BaseEstimator):
    """Stand-in classifier whose input is its decision values (for scorers)."""

    def __init__(self, classes=None):
        self.classes = classes

    @property
    def classes_(self):
        return self.classes

    def decision_function(self, X):
        X = np.asarray(X)
        return X[:, 0] if X.ndim == 2 and X.shape[1] == 1 else X

    def predict_proba(self, X):
        return np.exp(log_probabilities(X))

    def predict(self, X):
        return labels_from_scores(self.decision_function(X), self.classes_)


def labels_from_scores(scores, classes):
    """Predicted labels from decision values (1-D: binary, sign decides)."""
    index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
    return classes[index]
