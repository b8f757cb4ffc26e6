"""BilevelLassoCV: the Lasso whose L1 strengths are tuned by hypergradient.

The fit pipeline is :class:`~skbilevel._base.BaseBilevelCV`'s; this module
supplies the Lasso hooks: the fold problems (coordinate descent, implicit
differentiation on the support: see :mod:`~skbilevel._problems._lasso`), the
default box (up to ``alpha_max``, where every coefficient is zero) and the
refit.
"""

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from sklearn.utils._param_validation import StrOptions

from ._base import BaseBilevelCV, common_constraints
from ._problems._lasso import (
    LassoProblem,
    fold_gram_sums,
    lasso_alpha_max,
    solve_shared_design,
    uses_gram,
)
from ._ridge import SquaredErrorRegressorHooks
from ._stochastic import ProximalStochasticFold
from ._validation import warn_user

__all__ = ["BilevelLassoCV"]

# Hypergradient methods that differentiate on the support (the others step
# along the gradient of a smooth training loss).
_LASSO_METHODS = ("auto", "direct", "cg", "implicit_forward")
# Dense folds whose training rows are at least this share of the rows are
# solved on one shared column-major copy of X, the validation rows weighted
# zero (see BilevelLassoCV._weighted_folds): coordinate descent then reads
# at most 1 / 0.75 times the rows it needs.
SHARED_DESIGN_MIN_SHARE = 0.75


# Most features for which the Gram folds' evaluations keep BLAS on one
# thread: their largest product then has at most this many rows and columns.
_SMALL_GRAM = 1000


