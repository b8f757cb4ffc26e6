"""BilevelElasticNetCV: the elastic net's L1 and L2 strengths tuned together.

The elastic net of scikit-learn, ``alpha * l1_ratio * ||w||_1 + alpha *
(1 - l1_ratio) / 2 * ||w||^2``, is the Lasso inner problem with an L2 part
(:class:`~skbilevel._problems._lasso.LassoProblem` with ``l2_group_idx``):
its two strengths ``lambda_1 = alpha * l1_ratio`` and ``lambda_2 = alpha *
(1 - l1_ratio)`` are both continuous hyperparameters (one pair per feature
or group for the weighted elastic net), reported as ``alpha_`` and
``l1_ratio_``.

The fold problems and the records of the search are in the strengths'
log-space, ``theta = [log lambda_1, log lambda_2]``; the outer method moves
``phi = [log alpha, logit l1_ratio]`` instead, where the user's ranges
(``alpha_bounds``, ``l1_ratio_bounds``, or a search's ``param_space``) are a
box. The chain rule between the two is a 2 x 2 map per pair::

    d/d log alpha = d/d log lambda_1 + d/d log lambda_2
    d/d logit r   = (1 - r) d/d log lambda_1 - r d/d log lambda_2
"""

import numbers

import numpy as np
from scipy.special import expit, log_expit, logit
from sklearn.linear_model import ElasticNet
from sklearn.utils._param_validation import Interval

from ._base import Layout
from ._lasso import BilevelLassoCV
from ._outer import OuterResult, minimize_box, minimize_scalar
from ._problems._lasso import LassoProblem, lasso_alpha_max
from ._validation import check_bounds, check_penalty

__all__ = ["BilevelElasticNetCV"]

# The largest l1_ratio searched: at 1 - 1e-8 the L2 strength is 1e-8 alpha,
# the Lasso for every practical purpose (and log lambda_2 stays finite).
RATIO_CAP = 1.0 - 1e-8
# Default range of l1_ratio, and of alpha relative to the Lasso's alpha_max.
DEFAULT_RATIO_BOUNDS = (0.01, 1.0)
ALPHA_FLOOR = 1e-3
# The l1_ratio values of the profile inside the range (its ends are added):
# those scikit-learn's documentation suggests for ElasticNetCV's grid (the
# loss varies most near 1).
PROFILE_RATIOS = (0.99, 0.95, 0.9, 0.7, 0.5, 0.1)
# Outer tolerance of the profile's 1-D searches (the best one is refined).
PROFILE_TOL = 1e-3
# The profile stops going down the ratios once two in a row end this much
# (relative) above the best one: the loss has turned away from the lower
# ratios (measured on 9 datasets, from Lasso-like to ridge-like: the same
# results, and 25% to 47% fewer evaluations where the top ratio wins).
PROFILE_TURN = 1e-3


def strengths_from_phi(phi):
    """``theta = [log lambda_1, log lambda_2]`` of ``phi = [log alpha, logit r]``."""
    half = phi.size // 2
    log_alpha, s = phi[:half], phi[half:]
    return np.r_[log_alpha + log_expit(s), log_alpha + log_expit(-s)]


def phi_from_strengths(theta):
    """Inverse of :func:`strengths_from_phi`."""
    half = theta.size // 2
    l1, l2 = np.exp(theta[:half]), np.exp(theta[half:])
    return np.r_[np.log(l1 + l2), theta[:half] - theta[half:]]


def phi_gradient(grad, phi):
    """The gradient in ``theta`` (strengths) carried to ``phi`` (chain rule)."""
    half = phi.size // 2
    g1, g2 = grad[:half], grad[half:]
    r = expit(phi[half:])
    return np.r_[g1 + g2, (1.0 - r) * g1 - r * g2]


class _InAlphaRatio:
    """A CV objective of the strengths seen in ``phi`` coordinates."""

    def __init__(self, objective):
        self.objective = objective
        self.tighten = objective.tighten

    def __call__(self, phi, need_grad=True):
        phi = np.asarray(phi, dtype=float)
        f, grad = self.objective(strengths_from_phi(phi), need_grad)
        return f, (None if grad is None else phi_gradient(grad, phi))


