"""Known-answer tests of the outer loops and of conjugate gradients.

``minimize_scalar`` and ``minimize_box`` are exercised on functions whose
minimizer is known in closed form (quadratics, a quartic with two minima,
plateaus), and ``conjugate_gradient`` on systems checked against
:func:`numpy.linalg.solve`. Evaluation counts are bounded at about twice what
the routines need today, so that a refactor that makes them markedly slower
fails here rather than only in the benchmarks.
"""

import numpy as np
import pytest
import scipy.linalg

from skbilevel._linalg import cho_solve_vector, conjugate_gradient, robust_cho_factor
from skbilevel._outer import _kinked, minimize_box, minimize_scalar


class Counted:
    """Wrap ``fun(theta, need_grad)``, counting calls and gradient requests."""

    def __init__(self, fun):
        self.fun = fun
        self.n_calls = 0
        self.n_grad = 0

    def __call__(self, theta, need_grad):
        self.n_calls += 1
        self.n_grad += bool(need_grad)
        return self.fun(theta, need_grad)


def parabola(center, curvature=1.0, floor=1.0):
    """``floor + curvature * (t - center)**2``: the minimum value is ``floor``.

    A non-zero floor matters: both routines stop on tolerances relative to
    ``|f|``.
    """

    def fun(t, need_grad):
        return floor + curvature * (t - center) ** 2, 2.0 * curvature * (t - center)

    return fun


def quadratic(hessian, center, floor=1.0):
    """``floor + (x - center) @ hessian @ (x - center) / 2`` and its gradient."""

    def fun(x, need_grad):
        d = x - center
        g = hessian @ d
        return floor + 0.5 * d @ g, g

    return fun


def real_roots(coefficients):
    roots = np.roots(coefficients)
    return np.sort(roots[np.abs(roots.imag) < 1e-12].real)


# --------------------------------------------------------------- minimize_scalar
@pytest.mark.parametrize("x0, max_calls", [(None, 24), (0.0, 16)])
def test_scalar_quadratic(x0, max_calls):
    """The minimum of a parabola is found to the documented tolerance."""
    fun = Counted(parabola(1.3))
    relative = []
    res = minimize_scalar(fun, -5.0, 5.0, x0=x0, on_gradient=relative.append)
    assert res.converged
    assert res.theta.shape == (1,)
    # The docstring promises f - min f <= tol**2 |f| (1e-8 here); with
    # curvature 1 that puts t within sqrt(1e-8) = 1e-4 of the minimizer.
    assert res.f - 1.0 <= 1e-8
    assert abs(res.theta[0] - 1.3) <= 1e-4
    assert res.f == fun.fun(res.theta[0], False)[0]  # f belongs to theta
    # Today: 8 scan values (4 with x0) then 4 derivative evaluations; the
    # cubic interpolation is exact on a parabola. Bounds are twice that.
    assert fun.n_calls <= max_calls
    assert fun.n_grad <= 8
    # on_gradient sees every derivative evaluation, and the last is tiny.
    assert len(relative) == fun.n_grad == res.n_iter
    assert relative[-1] <= 1e-4


@pytest.mark.parametrize(
    "center, bound, max_calls",
    # Today 4 calls (upper: the scan starts at the top and stops once it
    # rises) and 14 (lower: all 13 scan points, then one derivative).
    [(7.0, 5.0, 8), (-7.0, -5.0, 28)],
)
def test_scalar_minimum_on_boundary(center, bound, max_calls):
    """A minimum outside the box is reported at the bound, as converged."""
    fun = Counted(parabola(center, floor=2.0))
    res = minimize_scalar(fun, -5.0, 5.0)
    assert res.converged
    assert res.theta[0] == bound
    assert res.f == 2.0 + (bound - center) ** 2
    assert fun.n_calls <= max_calls


