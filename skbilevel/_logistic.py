"""BilevelLogisticCV: logistic regression with L2 strengths tuned by hypergradient.

The fit pipeline is :class:`~skbilevel._base.BaseBilevelCV`'s; this module
supplies the logistic hooks: label encoding and class weights, the fold
problems (Newton, with float32 Hessians where they pay), the stochastic data
term and the refit.
"""

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._base import (
    GUARD_SAMPLES_PER_STRENGTH,
    BaseBilevelCV,
    Layout,
    Targets,
    common_constraints,
)
from ._problems._logistic import (
    DIRECT_MAX_PARAMS,
    LogisticProblem,
    LogLossFit,
    float32_gram_is_safe,
    hessian_cost_in_passes,
    uses_float32_gram,
)
from ._quadratic import QuadraticObjective, TooManyRowPatterns
from ._results import (
    ClassifierScoresAsInput,
    labels_from_scores,
    log_probabilities,
)
from ._validation import as_index_c, check_penalty, warn_user

__all__ = ["BilevelLogisticCV"]

# solver="auto" takes the quadratic mode (binary targets) from this
# many samples, and this many per coefficient, up to this many coefficients
# (its models factorize one Hessian per fold a few hundred times). Measured
# on 2 cores against the deterministic search, standardized
# make_classification: 20000 x 50 0.05 against 0.17 s, 100000 x 100 0.22
# against 0.88 s, at the same CV log-loss to 1e-5 (scalar) or lower (one
# strength per feature); 400000 x 200 per feature 1.06 s against the
# stochastic mode's 2.31 s (benchmarks/bench_solver_choice.py); sparse
# one-hot 200000 x 325 (8 categorical columns of 40 values, 5 numeric),
# 0.67 against 2.18 s.
_QUADRATIC_MIN_SAMPLES = 20_000
_QUADRATIC_SAMPLES_PER_COEF = 200
_QUADRATIC_MAX_COEF = 1000

# Fewest multiply-adds in a pass over every fold's training data for the
# folds to share the cores (FoldsObjective.share_cores): below, a fold's
# steps are mostly Python, which holds the GIL (2 cores, in threads against
# in order: breast cancer 455 x 30, 19 against 17 ms; 4000 x 50 binary, 70
# against 68 ms; 8000 x 100, 150 against 175 ms).
_MIN_SHARED_PASS_WORK = 500_000


