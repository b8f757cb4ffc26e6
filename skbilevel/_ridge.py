"""BilevelRidgeCV: ridge regression whose L2 strengths are tuned by hypergradient."""

import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.utils.validation import _num_samples, validate_data

from ._cv import FoldRows, FoldsObjective
from ._estimator import FIT_FRAMES, BilevelSearchMixin, with_callbacks
from ._kernels import as_float_c
from ._problems import RidgeProblem
from ._problems._ridge import (
    DENSE_MAX_ENTRIES,
    GRAM_MAX_DIM,
    can_factorize,
    spectral_holdout_folds,
    spectral_loo,
)
from ._problems._ridge_cv import (
    DirectLOOObjective,
    SpectralHoldoutObjective,
    SpectralLOOObjective,
)
from ._stochastic import SquaredFit
from ._validation import (
    as_float64_data,
    check_bounds,
    check_penalty,
    check_sample_weight,
)

__all__ = ["BilevelRidgeCV"]


class _PredictionsAsInput(RegressorMixin, BaseEstimator):
    """Stand-in estimator whose ``predict`` returns its input.

    Lets any scikit-learn scorer score predictions we computed ourselves
    (validation predictions in eigen-coordinates, leave-one-out predictions).
    """

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return X


class BilevelRidgeCV(
    BilevelSearchMixin, MultiOutputMixin, RegressorMixin, BaseEstimator
):
    """Ridge regression with L2 strengths tuned by hypergradient descent.

    The cross-validated mean squared error is minimized over the
    regularization strengths ``alpha`` by differentiating it through the
    ridge solution of every fold (implicit differentiation). One strength
    (``penalty="scalar"``) is found with a coarse scan followed by a
    superlinear 1-D search; many strengths (one per feature, per target or
    per group of features) by the projected hypergradient method started at
    the best scalar. The intercept is never penalized. The model is refit on
    all the data at the chosen strengths.

    The objective is scikit-learn's :class:`~sklearn.linear_model.Ridge`
    objective ``||y - Xw - b||^2_sw + sum_j alpha_{g(j)} w_j^2``.

    Parameters
    ----------
    penalty : {"scalar", "per_feature", "per_target"} or array-like of shape \
            (n_features,), default="scalar"
        How strengths are shared: one for all coefficients, one per feature,
        one per target (multi-output ``y``), or one per group of features
        given by an array of group ids.
    alpha_init : float or array-like, default=None
        Starting strength(s). None scans the whole box first, which guards
        against poor local minima of the (non-convex) validation loss.
    alpha_bounds : (float, float), default=None
        Box of admissible strengths. None follows the scale of the data:
        with ``ss_j`` the weighted sum of squares of centered column ``j``,
        the box is ``(max(1e-6 * min_j ss_j, 1e-14 * max_j ss_j),
        1e6 * max_j ss_j)``, so that every feature can be left nearly
        unpenalized or shrunk to zero whatever its units.
    fit_intercept : bool, default=True
        Whether to fit an (unpenalized) intercept.
    cv : int, cross-validation generator, iterable or None, default=5
        None uses exact leave-one-out with its closed-form hypergradient.
        An int is the number of folds of :class:`~sklearn.model_selection.KFold`.
        A splitter or an iterable of ``(train, test)`` index arrays is used
        as given; ``groups`` passed to :meth:`fit` reach the splitter.
    scoring : str or callable, default=None
        What ``cv_results_`` and ``best_score_`` report (greater is better).
        None reports the negative mean squared error. The criterion that is
        minimized is always the validation mean squared error.
    hypergradient : {"auto", "direct", "cg", "fixed_point", "neumann", "itd"}, \
            default="auto"
        How the hypergradient is computed. "direct" factorizes the Hessian
        (with one eigendecomposition per fold reused across all iterations
        when the penalty is shared by all features of a target); "cg",
        "fixed_point" and "neumann" solve the adjoint system iteratively
        (conjugate gradient, fixed-point iteration, truncated Neumann
        series); "itd" differentiates through unrolled gradient-descent
        steps. "auto" picks "direct" unless the problem is too large to
        factorize, then "cg". With ``cv=None`` only "auto"/"direct" apply.
    adjoint_max_iter : int, default=200
        Iteration cap of the "cg" and "fixed_point" adjoint solvers; number
        of series terms for "neumann" and of unrolled steps for "itd".
    max_iter : int, default=100
        Maximum number of outer iterations (after the initial scan).
    tol : float, default=1e-4
        Outer stopping tolerance on the hypergradient in log-space,
        relative to the validation loss.
    n_jobs : int, default=None
        Number of threads over folds (joblib). None means 1.
    verbose : int, default=0
        Print one line per hypergradient evaluation when > 0.
    warm_start : bool, default=False
        Start from the previous ``alpha_`` when refitting.
    solver : {"auto", "deterministic", "stochastic"}, default="auto"
        "stochastic" replaces every fold's solves by mini-batch estimates
        (stochastic implicit differentiation, see the user guide), takes
        ``max_iter`` projected stochastic outer steps and refits
        deterministically at the average of the second half of them. "auto"
        is "stochastic" from 500,000 samples on (with
        ``hypergradient="auto"`` and ``cv`` not None), else "deterministic".
        With a penalty shared by all features the deterministic path costs
        one Gram matrix per fold and is usually faster whatever the size.
    batch_size : int or "auto", default="auto"
        Mini-batch size of the stochastic solver ("auto": 1024).
    random_state : int, RandomState instance or None, default=None
        Seeds the stochastic solver's mini-batches (the same seed gives the
        same result, whatever ``n_jobs``).

    Attributes
    ----------
    alpha_ : float or ndarray
        Chosen strength(s): a float for ``penalty="scalar"``, otherwise an
        array with one entry per feature, per target or per group (in the
        order of ``penalty_groups_``).
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    best_score_ : float
        Cross-validated score of the chosen strength(s) (see ``scoring``).
    best_index_ : int
        Row of ``cv_results_`` of the chosen strength(s).
    n_iter_ : int
        Number of outer iterations (scan excluded).
    n_splits_ : int
        Number of cross-validation splits (1 for leave-one-out).
    cv_results_ : dict of ndarray
        One row per evaluated point (the initial scan included), with
        GridSearchCV's keys (``params``, ``param_alpha``,
        ``split{k}_test_score``, ``mean_test_score``, ``std_test_score``,
        ``rank_test_score``) and ``iter``, ``time`` (seconds since the start
        of fit) and ``hypergradient_norm`` (NaN at scan points). Leave-one-out
        reports no ``split{k}`` columns and a NaN ``std_test_score``.
    penalty_groups_ : ndarray or None
        Distinct group ids when ``penalty`` is an array.
    hypergradient_ : str
        The method that was used ("sid" in the stochastic mode).
    solver_ : str
        The solver that was used ("deterministic" or "stochastic").
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when X has feature names that are all strings.

    See Also
    --------
    sklearn.linear_model.RidgeCV : Ridge with a grid of strengths.

    Notes
    -----
    Computations run in float64; ``coef_`` has the dtype of ``X``.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelRidgeCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = BilevelRidgeCV(cv=5).fit(X, y)
    >>> print(f"alpha={reg.alpha_:.2g}, CV MSE={-reg.best_score_:.0f}")
    alpha=0.00049, CV MSE=2993
    >>> BilevelRidgeCV(penalty="per_feature").fit(X, y).alpha_.shape
    (10,)
    """

    def __init__(
        self,
        *,
        penalty="scalar",
        alpha_init=None,
        alpha_bounds=None,
        fit_intercept=True,
        cv=5,
        scoring=None,
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
        self.alpha_init = alpha_init
        self.alpha_bounds = alpha_bounds
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
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
        tags.target_tags.multi_output = True
        return tags

    # ------------------------------------------------------------- validation
    def _check_params(self):
        method = self._check_common_params()
        if self.alpha_bounds is not None:
            check_bounds(self.alpha_bounds, "alpha_bounds")
        if self.cv is None and method not in ("auto", "direct"):
            raise ValueError(
                "cv=None uses the closed-form leave-one-out hypergradient: "
                f"hypergradient must be 'auto' or 'direct', got {method!r}."
            )
        return method

    def _validate_input(self, X, y, sample_weight, writable=True):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32],
            multi_output=True,
            y_numeric=True,
        )
        dtype = X.dtype
        X = as_float64_data(X, writable=writable)
        y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        Y = as_float_c(y.reshape(-1, 1) if y.ndim == 1 else y)
        return X, y, Y, check_sample_weight(sample_weight, X), dtype

    def _log_bounds(self, X, sw):
        if self.alpha_bounds is not None:
            return check_bounds(self.alpha_bounds, "alpha_bounds")
        return self._data_scaled_box(X, sw, scale=1.0, low=1e-6, high=1e6, floor=1e-14)

    # -------------------------------------------------------------------- fit
    @with_callbacks
    def fit(self, X, y, sample_weight=None, groups=None):
        """Tune the strengths by hypergradient descent, then refit on all data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights, used in training and validation
            losses alike.
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        start_time = time.perf_counter()
        method = self._check_params()
        self.solver_ = self._check_solver(_num_samples(X), method)
        if self.cv is None and self.solver_ == "stochastic":
            if self.solver == "stochastic":
                raise ValueError(
                    "cv=None is exact leave-one-out (deterministic); the "
                    "stochastic solver needs hold-out splits (cv=5, ...)."
                )
            self.solver_ = "deterministic"
        # The stochastic mode reads dense X in place (BLAS and row gathers
        # only), a read-only memory map included; the deterministic kernels
        # need a writable float64 array.
        X, y, Y, sw, dtype = self._validate_input(
            X, y, sample_weight, writable=self.solver_ == "deterministic"
        )
        n_samples, n_features = X.shape
        n_targets = Y.shape[1]
        group_idx, n_hyper, labels = check_penalty(
            self.penalty, n_features, n_targets, "per_target"
        )
        shared = bool(np.all(group_idx == group_idx[:1, :]))  # same in every row
        lo, hi = self._log_bounds(X, sw)
        self.penalty_groups_ = labels

        if self.solver_ == "stochastic":
            folds = self._make_folds(X, y, groups, sw, classifier=False)
            objective, result = self._stochastic_search(
                X, y, SquaredFit(Y, sw), folds, group_idx, n_hyper, (lo, hi), start_time
            )
            split_scores = self._stochastic_scores(objective, folds, X, Y, sw)
            theta = self._finish_search(objective, result, split_scores, False)
            self._precomputed = {}
            self._refit(X, Y, sw, theta, group_idx, n_hyper, dtype, y.ndim)
            self._callback_end(X, y)
            return self
        if self.cv is None:
            objective, method = self._loo_objective(
                X, Y, sw, group_idx, n_hyper, shared
            )
            folds = None
        else:
            folds = self._make_folds(X, y, groups, sw, classifier=False)
            objective, method = self._holdout_objective(
                X, Y, sw, folds, group_idx, n_hyper, shared, method
            )
        self.hypergradient_ = method
        self._begin_search(objective, start_time, X, y)

        theta0 = self._initial_theta(n_hyper, lo, hi)
        result = self._run_outer(objective, theta0, n_hyper, lo, hi)
        split_scores = self._split_scores(
            objective, folds, Y, sw, sample_weight_given=not np.all(sw == 1.0)
        )
        theta = self._finish_search(objective, result, split_scores, folds is None)
        self._refit(X, Y, sw, theta, group_idx, n_hyper, dtype, y.ndim)
        self._callback_end(X, y)
        return self

    def _loo_objective(self, X, Y, sw, group_idx, n_hyper, shared):
        n_samples, n_features = X.shape
        if n_samples < 2:
            raise ValueError(
                f"Leave-one-out (cv=None) needs at least 2 samples, got {n_samples} "
                "sample."
            )
        if min(n_samples, n_features) > GRAM_MAX_DIM:
            raise ValueError(
                f"Leave-one-out (cv=None) factorizes a {GRAM_MAX_DIM}-sized matrix at "
                f"most; with {n_samples} samples and {n_features} features use "
                "cv=5 instead."
            )
        if shared:
            mode = "primal" if n_features <= n_samples else "dual"
            P, Z, s2, y_tilde, q2, self._precomputed = spectral_loo(
                X, Y, sw, self.fit_intercept, mode
            )
            objective = SpectralLOOObjective(
                P, Z, s2, y_tilde, q2, sw, group_idx[0], n_hyper, self.verbose
            )
        else:
            self._precomputed = {}
            if sp.issparse(X):
                if n_samples * n_features > DENSE_MAX_ENTRIES:
                    raise ValueError(
                        "Leave-one-out with a per-feature or grouped penalty needs a "
                        "dense copy of X, which is too large here; use cv=5."
                    )
                X = X.toarray()
            objective = DirectLOOObjective(
                X, Y, sw, self.fit_intercept, group_idx[:, 0], n_hyper, self.verbose
            )
        return objective, "direct"

    def _holdout_objective(self, X, Y, sw, folds, group_idx, n_hyper, shared, method):
        n_samples, n_features = X.shape
        n_train = min(len(tr) for tr, _ in folds)
        factorizable = can_factorize(n_train, n_features, sp.issparse(X))
        if method == "auto":
            method = "direct" if factorizable else "cg"
        if method == "direct" and not factorizable:
            raise ValueError(
                "hypergradient='direct' needs a factorization that is too large for "
                f"{n_train} training samples and {n_features} features; use 'cg'."
            )
        self._precomputed = {}
        if method == "direct" and shared and min(n_samples, n_features) <= GRAM_MAX_DIM:
            mode = "primal" if n_features <= n_samples else "dual"
            spectral, self._precomputed = spectral_holdout_folds(
                X, Y, sw, folds, self.fit_intercept, mode, self.n_jobs
            )
            objective = SpectralHoldoutObjective(
                spectral, group_idx[0], n_hyper, self.n_jobs, self.verbose
            )
            return objective, method
        rows = FoldRows(n_samples, folds)  # views of one copy for K-fold
        problems = [
            self._fold_problem(
                (X_train, Y_train, sw_train),
                (X_test, Y_test, sw_test),
                group_idx,
                n_hyper,
            )
            for (X_train, X_test), (Y_train, Y_test), (sw_train, sw_test) in zip(
                rows.split(X), rows.split(Y), rows.split(sw), strict=True
            )
        ]
        objective = FoldsObjective(
            problems, method, self.adjoint_max_iter, self.n_jobs, self.verbose
        )
        return objective, method

    def _fold_problem(self, train, test, group_idx, n_hyper):
        """Inner problem of one split from ``(X, Y, sw)`` of each of its parts."""
        return RidgeProblem(
            *train,
            group_idx,
            n_hyper,
            self.fit_intercept,
            X_val=test[0],
            Y_val=test[1],
            sw_val=test[2],
        )

    # ---------------------------------------------------------------- results
    def _split_scores(self, objective, folds, Y, sw, sample_weight_given):
        rows = objective.rows
        if self.scoring is None:
            return np.array([-r[2] for r in rows])
        scorer = check_scoring(self, scoring=self.scoring)
        passthrough = _PredictionsAsInput()
        single = Y.shape[1] == 1

        def score(pred, y_true, weights):
            if single:
                pred, y_true = pred[:, 0], y_true[:, 0]
            kwargs = {"sample_weight": weights} if sample_weight_given else {}
            return scorer(passthrough, pred, y_true, **kwargs)

        out = np.empty((len(rows), 1 if folds is None else len(folds)))
        for i, row in enumerate(rows):
            theta = row[0]
            if folds is None:
                root = np.sqrt(sw)
                resid = objective.loo_residuals(theta)
                loo = np.divide(
                    resid,
                    root[:, None],
                    out=np.zeros_like(resid),
                    where=root[:, None] > 0,
                )
                out[i, 0] = score(Y - loo, Y, sw)
            elif isinstance(objective, SpectralHoldoutObjective):
                pairs = zip(objective.folds, folds, strict=True)
                for k, (fold, (_, test)) in enumerate(pairs):
                    pred = fold.predict(np.exp(theta)[objective.target_group])
                    out[i, k] = score(pred, Y[test], sw[test])
            else:
                for k, (problem, w) in enumerate(
                    zip(objective.problems, objective.solutions[i], strict=True)
                ):
                    pred = np.asarray(problem.X_val @ w) + problem.intercept(w)
                    out[i, k] = score(pred, problem.Y_val, problem.sw_val)
        return out

    def _stochastic_scores(self, objective, folds, X, Y, sw):
        """Scores of the stochastic rows: the noisy estimates; with ``scoring``,
        NaN except for the final row, scored on each split's validation rows."""
        rows = objective.rows
        if self.scoring is None:
            return np.array([-r[2] for r in rows])
        scorer = check_scoring(self, scoring=self.scoring)
        passthrough = _PredictionsAsInput()
        out = np.full((len(rows), len(folds)), np.nan)
        weighted = not np.all(sw == 1.0)
        for k, (fold, (_, test)) in enumerate(zip(objective.folds, folds, strict=True)):
            W, intercept = fold.coefficients()
            pred = np.asarray(X[test] @ W) + intercept
            y_true = Y[test]
            if Y.shape[1] == 1:
                pred, y_true = pred[:, 0], y_true[:, 0]
            kwargs = {"sample_weight": sw[test]} if weighted else {}
            out[-1, k] = scorer(passthrough, pred, y_true, **kwargs)
        return out

    def _refit(self, X, Y, sw, theta, group_idx, n_hyper, dtype, y_ndim):
        problem = RidgeProblem(
            X, Y, sw, group_idx, n_hyper, self.fit_intercept, **self._precomputed
        )
        del self._precomputed
        if problem.can_factorize:
            w, converged = problem.solve(theta, method="direct")
        else:
            w, converged = problem.solve(
                theta, tol=1e-10, method="cg", max_iter=max(1000, 10 * X.shape[1])
            )
            if not converged:
                warnings.warn(
                    "The final refit's conjugate gradient did not reach its tolerance.",
                    ConvergenceWarning,
                    stacklevel=4 + FIT_FRAMES,
                )
        coef = w.T.astype(dtype, copy=False)
        intercept = problem.intercept(w)
        if y_ndim == 1:
            self.coef_, self.intercept_ = coef[0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef, intercept

    # ------------------------------------------------------------- prediction
    def predict(self, X):
        """Predict with the refit ridge model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        return self._linear_scores(X)