def test_scalar_plateau_next_to_minimum():
    """A loss exactly flat on half the box (zero derivative there) next to a well.

    Models the heavily penalized end of a regularization path, where every
    model is the same; the scan must not stop on it.
    """

    def fun(t, need_grad):
        if t > 0.0:
            return 1.0, 0.0
        e = np.exp(-4.0 * (t + 2.0) ** 2)
        return 1.0 - 0.5 * e, 4.0 * (t + 2.0) * e

    counted = Counted(fun)
    res = minimize_scalar(counted, -5.0, 5.0)
    assert res.converged
    assert np.isfinite(res.theta[0])
    # Curvature 4 at the bottom: f - 0.5 <= 1e-8 (see above) gives
    # |t + 2| <= sqrt(1e-8 / 2) = 7e-5.
    assert res.f == pytest.approx(0.5, abs=1e-8)
    assert abs(res.theta[0] + 2.0) <= 1e-4
    assert counted.n_calls <= 36  # 18 today


def plateau_then_wall(edge):
    """Flat for ``t < edge`` (a 1e-6 relative slope, as weak penalties on many
    samples), a minimum at ``edge + 0.1``, steep past it. Values without a
    derivative are loose, as scan points are: their error (1e-6) reverses
    the plateau's slope, so the scan's best point is its far end."""

    def fun(t, need_grad):
        if t < edge:
            slope = 1e-6 if need_grad else -1e-6
            return 1.01 + slope * (edge - t), -1e-6
        d = t - edge - 0.1
        return 1.0 + d * d, 2.0 * d

    return fun


def test_scan_ties_start_the_walk_at_the_plateau_edge():
    """Loose scan values within ``ties`` of the best tie; the walk starts from
    the strongest penalty among them instead of crossing the plateau."""
    counts = {}
    for ties in (0.0, 1e-4):
        fun = Counted(plateau_then_wall(edge=2.0))
        res = minimize_scalar(fun, -10.0, 5.0, n_scan=16, ties=ties)
        assert res.converged
        assert res.theta[0] == pytest.approx(2.1, abs=1e-3)
        counts[ties] = fun.n_grad
    # 6 against 16 today (the walk crosses the plateau otherwise).
    assert counts[1e-4] + 4 <= counts[0.0]


def test_scan_stops_once_the_loss_has_risen_10_percent():
    """Scan points go from the largest t down; past the minimum, one value
    10% above the best ends the scan (the weakest penalties cost most)."""
    fun = Counted(parabola(center=3.0, curvature=0.05))
    values = []

    def recorded(t, need_grad):
        f, g = fun(t, need_grad)
        if not need_grad:
            values.append(t)
        return f, g

    minimize_scalar(recorded, -10.0, 10.0, n_scan=21)
    # Points 10, 9, ..., 3 (the best), 2 (+5%), 1 (+20%: stop).
    assert values == [float(t) for t in range(10, 0, -1)]


def test_scalar_kink_at_the_minimum():
    """The derivative jumps at the minimum (the Lasso's CV loss where a
    coefficient leaves the support): no end's derivative vanishes, and the
    search stops once a bracket narrower than ``100 * tol`` (1% of the
    hyperparameter) has values that no smooth function explains."""

    def kink(t, need_grad):
        d = t - 1.3
        return 1.0 + 0.1 * abs(d) + 0.01 * d * d, 0.1 * np.sign(d) + 0.02 * d

    fun = Counted(kink)
    res = minimize_scalar(fun, -5.0, 5.0)
    assert res.converged
    assert abs(res.theta[0] - 1.3) <= 100 * 1e-4
    assert res.f - 1.0 <= 1e-4  # 1.7e-5 today (t within 1.7e-4 of the kink)
    assert fun.n_grad <= 12  # 8 today (15 when it waited for the stall rule)


