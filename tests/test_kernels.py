"""Numba kernels: one compiled signature whatever the input's dtype or layout,
and every kernel equal to the NumPy reference formula it implements.

The references are written once in the package
(:func:`~skbilevel._problems._ridge_spectral.holdout_predictions`,
:func:`~skbilevel._problems._ridge_spectral.loo_residuals`,
:func:`~skbilevel._problems._logistic.logistic_curvature`) or here, in plain
NumPy / SciPy; derivatives are also checked against finite differences.
"""

import os

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, log_softmax, softmax
from threadpoolctl import threadpool_limits

from skbilevel import (
    BilevelRidgeCV,
    _logistic_kernels,
    _ridge_kernels,
    _rows,
    _stochastic_kernels,
)
from skbilevel._linalg import smallest_ritz_value
from skbilevel._numba import jit
from skbilevel._problems import InnerProblem, LogisticProblem
from skbilevel._problems._logistic import logistic_curvature
from skbilevel._problems._ridge import (
    centered_sum_of_squares,
    column_moments,
    dense_column_summary,
)
from skbilevel._problems._ridge_spectral import holdout_predictions, loo_residuals
from skbilevel._stochastic import relaxation_step
from skbilevel._validation import as_float64_data

from ._helpers import central_difference, make_data

KERNELS = [
    _ridge_kernels.spectral_holdout_loss_grad,
    _ridge_kernels.spectral_loo_loss_grad,
    _ridge_kernels.dense_centered_gram_matvec,
    _ridge_kernels.csr_centered_gram_matvec,
    _ridge_kernels.dense_centered_squares,
    _ridge_kernels.dense_chunked_summary,
]


def _variants(tmp_path):
    X, Y, _ = make_data(50, 6)
    y = Y[:, 0]
    yield X, y
    yield X.astype(np.float32), y.astype(np.float32)
    yield np.asfortranarray(X), y
    yield X[:, ::1][::1], y  # a view
    yield X[::2], y[::2]  # non-contiguous rows
    path = tmp_path / "X.npy"
    np.save(path, X)
    yield np.load(path, mmap_mode="r"), y  # read-only memmap
    Xs = sp.csr_matrix(X)
    yield Xs, y
    Xs32 = Xs.copy()
    Xs32.indices = Xs32.indices.astype(np.int32)
    Xs32.indptr = Xs32.indptr.astype(np.int32)
    yield Xs32.astype(np.float32), y
    yield sp.csc_matrix(X), y


def test_one_signature_per_kernel(tmp_path):
    for X, y in _variants(tmp_path):
        for params in [{}, {"cv": None}, {"hypergradient": "cg"}]:
            BilevelRidgeCV(**params).fit(X, y)
    for kernel in KERNELS:
        assert len(kernel.signatures) <= 1, kernel.py_func.__name__


@pytest.mark.parametrize("sparse", [False, True])
def test_gram_matvec_matches_numpy(sparse):
    X, _, sw = make_data(30, 5, weights=True, sparse=sparse)
    Xd = X.toarray() if sparse else X
    xbar = sw @ Xd / sw.sum()
    V = np.random.RandomState(0).randn(5, 2)
    expected = (Xd - xbar).T @ (sw[:, None] * ((Xd - xbar) @ V))
    if sparse:
        out = _ridge_kernels.csr_centered_gram_matvec(
            X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64), sw, xbar, V
        )
    else:
        out = _ridge_kernels.dense_centered_gram_matvec(Xd, sw, xbar, V)
    assert np.allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("layout", ["C", "F"])
