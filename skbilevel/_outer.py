"""Outer loops: minimize the validation loss over log-hyperparameters in a box.

* :func:`minimize_scalar` - one hyperparameter: a coarse scan of the box (to
  avoid poor local minima of the non-convex validation loss), then a
  safeguarded bracketing method on the derivative with cubic Hermite
  interpolation (superlinear, never leaves the bracket).
* :func:`minimize_box` - many hyperparameters: the projected (inexact)
  hypergradient method, with Barzilai-Borwein step lengths and a non-monotone
  Armijo backtracking along the projected direction (spectral projected
  gradient).
* :func:`minimize_stochastic` - the stochastic mode: projected AdaGrad steps
  on noisy hypergradients, then iterate averaging.

Both take ``fun(theta, need_grad) -> (f, grad)``. Convergence is measured in
relative terms: the (projected) derivative in log-space, divided by ``|f|``.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["OuterResult", "minimize_box", "minimize_scalar", "minimize_stochastic"]

_TINY = np.finfo(np.float64).tiny
# Hypergradients averaged by the stopping test of the stochastic outer loop.
_WINDOW = 10
# Bracket steps in a row that improve the best value by at most tol**2 |f|
# after which the 1-D search stops.
_STALL_PATIENCE = 3


@dataclass
class OuterResult:
    """Outcome of an outer loop."""

    theta: np.ndarray
    f: float
    n_iter: int
    converged: bool


def _cubic_min(t0, f0, g0, t1, f1, g1):
    """Minimizer of the cubic Hermite interpolant, or None if it has none."""
    d1 = g0 + g1 - 3.0 * (f0 - f1) / (t0 - t1)
    disc = d1 * d1 - g0 * g1
    if disc < 0.0:
        return None
    d2 = np.copysign(np.sqrt(disc), t1 - t0)
    denom = g1 - g0 + 2.0 * d2
    if denom == 0.0:
        return None
    return t1 - (t1 - t0) * (g1 + d2 - d1) / denom


def _quadratic_certifies(end, other, curvature, ftol):
    """Whether the quadratic of ``curvature`` through ``end`` = (t, f, g) both
    explains ``other``'s value (within 25% of its curvature term) and puts
    ``end`` within ``ftol / 4`` (relative) of its minimum."""
    if not curvature > 0.0:
        return False
    step = other[0] - end[0]
    bend = 0.5 * curvature * step * step
    fits = abs(other[1] - end[1] - end[2] * step - bend) <= 0.25 * bend
    gap = end[2] ** 2 / (2.0 * curvature)
    return fits and gap <= 0.25 * ftol * max(abs(end[1]), _TINY)


def _kinked(left, right, curvature):
    """Whether the bracket's values contradict a smooth function: the
    quadratic of the ends' derivative secant through either end misses the
    other end's value by more than 25% of its curvature term (the derivative
    jumps inside, as the Lasso's does where a coefficient enters the
    support)."""
    if not curvature > 0.0:
        return False
    step = right[0] - left[0]
    bend = 0.5 * curvature * step * step
    misses = (
        abs(right[1] - left[1] - left[2] * step - bend),
        abs(left[1] - right[1] + right[2] * step - bend),
    )
    return min(misses) > 0.25 * bend


def minimize_scalar(
    fun,
    lo,
    hi,
    *,
    x0=None,
    scan=None,
    n_scan=13,
    tol=1e-4,
    max_iter=50,
    on_gradient=None,
    ties=0.0,
    scan_derivatives=False,
    screen=None,
):
    """Minimize a scalar function of one log-hyperparameter on ``[lo, hi]``.

    Parameters
    ----------
    fun : callable
        ``fun(t, need_grad)`` returns ``(f, df/dt)`` (``df/dt`` may be None
        when ``need_grad`` is False).
    lo, hi : float
        Bounds of the box.
    x0 : float, default=None
        Warm start. When given, the scan covers one decade on each side of
        it (extended outwards while the values keep decreasing) instead of
        the whole box.
    scan : callable, default=None
        ``scan(ts)`` returns the values at many points at once; by default
        ``fun`` is called at each point, from the largest down, stopping
        where the path has turned (a point 10% worse than the best, or a
        flat stretch past the best).
    n_scan : int, default=13
        Number of points of the initial scan.
    tol : float, default=1e-4
        Stop when the bracket around the minimum guarantees (for a function
        convex inside it) ``f - min f <= tol**2 * |f|``, that is when
        ``|df/dt| * bracket_width <= tol**2 * |f|``, when the curvature does
        (``(df/dt)**2 / (2 h) <= tol**2 * |f| / 4`` at an end, ``h`` the
        secant of the ends' derivatives), when the bracket is narrower
        than ``1e-2 * tol``, or, in a bracket narrower than ``100 * tol``,
        at a kink (where the derivative jumps and the tests above cannot
        certify): when the ends' values contradict a smooth function with
        their derivatives, or when three steps in a row improved the best
        value by at most ``tol**2 * |f|``. At a kink ``t`` is then within
        ``100 * tol`` of the minimum.
    max_iter : int, default=50
        Maximum number of refinement steps after the scan.
    on_gradient : callable, default=None
        Called with the relative derivative after each evaluation (used to
        tighten the inner tolerances as the iterate settles).
    ties : float, default=0.0
        Relative accuracy of the scan's values: the search starts from the
        largest ``t`` among the points within ``ties * |f|`` of the best.
    scan_derivatives : bool, default=False
        Evaluate the point-by-point scan's points with their derivative once
        the values have descended by 1%, and end the scan at the first
        point whose derivative says that the values rise further down. For
        objectives whose derivative costs little next to the value (the
        Lasso's: a system on the support); it assumes that the loss has one
        basin past the descent (a second one behind a hump is not sought).

    screen : callable, default=None
        ``screen(cutoff)`` is called before each point-by-point scan value
        (and ``screen(None)`` after it): once the scan has descended, the
        objective may stop solving for that value once it rises above
        ``cutoff``, 10% above the best, and return the value reached, which
        ends the scan. Solves along the path from a stronger penalty's
        solution raise the validation loss as they go past the minimum, so
        such a point would have ended the scan solved too.

    Returns
    -------
    result : OuterResult
        ``n_iter`` counts the derivative evaluations (with
        ``scan_derivatives``, the scan's too; ``max_iter`` bounds those
        after the scan).
    """
    # Accurate evaluations {t: (f, df/dt)} (the scan's, with scan_derivatives).
    known = {}

    def evaluate(t):
        f, g = fun(t, True)
        known[t] = (f, g)
        if on_gradient is not None:
            on_gradient(abs(g) / max(abs(f), _TINY))
        return f, g

    def values(points):
        if scan is not None:
            return np.asarray(scan(points), dtype=float)
        # From the largest penalty down: each solve warm-starts the next one
        # along the regularization path, from the easiest problem. The
        # weakest penalties (the slowest solves) are skipped, left at +inf,
        # once the path has turned: after a value 10% above the best (two
        # before the path has left its starting plateau), or once a value
        # past the best is within 0.1% of the previous one (the flat,
        # unregularized end of the path).
        out = np.full(len(points), np.inf)
        first = previous = None
        best = np.inf
        rising = 0
        descended = False
        for i in np.argsort(points)[::-1]:
            if scan_derivatives and descended:
                value, slope = evaluate(points[i])
                out[i] = value
            else:
                if screen is not None:
                    # Past the plateau, a point whose value rises 10% above
                    # the best (what ends the scan) may stop solving there.
                    screen(best + 0.1 * abs(best) if descended else None)
                try:
                    value = out[i] = fun(points[i], False)[0]
                finally:
                    if screen is not None:
                        screen(None)
                slope = None
            first = value if first is None else first
            improved = value < best
            best = min(best, value)
            rising = rising + 1 if value > best + 0.1 * abs(best) else 0
            # "Past the best" only counts once the path has left the plateau
            # of the heavily penalized models it starts on.
            descended = first - best > 1e-2 * abs(first)
            flat = (
                descended
                and not improved
                and previous is not None
                and abs(value - previous) <= 1e-3 * abs(previous)
            )
            # Once the path has descended, one such value ends the scan: the
            # weakest penalties cost the most Newton steps (measured: the
            # last two points took 4.5 s of a 12 s fit on sparse text).
            if rising == 2 or flat or (rising and descended):
                break
            if slope is not None and slope < 0.0:
                break  # the values rise from here down (scan_derivatives)
            previous = value
        return out

    if x0 is None:
        ts = np.linspace(lo, hi, max(int(n_scan), 2))
    else:
        ts = np.unique(
            np.clip(float(x0) + np.log(10.0) * np.array([-1.0, 0.0, 1.0]), lo, hi)
        )
    fs = values(ts)
    # Walk outwards while the minimum sits on an end of the scan inside the box.
    stride = np.log(10.0)
    while True:
        i = int(np.nanargmin(fs))
        if i == 0 and ts[0] > lo:
            new = max(ts[0] - stride, lo)
            ts, fs = np.r_[new, ts], np.r_[values(np.array([new])), fs]
        elif i == len(ts) - 1 and ts[-1] < hi:
            new = min(ts[-1] + stride, hi)
            ts, fs = np.r_[ts, new], np.r_[fs, values(np.array([new]))]
        else:
            break
        stride *= 2.0
    i = int(np.nanargmin(fs))
    # Loosely solved scan values within ``ties`` of the best are ties. The
    # walk starts from the strongest penalty among them: a loss flat over
    # the weakly penalized end (many samples per coefficient) has its minimum
    # at the plateau's strong edge, and the walk then starts next to it
    # instead of crossing the plateau (measured: 2 accurate evaluations
    # instead of 8 on standardized make_classification 100000 x 100).
    if ties > 0.0:
        tied = np.flatnonzero(fs <= fs[i] + ties * abs(fs[i]))
        i = int(tied[np.argmax(ts[tied])])

    # n_iter counts the derivative evaluations, the scan's included;
    # max_iter bounds those after the scan.
    scanned = len(known)
    if ts[i] in known:
        fm, gm = known[ts[i]]
    else:
        fm, gm = evaluate(ts[i])
    n_iter = len(known)
    best_t, best_f = min(
        ((t, value[0]) for t, value in known.items()), key=lambda item: item[1]
    )
    ftol = tol * tol
    # Scan values come from loosely solved problems and can mis-rank points
    # whose losses nearly tie (large data: a flat loss). The bracket is
    # therefore built from accurate evaluations only: walk downhill from the
    # best scan point along its hypergradient until the derivative changes
    # sign or the loss rises. The best scan point is usually within half a
    # scan step of the minimum, so the first step is a quarter of the scan
    # step; the steps double while the loss keeps falling (flat losses).
    current = (ts[i], fm, gm)
    bracket = None
    if gm != 0.0:
        # The scan's neighbour downhill closes the bracket when its
        # derivative is known (scan_derivatives) and says so.
        j = i - 1 if gm > 0.0 else i + 1  # ts ascend
        if 0 <= j < len(ts) and ts[j] in known:
            f_j, g_j = known[ts[j]]
            if g_j * gm < 0 or f_j > fm:
                bracket = (current, (ts[j], f_j, g_j))
    spacing = np.diff(ts)
    stride = 0.25 * (float(np.median(spacing)) if len(spacing) else np.log(10.0))
    while bracket is None:
        t, f_t, g_t = current
        if g_t == 0.0:
            return OuterResult(np.array([t]), f_t, n_iter, True)
        nxt = float(np.clip(t - np.sign(g_t) * stride, lo, hi))
        stride *= 2.0
        if nxt == t:
            # The minimum is on the boundary of the box: the projection stops
            # us there.
            return OuterResult(np.array([t]), f_t, n_iter, True)
        f_n, g_n = evaluate(nxt)
        n_iter += 1
        if f_n < best_f:
            best_t, best_f = nxt, f_n
        if g_n * g_t < 0 or f_n > f_t:
            bracket = (current, (nxt, f_n, g_n))
            break
        current = (nxt, f_n, g_n)
        if n_iter - scanned >= max_iter:
            return OuterResult(np.array([best_t]), best_f, n_iter, False)
    left, right = sorted(bracket, key=lambda end: end[0])
    converged = False
    xtol = 1e-2 * tol
    same_side = 0  # consecutive replacements of the same end of the bracket
    last_side = None
    stalled = 0  # consecutive evaluations that did not improve the best
    while n_iter - scanned < max_iter:
        width = right[0] - left[0]
        curvature = (right[2] - left[2]) / width
        if width <= 100.0 * tol and (
            stalled >= _STALL_PATIENCE or _kinked(left, right, curvature)
        ):
            # A kink at the minimum (the derivative jumps there, as the
            # Lasso's does where a coefficient leaves the support) keeps
            # the ends' derivatives away from zero: the tests below would
            # shrink the bracket to xtol, each step gaining little (measured:
            # 5 more evaluations on a 1000 x 5000 Lasso for a CV loss 2e-5
            # lower). It shows as values that no smooth function with the
            # ends' derivatives explains, or as steps that stop improving.
            # (Only in a narrow bracket, 1% of the hyperparameter for the
            # default tol: a wide one may hold a plateau's far end.)
            converged = True
            break
        # Either end can certify the bracket (the newest point is often the
        # worse one, next to an end already there).
        # Or the curvature: with h the secant of the ends' derivatives, a
        # convex quadratic through an end lies g^2 / (2 h) above its minimum,
        # which certifies a point next to the minimum in a wide bracket (one
        # evaluation earlier than narrowing the bracket). The secant averages
        # the curvature over the bracket, which can exceed the curvature at
        # the minimum: the estimate must be 4x below the tolerance.
        # The quadratic must also explain the other end's value (within 25%
        # of its curvature term): a plateau ending at a wall has a tiny
        # derivative far from the minimum.
        certified = any(
            abs(end[2]) * width <= ftol * max(abs(end[1]), _TINY)
            or _quadratic_certifies(end, other, curvature, ftol)
            for end, other in ((left, right), (right, left))
        )
        if width <= xtol or certified:
            converged = True
            break
        candidate = _cubic_min(*left, *right)
        margin = 0.05 * width
        if same_side >= 3:
            # One end has gone stale and interpolation creeps towards it
            # (linear rate): a bisection restores the bracket's shrinking.
            candidate = None
            same_side = 0
        if candidate is None or not np.isfinite(candidate):
            candidate = 0.5 * (left[0] + right[0])
        else:
            # A minimum predicted next to an end is kept a little inside: the
            # new point then makes a narrow bracket with that end, which its
            # derivative can certify. Unless that end's own Newton step (its
            # derivative over the secant curvature) is shorter than the
            # margin: the minimum is then next to it, and the prediction,
            # evaluated as it is, certifies itself by its curvature.
            near = min((left, right), key=lambda end: abs(candidate - end[0]))
            close = curvature > 0.0 and abs(near[2]) < curvature * margin
            if not close:
                candidate = min(max(candidate, left[0] + margin), right[0] - margin)
        fc, gc = evaluate(candidate)
        n_iter += 1
        gain = best_f - fc
        stalled = 0 if gain > ftol * max(abs(best_f), _TINY) else stalled + 1
        if fc < best_f:
            best_t, best_f = candidate, fc
        replaced_right = gc > 0 or fc > left[1]
        same_side = same_side + 1 if replaced_right == last_side else 1
        last_side = replaced_right
        if replaced_right:
            right = (candidate, fc, gc)
        else:
            left = (candidate, fc, gc)
    return OuterResult(np.array([best_t]), best_f, n_iter, converged)


def minimize_box(
    fun,
    theta0,
    lo,
    hi,
    *,
    tol=1e-4,
    max_iter=100,
    memory=5,
    on_gradient=None,
    monitor=None,
    patience=5,
):
    """Projected inexact hypergradient method (spectral projected gradient).

    Kept instead of ``scipy.optimize.minimize(method="L-BFGS-B")``: on
    per-feature ridge CV losses it reached its final loss in 13 and 35
    evaluations where L-BFGS-B needed 17 and 47 (measured; see the user guide).

    Parameters
    ----------
    fun : callable
        ``fun(theta, need_grad)`` returns ``(f, grad)``.
    theta0 : ndarray of shape (n_hyper,)
        Starting point (projected onto the box).
    lo, hi : float or ndarray of shape (n_hyper,)
        Box bounds in log-space.
    tol : float, default=1e-4
        Stop when the l1 norm of the projected gradient is at most
        ``tol * |f|``, or when the monitored loss has not improved on its
        best value by more than ``tol`` (relative) over the last ``patience``
        iterations: with hundreds of hyperparameters the loss settles long
        before every one of them does.
    max_iter : int, default=100
        Maximum number of outer iterations.
    memory : int, default=5
        Length of the non-monotone window of the Armijo test.
    on_gradient : callable, default=None
        Called with the relative projected-gradient norm after each iterate.
    monitor : callable, default=None
        ``monitor()`` returns the loss that the stopping window watches at
        the iterate just accepted (e.g. a held-out loss); None watches ``f``.
    patience : int, default=5
        Length of the stopping window.

    Returns
    -------
    result : OuterResult
    """
    theta = np.clip(np.asarray(theta0, dtype=float), lo, hi)
    f, g = fun(theta, True)
    best = (theta.copy(), f)
    history = [f]
    watched = [f if monitor is None else monitor()]
    step = 1.0 / max(np.max(np.abs(g)), _TINY)
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        scale = max(abs(f), _TINY)
        pg = np.clip(theta - g, lo, hi) - theta
        # l1 norm: the first-order decrease available from moving every
        # hyperparameter by one unit, so it does not shrink with their number.
        rel = np.sum(np.abs(pg)) / scale
        if on_gradient is not None:
            on_gradient(rel)
        if rel <= tol:
            converged = True
            break
        if _no_recent_gain(watched, tol, patience):
            converged = True
            break
        direction = np.clip(theta - step * g, lo, hi) - theta
        slope = float(g @ direction)
        f_ref = max(history[-memory:])
        t = 1.0
        while True:
            candidate = theta + t * direction
            fc, gc = fun(candidate, True)
            if fc <= f_ref + 1e-4 * t * slope:
                break
            denom = 2.0 * (fc - f - t * slope)
            t_new = -slope * t * t / denom if denom > 0 else 0.5 * t
            t = float(np.clip(t_new, 0.1 * t, 0.5 * t))
            if t < 1e-10:
                break
        if not fc <= f_ref + 1e-4 * t * slope:
            # No decrease along the projected direction: we are at the
            # precision limit of the (inexact) hypergradient.
            break
        s = candidate - theta
        y = gc - g
        sy = float(s @ y)
        step = float(s @ s) / sy if sy > 0 else 1e3 / max(np.max(np.abs(gc)), _TINY)
        step = float(np.clip(step, 1e-10, 1e10))
        theta, f, g = candidate, fc, gc
        history.append(f)
        watched.append(f if monitor is None else monitor())
        if f < best[1]:
            best = (theta.copy(), f)
    return OuterResult(best[0], best[1], n_iter, converged)


def _no_recent_gain(values, tol, patience):
    """Whether the last ``patience`` values missed the earlier best by ``tol``.

    The window compares best values, not successive ones, so a non-monotone
    excursion (allowed by the Armijo window) and its return do not count as
    progress. NaN values (an undefined held-out loss) never count.
    """
    if len(values) <= patience:
        return False
    earlier = np.asarray(values[:-patience], dtype=float)
    recent = np.asarray(values[-patience:], dtype=float)
    if not np.isfinite(earlier).any():
        return False
    before = np.nanmin(earlier)
    after = np.nanmin(recent) if np.isfinite(recent).any() else np.inf
    return not after < before - tol * max(abs(before), _TINY)


def minimize_stochastic(objective, theta0, lo, hi, *, max_iter, tol, step=0.5):
    """Projected stochastic (AdaGrad) steps in log-space, then iterate averaging.

    With several hyperparameters, a first phase (at most a third of the
    steps) moves their common value only, along the summed hypergradient;
    the second phase moves each one. The common phase runs its budget; the
    last phase stops earlier once the mean of its last ``_WINDOW``
    hypergradients (which averages their noise out) gives a projected step
    whose l1 norm is at most ``tol`` times the mean loss (the criterion of
    :func:`minimize_box`).

    Parameters
    ----------
    objective : skbilevel._stochastic.StochasticObjective
    theta0 : ndarray of shape (n_hyper,)
    lo, hi : float
        Box in log-space.
    max_iter : int
        Maximum number of stochastic outer steps.
    tol : float
        Relative tolerance of the stopping test.
    step : float, default=0.5
        First step length in log-space (per coordinate).

    Returns
    -------
    result : OuterResult
        ``theta`` is the mean of the second half of the last phase's
        iterates; ``f`` the full validation loss there
        (:meth:`StochasticObjective.final`); ``converged`` whether the last
        phase met the stopping test.
    """
    theta = np.clip(np.asarray(theta0, dtype=float), lo, hi)
    n_hyper = theta.size
    # (moves the common value, step budget): the common value first, like
    # the deterministic search's 1-D phase, then every hyperparameter.
    phases = [(True, max_iter // 3), (False, max_iter)] if n_hyper > 1 else []
    phases = phases or [(True, max_iter)]
    n_iter = 0
    converged = False
    iterates = []
    for common, budget in phases:
        accumulated = np.zeros(n_hyper)
        grads, losses, iterates = [], [], []
        converged = False
        while n_iter < max_iter and len(iterates) < budget:
            f, grad = objective(theta, True)
            n_iter += 1
            if common:
                grad = np.full(n_hyper, np.sum(grad))
            grads.append(grad)
            losses.append(f)
            # The common phase before per-hyperparameter steps runs its whole
            # budget: AdaGrad's normalized steps cross flat stretches of the
            # loss, whose noisy hypergradients could not tell them from the
            # optimum. The last phase stops once flat in every direction: one
            # unit of log-strength moved along the mean hypergradient (noise
            # averaged out) gains at most tol (relative), as in minimize_box.
            last = common is False or n_hyper == 1
            if last and len(iterates) >= _WINDOW:
                mean = np.mean(grads[-_WINDOW:], axis=0)
                if common:
                    mean = mean / n_hyper
                projected = np.clip(theta - mean, lo, hi) - theta
                scale = max(abs(np.mean(losses[-_WINDOW:])), _TINY)
                if np.sum(np.abs(projected)) <= tol * scale:
                    converged = True
                    break
            accumulated += grad * grad
            # AdaGrad's normalization, floored at the flat-gradient scale
            # tol * |f| (per hyperparameter): a hypergradient far below it,
            # mostly noise on a flat loss, moves the iterate proportionally
            # less instead of a full normalized step.
            floor = tol * max(abs(f), _TINY) / (1 if common else n_hyper)
            theta = theta - step * grad / (np.sqrt(accumulated) + floor)
            theta = np.clip(theta, lo, hi)
            iterates.append(theta)
        if not iterates:
            iterates = [theta]
    averaged = np.mean(iterates[len(iterates) // 2 :], axis=0)
    f = objective.final(averaged)
    return OuterResult(averaged, f, n_iter, converged)