def test_kinked_bracket_tells_a_jump_from_a_smooth_minimum():
    """A bracket around a smooth minimum (a parabola, a quartic) is
    explained by the quadratic of its ends' derivative secant; one around a
    jump of the derivative is not."""

    def end(fun, derivative, t):
        return (t, fun(t), derivative(t))

    for fun, derivative in (
        (lambda t: 1.0 + (t - 0.3) ** 2, lambda t: 2.0 * (t - 0.3)),
        (lambda t: 1.0 + (t - 0.3) ** 2 + 0.1 * (t - 0.3) ** 4,
         lambda t: 2.0 * (t - 0.3) + 0.4 * (t - 0.3) ** 3),
    ):  # fmt: skip
        left, right = end(fun, derivative, 0.0), end(fun, derivative, 1.0)
        assert not _kinked(left, right, (right[2] - left[2]) / 1.0)

    def kink(t):
        return 1.0 + 0.1 * abs(t - 0.3) + 0.01 * (t - 0.3) ** 2

    def kink_derivative(t):
        return 0.1 * np.sign(t - 0.3) + 0.02 * (t - 0.3)

    left, right = end(kink, kink_derivative, 0.29), end(kink, kink_derivative, 0.3004)
    assert _kinked(left, right, (right[2] - left[2]) / (right[0] - left[0]))


def test_scalar_kink_stops_once_the_narrow_bracket_is_kinked():
    """A kink whose neighbours still improve the value by more than the
    tolerance at every step (a steep jump) ends the search as soon as the
    bracket is narrower than ``100 * tol`` and kinked, not after the stall
    rule's three steps."""

    def kink(t, need_grad):
        d = t - 0.37
        return 100.0 + 5.0 * abs(d) + d * d, 5.0 * np.sign(d) + 2.0 * d

    fun = Counted(kink)
    res = minimize_scalar(fun, -5.0, 5.0)
    assert res.converged
    assert abs(res.theta[0] - 0.37) <= 100 * 1e-4
    assert res.f <= 100.0 + 5.0 * 100 * 1e-4
    assert fun.n_grad <= 12


def test_scan_derivatives_stop_where_the_loss_starts_rising():
    """With scan_derivatives, points past the 1% descent are evaluated with
    their derivative, the scan ends at the first one that says the loss
    rises further down, and the bracket is closed by the scan's neighbours
    (no walk)."""
    fun = Counted(parabola(center=3.0, curvature=0.05))
    calls = []

    def recorded(t, need_grad):
        calls.append((float(t), need_grad))
        return fun(t, need_grad)

    res = minimize_scalar(recorded, -10.0, 10.0, n_scan=21, scan_derivatives=True)
    assert res.converged
    assert res.theta[0] == pytest.approx(3.0, abs=1e-4)
    # 10, 9 (values; descended), 8, ..., 3 (derivative 0: the minimum), then
    # 2 (derivative < 0: the values rise from here down): the scan stops,
    # and the best scan point's zero derivative needs no further evaluation.
    assert calls == [(10.0, False), (9.0, False)] + [
        (float(t), True) for t in range(8, 1, -1)
    ]
    assert res.n_iter == 7  # the scan's derivatives (8, ..., 2) count


def test_scalar_constant_function():
    """Documents the outcome on a loss constant over the whole box.

    Every scan point ties; the first (lowest) one wins, its derivative is
    exactly zero, so the result is the lower bound, converged, after the scan
    and a single derivative evaluation.
    """
    fun = Counted(lambda t, need_grad: (3.0, 0.0))
    res = minimize_scalar(fun, -5.0, 5.0, n_scan=13)
    assert res.converged
    assert res.theta[0] == -5.0
    assert res.f == 3.0
    assert fun.n_calls == 13 + 1
    assert fun.n_grad == 1


def test_scalar_noisy_derivative():
    """Inexact hypergradients: the derivative carries noise of size 1e-2."""
    rng = np.random.RandomState(0)
    exact = parabola(1.3)

    def fun(t, need_grad):
        f, g = exact(t, need_grad)
        return f, g + 1e-2 * rng.randn()

    res = minimize_scalar(fun, -5.0, 5.0)
    assert np.isfinite(res.f)
    # The bracket is built on the sign of the derivative. Noise of at most
    # 4 sigma = 4e-2 moves the root of the perturbed derivative 2 (t - 1.3)
    # by at most 2e-2; the exact loss there is within (2e-2)**2 of the
    # minimum. (Observed: 3e-4 and 8e-8.)
    assert abs(res.theta[0] - 1.3) <= 2e-2
    assert res.f - 1.0 <= 4e-4