def test_centered_sum_of_squares_matches_numpy(layout, monkeypatch):
    """The Numba pass (C-ordered float64, here in 3 row blocks) and the NumPy
    chunks (other layouts) give the weighted centered squares, with exact
    zeros on constant columns."""
    X, _, sw = make_data(300, 5, weights=True)
    X[:, 2] = 7.3  # constant
    X = np.asfortranarray(X) if layout == "F" else np.ascontiguousarray(X)
    xbar = sw @ X / sw.sum()
    monkeypatch.setattr(_rows, "row_threads", lambda: 3)
    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 1)
    out = centered_sum_of_squares(X, sw, xbar)
    expected = sw @ (X - xbar) ** 2
    _assert_close(out, expected, rtol=1e-12)
    assert out[2] <= 1e-20 * out.max()
    kernel = _ridge_kernels.dense_centered_squares(
        np.ascontiguousarray(X), sw, xbar, 100, 250
    )
    _assert_close(kernel, sw[100:250] @ (X[100:250] - xbar) ** 2, rtol=1e-12)


@pytest.mark.parametrize("layout", ["C", "F", "csr"])
def test_column_moments_match_numpy(layout, monkeypatch):
    """The one-pass summary (C-ordered float64: cache-sized chunks merged
    pairwise, here over several chunks in 3 row blocks, whole chunks of zero
    weight among them; with the largest entry) and the two passes of other
    layouts give the weighted means and the centered squares (exact zeros
    on constant columns)."""
    rng = np.random.RandomState(0)
    X = 3.0 * rng.randn(12000, 5) + 100.0
    X[:, 2] = 7.3  # constant
    X[5000, 4] = -1e3  # the largest entry, in a row of weight 0
    sw = rng.uniform(0.5, 2.0, 12000)
    sw[4000:8000] = 0.0  # more than one chunk of 16384 // 5 rows
    mean = sw @ X / sw.sum()
    squares = sw @ (X - mean) ** 2
    X = {"C": X, "F": np.asfortranarray(X), "csr": sp.csr_matrix(X)}[layout]
    monkeypatch.setattr(_rows, "row_threads", lambda: 3)
    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 1)
    if layout == "C":
        out_mean, out_squares, largest = dense_column_summary(X, sw)
        assert largest == 1e3
    else:  # the one pass takes C-ordered float64 only
        assert dense_column_summary(X, sw) is None
        out_mean, out_squares = column_moments(X, sw)
    _assert_close(out_mean, mean, rtol=1e-12)
    _assert_close(out_squares, squares, rtol=1e-10)
    if layout != "csr":  # (the sparse formula is not centered first)
        assert out_squares[2] <= 1e-20 * out_squares.max()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_column_summary_sees_every_non_finite_entry(bad, weight, monkeypatch):
    """The estimators leave their check of finite X to this pass: it returns
    None for any NaN or infinite entry, in a row of weight 0 too."""
    monkeypatch.setattr(_rows, "row_threads", lambda: 3)
    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 1)
    X = np.random.RandomState(0).randn(9000, 4)
    sw = np.ones(9000)
    sw[6000:] = 0.0  # the last block: weight 0 throughout
    for row in [0, 4500, 8999]:
        bad_X = X.copy()
        bad_X[row, 1] = bad
        bad_sw = sw.copy()
        bad_sw[row] = weight
        assert dense_column_summary(bad_X, bad_sw) is None
        with pytest.raises(ValueError, match="Input X contains"):
            BilevelRidgeCV().fit(bad_X, X[:, 0], sample_weight=bad_sw + 1e-3)


def _assert_close(actual, desired, rtol=1e-10):
    """Float64 agreement: relative, with an absolute floor at round-off level."""
    desired = np.asarray(desired)
    atol = rtol * max(np.abs(desired).max(), 1.0) * 1e-2
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------
# Ridge: spectral hold-out and leave-one-out kernels.
# --------------------------------------------------------------------------