def check_ratio_bounds(bounds, name="l1_ratio_bounds"):
    """``(low, high)`` l1_ratio bounds in ``(0, 1]``, capped at RATIO_CAP
    (each side a number, or an array with one value per strength); errors
    name the parameter ``name``."""
    bounds = DEFAULT_RATIO_BOUNDS if bounds is None else bounds
    try:
        low, high = (np.asarray(side, dtype=float) for side in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a (low, high) pair of numbers; got {bounds!r}."
        ) from None
    if (
        low.ndim > 1
        or high.ndim > 1
        or not (np.all(0.0 < low) and np.all(low <= high) and np.all(high <= 1.0))
    ):
        raise ValueError(f"{name} must satisfy 0 < low <= high <= 1; got {bounds!r}.")
    low, high = np.minimum(low, RATIO_CAP), np.minimum(high, RATIO_CAP)
    if low.ndim == high.ndim == 0:
        return float(low), float(high)
    return low, high


class BilevelElasticNetCV(BilevelLassoCV):
    """Elastic net with its L1 and L2 strengths tuned by hypergradient descent.

    The cross-validated mean squared error is minimized over both strengths
    of scikit-learn's :class:`~sklearn.linear_model.ElasticNet`, ``lambda_1
    = alpha * l1_ratio`` (L1) and ``lambda_2 = alpha * (1 - l1_ratio)``
    (L2), in log-space, by differentiating it through every fold's solution
    on its support (see :class:`~skbilevel.BilevelLassoCV`). Both are
    continuous: no grid of ``l1_ratio`` values, but a range. The outer
    method moves ``log alpha`` and ``logit l1_ratio`` within their boxes:
    the best alpha by a 1-D search at the top of the ratio's range (1, the
    Lasso, by default) and at ElasticNetCV's suggested ratios inside it
    (0.99, 0.95, 0.9, 0.7, 0.5, 0.1), then the projected hypergradient
    method on both from the best of them. With many strengths
    (``penalty="per_feature"``), the 1-D search at the top ratio, then the
    projected method from there and from ``l1_ratio_init``.

    Parameters
    ----------
    penalty : {"scalar", "per_feature", "per_target"} or array-like of shape \
            (n_features,), default="scalar"
        How strengths are shared: one pair (L1, L2) for all coefficients,
        one per feature, one per target, or one per group of features.
    alpha_init : float, default=None
        Starting ``alpha`` (with ``l1_ratio_init``) of the projected
        hypergradient method, which then runs alone; None: the Lasso's 1-D
        search chooses the start.
    l1_ratio_init : float in (0, 1), default=0.5
        Starting ``l1_ratio`` of the second start (or of the only one, with
        ``alpha_init``).
    alpha_bounds : (float, float), default=None
        Range of ``alpha`` (the total strength ``lambda_1 + lambda_2``).
        None: ``(1e-3 * alpha_max, alpha_max / low)``, with ``alpha_max`` the
        Lasso's smallest strength whose solution is zero and ``low`` the
        bottom of ``l1_ratio_bounds`` (as ElasticNetCV's path of each
        ``l1_ratio`` starts at ``alpha_max / l1_ratio``).
    l1_ratio_bounds : (float, float), default=None
        Range of ``l1_ratio``, within ``(0, 1]``; None: ``(0.01, 1)``. One
        is searched as ``1 - 1e-8`` (the Lasso); equal sides fix it.
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
        l1_ratio_bounds=None,
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
        self.l1_ratio_bounds = l1_ratio_bounds
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
        "l1_ratio_bounds": ["array-like", None],
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

    def _check_params(self, leave_one_out):
        if self.solver == "stochastic":
            raise ValueError(
                f"{type(self).__name__} has no stochastic solver yet (its "
                "search runs 1-D searches along the path); use solver='auto' "
                "or 'deterministic', or BilevelLassoCV(solver='stochastic')."
            )
        check_ratio_bounds(self.l1_ratio_bounds)
        return super()._check_params(leave_one_out)

    def _log_bounds(self, X, sw, targets=None, summary=None):
        """The box of ``phi = [log alpha, logit l1_ratio]`` (module docstring)."""
        n_out = targets.shape[1]
        half = check_penalty(self.penalty, X.shape[1], n_out, "per_target")[1]
        ratio_low, ratio_high = check_ratio_bounds(self.l1_ratio_bounds)
        alpha_max = float(np.max(lasso_alpha_max(X, targets, sw, self.fit_intercept)))
        if not alpha_max > 0.0:  # a constant target or constant columns
            alpha_max = 1.0
        # Where each ratio's path starts (alpha_max / l1_ratio: all zero above).
        self._log_alpha_max = np.log(alpha_max)
        if self.alpha_bounds is None:
            alpha_lo = np.log(ALPHA_FLOOR * alpha_max)
            alpha_hi = np.log(alpha_max / ratio_low)
        else:
            alpha_lo, alpha_hi = check_bounds(self.alpha_bounds, "alpha_bounds")
        for name, sides in (("l1_ratio", (ratio_low, ratio_high)),
                            ("alpha", (alpha_lo, alpha_hi))):  # fmt: skip
            if {np.size(side) for side in sides} - {1, half}:
                raise ValueError(
                    f"{name}_bounds arrays must hold {half} values, one per "
                    f"strength; got sizes {sorted({np.size(s) for s in sides})}."
                )
        lo = np.r_[np.broadcast_to(alpha_lo, (half,)),
                   np.broadcast_to(logit(ratio_low), (half,))]  # fmt: skip
        hi = np.r_[np.broadcast_to(alpha_hi, (half,)),
                   np.broadcast_to(logit(ratio_high), (half,))]  # fmt: skip
        return lo, hi

    def _initial_theta(self, n_hyper, lo, hi):
        """The start in ``phi`` (see ``alpha_init``), or None."""
        half = n_hyper // 2
        # A warm start from a fit with as many strengths (else the default).
        if self.warm_start and np.size(getattr(self, "alpha_", None)) == half:
            alpha = np.ravel(self.alpha_).astype(float)
            ratio = np.ravel(self.l1_ratio_).astype(float)
        elif self.alpha_init is not None:
            alpha = np.full(half, float(self.alpha_init))
            ratio = np.full(half, float(self.l1_ratio_init))
        else:
            return None
        phi = np.r_[np.log(alpha), logit(np.minimum(ratio, RATIO_CAP))]
        return np.clip(phi, lo, hi)

    def _run_outer(self, objective, theta0, n_hyper, lo, hi, guarded=None):
        """A profile over a few ``l1_ratio``, then both strengths together.

        At each of ``PROFILE_RATIOS`` within the range and its top, the
        top first (1 by default: the Lasso), ``alpha`` is searched as the
        Lasso's strength is (a 1-D search from the top of that ratio's path
        down, to ``PROFILE_TOL``), until two ratios in a row end
        ``PROFILE_TURN`` above the best one; the best ratio's search is
        refined to ``tol`` around its alpha, and the projected hypergradient
        method (``max_iter`` iterations of its own) then moves ``alpha`` and
        ``l1_ratio`` from there (one alpha; for many strengths see
        :meth:`_per_feature_search`). Its CV loss is therefore at or below
        the best alpha's at each of the ratios searched (ElasticNetCV's
        grid, with alpha continuous, where the profile has not turned: a
        loss that rose at two ratios in a row past the best and fell again
        further down would be missed; it did not happen on any of 9
        datasets measured, from Lasso-like to ridge-like).
        Measured on diabetes: from one start at the Lasso the box method
        cannot move (the loss is flat in ``logit l1_ratio`` near 1); from
        ``l1_ratio_init`` it stopped in a valley 0.07% above the Lasso (the
        CV loss is not convex in both); and a ratio's 1-D search started
        around the previous ratio's L1 strength (a decade each side) missed
        the basin that the scan from the top finds (at ``l1_ratio=0.95``,
        alpha 0.056 instead of 0.30, a CV MSE 0.07% higher). A start given
        by ``alpha_init`` or a warm start runs the box method alone.
        """
        half = n_hyper // 2
        lo, hi = (np.broadcast_to(side, (n_hyper,)).astype(float) for side in (lo, hi))
        phi_objective = _InAlphaRatio(objective)
        box = dict(tol=self.tol, max_iter=self.max_iter, on_gradient=objective.tighten)
        if theta0 is not None:
            return minimize_box(phi_objective, theta0, lo, hi, **box)
        free = hi > lo
        if half > 1:
            return self._per_feature_search(phi_objective, objective, lo, hi, box)
        best, n_iter = None, 0
        loose = max(self.tol, PROFILE_TOL)
        turned = 0  # ratios in a row above the best by PROFILE_TURN
        for s in self._profile_logits(lo[1], hi[1]):
            result = self._best_alpha(phi_objective, objective, s, lo, hi, loose)
            n_iter += result.n_iter
            if best is None or result.f < best.f:
                best = result
            above = result.f > best.f + PROFILE_TURN * abs(best.f)
            turned = turned + 1 if above else 0
            if turned == 2:
                break
        if loose > self.tol:
            refined = self._best_alpha(
                phi_objective, objective, best.theta[-1], lo, hi, self.tol,
                x0=best.theta[0],
            )  # fmt: skip
            n_iter += refined.n_iter
            best = refined if refined.f < best.f else best
        if free[1] and self._ratio_pinned(phi_objective, best.theta, lo, hi):
            n_iter += 1  # the projected method could only move alpha: settled
        elif free[1]:  # with l1_ratio fixed, the 1-D search was the search
            polished = minimize_box(phi_objective, best.theta, lo, hi, **box)
            n_iter += polished.n_iter
            converged = polished.converged
            best = polished if polished.f < best.f else best
            best.converged = converged
        best.n_iter = n_iter
        return best

    @staticmethod
    def _ratio_pinned(phi_objective, phi, lo, hi):
        """Whether the one ``l1_ratio`` of ``phi`` is at an end of its range
        with the loss falling outwards (by its hypergradient there).

        The projected method would then move ``alpha`` alone, which the 1-D
        search has settled to ``tol``: measured on Lasso-like data (the top
        ratio best), its 9 evaluations lowered the CV loss by 1e-6 relative.
        """
        at_top, at_bottom = phi[-1] >= hi[-1], phi[-1] <= lo[-1]
        if not (at_top or at_bottom):
            return False
        _, grad = phi_objective(phi, True)
        return bool(grad[-1] <= 0.0) if at_top else bool(grad[-1] >= 0.0)

    def _per_feature_search(self, phi_objective, objective, lo, hi, box):
        """Many strengths: the common alpha's 1-D search at the top ratio,
        then the box method from there and from the same L1 strength at
        ``l1_ratio_init``, half of ``max_iter`` each, the best kept.

        (The profile over ratios, then one long run of the box method from
        its best point, made results that depend on round-off: two fits
        on the same data as weights or as repeated rows differed by 2e-5 in
        their predictions after 78 iterations of a path that agreed for 70.)
        """
        half = lo.size // 2
        top = hi[half:].max()
        first = self._best_alpha(phi_objective, objective, top, lo, hi, self.tol)
        n_iter = first.n_iter
        starts = [first.theta]
        if (hi[half:] > lo[half:]).any():
            ratio = min(float(self.l1_ratio_init), RATIO_CAP)
            l1 = first.theta[:half] + log_expit(first.theta[half:])
            second = np.r_[l1 - np.log(ratio), np.full(half, logit(ratio))]
            starts.append(np.clip(second, lo, hi))
        best = None
        box = {**box, "max_iter": max(self.max_iter // len(starts), 1)}
        for start in starts:  # the first starts at the 1-D search's point
            result = minimize_box(phi_objective, start, lo, hi, **box)
            n_iter += result.n_iter
            if best is None or result.f < best.f:
                best = result
        best.n_iter = n_iter
        return best

    @staticmethod
    def _profile_logits(low, high):
        """Logits of the profile's ratios, from the top down: the top of the
        range, the ``PROFILE_RATIOS`` inside it and its bottom, unless that
        bottom lies below them all with some inside (the default range's
        bottom, 0.01, a ridge in all but name, is left to the box method:
        its path is the longest to scan)."""
        inside = [logit(r) for r in PROFILE_RATIOS if low < logit(r) < high]
        bottom = [] if inside and low < logit(min(PROFILE_RATIOS)) else [low]
        return list(dict.fromkeys([high, *inside, *bottom]))

    def _best_alpha(self, phi_objective, objective, s, lo, hi, tol, x0=None):
        """The 1-D search of a common alpha at logit ratio ``s`` (see
        :meth:`_run_outer`), around ``x0`` if given; returns the point in
        ``phi`` coordinates."""
        half = lo.size // 2

        def point(t):
            return np.clip(np.r_[np.full(half, t), np.full(half, s)], lo, hi)

        alpha_lo = float(lo[:half].min())
        # Above alpha_max / l1_ratio every coefficient is zero.
        top = max(self._log_alpha_max - log_expit(s), alpha_lo)
        alpha_hi = float(min(hi[:half].max(), top))
        if not alpha_hi > alpha_lo:
            phi = point(alpha_hi)  # alpha fixed (or nothing below the path's top)
            return OuterResult(phi, phi_objective(phi, True)[0], 1, True)

        def along_alpha(t, need_grad):
            f, grad = phi_objective(point(t), need_grad)
            return f, (None if grad is None else float(np.sum(grad[:half])))

        def whole_path(ts):
            # Every scan point, from the strongest penalty down (each solve
            # warm-starts the next): the CV loss of one ratio can have
            # basins 0.02% apart behind bumps that the early stops of the
            # default scan take for the end of the path (measured on
            # diabetes at l1_ratio=0.8: alpha 0.092 instead of 0.024).
            values = np.empty(len(ts))
            for i in np.argsort(ts)[::-1]:
                values[i] = along_alpha(ts[i], False)[0]
            return values

        decades = (alpha_hi - alpha_lo) / np.log(10.0)
        result = minimize_scalar(
            along_alpha, alpha_lo, alpha_hi, x0=x0,
            scan=None if x0 is not None else whole_path,
            n_scan=int(np.ceil(decades * self._path_scan_per_decade)) + 1,
            tol=tol, max_iter=self.max_iter, on_gradient=objective.tighten,
        )  # fmt: skip
        return OuterResult(point(result.theta[0]), result.f, result.n_iter,
                           result.converged)  # fmt: skip

    def _search_params(self, theta, objective=None):
        alpha, ratio = self._alpha_ratio(theta)
        return {"alpha": alpha, "l1_ratio": ratio}

    def _strength_names(self, layout, info):
        half = layout.n_hyper // 2
        single = Layout(layout.group_idx, layout.coef_groups, half, layout.labels)
        names = super()._strength_names(single, info)
        return np.r_[[f"l1: {n}" for n in names], [f"l2: {n}" for n in names]]

    def _range_edges(self, theta, lo, hi):
        """``alpha``'s range, from the searched box of ``[log alpha, logit
        l1_ratio]`` (``l1_ratio``, a mixing fraction, is not a strength:
        its ends are ordinary choices)."""
        theta = np.asarray(theta, dtype=float)
        half = theta.size // 2
        lo, hi = (np.broadcast_to(side, theta.shape) for side in (lo, hi))
        _, low, high = self._snapped("alpha", lo[:half], lo[:half], hi[:half])
        return [("alpha", self._alpha_ratio(theta)[0], low, high)]

    def _store_search(self, outcome, splits, info):
        super()._store_search(outcome, splits, info)
        kept, _ = outcome.objective.reported_rows()
        records = [outcome.objective.records[i] for i in kept]
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
        # A value at a side of its range (a fixed one: equal sides) is
        # reported as given, not as its round trip through the strengths
        # (0.30000000000000004).
        ratio_bounds = self.l1_ratio_bounds
        if ratio_bounds is None:
            ratio_bounds = DEFAULT_RATIO_BOUNDS
        for bounds, values, tolerance in (
            (self.alpha_bounds, alpha, 1e-12),
            # 1 is searched as RATIO_CAP, 1e-8 below it.
            (ratio_bounds, ratio, 2.0 * (1.0 - RATIO_CAP)),
        ):
            for side in () if bounds is None else bounds:
                if np.ndim(side) == 0:
                    near = np.abs(values - side) <= tolerance * abs(side)
                    values[near] = float(side)
        if half == 1 and isinstance(self.penalty, str) and self.penalty == "scalar":
            return float(alpha[0]), float(ratio[0])
        return alpha, ratio