def double_well(tilt, floor=1.0):
    """``floor + (t**2 - 4)**2 / 16 + tilt * t``: two minima near -2 and +2.

    Its derivative ``(t**3 - 4 t + 4 tilt) / 4`` vanishes at the roots of a
    cubic, so the global minimizer is known exactly.
    """

    def fun(t, need_grad):
        return (
            floor + (t * t - 4.0) ** 2 / 16.0 + tilt * t,
            t * (t * t - 4.0) / 4.0 + tilt,
        )

    roots = real_roots([1.0, 0.0, -4.0, 4.0 * tilt])
    minima = roots[[0, 2]]  # the middle root is the maximum between them
    values = [fun(t, False)[0] for t in minima]
    return fun, minima[int(np.argmin(values))], min(values)


def full_scan(fun):
    """A vectorized ``scan``: the value at every point, none skipped."""
    return lambda ts: [fun(t, False)[0] for t in ts]


def test_scalar_two_minima_global_on_scan_side():
    """The scan runs from the top of the box down and meets the global first."""
    fun, t_star, f_star = double_well(tilt=-0.3)
    assert t_star > 0
    res = minimize_scalar(fun, -5.0, 5.0)
    assert res.converged
    assert abs(res.theta[0] - t_star) <= 1e-3
    assert res.f == pytest.approx(f_star, rel=1e-7)


def test_scalar_two_minima_global_behind_a_hump():
    """The global minimum lies past a local one and a hump.

    With a vectorized ``scan`` every point is evaluated; point by point, the
    scan only goes on past a hump lower than 10% of the best value (here 4%,
    thanks to the floor of 10).
    """
    fun, t_star, f_star = double_well(tilt=0.3, floor=10.0)
    assert t_star < 0
    # The local minimum near +1.8 is the one a descent from the top would find.
    assert fun(1.8, False)[0] > f_star + 0.5
    results = [
        minimize_scalar(fun, -5.0, 5.0),
        minimize_scalar(fun, -5.0, 5.0, scan=full_scan(fun)),
    ]
    for res in results:
        assert res.converged
        assert abs(res.theta[0] - t_star) <= 1e-3
        assert res.f == pytest.approx(f_star, rel=1e-7)


def test_scalar_sequential_scan_stops_at_a_high_hump():
    """Documents the trade-off of the point-by-point scan (see its docstring).

    It stops once two successive values are 10% above the best, to skip the
    slow weakly penalized solves; a global minimum behind such a hump is then
    missed and the local one returned. A vectorized ``scan`` finds it.
    """
    fun, t_star, f_star = double_well(tilt=0.3, floor=1.0)
    local = minimize_scalar(fun, -5.0, 5.0)
    assert local.theta[0] > 0 > t_star
    assert local.f > f_star + 1.0
    full = minimize_scalar(fun, -5.0, 5.0, scan=full_scan(fun))
    assert abs(full.theta[0] - t_star) <= 1e-3


def test_scalar_max_iter():
    """Too few refinement steps: the best point so far, flagged unconverged."""
    fun = Counted(parabola(1.3))
    res = minimize_scalar(fun, -5.0, 5.0, max_iter=2)
    assert not res.converged
    assert res.n_iter <= 2
    assert res.f == fun.fun(res.theta[0], False)[0]
    assert res.f < 2.0  # still better than the scan's neighbours


# ------------------------------------------------------------------ minimize_box
def test_box_quadratic():
    """Interior minimum of a well-conditioned quadratic."""
    center = np.array([0.5, -1.0, 2.0])
    fun = Counted(quadratic(np.diag([1.0, 2.0, 3.0]), center))
    res = minimize_box(fun, np.zeros(3), -5.0, 5.0)
    assert res.converged
    # Stopping at ||grad||_1 <= tol |f| = 1e-4 leaves f - 1 <= 1e-8 / 2 / 1
    # (smallest curvature 1) and |x - center|^2 <= 2 (f - 1).
    assert res.f - 1.0 <= 1e-8
    assert np.max(np.abs(res.theta - center)) <= np.sqrt(2e-8)
    assert fun.n_calls <= 24  # 12 today