def test_spectral_holdout_matches_reference():
    rng = np.random.RandomState(1)
    n_val, rank = 8, 4
    A = rng.randn(n_val, rank)
    Z = rng.randn(rank, 2)
    s2 = rng.uniform(0.5, 5.0, rank)
    ybar = rng.randn(2)
    Y_val = rng.randn(n_val, 2)
    sw = rng.uniform(0.2, 2.0, n_val)
    alpha = np.array([0.3, 4.0])
    res0 = ybar - Y_val

    def reference_loss(alphas):
        loss = np.empty(2)
        for t in range(2):
            pred = holdout_predictions(A, Z[:, t], s2, alphas[t : t + 1], ybar[t])
            loss[t] = sw @ (pred[:, 0] - Y_val[:, t]) ** 2
        return loss

    loss, grad = _ridge_kernels.spectral_holdout_loss_grad(A, Z, s2, alpha, res0, sw)
    _assert_close(loss, reference_loss(alpha))
    # loss_t depends on alpha_t only: the gradient of the sum is per target.
    fd = central_difference(lambda t: reference_loss(np.exp(t)).sum(), np.log(alpha))
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert np.all(np.abs(grad) > 1e-3)  # a non-trivial derivative was checked


def _spectral_loo_data():
    """Spectral leave-one-out quantities of a weighted ridge with an intercept."""
    rng = np.random.RandomState(2)
    X = rng.randn(30, 5)
    Y = X @ rng.randn(5, 2) + 0.5 * rng.randn(30, 2) + 3.0
    sw = rng.uniform(0.2, 2.0, 30)
    root = np.sqrt(sw)[:, None]
    Xc = root * (X - sw @ X / sw.sum())
    s2, V = np.linalg.eigh(Xc.T @ Xc)
    P = Xc @ V
    y_tilde = root * (Y - sw @ Y / sw.sum())
    Z = P.T @ y_tilde
    q2 = sw / sw.sum()
    return X, Y, sw, P, Z, s2, y_tilde, q2


def test_spectral_loo_matches_reference():
    _, _, _, P, Z, s2, y_tilde, q2 = _spectral_loo_data()
    alpha = np.array([0.5, 20.0])

    def reference_loss(alphas):
        loss = np.empty(2)
        for t in range(2):
            e = loo_residuals(P, Z[:, t], s2, alphas[t : t + 1], y_tilde[:, t], q2)
            loss[t] = np.sum(e**2)
        return loss

    loss, grad = _ridge_kernels.spectral_loo_loss_grad(P, Z, s2, alpha, y_tilde, q2)
    _assert_close(loss, reference_loss(alpha))
    fd = central_difference(lambda t: reference_loss(np.exp(t)).sum(), np.log(alpha))
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert np.all(np.abs(grad) > 1e-3)


def test_loo_residuals_reference_is_brute_force_loo():
    X, Y, sw, P, Z, s2, y_tilde, q2 = _spectral_loo_data()
    alpha = 2.0
    n, n_features = X.shape
    expected = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        Xk, yk, swk = X[keep], Y[keep, 0], sw[keep]
        xm, ym = swk @ Xk / swk.sum(), swk @ yk / swk.sum()
        Xk_c = Xk - xm
        w = np.linalg.solve(
            Xk_c.T @ (swk[:, None] * Xk_c) + alpha * np.eye(n_features),
            Xk_c.T @ (swk * (yk - ym)),
        )
        expected[i] = (Y[i, 0] - ((X[i] - xm) @ w + ym)) * np.sqrt(sw[i])
    residuals = loo_residuals(P, Z[:, 0], s2, np.array([alpha]), y_tilde[:, 0], q2)
    _assert_close(residuals[:, 0], expected, rtol=1e-9)


# --------------------------------------------------------------------------
# Logistic: per-sample kernels and fused CSR kernels.
# --------------------------------------------------------------------------


def _reference_loss_grad(Z, targets, sw):
    """Weighted log-loss, its gradient in Z and the probabilities, in SciPy."""
    if Z.shape[1] == 1:
        z, y = Z[:, 0], targets
        loss = sw @ (np.logaddexp(0.0, z) - y * z)
        P = expit(z)[:, None]
        G = (sw * (P[:, 0] - y))[:, None]
        return loss, G, P
    logp = log_softmax(Z, axis=1)
    onehot = np.eye(Z.shape[1])[targets]
    loss = -sw @ logp[np.arange(Z.shape[0]), targets]
    P = np.exp(logp)
    G = sw[:, None] * (P - onehot)
    return loss, G, P


