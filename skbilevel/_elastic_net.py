"""BilevelElasticNetCV: the elastic net's L1 and L2 strengths tuned together.

The elastic net of scikit-learn, ``alpha * l1_ratio * ||w||_1 + alpha *
(1 - l1_ratio) / 2 * ||w||^2``, is the Lasso inner problem with an L2 part
(:class:`~skbilevel._problems._lasso.LassoProblem` with ``l2_group_idx``):
its two strengths ``lambda_1 = alpha * l1_ratio`` and ``lambda_2 = alpha *
(1 - l1_ratio)`` are both continuous hyperparameters, searched in log-space
by the projected hypergradient method (one pair per feature or group for
the weighted elastic net), and reported as ``alpha_`` and ``l1_ratio_``.
"""

import numbers

import numpy as np
from sklearn.linear_model import ElasticNet
from sklearn.utils._param_validation import Interval

from ._base import Layout
from ._lasso import BilevelLassoCV
from ._outer import minimize_box, minimize_scalar
from ._problems._lasso import LassoProblem, lasso_alpha_max
from ._validation import check_penalty

__all__ = ["BilevelElasticNetCV"]


class BilevelElasticNetCV(BilevelLassoCV):
    """Elastic net with its L1 and L2 strengths tuned by hypergradient descent.

    The cross-validated mean squared error is minimized over both strengths
    of scikit-learn's :class:`~sklearn.linear_model.ElasticNet`, ``lambda_1
    = alpha * l1_ratio`` (L1) and ``lambda_2 = alpha * (1 - l1_ratio)``
    (L2), in log-space, by differentiating it through every fold's solution
    on its support (see :class:`~skbilevel.BilevelLassoCV`). Both are
    continuous: no grid of ``l1_ratio`` values. The projected hypergradient
    method starts from ``alpha_init`` and ``l1_ratio_init``.

    Parameters
    ----------
    penalty : {"scalar", "per_feature", "per_target"} or array-like of shape \
            (n_features,), default="scalar"
        How strengths are shared: one pair (L1, L2) for all coefficients,
        one per feature, one per target, or one per group of features.
    alpha_init : float, default=None
        Starting ``alpha``; None: ``0.1 * alpha_max`` (the Lasso's, see
        ``alpha_bounds``).
    l1_ratio_init : float in (0, 1), default=0.5
        Starting ``l1_ratio``.
    alpha_bounds : (float, float), default=None
        One box for both strengths ``lambda_1`` and ``lambda_2``. None:
        ``lambda_1`` in ``(1e-3 * alpha_max, alpha_max)`` and ``lambda_2`` in
        ``(1e-8 * alpha_max, 10 * alpha_max)``, with ``alpha_max`` the Lasso's
        smallest strength whose solution is zero (at the floor of the L2 box
        the net is the Lasso).
    fit_intercept, cv, scoring, hypergradient, adjoint_max_iter, max_iter, \
            tol, n_jobs, verbose, warm_start, solver, batch_size, \
            random_state, early_stopping
        As in :class:`~skbilevel.BilevelLassoCV` (the guard of many strengths
        needs one common box, so it is off with the default boxes).

    Attributes
    ----------
    alpha_ : float or ndarray
        ``lambda_1 + lambda_2`` of the chosen strengths (per feature, target
        or group for those penalties).
    l1_ratio_ : float or ndarray
        ``lambda_1 / (lambda_1 + lambda_2)``.
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    best_score_, best_index_, n_iter_, n_splits_, hypergradient_, solver_, \
            n_features_in_, feature_names_in_
        As in :class:`~skbilevel.BilevelLassoCV`.
    cv_results_ : dict of ndarray
        One row per evaluated point, with ``param_alpha`` and
        ``param_l1_ratio``.
    strength_names_ : ndarray of str
        ``"l1: <name>"`` then ``"l2: <name>"`` for every strength.
    strengths_ : pandas.Series
        ``lambda_1`` and ``lambda_2`` of every strength, indexed by
        ``strength_names_``.

    See Also
    --------
    sklearn.linear_model.ElasticNetCV : a path per value of a grid of l1_ratio.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelElasticNetCV
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = BilevelElasticNetCV(cv=5).fit(X, y)
    >>> 0 < reg.l1_ratio_ <= 1
    True
    """

    _scan_derivatives = False  # no scalar scan: a box per kind of strength
    _fold_model_class = ElasticNet

    def __init__(
        self,
        *,
        penalty="scalar",
        alpha_init=None,
        l1_ratio_init=0.5,
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
        self.l1_ratio_init = l1_ratio_init
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

    _parameter_constraints = {
        **BilevelLassoCV._parameter_constraints,
        "alpha_init": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "l1_ratio_init": [Interval(numbers.Real, 0, 1, closed="neither")],
    }

    # ------------------------------------------------------------------ hooks
    def _layout(self, n_features, info):
        # theta = [log lambda_1 per group, log lambda_2 per group].
        single = super()._layout(n_features, info)
        return Layout(
            single.group_idx, single.coef_groups, 2 * single.n_hyper, single.labels
        )

    def _problem(self, X, Y, sw, layout, **validation):
        """The Lasso's problem with the L2 part: groups after the L1 ones."""
        half = layout.n_hyper // 2
        return LassoProblem(
            X, Y, sw, layout.group_idx, layout.n_hyper, self.fit_intercept,
            l2_group_idx=layout.group_idx + half, **validation,
        )  # fmt: skip

    def _log_bounds(self, X, sw, targets=None):
        """One box per kind of strength (see ``alpha_bounds``), or the user's."""
        if self.alpha_bounds is not None:
            return super()._log_bounds(X, sw, targets)
        alpha_max = float(np.max(lasso_alpha_max(X, targets, sw, self.fit_intercept)))
        if not alpha_max > 0.0:  # a constant target or constant columns
            alpha_max = 1.0
        n_out = targets.shape[1]
        half = check_penalty(self.penalty, X.shape[1], n_out, "per_target")[1]
        # The L2 floor is far below the L1 one: at its floor the net is the
        # Lasso for every practical purpose (l1_ratio within 1e-5 of 1), the
        # point ElasticNetCV's grid includes (measured: a floor of 1e-4
        # alpha_max kept l1_ratio at 0.976 and a CV MSE 0.03% above the
        # Lasso's).
        lo = np.r_[np.full(half, np.log(1e-3 * alpha_max)),
                   np.full(half, np.log(1e-8 * alpha_max))]  # fmt: skip
        hi = np.r_[np.full(half, np.log(alpha_max)),
                   np.full(half, np.log(10.0 * alpha_max))]  # fmt: skip
        return lo, hi

    def _initial_theta(self, n_hyper, lo, hi):
        half = n_hyper // 2
        # A warm start from a fit with as many strengths (else the default).
        if self.warm_start and np.size(getattr(self, "alpha_", None)) == half:
            alpha = np.ravel(self.alpha_).astype(float)
            ratio = np.ravel(self.l1_ratio_).astype(float)
        else:
            if self.alpha_init is not None:
                alpha = float(self.alpha_init)
            else:
                # A tenth of alpha_max (the top of the L1 box), as a common
                # middle of the Lasso's path.
                alpha = 0.1 * float(np.exp(np.max(hi[:half] if np.ndim(hi) else hi)))
            alpha = np.full(half, alpha)
            ratio = np.full(half, float(self.l1_ratio_init))
        theta = np.log(np.r_[alpha * ratio, alpha * (1.0 - ratio)])
        return np.clip(theta, lo, hi)

    def _run_outer(self, objective, theta0, n_hyper, lo, hi, guarded=None):
        """The Lasso's 1-D search first, then both strengths together.

        With the L2 strengths at the floor of their box (``l1_ratio`` close
        to 1), the L1 strength is searched as the Lasso's (scan from
        ``alpha_max`` down, then a bracket); the projected hypergradient
        method then moves both kinds from that point and from the same L1
        strengths with ``l1_ratio_init`` (or from ``alpha_init`` /
        ``l1_ratio_init`` / a warm start when given), each with half of
        ``max_iter``, and keeps the best point. Its CV loss is therefore at
        or below the best Lasso's, which ``ElasticNetCV``'s grid includes
        (``l1_ratio=1``). Measured: a start from the box's middle stopped at
        ``l1_ratio`` 0.92 on data whose optimum is the Lasso, the loss flat
        along the way.
        """
        half = n_hyper // 2
        lo, hi = (np.broadcast_to(side, (n_hyper,)).astype(float) for side in (lo, hi))
        n_iter = 0
        warm = self.warm_start and np.size(getattr(self, "alpha_", None)) == half
        if self.alpha_init is None and not warm:
            floor = lo[half:]

            def along_l1(t, need_grad):
                f, grad = objective(np.r_[np.full(half, t), floor], need_grad)
                return f, (None if grad is None else float(np.sum(grad[:half])))

            decades = (hi[:half].max() - lo[:half].min()) / np.log(10.0)
            first = minimize_scalar(
                along_l1, float(lo[:half].min()), float(hi[:half].max()),
                n_scan=int(np.ceil(decades * self._path_scan_per_decade)) + 1,
                tol=self.tol, max_iter=self.max_iter,
                on_gradient=objective.tighten, scan_derivatives=True,
            )  # fmt: skip
            theta0 = np.r_[np.full(half, first.theta[0]), floor]
            n_iter = first.n_iter
            # A second start at the same L1 strengths with l1_ratio_init: the
            # loss is flat in log lambda_2 near its floor, so a search from
            # the Lasso alone does not find an L2 optimum far above it
            # (measured: stuck at l1_ratio 1.0 where ElasticNetCV's 0.5 had
            # a CV MSE 1.4% lower).
            ratio = float(self.l1_ratio_init)
            shifted = theta0[:half] + np.log((1.0 - ratio) / ratio)
            starts = [theta0, np.r_[theta0[:half], shifted]]
        else:
            starts = [theta0]
        best = None
        for start in starts:
            budget = max((self.max_iter - n_iter) // len(starts), 1)
            result = minimize_box(
                objective, np.clip(start, lo, hi), lo, hi, tol=self.tol,
                max_iter=budget, on_gradient=objective.tighten,
            )  # fmt: skip
            n_iter += result.n_iter
            if best is None or result.f < best.f:
                best = result
        best.n_iter = n_iter
        return best

    def _strength_names(self, layout, info):
        half = layout.n_hyper // 2
        single = Layout(layout.group_idx, layout.coef_groups, half, layout.labels)
        names = super()._strength_names(single, info)
        return np.r_[[f"l1: {n}" for n in names], [f"l2: {n}" for n in names]]

    def _store_search(self, outcome, splits, info):
        super()._store_search(outcome, splits, info)
        records = outcome.objective.records
        pairs = [self._alpha_ratio(r.theta) for r in records]
        alphas, ratios = [a for a, _ in pairs], [r for _, r in pairs]
        results = self.cv_results_
        results["params"] = [
            {"alpha": a, "l1_ratio": r} for a, r in zip(alphas, ratios, strict=True)
        ]
        for key, values in [("param_alpha", alphas), ("param_l1_ratio", ratios)]:
            column = np.ma.MaskedArray(np.empty(len(records), dtype=object))
            column[:] = list(values)
            column.mask = False
            results[key] = column
        self.alpha_, self.l1_ratio_ = self._alpha_ratio(outcome.theta)

    def _alpha_ratio(self, theta):
        """``(alpha, l1_ratio)`` of log-strengths ``[log lambda_1, log lambda_2]``."""
        half = theta.size // 2
        l1, l2 = np.exp(theta[:half]), np.exp(theta[half:])
        alpha, ratio = l1 + l2, l1 / (l1 + l2)
        if half == 1 and isinstance(self.penalty, str) and self.penalty == "scalar":
            return float(alpha[0]), float(ratio[0])
        return alpha, ratio