def test_box_minimum_on_boundary():
    """Coordinates whose minimizer is outside the box end exactly on the bound."""
    center = np.array([0.5, -7.0, 9.0])
    fun = Counted(quadratic(np.diag([1.0, 2.0, 3.0]), center))
    res = minimize_box(fun, np.zeros(3), -5.0, 5.0)
    assert res.converged
    assert res.theta[1] == -5.0
    assert res.theta[2] == 5.0
    assert res.theta[0] == pytest.approx(0.5, abs=1e-4)
    assert res.f == pytest.approx(1.0 + 0.5 * (2.0 * 4.0 + 3.0 * 16.0), rel=1e-8)
    assert fun.n_calls <= 10  # 5 today


@pytest.mark.parametrize("theta0, max_calls", [(0.0, 200), (-10.0, 240)])
def test_box_per_coordinate_bounds_ill_conditioned(theta0, max_calls):
    """Diagonal quadratic with curvatures 1 to 1e3 and one box per coordinate.

    Diagonal, so the constrained minimizer is the clipped center; three
    coordinates are pinned (one by a margin of only 0.05 on the stiffest
    axis). A start outside the box (-10) is projected first.
    """
    curvature = np.logspace(0, 3, 6)
    center = np.array([0.5, -1.2, 2.1, -3.0, 1.0, 4.05])
    lo = np.array([-1.0, -1.0, -4.0, -4.0, -4.0, -4.0])
    hi = np.array([1.0, 1.0, 2.0, 4.0, 4.0, 4.0])
    star = np.clip(center, lo, hi)
    fun = Counted(quadratic(np.diag(curvature), center))
    f_star = fun.fun(star, False)[0]
    # A tight tol: the loss window (gain under tol * |f| in 5 iterations)
    # would stop this slowly converging case early at the default.
    res = minimize_box(fun, np.full(6, theta0), lo, hi, tol=1e-7)
    assert res.converged
    assert np.all((lo <= res.theta) & (res.theta <= hi))
    np.testing.assert_array_equal(res.theta[[1, 2, 5]], star[[1, 2, 5]])
    # The loss window (f down by less than 1e-7 |f| over 5 iterations) can
    # stop it a little short.
    assert res.f - f_star <= 1e-5 * f_star
    # Strong convexity (smallest curvature 1) turns the gap into a distance.
    gap = max(res.f - f_star, 0.0)
    assert np.max(np.abs(res.theta - star)) <= np.sqrt(2.0 * gap) + 1e-12
    # Today 98 and 116 calls: spectral gradient on a 1e3 condition number.
    assert fun.n_calls <= max_calls


def test_box_ill_conditioned_coupled():
    """Rotated quadratic (condition number 100): the axes are coupled."""
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.randn(10, 10))
    hessian = q @ np.diag(np.logspace(0, 2, 10)) @ q.T
    center = rng.uniform(-2.0, 2.0, 10)
    fun = Counted(quadratic(hessian, center))
    res = minimize_box(fun, np.zeros(10), -5.0, 5.0, tol=1e-7)
    assert res.converged
    assert res.f - 1.0 <= 1e-5
    assert np.max(np.abs(res.theta - center)) <= np.sqrt(2e-5)
    assert fun.n_calls <= 132  # 66 today


def test_box_max_iter():
    """Stopping on max_iter: flagged unconverged, the best iterate returned."""
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.randn(10, 10))
    fun = Counted(quadratic(q @ np.diag(np.logspace(0, 2, 10)) @ q.T, np.ones(10)))
    res = minimize_box(fun, np.zeros(10), -5.0, 5.0, max_iter=3)
    assert not res.converged
    assert res.n_iter == 3
    assert res.f == fun.fun(res.theta, False)[0]
    assert res.f < fun.fun(np.zeros(10), False)[0]