def _classification(n, n_out, seed, scale=2.0):
    rng = np.random.RandomState(seed)
    Z = scale * rng.randn(n, n_out)
    targets = rng.randint(0, max(n_out, 2), n).astype(np.int64)
    sw = rng.uniform(0.2, 2.0, n)
    return Z, targets, sw


@pytest.mark.parametrize("n_out", [1, 3])
def test_samplewise_loss_grad_matches_reference(n_out):
    Z, targets, sw = _classification(12, n_out, seed=3)
    loss, G, P = _logistic_kernels.samplewise_loss_grad(Z, targets, sw)
    ref_loss, ref_G, ref_P = _reference_loss_grad(Z, targets, sw)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    _assert_close(G, ref_G)
    _assert_close(P, ref_P)
    if n_out > 1:
        _assert_close(P.sum(axis=1), np.ones(len(Z)))

    def kernel_loss(z):
        return _logistic_kernels.samplewise_loss_grad(z.reshape(Z.shape), targets, sw)[
            0
        ]

    fd = central_difference(kernel_loss, Z.ravel()).reshape(Z.shape)
    np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n_out", [1, 3])
def test_samplewise_loss_grad_extreme_scores(n_out):
    if n_out == 1:
        Z = np.array([[800.0], [-800.0], [800.0], [-800.0], [0.5]])
        targets = np.array([0, 1, 1, 0, 1], dtype=np.int64)
    else:
        Z = np.array(
            [[800.0, -800.0, 0.0], [-800.0, 800.0, 0.0], [0.0, 0.0, -800.0]]
            + [[800.0, 0.0, -800.0], [0.1, -0.2, 0.3]]
        )
        targets = np.array([1, 1, 2, 0, 2], dtype=np.int64)
    sw = np.linspace(0.5, 1.5, len(Z))
    loss, G, P = _logistic_kernels.samplewise_loss_grad(Z, targets, sw)
    assert np.isfinite(loss) and np.all(np.isfinite(G)) and np.all(np.isfinite(P))
    ref_loss, ref_G, ref_P = _reference_loss_grad(Z, targets, sw)
    assert np.isfinite(ref_loss)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    assert loss > 800.0  # the wrong, confident predictions cost their margin
    _assert_close(G, ref_G)
    _assert_close(P, ref_P)


def test_samplewise_hvp_binary_matches_curvature():
    rng = np.random.RandomState(4)
    P = expit(2.0 * rng.randn(15, 1))
    Zv = rng.randn(15, 1)
    sw = rng.uniform(0.2, 2.0, 15)
    out = _logistic_kernels.samplewise_hvp(P, Zv, sw)
    _assert_close(out, logistic_curvature(P, sw) * Zv)


def test_samplewise_hvp_multinomial_matches_softmax_hessian():
    rng = np.random.RandomState(5)
    P = softmax(2.0 * rng.randn(15, 3), axis=1)
    Zv = rng.randn(15, 3)
    sw = rng.uniform(0.2, 2.0, 15)
    out = _logistic_kernels.samplewise_hvp(P, Zv, sw)
    _assert_close(out, sw[:, None] * P * (Zv - (P * Zv).sum(axis=1, keepdims=True)))
    explicit = np.array(
        [
            w * (np.diag(p) - np.outer(p, p)) @ zv
            for p, zv, w in zip(P, Zv, sw, strict=True)
        ]
    )
    _assert_close(out, explicit)


