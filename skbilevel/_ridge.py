"""BilevelRidgeCV: ridge regression whose L2 strengths are tuned by hypergradient.

The fit pipeline is :class:`~skbilevel._base.BaseBilevelCV`'s; this module
supplies the ridge hooks: target encoding, the fold problems, the closed
forms (spectral K-fold and exact leave-one-out), the stochastic data term
and the refit.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge

from ._base import BaseBilevelCV, Layout, Targets, common_constraints
from ._problems._ridge import (
    DENSE_MAX_ENTRIES,
    GRAM_MAX_DIM,
    RidgeProblem,
    SquaredFit,
    can_factorize,
)
from ._problems._ridge_spectral import (
    DirectLOOObjective,
    SpectralHoldoutObjective,
    SpectralLOOObjective,
    spectral_holdout_folds,
    spectral_loo,
)
from ._results import RegressorPredictionsAsInput
from ._validation import as_float_c, check_penalty, check_square_range, warn_user

__all__ = ["BilevelRidgeCV", "SquaredErrorRegressorHooks"]


class SquaredErrorRegressorHooks(MultiOutputMixin, RegressorMixin):
    """Hooks shared by the squared-error regressors (ridge, Lasso, elastic net).

    Numeric targets, one column per target; one strength per feature, target
    or group; scorers read the validation predictions; a fold's model is a
    fitted ``_fold_model_class`` (a scikit-learn linear model) holding its
    coefficients; ``predict`` gives the linear scores.
    """

    _fold_model_class = None

    def _data_term(self, targets, sw, info):
        return SquaredFit(targets, sw)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        return tags

    def _target_info(self, y, sample_weight=None):
        if not np.all(np.isfinite(np.asarray(y, dtype=np.float64))):
            raise ValueError("Input y contains NaN or infinity.")
        check_square_range(np.asarray(y, dtype=np.float64), "y")
        return Targets(n_out=1 if y.ndim == 1 else y.shape[1], ndim=y.ndim)

    def _encode(self, y, info):
        y = np.asarray(y, dtype=np.float64)
        return as_float_c(y.reshape(-1, 1) if y.ndim == 1 else y)

    def _layout(self, n_features, info):
        group_idx, n_hyper, labels = check_penalty(
            self.penalty, n_features, info.n_out, "per_target"
        )
        return Layout(group_idx, group_idx, n_hyper, labels)

    def _response_model(self, info):
        return RegressorPredictionsAsInput(single_output=info.ndim == 1)

    def _fold_estimator(self, coef, intercept, info):
        model = self._fold_model_class(fit_intercept=self.fit_intercept)
        coef, intercept = coef.T, np.asarray(intercept, dtype=float)
        if info.ndim == 1:
            coef, intercept = coef[0], float(intercept[0])
        model.coef_, model.intercept_ = coef, intercept
        model.n_features_in_ = coef.shape[-1]
        return model

    @staticmethod
    def _user_coefficients(w, intercept, info):
        """``(coef_, intercept_)`` in the shapes of the user's ``y``."""
        coef = w.T
        if info.ndim == 1:
            return coef[0], float(intercept[0])
        return coef, intercept

    def predict(self, X):
        """Predict with the refit model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        return self._linear_scores(X)


class BilevelRidgeCV(SquaredErrorRegressorHooks, BaseBilevelCV):
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
    penalty : {"scalar", "per_feature", "per_target", "per_column"} or \
            array-like of shape (n_features,), default="scalar"
        How strengths are shared: one for all coefficients, one per feature,
        one per target (multi-output ``y``), or one per group of features
        given by an array of group ids.
        ``"per_column"`` (in :class:`~skbilevel.HypergradientSearchCV` over a
        Pipeline) gives one strength to all the columns that the
        preprocessing makes from one input column (see
        :func:`~skbilevel.column_groups`, whose output is the array to give
        this estimator alone). Many strengths are guarded against
        overfitting the validation folds (``early_stopping``).
    alpha_init : float or array-like, default=None
        Starting strength(s). None scans the whole box first, which guards
        against poor local minima of the (non-convex) validation loss.
    alpha_bounds : (float, float) or (array-like, array-like), default=None
        Box of admissible strengths, shared or one ``(low, high)`` per
        hyperparameter (``low == high`` fixes one; different boxes skip the
        initial scan of a common value). None follows the scale of the data:
        with ``ss_j`` the weighted sum of squares of centered column ``j``,
        the box is ``(max(1e-6 * min_j ss_j, 1e-22 * max_j ss_j),
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
        minimized is always the validation mean squared error. A callable
        ``scoring(estimator, X, y)`` gets a fitted :class:`~sklearn.linear_model.Ridge`
        holding the fold's coefficients and the validation rows; the closed
        forms (spectral K-fold, leave-one-out) keep no coefficients and pass
        the validation predictions as ``X`` to a regressor whose ``predict``
        returns them.
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
        Maximum number of outer iterations after the initial scan, in all:
        the 1-D search's and, with many strengths, the projected method's.
    tol : float, default=1e-4
        Outer stopping tolerance on the hypergradient in log-space,
        relative to the validation loss.
    n_jobs : int, default=None
        Number of threads over folds (-1: all the cores, as in joblib),
        each given its share of the cores for BLAS. None means 1. Under
        ``joblib.parallel_config(backend="dask")`` the folds run on the dask
        workers instead, unless ``n_jobs=1`` (see the user guide).
    verbose : int, default=0
        1 prints one line per hypergradient evaluation, 2 per evaluation
        (scan points too); "eval N" is ``cv_results_["iter"]`` N.
    warm_start : bool, default=False
        Start from the previous ``alpha_`` when refitting.
    solver : {"auto", "deterministic", "stochastic"}, default="auto"
        "stochastic" replaces every fold's solves by mini-batch estimates
        (stochastic implicit differentiation, see the user guide), takes
        ``max_iter`` projected stochastic outer steps and refits
        deterministically at the average of the second half of them. "auto"
        weighs their costs as :class:`~skbilevel.BilevelLogisticCV` does:
        the deterministic path costs one Gram (or kernel) matrix per fold
        and, for strengths per feature or group, a factorization per
        evaluation, so it stays the choice unless the features number in
        the thousands on 100,000 samples or more.
    batch_size : int or "auto", default="auto"
        Mini-batch size of the stochastic solver ("auto": 1024).
    random_state : int, RandomState instance or None, default=None
        Seeds the stochastic solver's mini-batches (the same seed gives the
        same result, whatever ``n_jobs``).
    early_stopping : "auto" or bool, default="auto"
        Guard of many strengths against overfitting the validation folds.
        One sample in three (fixed; stratified by class for classifiers;
        whole groups with ``groups``) leaves every training set and every
        hypergradient. On the other samples the common strength is searched
        again, then the strengths follow the hypergradient until the
        held-out samples' loss has not improved by ``tol`` (relative) in 20
        iterations; the path's best point is kept only if it beats the
        common value on the held-out samples by more than two standard
        errors, then moved to the common value of the user's folds and
        scored on them (the last row of ``cv_results_``). "auto" guards
        strengths per feature and per group of features when it can: the
        deterministic solver, 100 samples or more but fewer than 1000 per
        strength (past that, the folds' optimism is negligible), K-fold or
        leave-one-out splits, one box for all strengths and a common start;
        strengths per
        target are few and left unguarded. True raises a ValueError where the
        guard cannot run. See the user guide (method, cost, measurements).

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
    strength_names_ : ndarray of str of shape (n_strengths,)
        What every strength applies to: the feature (``feature_names_in_``
        or ``x0, x1, ...``), the group id, the target, or ``"all"``.
    strengths_ : pandas.Series of shape (n_strengths,)
        ``alpha_`` indexed by ``strength_names_`` (a dict when pandas is not
        installed); see also :class:`~skbilevel.plotting.StrengthsDisplay`.
    held_out_path_ : dict or None
        The early-stopping guard's path: the strengths of every evaluation
        (key ``"alpha"``), their ``"held_out_loss"`` and ``"fit_loss"``
        (the hypergradient's folds), and the ``"chosen"`` index; None when
        the guard was off.
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
        early_stopping="auto",
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
        self.early_stopping = early_stopping

    # cv=None ("cv_object" includes it) is exact leave-one-out here.
    _parameter_constraints = common_constraints("alpha", "per_target")
    _exact_leave_one_out = True
    _fold_model_class = Ridge

    # ------------------------------------------------------------------ hooks
    def _deterministic_passes(self, n_samples, n_features, n_out, n_hyper):
        """Cost of the deterministic search in passes over the data (X @ W).

        Every fold forms its Gram or kernel matrix once (a matrix product,
        about 1/20 of a pass per column) and decomposes it; one strength per
        target is then searched in closed form. Strengths per feature or
        group factorize that matrix plus the penalty at each of about 50
        evaluations, without passes over the data.
        """
        rank = min(n_samples, n_features)
        scale = n_samples * n_features * n_out  # flops of half a pass
        per_fold = n_features / 20.0 + 5.0 * rank**3 / scale
        if n_hyper == 1 or (
            isinstance(self.penalty, str) and self.penalty == "per_target"
        ):
            return 5.0 * per_fold
        return 5.0 * per_fold + 50 * 5.0 * rank**3 / (6.0 * scale)

    def _can_factorize(self, splits, layout):
        return can_factorize(splits.min_train_size, splits.n_features, splits.sparse)

    def _closed_form_objective(self, splits, info, layout, method):
        if splits.leave_one_out:
            return self._loo_objective(*splits.whole[:3], layout)
        if splits.whole is None or method != "direct" or not layout.shared:
            return None
        X, Y, sw, folds = splits.whole
        if min(X.shape) > GRAM_MAX_DIM:
            return None
        mode = "primal" if X.shape[1] <= X.shape[0] else "dual"
        spectral, precomputed = spectral_holdout_folds(
            X, Y, sw, folds, self.fit_intercept, mode, self.n_jobs
        )
        objective = SpectralHoldoutObjective(
            spectral, layout.coef_groups[0], layout.n_hyper, self.n_jobs, self.verbose
        )
        objective.precomputed = precomputed
        return objective

    def _loo_objective(self, X, Y, sw, layout):
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
        if layout.shared:
            mode = "primal" if n_features <= n_samples else "dual"
            P, Z, s2, y_tilde, q2, precomputed = spectral_loo(
                X, Y, sw, self.fit_intercept, mode
            )
            objective = SpectralLOOObjective(
                P, Z, s2, y_tilde, q2, Y, sw, layout.coef_groups[0], layout.n_hyper,
                self.verbose,
            )  # fmt: skip
            objective.precomputed = precomputed
            return objective
        if sp.issparse(X):
            if n_samples * n_features > DENSE_MAX_ENTRIES:
                raise ValueError(
                    "Leave-one-out with a per-feature or grouped penalty needs a "
                    "dense copy of X, which is too large here; use cv=5."
                )
            X = X.toarray()
        return DirectLOOObjective(
            X, Y, sw, self.fit_intercept, layout.coef_groups[:, 0], layout.n_hyper,
            self.verbose,
        )  # fmt: skip

    def _fold_problems(self, splits, info, layouts, method):
        return [
            RidgeProblem(
                *train,
                layout.group_idx,
                layout.n_hyper,
                self.fit_intercept,
                X_val=test[0],
                Y_val=test[1],
                sw_val=test[2],
            )
            for (train, test), layout in zip(splits.parts(), layouts, strict=True)
        ]

    def _refit(self, X, Y, sw, info, layout, theta, warm, objective):
        """Ridge on all the data at ``theta`` (reusing the search's Gram matrix)."""
        problem = RidgeProblem(
            X, Y, sw, layout.group_idx, layout.n_hyper, self.fit_intercept,
            **(objective.precomputed or {}),
        )  # fmt: skip
        if problem.can_factorize:
            w, _ = problem.solve(theta, method="direct")
        else:
            w, converged = problem.solve(
                theta, tol=1e-10, method="cg", max_iter=max(1000, 10 * X.shape[1])
            )
            if not converged:
                warn_user(
                    "The final refit's conjugate gradient did not reach its tolerance.",
                    ConvergenceWarning,
                )
        return self._user_coefficients(w, problem.intercept(w), info)