def test_box_flat_region():
    """A loss constant (its minimum, 1) wherever every coordinate is below 1.

    From outside, the iterate must land in the flat region, with exactly the
    minimum value; from inside, the zero gradient stops it at once.
    """

    def fun(x, need_grad):
        excess = np.maximum(x - 1.0, 0.0)
        return 1.0 + excess @ excess, 2.0 * excess

    outside = Counted(fun)
    res = minimize_box(outside, np.array([4.0, 3.0, 2.0, 0.0]), -5.0, 5.0)
    assert res.converged
    assert np.all(np.isfinite(res.theta))
    assert np.all(res.theta <= 1.0)
    assert res.f == 1.0
    assert outside.n_calls <= 6  # 3 today

    inside = Counted(fun)
    res = minimize_box(inside, np.zeros(4), -5.0, 5.0)
    assert res.converged
    np.testing.assert_array_equal(res.theta, np.zeros(4))
    assert res.f == 1.0
    assert inside.n_calls == 1


def test_box_plateau_far_from_the_well():
    """Documents the outcome of a start on a plateau next to the minimum.

    The gradient there is below round-off (exp(-45)), so the local method
    reports the start as converged with the plateau value 1, not the
    minimum 0.5: escaping plateaus is the scalar scan's job, which picks the
    start of the box search. Started on the slope, it reaches the minimum.
    """
    center = np.array([-2.0, 1.0])

    def fun(x, need_grad):
        d = x - center
        e = np.exp(-d @ d)
        return 1.0 - 0.5 * e, d * e

    res = minimize_box(fun, np.array([4.0, 4.0]), -5.0, 5.0)
    assert res.converged
    np.testing.assert_array_equal(res.theta, [4.0, 4.0])
    assert res.f == pytest.approx(1.0, abs=1e-15)

    res = minimize_box(fun, np.array([-1.0, 0.0]), -5.0, 5.0)
    assert res.converged
    assert res.f == pytest.approx(0.5, abs=1e-8)
    assert np.max(np.abs(res.theta - center)) <= 1e-3


def test_box_noisy_gradient():
    """Inexact hypergradients: each component carries noise of size 1e-3."""
    rng = np.random.RandomState(0)
    center = np.array([0.3, -0.7, 1.1])
    exact = quadratic(np.diag([1.0, 3.0, 10.0]), center)

    def fun(x, need_grad):
        f, g = exact(x, need_grad)
        return f, g + 1e-3 * rng.randn(3)

    res = minimize_box(fun, np.zeros(3), -5.0, 5.0)
    assert np.isfinite(res.f)
    # Where the noisy gradient looks stationary, the exact one is at most
    # 4 sigma = 4e-3 per component, i.e. |x - center| <= 4e-3 / 1 (smallest
    # curvature); 1e-2 leaves room for the early stall stop. Observed 1e-3.
    assert np.max(np.abs(res.theta - center)) <= 1e-2
    assert exact(res.theta, False)[0] == res.f  # f itself is exact
    assert res.f - 1.0 <= 0.5 * 10.0 * 1e-4  # the gap at that distance


# ------------------------------------------------------------ conjugate_gradient
def spd_matrix(n, rng):
    a = rng.randn(n, n)
    return a @ a.T / n + np.eye(n)  # eigenvalues in about [1, 5]


class CountedMatvec:
    def __init__(self, matrix_or_fun):
        if callable(matrix_or_fun):
            self.fun = matrix_or_fun
        else:
            self.fun = lambda x: matrix_or_fun @ x
        self.n = 0

    def __call__(self, x):
        self.n += 1
        return self.fun(x)