def test_dense_binary_kernels_match_blas_products():
    """The fused binary kernels against BLAS products and the samplewise kernels,
    summed over two blocks of rows."""
    rng = np.random.RandomState(6)
    X = rng.randn(40, 5)
    w, b = rng.randn(5), 0.3
    targets = (rng.rand(40) < 0.5).astype(np.int64)
    sw = rng.uniform(0.2, 2.0, 40)
    P = np.empty((40, 1))
    blocks = [
        _logistic_kernels.dense_binary_loss_grad(X, w, b, targets, sw, lo, hi, P)
        for lo, hi in [(0, 17), (17, 40)]
    ]
    ref_loss, G, ref_P = _logistic_kernels.samplewise_loss_grad(
        (X @ w + b)[:, None], targets, sw
    )
    _assert_close(blocks[0][0] + blocks[1][0], ref_loss)
    _assert_close(blocks[0][1] + blocks[1][1], np.r_[X.T @ G[:, 0], G.sum()])
    _assert_close(P, ref_P)
    v, vb = rng.randn(5), -0.7
    out = sum(
        _logistic_kernels.dense_binary_hvp(X, P, sw, v, vb, lo, hi)
        for lo, hi in [(0, 9), (9, 40)]
    )
    R = logistic_curvature(P, sw)[:, 0] * (X @ v + vb)
    _assert_close(out, np.r_[X.T @ R, R.sum()])


def _sparse_binary_problem(rng, fit_intercept, n=60, d=25):
    """A sparse binary LogisticProblem, a point, its theta and dense Hessian."""
    X = sp.random(n, d, density=0.2, format="csr", random_state=rng)
    y = (rng.rand(n) < 0.5).astype(np.int64)
    sw = rng.uniform(0.5, 2.0, n)
    n_params = d + int(fit_intercept)
    group_idx = np.zeros((n_params, 1), dtype=np.int64)
    if fit_intercept:
        group_idx[-1] = -1
    problem = LogisticProblem(X, y, sw, 1, group_idx, 1, fit_intercept)
    assert problem.X.indices.dtype == np.int32  # what the compiled path takes
    W, theta = rng.randn(n_params, 1), np.array([-1.0])
    H = np.column_stack(
        [problem.hvp(W, theta, e[:, None])[:, 0] for e in np.eye(n_params)]
    )
    return problem, W, theta, H


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_binary_cg_matches_python_cg(fit_intercept):
    """The compiled solver of a sparse binary logistic Hessian takes the
    iterates of the Python conjugate gradients (same products, same count),
    cold and warm-started; its solution solves the system."""
    rng = np.random.RandomState(7)
    problem, W, theta, H = _sparse_binary_problem(rng, fit_intercept)
    n_params = problem.n_params
    rhs = rng.randn(n_params, 1)
    for x0 in [None, rng.randn(n_params, 1)]:
        for tol, max_iter in [(1e-12, 200), (1e-3, 200), (1e-12, 3)]:
            compiled = problem.cg_solve(
                W, theta, rhs, x0=x0, tol=tol, max_iter=max_iter
            )
            reference = InnerProblem.cg_solve(
                problem, W, theta, rhs, x0=x0, tol=tol, max_iter=max_iter
            )
            _assert_close(compiled[0], reference[0])
            assert compiled[1:] == reference[1:]
        assert compiled[2] is False  # 3 products are not enough
    x, _, converged = problem.cg_solve(W, theta, rhs, tol=1e-12)
    assert converged
    _assert_close(H @ x, rhs)
    zero, n_products, converged = problem.cg_solve(W, theta, 0.0 * rhs)
    assert not zero.any() and n_products == 0 and converged