class BilevelLogisticCV(ClassifierMixin, BaseBilevelCV):
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
    penalty : {"scalar", "per_feature", "per_class", "per_column"} or \
            array-like of shape (n_features,), default="scalar"
        How strengths are shared: one for all coefficients, one per feature
        (shared by the classes), one per class (multinomial; binary problems
        have one coefficient vector, so it equals "scalar"), or one per group
        of features given by an array of group ids.
        ``"per_column"`` (in :class:`~skbilevel.HypergradientSearchCV` over a
        Pipeline) gives one strength to all the columns that the
        preprocessing makes from one input column (see
        :func:`~skbilevel.column_groups`, whose output is the array to give
        this estimator alone). Many strengths are guarded against
        overfitting the validation folds (``early_stopping``).
    C_init : float or array-like, default=None
        Starting value(s). None scans the whole box first.
    C_bounds : (float, float) or (array-like, array-like), default=None
        Box of admissible ``C``, shared or one ``(low, high)`` per
        hyperparameter (``low == high`` fixes one; different boxes skip the
        initial scan of a common value). None follows the scale of the data:
        with
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
        validation log-loss. A callable ``scoring(estimator, X, y)`` gets a
        fitted :class:`~sklearn.linear_model.LogisticRegression` holding the
        fold's coefficients and the validation rows.
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
        Maximum number of outer iterations after the initial scan, in all:
        the 1-D search's and, with many strengths, the projected method's.
    tol : float, default=1e-4
        Outer stopping tolerance (relative hypergradient in log-space).
    n_jobs : int, default=None
        Number of threads over folds (-1: all the cores, as in joblib),
        each given its share of the cores for BLAS. None means 1: the folds
        one after the other, each using the cores BLAS may use in blocks of
        rows; folds whose passes do not split in row blocks (sparse,
        multinomial or few rows) share those cores instead, in threads.
        Under ``joblib.parallel_config(backend="dask")`` the folds run on
        the dask workers instead, unless ``n_jobs=1`` (see the user guide).
    verbose : int, default=0
        1 prints one line per hypergradient evaluation, 2 per evaluation
        (scan points too); "eval N" is ``cv_results_["iter"]`` N.
    warm_start : bool, default=False
        Start from the previous ``C_`` when refitting.
    solver : {"auto", "deterministic", "stochastic", "quadratic"}, \
            default="auto"
        "deterministic" solves every fold's training problem (Newton) and
        adjoint exactly enough for the outer tolerance. "stochastic" uses
        mini-batches for both (stochastic implicit differentiation, see the
        user guide) and ``max_iter`` projected stochastic outer steps, then
        refits deterministically (Newton-CG) at the average of the second
        half of the outer iterates. "quadratic" (binary targets) searches
        the strengths on every fold's Newton model of its training and
        validation losses, in a trust region, and evaluates each candidate
        exactly (fold solutions and hypergradients): few passes over the
        data for many rows per coefficient (see the user guide). "auto"
        takes "quadratic" for binary targets from 20,000
        samples and 200 per coefficient (up to 1000 coefficients), unless
        the deterministic search would run under the early-stopping guard;
        else it weighs the other two's costs: "stochastic" (with
        ``hypergradient="auto"`` and ``cv`` not None) when the
        deterministic search is estimated at twice the stochastic one's
        (about 150 passes over the data) and above about 10 s, on 100,000
        samples or more; the estimate grows with the rows, the
        coefficients' squares (Hessians) and the number of strengths (see
        the user guide).
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
        class are few and left unguarded. True raises a ValueError where the
        guard cannot run. See the user guide (method, cost, measurements).

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
    strength_names_ : ndarray of str of shape (n_strengths,)
        What every strength applies to: the feature (``feature_names_in_``
        or ``x0, x1, ...``), the group id, the class, or ``"all"``.
    strengths_ : pandas.Series of shape (n_strengths,)
        ``C_`` indexed by ``strength_names_`` (a dict when pandas is not
        installed); see also :class:`~skbilevel.plotting.StrengthsDisplay`.
    held_out_path_ : dict or None
        The early-stopping guard's path: the strengths of every evaluation
        (key ``"C"``), their ``"held_out_loss"`` and ``"fit_loss"``
        (the hypergradient's folds), and the ``"chosen"`` index; None when
        the guard was off.
    hypergradient_ : str
        The method used ("sid" in the stochastic mode, "newton-model" in
        the quadratic mode).
    solver_ : str
        The solver used ("deterministic", "stochastic" or "quadratic").
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

    _parameter_constraints = {
        **common_constraints("C", "per_class"),
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "solver": [StrOptions({"auto", "deterministic", "stochastic", "quadratic"})],
    }
    _param_name = "C"
    _per_output = "per_class"
    _param_sign = -1.0  # theta = log(1 / C), the penalty weight
    # 1 / C ranges over (1e-6 q min_j ss_j, 1e4 q max_j ss_j), q = 0.25.
    _default_box = dict(scale=0.25, low=1e-6, high=1e4, floor=1e-12)
    _value_tol = 1e-3  # Newton's decrement bounds the loss error
    _writable_X = False  # dense X meets only BLAS and the row-gathering kernels

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
        early_stopping="auto",
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
        self.early_stopping = early_stopping

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # The quadratic mode's Newton models are binary (see _quadratic).
        tags.classifier_tags.multi_class = self.solver != "quadratic"
        return tags

    # ------------------------------------------------------------------ hooks
    def _target_info(self, y, sample_weight=None):
        y = column_or_1d(y, warn=True)  # a column vector, as LogisticRegression
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the "
                f"data, but the data contains only one class: {classes[0]!r}."
            )
        class_weight = None
        if self.class_weight is not None:
            # "balanced" counts classes by weight, as LogisticRegression does.
            class_weight = compute_class_weight(
                self.class_weight,
                classes=np.arange(len(classes)),
                y=np.searchsorted(classes, y),
                sample_weight=sample_weight,
            )
        n_out = 1 if len(classes) == 2 else len(classes)
        return Targets(n_out=n_out, classes=classes, class_weight=class_weight)

    def _encode(self, y, info):
        return as_index_c(np.searchsorted(info.classes, column_or_1d(y)))

    def _layout(self, n_features, info):
        """Hyperparameter group of every coefficient (-1: the intercept row)."""
        coef_groups, n_hyper, labels = check_penalty(
            self.penalty, n_features, info.n_out, "per_class"
        )
        group_idx = coef_groups
        if self.fit_intercept:
            intercept_row = np.full((1, info.n_out), -1, np.int64)
            group_idx = np.vstack([coef_groups, intercept_row])
        return Layout(group_idx, coef_groups, n_hyper, labels)

    def _output_names(self, info, n_outputs):
        # Binary problems have one output: the positive class's.
        return info.classes[-n_outputs:]

    def _choose_solver(self, shape, X, n_out, n_hyper, method, leave_one_out):
        """``solver="auto"`` takes the quadratic mode where its models hold
        and pay (see :meth:`_quadratic_pays`), else the base class's choice."""
        chosen = super()._choose_solver(shape, X, n_out, n_hyper, method, leave_one_out)
        if self.solver != "auto" or method != "auto" or leave_one_out:
            return chosen
        if self._quadratic_pays(shape, n_out, n_hyper, chosen):
            return "quadratic"
        return chosen

    def _quadratic_pays(self, shape, n_out, n_hyper, alternative):
        """Whether ``solver="auto"`` takes the quadratic mode over
        ``alternative`` (the base class's choice).

        Binary targets, at least ``_QUADRATIC_MIN_SAMPLES`` samples
        and ``_QUADRATIC_SAMPLES_PER_COEF`` per coefficient (the folds'
        losses are then close to quadratic where their solutions move, and
        the models' factorizations cost less than the passes they save).
        With several strengths and fewer samples per strength than the
        early-stopping guard asks before it stands aside, only in place of
        the stochastic mode, which has no guard either (per feature on
        100000 x 200: held-out log-loss 1.0002 times the guarded
        deterministic search's in 0.53 s, against the stochastic mode's
        1.0016 in 1.46 s).
        """
        n_samples, n_features = shape
        n_coef = n_features + int(self.fit_intercept)
        guarded = (
            n_hyper > 1
            and self.early_stopping is not False
            and n_samples < GUARD_SAMPLES_PER_STRENGTH * n_hyper
        )
        return bool(
            n_out == 1
            and n_samples >= _QUADRATIC_MIN_SAMPLES
            and n_samples >= _QUADRATIC_SAMPLES_PER_COEF * n_coef
            and n_coef <= _QUADRATIC_MAX_COEF
            and (alternative == "stochastic" or not guarded)
        )

    def _deterministic_passes(self, n_samples, n_features, n_out, n_hyper):
        """Cost of the deterministic search in passes over the data (X @ W).

        About 12 evaluations for one strength (the 1-D search), 12 + 40 for
        many (the projected method), each solving 5 folds of 4/5 of the rows:
        about 6 passes of chord Newton steps and 1.5 Hessians (see
        :func:`~skbilevel._problems._logistic.hessian_cost_in_passes`), or
        about 50 Hessian-vector products in Newton-CG past
        ``DIRECT_MAX_PARAMS`` coefficients.
        """
        n_coef = (n_features + int(self.fit_intercept)) * n_out
        if n_coef <= DIRECT_MAX_PARAMS:
            per_evaluation = 6.0 + 1.5 * hessian_cost_in_passes(n_coef)
        else:
            per_evaluation = 50.0
        n_evaluations = 12 if n_hyper == 1 else 12 + min(self.max_iter, 40)
        return n_evaluations * 4.0 * per_evaluation

    def _can_factorize(self, splits, layout):
        return layout.group_idx.size <= DIRECT_MAX_PARAMS

    def _folds_objective(self, splits, info, layouts, method, problems=None):
        objective = super()._folds_objective(splits, info, layouts, method, problems)
        # The folds' large products run in row blocks, each with BLAS on one
        # thread (see _rows); BLAS's own threads would only serve small
        # calls, and spin in between on the cores the row blocks use
        # (measured on 2 cores with the default thread pools: digits 1.8 ->
        # 0.9 s, sparse text 4.5 -> 1.2 s).
        objective.blas_threads = 1
        # Folds that do not split in row blocks (multinomial, sparse, or few
        # rows) run in threads instead, on as many cores (measured on 2
        # cores: digits 0.87 -> 0.58 s, sparse text 1.05 -> 0.76 s, 2000 x
        # 1000 binary 1.0 -> 0.7 s, 3000 x 200 with 3 classes 0.88 -> 0.61 s).
        # Folds of small problems stay in order (see _MIN_SHARED_PASS_WORK).
        problems = objective.problems
        row_blocks = any(p.uses_row_blocks for p in problems)
        objective.share_cores = not row_blocks and (
            min(p.pass_work for p in problems) >= _MIN_SHARED_PASS_WORK
        )
        # The scan's points past the minimum stop solving once clearly worse
        # (FoldsObjective._screen; digits 0.94 -> 0.80 s in order, sparse
        # text 1270 -> 986 products). Not where the rows split in blocks:
        # there the rounds cost more passes than they save (standardized
        # 100000 x 100: 214 -> 229 to 294 passes, as the path shifts).
        objective.screens = not row_blocks
        # Forward-mode hypergradients, whose tangents predict the next
        # point's solutions (one hyperparameter; see FoldsObjective).
        objective.tangent_starts = objective.n_hyper == 1
        return objective

    def _fold_problems(self, splits, info, layouts, method):
        parts = splits.parts()
        n_params = max(layout.group_idx.shape[0] for layout in layouts)
        float32 = (
            method == "direct"
            and uses_float32_gram(n_params, info.n_out, splits.sparse)
            and all(float32_gram_is_safe(train[0], train[2]) for train, _ in parts)
        )
        designs32 = (
            splits.parts(float32_design=True) if float32 else [None] * len(parts)
        )
        return [
            LogisticProblem(
                *train,
                info.n_out,
                layout.group_idx,
                layout.n_hyper,
                self.fit_intercept,
                X_val=test[0],
                targets_val=test[1],
                sw_val=test[2],
                X32=X32,
            )
            for (train, test), X32, layout in zip(
                parts, designs32, layouts, strict=True
            )
        ]

    def _quadratic_objective(self, splits, info, layouts, theta0):
        """Newton models of binary folds (see :mod:`skbilevel._quadratic`)."""
        n_coef = max(layout.group_idx.size for layout in layouts)
        reason = None
        if info.n_out != 1:
            if self.solver == "auto":
                return None
            raise ValueError(
                "Only binary classification is supported by solver='quadratic' "
                f"(these targets have {info.n_out} classes); use solver='auto'."
            )
        if n_coef > DIRECT_MAX_PARAMS:
            reason = f"at most {DIRECT_MAX_PARAMS} coefficients (these have {n_coef})"
        if reason is None:
            try:
                return QuadraticObjective(
                    list(splits.readers()),
                    [layout.coef_groups for layout in layouts],
                    layouts[0].n_hyper,
                    self.fit_intercept,
                    theta0,
                    self.verbose,
                    splits.largest_entry,
                    self.n_jobs,
                )
            except TooManyRowPatterns as error:
                reason = str(error)
        if self.solver == "auto":
            return None
        raise ValueError(f"solver='quadratic' needs {reason}.")

    def _data_term(self, targets, sw, info):
        return LogLossFit(targets, sw, info.n_out)

    def _response_model(self, info):
        return ClassifierScoresAsInput(info.classes)

    def _fold_estimator(self, coef, intercept, info):
        model = LogisticRegression(fit_intercept=self.fit_intercept)
        model.classes_ = info.classes
        model.coef_ = np.ascontiguousarray(coef.T)
        model.intercept_ = np.asarray(intercept, dtype=float)
        model.n_features_in_ = coef.shape[0]
        return model

    def _refit(self, X, targets, sw, info, layout, theta, warm, objective):
        """Newton on all the data at ``theta``, warm-started at the folds' mean.

        The quadratic mode's objective refits from its own anchor with the
        Gram of all the rows it formed (chord steps, no new Hessian).
        """
        refit = getattr(objective, "refit", None)
        if refit is not None:
            out = refit(X, theta)
            if out is not None and out[2]:
                return np.ascontiguousarray(out[0].T), out[1]
        w0 = None
        if warm is not None:
            w0 = np.mean(
                [np.vstack([c, b]) if self.fit_intercept else c for c, b in warm],
                axis=0,
            )
        full = LogisticProblem(
            X, targets, sw, info.n_out, layout.group_idx, layout.n_hyper,
            self.fit_intercept,
        )  # fmt: skip
        method = "direct" if full.can_factorize else "cg"
        # No adjoint follows: chord steps may finish, no Hessian at the end.
        W, converged = full.solve(theta, w0, tol=1e-8, method=method, for_adjoint=False)
        if not converged:
            warn_user(
                "The final refit did not reach its tolerance; the last Newton "
                "iterate is used.",
                ConvergenceWarning,
            )
        coef, intercept = full.coefficients(W)
        return np.ascontiguousarray(coef.T), intercept

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
        return labels_from_scores(self.decision_function(X), self.classes_)

    def predict_log_proba(self, X):
        """Log of the class probabilities, shape (n_samples, n_classes).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return log_probabilities(self.decision_function(X))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return np.exp(log_probabilities(self.decision_function(X)))

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