def test_cg_matches_solve():
    rng = np.random.RandomState(0)
    A, b = spd_matrix(50, rng), rng.randn(50)
    matvec = CountedMatvec(A)
    x, n_matvec, converged = conjugate_gradient(matvec, b)
    assert converged
    assert n_matvec == matvec.n
    assert np.linalg.norm(A @ x - b) <= 1e-10 * np.linalg.norm(b)
    # Error <= condition number (about 5) x relative residual.
    np.testing.assert_allclose(x, np.linalg.solve(A, b), atol=1e-9)
    # 21 today: CG on 50 unknowns with eigenvalues in [1, 5].
    assert n_matvec <= 42


def test_cg_preconditioned_by_a_nearby_factorization():
    """A factorization of a nearby matrix makes CG converge in a few steps."""
    rng = np.random.RandomState(2)
    A, b = spd_matrix(60, rng), rng.randn(60)
    nearby = A + 0.05 * np.diag(rng.rand(60))
    factor = scipy.linalg.cho_factor(nearby)
    matvec = CountedMatvec(A)
    x, n_matvec, converged = conjugate_gradient(
        matvec,
        b,
        tol=1e-12,
        preconditioner=lambda r: scipy.linalg.cho_solve(factor, r),
    )
    assert converged
    np.testing.assert_allclose(x, np.linalg.solve(A, b), atol=1e-10)
    plain = conjugate_gradient(CountedMatvec(A), b, tol=1e-12)[1]
    # 5 against 28 today.
    assert n_matvec <= 8 < plain


def test_cg_warm_start_at_solution():
    """A warm start at the solution costs the one residual check."""
    rng = np.random.RandomState(1)
    A, b = spd_matrix(30, rng), rng.randn(30)
    solution = np.linalg.solve(A, b)
    matvec = CountedMatvec(A)
    x, n_matvec, converged = conjugate_gradient(matvec, b, x0=solution)
    assert converged
    assert n_matvec == matvec.n == 1
    np.testing.assert_array_equal(x, solution)
    assert x is not solution  # the warm start is not modified in place


def test_cg_jacobi_preconditioner_on_bad_scaling():
    """Features with scales from 1e-3 to 1e3: Jacobi undoes the scaling.

    A = S B S with B well conditioned and S diagonal, so diag(A)^-1/2 A
    diag(A)^-1/2 is nearly B. Observed 286 matvecs without, 25 with.
    """
    rng = np.random.RandomState(2)
    s = np.sqrt(np.logspace(-3, 3, 50))
    A = s[:, None] * spd_matrix(50, rng) * s[None, :]
    b = rng.randn(50)
    plain, n_plain, ok_plain = conjugate_gradient(lambda v: A @ v, b, max_iter=5000)
    jacobi, n_jacobi, ok_jacobi = conjugate_gradient(
        lambda v: A @ v, b, diagonal=np.diag(A).copy()
    )
    assert ok_plain and ok_jacobi
    for x in (plain, jacobi):
        assert np.linalg.norm(A @ x - b) <= 1e-10 * np.linalg.norm(b)
    assert n_jacobi <= 50
    assert 4 * n_jacobi < n_plain