def test_smallest_ritz_value_matches_the_tridiagonal_eigenvalues():
    rng = np.random.RandomState(9)
    for k in [1, 2, 5, 20]:
        alphas, betas = rng.uniform(0.1, 2.0, k), rng.uniform(0.01, 1.0, k)
        T = np.diag(1.0 / alphas)
        T[1:, 1:] += np.diag(betas[:-1] / alphas[:-1])
        off = np.sqrt(betas[:-1]) / alphas[:-1]
        T += np.diag(off, 1) + np.diag(off, -1)
        smallest = np.linalg.eigvalsh(T)[0]
        estimate = smallest_ritz_value(alphas, betas, k)
        assert smallest * (1 - 2e-3) <= estimate <= smallest * (1 + 1e-12)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_newton_steps_settle_below_their_decrement(sparse, fit_intercept):
    """A Newton step's solve stops early where the decrement is estimated
    below ``settle``, only where the exact decrement is below it, compiled
    (sparse binary) or not, with the same iterates; and a Newton solve to a
    tolerance, which settles its last step, ends within it."""
    rng = np.random.RandomState(8)
    problem, W, theta, H = _sparse_binary_problem(rng, fit_intercept, 400, 60)
    if not sparse:
        problem = LogisticProblem(
            problem.X.toarray(), problem.targets, problem.sw, 1,
            problem.group_idx, 1, fit_intercept,
        )  # fmt: skip
    grad = problem.gradient(W, theta)
    decrement = float(grad[:, 0] @ np.linalg.solve(H, grad[:, 0]))
    _, full, _ = problem.cg_solve(W, theta, -grad, tol=1e-12, max_iter=200)
    for settle in [0.5 * decrement, 30.0 * decrement]:
        step, n_products, converged = problem.cg_solve(
            W, theta, -grad, tol=1e-12, max_iter=200, settle=settle
        )
        assert converged
        if settle < decrement:
            assert n_products == full
        else:
            assert n_products < full
            assert -float(np.sum(grad * step)) <= decrement
        if sparse:
            reference = InnerProblem.cg_solve(
                problem, W, theta, -grad, tol=1e-12, max_iter=200, settle=settle
            )
            _assert_close(step, reference[0])
            assert n_products == reference[1]
    for tol in [1e-4, 1e-6, 1e-8]:
        w, converged = problem.solve(theta, None, tol=tol, method="cg")
        assert converged
        grad = problem.gradient(w, theta)[:, 0]
        H_w = np.column_stack(
            [problem.hvp(w, theta, e[:, None])[:, 0] for e in np.eye(len(grad))]
        )
        assert grad @ np.linalg.solve(H_w, grad) <= tol**2 * problem.total


def test_row_blocks_follow_the_blas_thread_limit(monkeypatch):
    """Rows are split in as many blocks as BLAS may use threads, no more than
    the rows allow, and the blocks cover every row once, in order."""
    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 10)

    def blocks(n_rows):
        return _rows.map_row_blocks(lambda lo, hi: (lo, hi), n_rows, row_work=1)

    with threadpool_limits(limits=2, user_api="blas"):
        assert blocks(45) == [(0, 22), (22, 45)]
        assert blocks(19) == [(0, 19)]
        with _rows.thread_budget(3):  # a fold's share (see map_folds)
            assert blocks(45) == [(0, 15), (15, 30), (30, 45)]
    with threadpool_limits(limits=1, user_api="blas"):
        assert blocks(45) == [(0, 45)]


def _blocks_in_child(queue):
    with threadpool_limits(limits=2, user_api="blas"):
        queue.put(_rows.map_row_blocks(lambda lo, hi: (lo, hi), 45, row_work=1))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_row_blocks_work_in_a_forked_child(monkeypatch):
    """A child forked after the pool ran (multiprocessing's default start on
    Linux) still splits and runs its row blocks."""
    import multiprocessing

    monkeypatch.setattr(_rows, "MIN_WORK_PER_THREAD", 10)
    with threadpool_limits(limits=2, user_api="blas"):
        assert len(_rows.map_row_blocks(lambda lo, hi: hi, 45, row_work=1)) == 2
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_blocks_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.exitcode is None:
        child.kill()
        pytest.fail("the forked child's row blocks never ran")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [(0, 22), (22, 45)]