class BilevelLassoCV(SquaredErrorRegressorHooks, BaseBilevelCV):
    """Lasso with L1 strengths tuned by hypergradient descent.

    The cross-validated mean squared error is minimized over the L1
    strengths ``alpha`` by differentiating it through every fold's Lasso
    solution. The solution is piecewise smooth in ``alpha``: on its support
    ``S`` it satisfies ``X_S^T (X_S w_S - y) / n + alpha sign(w_S) = 0``,
    whose implicit derivative is taken there (zero off the support). One
    strength (``penalty="scalar"``) is found with a coarse scan followed by a
    safeguarded 1-D search; many strengths (a weighted Lasso: one per
    feature, per target or per group of features) by the projected
    hypergradient method started at the best scalar. The model is refit on
    all the data at the chosen strengths.

    The objective is scikit-learn's :class:`~sklearn.linear_model.Lasso`
    objective ``1 / (2 sum(sw)) * ||y - Xw - b||^2_sw + sum_j alpha_{g(j)} |w_j|``,
    solved by coordinate descent (with an active set) to a duality gap.

    Parameters
    ----------
    penalty : {"scalar", "per_feature", "per_target", "per_column"} or \
            array-like of shape (n_features,), default="scalar"
        How strengths are shared: one for all coefficients, one per feature,
        one per target (multi-output ``y``), or one per group of features
        given by an array of group ids. Many strengths are guarded against
        overfitting the validation folds (``early_stopping``).
    alpha_init : float or array-like, default=None
        Starting strength(s). None scans the whole box first.
    alpha_bounds : (float, float) or (array-like, array-like), default=None
        Box of admissible strengths, shared or one ``(low, high)`` per
        hyperparameter. None: ``(1e-3 * alpha_max, alpha_max)`` with
        ``alpha_max = max_j |x_j^T (y - ybar)|_sw / sum(sw)`` (centered
        columns; the largest over targets), the strength from which every
        coefficient is zero.
    fit_intercept : bool, default=True
        Whether to fit an (unpenalized) intercept.
    cv : int, cross-validation generator, iterable or None, default=5
        An int is the number of folds of :class:`~sklearn.model_selection.KFold`
        (None: 5). A splitter or an iterable of ``(train, test)`` index
        arrays is used as given; ``groups`` passed to :meth:`fit` reach the
        splitter.
    scoring : str or callable, default=None
        What ``cv_results_`` and ``best_score_`` report (greater is better).
        None reports the negative mean squared error, the criterion that is
        minimized. A callable ``scoring(estimator, X, y)`` gets a fitted
        :class:`~sklearn.linear_model.Lasso` holding the fold's coefficients.
    hypergradient : {"auto", "direct", "cg", "implicit_forward"}, \
            default="auto"
        How the system on the support is solved: "direct" factorizes
        ``X_S^T X_S`` (conjugate gradients past 2000 coefficients in the
        support), "cg" solves the adjoint system by conjugate gradients,
        "implicit_forward" iterates the Jacobian of the solution on the
        support by Gauss-Seidel sweeps (forward mode: one column per
        strength met on the support; no factorization). "auto" is "direct".
    adjoint_max_iter : int, default=200
        Iteration cap of the "cg" adjoint solver and of the
        "implicit_forward" sweeps.
    max_iter : int, default=100
        Maximum number of outer iterations after the initial scan, in all.
    tol : float, default=1e-4
        Outer stopping tolerance on the hypergradient in log-space,
        relative to the validation loss.
    n_jobs : int, default=None
        Number of threads over folds (-1: all the cores, as in joblib). None means 1.
    verbose : int, default=0
        1 prints one line per hypergradient evaluation, 2 per evaluation
        (scan points too); "eval N" is ``cv_results_["iter"]`` N.
    warm_start : bool, default=False
        Start from the previous ``alpha_`` when refitting.
    solver : {"auto", "deterministic", "stochastic"}, default="auto"
        "deterministic": coordinate descent and implicit differentiation on
        the support, as above ("auto" is this one). "stochastic": the
        nonsmooth stochastic implicit differentiation of Grazzi, Pontil and
        Salzo (2024) for large data: proximal mini-batch SGD for every
        fold's solution, stochastic fixed-point steps on its support for the
        adjoint, ``max_iter`` projected stochastic outer steps, then the
        average of the second half of the outer iterates, and a
        deterministic refit (see the user guide).
    batch_size : int or "auto", default="auto"
        Mini-batch size of the stochastic solver ("auto": 1024).
    random_state : int, RandomState instance or None, default=None
        Seeds the stochastic solver's mini-batches (the same seed gives the
        same fit) and the early-stopping guard's held-out samples.
    early_stopping : "auto" or bool, default="auto"
        Guard of many strengths against overfitting the validation folds,
        as in :class:`~skbilevel.BilevelRidgeCV`.

    Attributes
    ----------
    alpha_ : float or ndarray
        Chosen strength(s): a float for ``penalty="scalar"``, otherwise an
        array with one entry per feature, per target or per group.
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Sparse like :class:`~sklearn.linear_model.Lasso`'s: exact zeros off
        the support.
    intercept_ : float or ndarray of shape (n_targets,)
    best_score_ : float
    best_index_ : int
    n_iter_ : int
        Number of hypergradient evaluations (the scan evaluates them once
        the loss has started falling: they count).
    n_splits_ : int
    cv_results_ : dict of ndarray
        One row per evaluated point, with GridSearchCV's keys (see
        :class:`~skbilevel.BilevelRidgeCV`).
    penalty_groups_ : ndarray or None
    strength_names_ : ndarray of str of shape (n_strengths,)
    strengths_ : pandas.Series of shape (n_strengths,)
    held_out_path_ : dict or None
    hypergradient_ : str
    solver_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)

    See Also
    --------
    sklearn.linear_model.LassoCV : Lasso along a path of strengths.
    BilevelRidgeCV : the same search for L2 strengths.

    Notes
    -----
    Where a coefficient enters or leaves the support the validation loss is
    continuous but its derivative jumps; the 1-D search keeps a bracket and
    the projected method backtracks, so both stay monotone there.
    Computations run in float64; ``coef_`` has the dtype of ``X``.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelLassoCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = BilevelLassoCV(cv=5).fit(X, y)
    >>> int((reg.coef_ != 0).sum()) <= X.shape[1]
    True
    """

    # From alpha_max down 3 decades, as LassoCV's default path (eps=1e-3).
    _default_box = dict(scale=1.0, low=1e-3, high=1.0, floor=0.0)
    # A duality gap of 1e-6 of the null objective ranks scan points.
    _value_tol = 1e-3
    # Coordinate descent gains from close warm starts along the path (its
    # supports grow gradually): 3 scan points a decade, not 1 every 2.
    _path_scan_per_decade = 3.0
    # The derivative is a system on the support (cheap next to the solve):
    # the scan takes it once the path has descended and stops where the
    # loss starts rising, instead of solving the weakest penalties (the
    # largest supports) until a value 10% above the best.
    _scan_derivatives = True

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

    _fold_model_class = Lasso

    _parameter_constraints = {
        **common_constraints("alpha", "per_target"),
        "hypergradient": [StrOptions(set(_LASSO_METHODS))],
        "solver": [StrOptions({"auto", "deterministic", "stochastic"})],
    }

    # ------------------------------------------------------------------ hooks
    def _choose_solver(self, shape, X, n_out, n_hyper, method, leave_one_out):
        # "auto" keeps coordinate descent (the stochastic mode on request).
        return "stochastic" if self.solver == "stochastic" else "deterministic"

    def _stochastic_fold(self, layout):
        return ProximalStochasticFold, {}

    def _data_scaled_box(self, X, sw, targets, *, scale, low, high, floor,
                         summary=None):  # fmt: skip
        """``(low * alpha_max, high * alpha_max)`` in log-space.

        Above ``alpha_max`` every coefficient is zero and the validation loss
        is flat; ``1e-3 * alpha_max`` is the end of LassoCV's default path
        (below, the Lasso is close to least squares, and coordinate descent
        slow).
        """
        alpha_max = float(np.max(lasso_alpha_max(X, targets, sw, self.fit_intercept)))
        if not alpha_max > 0.0:  # a constant target or constant columns
            alpha_max = 1.0
        return float(np.log(low * alpha_max)), float(np.log(high * alpha_max))

    def _can_factorize(self, splits, layout):
        return True  # supports past 2000 coefficients switch to CG themselves

    def _closed_form_objective(self, splits, info, layout, method):
        return None

    def _problem(self, X, Y, sw, layout, **validation):
        """The inner problem of rows ``X, Y, sw`` (the elastic net adds its
        L2 part here)."""
        return LassoProblem(
            X, Y, sw, layout.group_idx, layout.n_hyper, self.fit_intercept,
            **validation,
        )  # fmt: skip

    def _folds_objective(self, splits, info, layouts, method, problems=None):
        """Dense data split by index: K-fold folds of wide data solve on one
        shared copy of X (see :meth:`_weighted_folds`); tall data's folds on
        Gram matrices from moments shared by the folds (see
        :func:`fold_gram_sums`), no copy of their training rows. Either way
        the refit reuses what the folds formed (``objective.precomputed``)."""
        if problems is not None:
            return super()._folds_objective(splits, info, layouts, method, problems)
        shared = self._weighted_folds(splits, layouts)
        if shared is not None:
            design, problems = shared
            objective = super()._folds_objective(
                splits, info, layouts, method, problems
            )
            objective.precomputed = {"design": design}  # the refit's X
            # The folds' coordinate descent in lockstep on the shared X
            # (unless the problems chose their Gram matrices: many rows).
            if not any(problem.gram for problem in problems):
                objective.batch_solve = solve_shared_design
            return objective
        if not (
            splits.whole is not None
            and splits.whole[3] is not None
            and self._folds_use_gram(splits)
        ):
            return super()._folds_objective(splits, info, layouts, method)
        X, targets, sw, folds = splits.whole
        sums, whole, held = fold_gram_sums(X, targets, sw, folds, self.fit_intercept)
        problems = [
            self._problem(
                None,
                None,
                None,
                layout,
                gram=gram,
                val_source=(X, test),
                Y_val=targets[test],
                sw_val=sw[test],
                # The validation loss from the moments costs d |S| instead
                # of a pass over the n_val x d rows, but a dozen NumPy calls:
                # where n_val >= 4 d (measured on 2000 x 200, 5 folds: 64
                # against 38 us a call).
                val_moments=moments if len(test) >= 4 * X.shape[1] else None,
            )  # fmt: skip
            for gram, moments, (_, test), layout in zip(
                sums, held, folds, layouts, strict=True
            )
        ]
        objective = super()._folds_objective(splits, info, layouts, method, problems)
        objective.precomputed = {"gram": whole}
        if X.shape[1] <= _SMALL_GRAM:
            # The Gram matrices are formed (the large products); what BLAS
            # does from here is small: one thread (measured on the
            # correlated 2000 x 200 elastic net: 0.127 s against 0.109 s).
            objective.blas_threads = 1
        return objective

    def _fold_problems(self, splits, info, layouts, method):
        return [
            self._problem(*train, layout, X_val=test[0], Y_val=test[1], sw_val=test[2])
            # Coordinate descent on the data reads columns: Fortran-ordered
            # folds, unless it runs on the Gram matrix (tall dense data).
            for (train, test), layout in zip(
                splits.parts(column_major=not self._folds_use_gram(splits)),
                layouts,
                strict=True,
            )
        ]

    def _weighted_folds(self, splits, layouts):
        """Dense folds of one matrix (K-fold and the like) as sample weights
        on one shared Fortran-ordered copy of X: a fold's validation rows
        (and any row outside its training set) get weight zero, which is
        the Lasso of its training rows. Copying every fold's training
        columns instead cost more than the search's solves (measured on
        1000 x 5000, 5 folds: 0.65 s of a 1.5 s fit, and 5 times the memory)
        while the extra rows cost coordinate descent 1.25 times the
        operations. None where it does not apply (sparse X, Gram folds,
        given parts, folds keeping under ``SHARED_DESIGN_MIN_SHARE`` of the
        rows).

        Returns
        -------
        design : ndarray of shape (n_samples, n_features), Fortran order
        problems : list of LassoProblem
        """
        if (
            splits.sparse
            or splits.whole is None
            or splits.whole[3] is None
            or self._folds_use_gram(splits)
        ):
            return None
        X, targets, sw, folds = splits.whole
        n_samples = X.shape[0]
        if min(len(train) for train, _ in folds) < SHARED_DESIGN_MIN_SHARE * n_samples:
            return None
        design = np.asfortranarray(X, dtype=np.float64)
        problems = []
        for (train, test), layout in zip(folds, layouts, strict=True):
            weights = np.zeros(n_samples)
            np.add.at(weights, train, sw[train])  # a repeated row counts twice
            problems.append(
                self._problem(
                    design,
                    targets,
                    weights,
                    layout,
                    # The validation rows stay in X: read in place by the
                    # validation loss where their copy would be large (40 MB
                    # of fresh memory in all on 1000 x 5000, for two small
                    # products an evaluation), else gathered on first use.
                    val_source=(X, test),
                    Y_val=targets[test],
                    sw_val=sw[test],
                )
            )
        return design, problems

    @staticmethod
    def _folds_use_gram(splits):
        return uses_gram(splits.min_train_size, splits.n_features, splits.sparse)

    def _deterministic_passes(self, n_samples, n_features, n_out, n_hyper):
        return 0.0  # unused: "auto" keeps the deterministic solver

    def _refit(self, X, Y, sw, info, layout, theta, warm, objective):
        """Coordinate descent on all the data, from the folds' mean solution
        (on the Gram matrix the folds' search already formed, if any)."""
        precomputed = dict(objective.precomputed or {})
        # The folds' shared copy of X (see _weighted_folds), in the order
        # coordinate descent reads: not copied again.
        X = precomputed.pop("design", X)
        problem = self._problem(X, Y, sw, layout, **precomputed)
        w0 = np.mean([coef for coef, _ in warm], axis=0) if warm else None
        w, converged = problem.solve(theta, w0, tol=1e-7)
        if not converged:
            warn_user(
                "The final refit's coordinate descent did not reach its duality "
                "gap tolerance.",
                ConvergenceWarning,
            )
        return self._user_coefficients(w, problem.intercept(w), info)