def test_cg_block_right_hand_side():
    """(n, k) right-hand sides: one CG run for k systems, shape kept.

    Both one shared matrix and one ridge per column (a different penalty per
    target, as in the per-target ridge Hessian) are solved.
    """
    rng = np.random.RandomState(3)
    n, k = 40, 3
    A, B = spd_matrix(n, rng), rng.randn(n, k)
    x, _, converged = conjugate_gradient(lambda V: A @ V, B)
    assert converged and x.shape == (n, k)
    np.testing.assert_allclose(x, np.linalg.solve(A, B), atol=1e-9)

    X = rng.randn(60, n)
    alphas = np.array([0.1, 1.0, 10.0])

    def hessian(V):
        return X.T @ (X @ V) + alphas * V

    x0 = np.zeros((n, k))
    x, n_matvec, converged = conjugate_gradient(hessian, B, x0=x0)
    assert converged and x.shape == (n, k)
    expected = np.column_stack(
        [
            np.linalg.solve(X.T @ X + alpha * np.eye(n), B[:, j])
            for j, alpha in enumerate(alphas)
        ]
    )
    np.testing.assert_allclose(x, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(x0, 0.0)  # the warm start is left alone
    assert n_matvec <= k * n + 1  # Krylov space of the block operator


def test_cg_zero_rhs():
    """A zero right-hand side: zeros of its shape, without any matvec."""
    matvec = CountedMatvec(lambda v: 2.0 * v)
    x, n_matvec, converged = conjugate_gradient(matvec, np.zeros((5, 2)))
    assert converged
    assert n_matvec == matvec.n == 0
    assert x.shape == (5, 2)
    np.testing.assert_array_equal(x, 0.0)


@pytest.mark.parametrize("warm", [False, True])
def test_cg_max_iter(warm):
    """Stopping on max_iter: flagged unconverged, yet progress was made."""
    rng = np.random.RandomState(4)
    s = np.sqrt(np.logspace(-3, 3, 50))
    A = s[:, None] * spd_matrix(50, rng) * s[None, :]
    b = rng.randn(50)
    matvec = CountedMatvec(A)
    x0 = np.zeros(50) if warm else None
    x, n_matvec, converged = conjugate_gradient(matvec, b, x0=x0, max_iter=5)
    assert not converged
    # The residual of a warm start costs one more product.
    assert n_matvec == matvec.n == 5 + warm
    # CG decreases x @ A @ x / 2 - b @ x (the A-norm of the error) at every
    # step, not the residual's norm, which grows here (ill-conditioned A):
    # below its value at the start (0), above the optimum.
    energy = 0.5 * x @ A @ x - b @ x
    assert -0.5 * b @ np.linalg.solve(A, b) < energy < 0.0


# ------------------------------------------------------------- cho_solve_vector
@pytest.mark.parametrize("layout", ["robust", "scipy_lower", "scipy_upper", "c_lower"])
def test_cho_solve_vector_matches_solve(layout):
    """Every factor layout solves like np.linalg.solve, the factor untouched."""
    rng = np.random.RandomState(3)
    A, b = spd_matrix(40, rng), rng.randn(40)
    if layout == "robust":
        factor = robust_cho_factor(A)
    elif layout == "scipy_lower":
        factor = scipy.linalg.cho_factor(A, lower=True)
    elif layout == "scipy_upper":
        factor = scipy.linalg.cho_factor(A, lower=False)
    else:  # a C-ordered lower factor: solved through its transpose
        factor = (np.ascontiguousarray(np.linalg.cholesky(A)), True)
    kept = factor[0].copy()
    b_kept = b.copy()
    x = cho_solve_vector(factor, b)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(factor[0], kept)
    np.testing.assert_array_equal(b, b_kept)
    # A strided column (a view) and a 2-D right-hand side are solved too.
    B = rng.randn(40, 3)
    np.testing.assert_allclose(
        cho_solve_vector(factor, B[:, 1]), np.linalg.solve(A, B[:, 1]), atol=1e-12
    )
    np.testing.assert_allclose(
        cho_solve_vector(factor, B), np.linalg.solve(A, B), atol=1e-12
    )


def test_scan_screens_its_points_past_the_plateau():
    """The point-by-point scan hands the objective a cutoff 10% above the best
    value once the values have descended (None before, and after each point)."""
    calls, values = [], []

    def fun(t, need_grad):
        f = (t - 1.0) ** 2 + 1.0
        if not need_grad:
            values.append(f)
        return f, 2.0 * (t - 1.0)

    minimize_scalar(fun, -5.0, 5.0, n_scan=11, screen=calls.append)
    before = calls[0::2]  # the cutoff set before each scan value
    assert calls[1::2] == [None] * len(values)  # and cleared after it
    assert before[0] is None  # nothing has descended before the first value
    for k, cutoff in enumerate(before[1:], start=1):
        best, first = min(values[:k]), values[0]
        descended = first - best > 1e-2 * first
        assert cutoff == (pytest.approx(1.1 * best) if descended else None)
    assert any(cutoff is not None for cutoff in before)