def _sparse_design(n, n_features, seed):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    X[rng.rand(n, n_features) < 0.5] = 0.0
    X[3] = 0.0  # an empty row
    Xs = as_float64_data(sp.csr_matrix(X))
    assert Xs.data.dtype == np.float64 and Xs.indices.dtype == np.int64
    assert Xs.indptr.dtype == np.int64
    return X, Xs


# --------------------------------------------------------------------------
# Stochastic mode: rows gathered by index, centered on the fly.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_out", [1, 3])
def test_gather_kernels_match_numpy(n_out):
    rng = np.random.RandomState(9)
    X, Xs = _sparse_design(15, 6, seed=10)
    csr = (Xs.data, Xs.indices, Xs.indptr)
    rows = np.array([4, 0, 3, 14, 4, 7, 0, 4, 11], dtype=np.int64)  # repeats
    mean = X.mean(axis=0)
    W = rng.randn(6, n_out)
    b = rng.randn(n_out)
    R = rng.randn(len(rows), n_out)
    Xb = X[rows] - mean
    expected_Z = Xb @ W + b
    expected_W, expected_b = Xb.T @ R, R.sum(axis=0)

    Z = _stochastic_kernels.dense_gather_scores(X, rows, mean, W, b)
    _assert_close(Z, expected_Z)
    out_W, out_b = _stochastic_kernels.dense_gather_scatter(X, rows, mean, R)
    _assert_close(out_W, expected_W)
    _assert_close(out_b, expected_b)

    Z = _stochastic_kernels.csr_gather_scores(*csr, rows, mean, W, b)
    _assert_close(Z, expected_Z)
    out_W, out_b = _stochastic_kernels.csr_gather_scatter(*csr, rows, mean, R)
    _assert_close(out_W, expected_W)
    _assert_close(out_b, expected_b)


def test_relaxation_step():
    assert relaxation_step(0.5, 10, 20) == pytest.approx(0.5 / 1.5, rel=1e-15)
    assert relaxation_step(0.5, 0, 20) == 0.5


def test_reassociated_kernels_keep_their_sums():
    """Kernels compiled with ``reassociate=True`` sum in vector lanes: long rows
    (with a remainder past the lanes) still match NumPy to round-off, and
    infinities still propagate (only the ``reassoc`` flag is set)."""

    @jit(reassociate=True)
    def dot(a, b):
        total = 0.0
        for i in range(a.shape[0]):
            total += a[i] * b[i]
        return total

    rng = np.random.RandomState(0)
    a, b = rng.randn(203), rng.randn(203)
    _assert_close(dot(a, b), a @ b)
    a[101] = np.inf
    assert dot(a, np.abs(b)) == np.inf
    X = rng.randn(30, 203)
    w = rng.randn(203)
    targets = (rng.rand(30) < 0.5).astype(np.int64)
    loss, grad = _logistic_kernels.dense_binary_loss_grad(
        X, w, 0.1, targets, np.ones(30), 0, 30, np.empty((30, 1))
    )
    ref_loss, G, _ = _logistic_kernels.samplewise_loss_grad(
        (X @ w + 0.1)[:, None], targets, np.ones(30)
    )
    _assert_close(loss, ref_loss)
    _assert_close(grad, np.r_[X.T @ G[:, 0], G.sum()])


def test_absolute_difference_contraction_matches_numpy():
    """The Laplacian kernel's width contraction ``sum_ij M_ij |x_id - z_jd|``
    equals NumPy's broadcast sum (zeros of M skipped)."""
    from skbilevel._kernel_kernels import absolute_difference_contraction

    rng = np.random.RandomState(0)
    M = rng.randn(7, 5)
    M[2] = 0.0
    X, Z = rng.randn(7, 3), rng.randn(5, 3)
    expected = np.einsum("ij,ijd->d", M, np.abs(X[:, None, :] - Z[None, :, :]))
    np.testing.assert_allclose(
        absolute_difference_contraction(M, X, Z), expected, rtol=1e-12
    )
