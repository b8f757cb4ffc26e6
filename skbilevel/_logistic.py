"""BilevelLogisticCV: logistic regression with L2 strengths tuned by hypergradient."""

import time
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    validate_data,
)

from ._cv import FoldRows, FoldsObjective
from ._estimator import FIT_FRAMES, BilevelSearchMixin, with_callbacks
from ._kernels import as_index_c
from ._problems import LogisticProblem
from ._problems._logistic import uses_float32_gram
from ._stochastic import LogLossFit
from ._validation import (
    as_float64_data,
    check_bounds,
    check_penalty,
    check_sample_weight,
)

__all__ = ["BilevelLogisticCV"]


class BilevelLogisticCV(BilevelSearchMixin, ClassifierMixin, BaseEstimator):
    """Logistic regression with L2 strengths tuned by hypergradient descent.

    The validation log-loss, averaged over cross-validation folds, is
    minimized over the inverse regularization strengths ``C`` (scikit-learn's
    :class:`~sklearn.linear_model.LogisticRegression` scale: the training
    objective is ``sum_i sw_i logloss_i + 0.5 * sum_j w_j^2 / C_{g(j)}``) by
    differentiating it through every fold's training problem. Binary targets
    use a sigmoid, more classes a softmax (multinomial). The inner problems are
    solved by Newton's method (Newton-CG for many coefficients), warm-started
    across outer iterations, and the model is refit on all the data at the
    chosen ``C``.

    Parameters
    ----------
    penalty : {"scalar", "per_feature", "per_class"} or array-like of shape \
            (n_features,), default="scalar"
        How strengths are shared: one for all coefficients, one per feature
        (shared by the classes), one per class (multinomial; binary problems
        have one coefficient vector, so it equals "scalar"), or one per group
        of features given by an array of group ids.
    C_init : float or array-like, default=None
        Starting value(s). None scans the whole box first.
    C_bounds : (float, float), default=None
        Box of admissible ``C``. None follows the scale of the data: with
        ``ss_j`` the weighted sum of squares of centered column ``j`` and
        ``q = 0.25`` (the largest curvature of the log-loss), ``1 / C`` ranges
        over ``(max(1e-6 q min_j ss_j, 1e-12 q max_j ss_j), 1e4 q max_j ss_j)``.
    fit_intercept : bool, default=True
        Whether to fit intercepts (never penalized).
    cv : int, cross-validation generator or iterable, default=5
        As in :class:`~sklearn.model_selection.GridSearchCV`; an int means
        :class:`~sklearn.model_selection.StratifiedKFold`. ``groups`` passed
        to :meth:`fit` reach the splitter.
    scoring : str or callable, default=None
        What ``cv_results_``, ``best_score_`` and :meth:`score` report (greater
        is better). None reports the negative log-loss in ``cv_results_`` and
        accuracy in :meth:`score`. The minimized criterion is always the
        validation log-loss.
    class_weight : dict or "balanced", default=None
        Weights of the classes, multiplied into ``sample_weight`` for training
        and validation losses alike.
    hypergradient : {"auto", "direct", "cg", "fixed_point", "neumann", "itd"}, \
            default="auto"
        How the hypergradient is computed (see
        :class:`~skbilevel.BilevelRidgeCV`). "auto" forms and factorizes the
        Hessian (Newton; its factorization also solves the adjoint exactly)
        when it has at most 1500 rows ((n_features + 1) x n_outputs), else
        uses Jacobi-preconditioned conjugate gradients (Newton-CG).
    adjoint_max_iter : int, default=200
        Iteration cap of the iterative adjoint solvers, number of terms for
        "neumann", of unrolled steps for "itd".
    max_iter : int, default=100
        Maximum number of outer iterations.
    tol : float, default=1e-4
        Outer stopping tolerance (relative hypergradient in log-space).
    n_jobs : int, default=None
        Number of threads over folds.
    verbose : int, default=0
        Print one line per hypergradient evaluation when > 0.
    warm_start : bool, default=False
        Start from the previous ``C_`` when refitting.
    solver : {"auto", "deterministic", "stochastic"}, default="auto"
        "deterministic" solves every fold's training problem (Newton) and
        adjoint exactly enough for the outer tolerance. "stochastic" uses
        mini-batches for both (stochastic implicit differentiation, see the
        user guide) and ``max_iter`` projected stochastic outer steps, then
        refits deterministically (Newton-CG) at the average of the second
        half of the outer iterates. "auto" is "stochastic" from 500,000
        samples on (with ``hypergradient="auto"``), else "deterministic".
    batch_size : int or "auto", default="auto"
        Mini-batch size of the stochastic solver ("auto": 1024).
    random_state : int, RandomState instance or None, default=None
        Seeds the stochastic solver's mini-batches (the same seed gives the
        same result, whatever ``n_jobs``).

    Attributes
    ----------
    C_ : float or ndarray
        Chosen inverse strength(s): a float for ``penalty="scalar"``,
        otherwise one per feature, class or group (``penalty_groups_`` order).
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    best_score_ : float
        Cross-validated score at ``C_`` (see ``scoring``).
    best_index_ : int
        Row of ``cv_results_`` at ``C_``.
    n_iter_ : int
        Number of outer iterations (scan excluded).
    n_splits_ : int
    cv_results_ : dict of ndarray
        One row per evaluated point (see :class:`~skbilevel.BilevelRidgeCV`),
        with ``param_C``.
    penalty_groups_ : ndarray or None
    hypergradient_ : str
        The method used ("sid" in the stochastic mode).
    solver_ : str
        The solver used ("deterministic" or "stochastic").
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)

    See Also
    --------
    sklearn.linear_model.LogisticRegressionCV : Logistic regression over a grid of C.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbilevel import BilevelLogisticCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), BilevelLogisticCV()).fit(X, y)
    >>> print(f"C={clf[-1].C_:.2g}, CV log-loss={-clf[-1].best_score_:.3f}")
    C=0.63, CV log-loss=0.078
    """

    _param_name = "C"
    _param_sign = -1.0  # theta = log(1 / C), the penalty weight

    def __init__(
        self,
        *,
        penalty="scalar",
        C_init=None,
        C_bounds=None,
        fit_intercept=True,
        cv=5,
        scoring=None,
        class_weight=None,
        hypergradient="auto",
        adjoint_max_iter=200,
        max_iter=100,
        tol=1e-4,
        n_jobs=None,
        verbose=0,
        warm_start=False,
        solver="auto",
        batch_size="auto",
        random_state=None,
    ):
        self.penalty = penalty
        self.C_init = C_init
        self.C_bounds = C_bounds
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
        self.class_weight = class_weight
        self.hypergradient = hypergradient
        self.adjoint_max_iter = adjoint_max_iter
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.warm_start = warm_start
        self.solver = solver
        self.batch_size = batch_size
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------- fit
    def _validate_input(self, X, y, sample_weight):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32],
        )
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                "BilevelLogisticCV needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]!r}."
            )
        targets = as_index_c(encoder.transform(y))
        class_weights = None
        if self.class_weight is not None:
            class_weights = compute_class_weight(
                self.class_weight, classes=np.arange(len(self.classes_)), y=targets
            )[targets]
        sw = check_sample_weight(sample_weight, X, class_weights)
        # Dense X meets only BLAS and the row-gathering kernels: a read-only
        # memory map is used in place.
        return as_float64_data(X, writable=False), y, targets, sw, X.dtype

    def _log_bounds(self, X, sw):
        if self.C_bounds is not None:
            low, high = check_bounds(self.C_bounds, "C_bounds")
            return -high, -low
        return self._data_scaled_box(X, sw, scale=0.25, low=1e-6, high=1e4, floor=1e-12)

    @with_callbacks
    def fit(self, X, y, sample_weight=None, groups=None):
        """Tune ``C`` by hypergradient descent, then refit on all the data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (any type).
        sample_weight : array-like of shape (n_samples,), default=None
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : object
        """
        start_time = time.perf_counter()
        method = self._check_common_params()
        if self.C_bounds is not None:
            check_bounds(self.C_bounds, "C_bounds")
        X, y, targets, sw, dtype = self._validate_input(X, y, sample_weight)
        n_features = X.shape[1]
        n_classes = len(self.classes_)
        n_out = 1 if n_classes == 2 else n_classes
        group_idx, n_hyper, self.penalty_groups_ = self._penalty_layout(
            n_features, n_out
        )
        lo, hi = self._log_bounds(X, sw)
        folds = self._make_folds(X, y, groups, sw, classifier=True)
        self.solver_ = self._check_solver(X.shape[0], method)
        if self.solver_ == "stochastic":
            objective, result = self._stochastic_search(
                X,
                y,
                LogLossFit(targets, sw, n_out),
                folds,
                group_idx[:n_features],
                n_hyper,
                (lo, hi),
                start_time,
            )
            split_scores = self._stochastic_scores(
                objective, folds, X, y, sw, sample_weight
            )
            theta = self._finish_search(objective, result, split_scores, False)
            w0 = np.mean(
                [
                    np.vstack([W, b]) if self.fit_intercept else W
                    for W, b in (f.coefficients() for f in objective.folds)
                ],
                axis=0,
            )
            self._refit(X, targets, sw, n_out, group_idx, n_hyper, theta, w0, dtype)
            self._callback_end(X, y)
            return self
        rows = FoldRows(X.shape[0], folds)  # views of one copy for K-fold
        float32 = method in ("auto", "direct") and uses_float32_gram(
            n_features + self.fit_intercept, n_out, sp.issparse(X)
        )
        X32_parts = (
            rows.split(X, np.float32) if float32 else [(None, None)] * len(folds)
        )
        problems = [
            self._fold_problem(
                (X_train, t_train, sw_train),
                (X_test, t_test, sw_test),
                n_out,
                group_idx,
                n_hyper,
                X32=X32,
            )
            for (X_train, X_test), (t_train, t_test), (sw_train, sw_test), (
                X32,
                _,
            ) in zip(
                rows.split(X),
                rows.split(targets),
                rows.split(sw),
                X32_parts,
                strict=True,
            )
        ]
        if method == "auto":
            method = "direct" if problems[0].can_factorize else "cg"
        self.hypergradient_ = method
        objective = FoldsObjective(
            problems,
            method,
            self.adjoint_max_iter,
            self.n_jobs,
            self.verbose,
            value_tol=1e-3,  # Newton's decrement bounds the loss error
        )
        self._begin_search(objective, start_time, X, y)

        theta0 = self._initial_theta(n_hyper, lo, hi)
        result = self._run_outer(objective, theta0, n_hyper, lo, hi)
        split_scores = self._split_scores(objective, folds, y, sw, sample_weight)
        theta = self._finish_search(objective, result, split_scores, False)

        # Refit on all the data, warm-started from the folds' mean solution.
        w0 = np.mean(objective.solutions[self.best_index_], axis=0)
        self._refit(X, targets, sw, n_out, group_idx, n_hyper, theta, w0, dtype)
        self._callback_end(X, y)
        return self

    def _refit(self, X, targets, sw, n_out, group_idx, n_hyper, theta, w0, dtype):
        """Deterministic fit on all the data at ``theta``, warm-started at ``w0``."""
        full = LogisticProblem(
            X, targets, sw, n_out, group_idx, n_hyper, self.fit_intercept
        )
        method = "direct" if full.can_factorize else "cg"
        # No adjoint follows: chord steps may finish, no Hessian at the end.
        W, converged = full.solve(theta, w0, tol=1e-8, method=method, for_adjoint=False)
        if not converged:
            warnings.warn(
                "The final refit did not reach its tolerance; the last Newton "
                "iterate is used.",
                ConvergenceWarning,
                stacklevel=3 + FIT_FRAMES,
            )
        n_features = X.shape[1]
        self.coef_ = np.ascontiguousarray(W[:n_features].T).astype(dtype, copy=False)
        self.intercept_ = (
            W[n_features].copy() if self.fit_intercept else np.zeros(n_out)
        ).astype(dtype, copy=False)

    def _penalty_layout(self, n_features, n_out):
        """Hyperparameter group of every coefficient (-1: intercept row)."""
        coef_groups, n_hyper, labels = check_penalty(
            self.penalty, n_features, n_out, "per_class"
        )
        group_idx = coef_groups
        if self.fit_intercept:
            group_idx = np.vstack([coef_groups, np.full((1, n_out), -1, np.int64)])
        return group_idx, n_hyper, labels

    def _fold_problem(self, train, test, n_out, group_idx, n_hyper, X32=None):
        """Inner problem of one split from ``(X, targets, sw)`` of each part."""
        return LogisticProblem(
            *train,
            n_out,
            group_idx,
            n_hyper,
            self.fit_intercept,
            X_val=test[0],
            targets_val=test[1],
            sw_val=test[2],
            X32=X32,
        )

    def _split_scores(self, objective, folds, y, sw, sample_weight):
        """Score of every evaluated point on every split (greater is better)."""
        rows = objective.rows
        if self.scoring is None:
            return np.array([-r[2] for r in rows])
        scorer = check_scoring(self, scoring=self.scoring)
        out = np.empty((len(rows), len(folds)))
        for i in range(len(rows)):
            for k, (problem, W) in enumerate(
                zip(objective.problems, objective.solutions[i], strict=True)
            ):
                stand_in = self._fold_model(W)
                test = folds[k][1]
                kwargs = {} if sample_weight is None else {"sample_weight": sw[test]}
                out[i, k] = scorer(stand_in, problem.X_val, y[test], **kwargs)
        return out

    def _stochastic_scores(self, objective, folds, X, y, sw, sample_weight):
        """Scores of the stochastic rows: the noisy estimates; with ``scoring``,
        NaN except for the final row, scored on each split's validation rows."""
        rows = objective.rows
        if self.scoring is None:
            return np.array([-r[2] for r in rows])
        out = np.full((len(rows), len(folds)), np.nan)
        scorer = check_scoring(self, scoring=self.scoring)
        for k, (fold, (_, test)) in enumerate(zip(objective.folds, folds, strict=True)):
            W, b = fold.coefficients()
            stand_in = self._fold_model(np.vstack([W, b]) if self.fit_intercept else W)
            kwargs = {} if sample_weight is None else {"sample_weight": sw[test]}
            out[-1, k] = scorer(stand_in, X[test], y[test], **kwargs)
        return out

    def _fold_model(self, W):
        """A LogisticRegression carrying one fold's coefficients, for scorers."""
        n_features = self.n_features_in_
        model = LogisticRegression()
        model.classes_ = self.classes_
        model.coef_ = np.ascontiguousarray(W[:n_features].T)
        model.intercept_ = (
            W[n_features].copy() if self.fit_intercept else np.zeros(W.shape[1])
        )
        model.n_features_in_ = n_features
        return model

    # ------------------------------------------------------------- prediction
    def decision_function(self, X):
        """Signed scores: shape (n_samples,) when binary, else (n_samples, n_classes).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray
        """
        scores = self._linear_scores(X)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]

    def predict_log_proba(self, X):
        """Log of the class probabilities, shape (n_samples, n_classes).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return log_softmax(scores, axis=1)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = expit(scores)
            return np.column_stack([1.0 - positive, positive])
        return np.exp(log_softmax(scores, axis=1))

    def score(self, X, y, sample_weight=None):
        """Accuracy, or ``scoring`` when it is set.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if self.scoring is None:
            return super().score(X, y, sample_weight=sample_weight)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return check_scoring(self, scoring=self.scoring)(self, X, y, **kwargs)
