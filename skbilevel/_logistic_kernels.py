"""Numba kernels of (weighted, L2-penalized) logistic regression.

Binary problems have one output column (sigmoid), multinomial ones K columns
(softmax); the same kernels serve both, branching on the number of columns.
Data goes through BLAS or SciPy's sparse products for ``X @ W`` and
``X.T @ G``, and through the per-sample kernels here; the row helpers serve
the stochastic mode's CSR kernels. Binary problems on dense data have fused
kernels instead, over a block of rows: each row of X is read once, for its
score and for its share of the gradient (two BLAS matrix-vector products read
X twice: measured 10.8 against 12.2 ms on one thread against two, 80000 x
100). Inputs are C-contiguous float64 / int64.
"""

import numpy as np

from ._linalg import SETTLE_SAFETY, smallest_ritz_value
from ._numba import jit

__all__ = [
    "binary_labelled_terms",
    "binary_split_terms",
    "dense_binary_labelled_loss_grad",
    "dense_binary_split_hvp",
    "dense_binary_split_pass",
    "dense_binary_hvp",
    "dense_binary_loss_grad",
    "samplewise_loss_grad",
    "samplewise_hvp",
    "labelled_terms_scaled_rows",
    "scaled_rows_by_label",
    "sparse_binary_cg",
]


@jit
def _sigmoid(z):
    """``exp(-|z|)`` and the sigmoid of ``z``, without overflow."""
    if z > 0:
        ez = np.exp(-z) if z < 700.0 else 0.0  # no denormals (see below)
        return ez, 1.0 / (1.0 + ez)
    ez = np.exp(z) if z > -700.0 else 0.0
    return ez, ez / (1.0 + ez)


@jit
def _binary_loss_grad(z, target, weight):
    """Weighted log-loss of one sample's score ``z`` (sigmoid), its derivative
    in ``z`` and the probability of class 1."""
    # log(1 + exp(z)) - y z = max(z, 0) + log(1 + exp(-|z|)) - y z.
    ez, p = _sigmoid(z)
    loss = np.log1p(ez)
    if z > 0:
        loss = z + loss
    if target == 1:
        loss -= z
    return weight * loss, weight * (p - target), p


@jit
def _binary_residual(z, target, weight):
    """:func:`_binary_loss_grad` without the loss: the derivative in ``z``
    and the probability (one exponential, no logarithm)."""
    _, p = _sigmoid(z)
    return weight * (p - target), p


@jit
def _softmax_loss_grad(Z, i, target, weight, G, P):
    """Weighted log-loss of row ``i`` of the scores ``Z`` (softmax); fills row
    ``i`` of the score gradient ``G`` and of the probabilities ``P``.

    Rows are addressed by index: a row view per sample costs more than the
    arithmetic on it (measured: 0.24 against 0.01 ms for 8000 samples).
    """
    n_out = Z.shape[1]
    top = Z[i, 0]
    for k in range(1, n_out):
        if Z[i, k] > top:
            top = Z[i, k]
    total = 0.0
    for k in range(n_out):
        # Below exp(-700) the probability is flushed to zero: denormal numbers
        # would slow every later product (Hessians) by orders of magnitude.
        gap = Z[i, k] - top
        P[i, k] = np.exp(gap) if gap > -700.0 else 0.0
        total += P[i, k]
    for k in range(n_out):
        P[i, k] /= total
        G[i, k] = weight * P[i, k]
    G[i, target] -= weight
    return weight * (top + np.log(total) - Z[i, target])


@jit
def samplewise_loss_grad(Z, targets, sw):
    """Weighted log-loss of scores ``Z`` and its gradient with respect to ``Z``.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_out)
        Linear scores; ``n_out == 1`` means binary (sigmoid).
    targets : ndarray of shape (n_samples,), dtype int64
        Class index of every sample.
    sw : ndarray of shape (n_samples,)

    Returns
    -------
    loss : float
        ``sum_i sw_i * logloss_i``.
    G : ndarray of shape (n_samples, n_out)
        ``d loss / d Z``.
    P : ndarray of shape (n_samples, n_out)
        Predicted probabilities (of class 1 when binary).
    """
    n, n_out = Z.shape
    G = np.empty((n, n_out))
    P = np.empty((n, n_out))
    loss = 0.0
    if n_out == 1:
        for i in range(n):
            loss_i, G[i, 0], P[i, 0] = _binary_loss_grad(Z[i, 0], targets[i], sw[i])
            loss += loss_i
        return loss, G, P
    for i in range(n):
        loss += _softmax_loss_grad(Z, i, targets[i], sw[i], G, P)
    return loss, G, P


@jit
def samplewise_hvp(P, Zv, sw):
    """Second derivative of the loss in ``Z`` applied to ``Zv``, sample by sample.

    Binary: ``sw p (1 - p) zv``; multinomial: ``sw p_k (zv_k - sum_l p_l zv_l)``.
    """
    n, n_out = P.shape
    R = np.empty((n, n_out))
    if n_out == 1:
        for i in range(n):
            p = P[i, 0]
            R[i, 0] = sw[i] * p * (1.0 - p) * Zv[i, 0]
        return R
    for i in range(n):
        mean = 0.0
        for k in range(n_out):
            mean += P[i, k] * Zv[i, k]
        for k in range(n_out):
            R[i, k] = sw[i] * P[i, k] * (Zv[i, k] - mean)
    return R


@jit
def _csr_row_scores(data, indices, start, stop, W, intercept, z_out):
    """Scores of one CSR row: ``intercept + x_row @ W``."""
    n_out = W.shape[1]
    for k in range(n_out):
        z_out[k] = intercept[k]
    for q in range(start, stop):
        j = indices[q]
        for k in range(n_out):
            z_out[k] += data[q] * W[j, k]


@jit
def _csr_row_scatter(data, indices, start, stop, r, out_W, out_b):
    """Accumulate one CSR row's share of ``X.T @ R`` and of ``R.sum(0)``."""
    n_out = r.shape[0]
    for k in range(n_out):
        out_b[k] += r[k]
    for q in range(start, stop):
        j = indices[q]
        for k in range(n_out):
            out_W[j, k] += data[q] * r[k]


@jit
def dense_binary_loss_grad(X, w, b, targets, sw, start, stop, P):
    """Binary log-loss of rows ``start:stop`` of dense X, and its gradient:
    :func:`dense_binary_labelled_loss_grad` with every row in one sum.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    w : ndarray of shape (n_features,)
    b : float
        Intercept.
    targets : ndarray of shape (n_samples,), dtype int64
    sw : ndarray of shape (n_samples,)
    start, stop : int
        The block of rows.
    P : ndarray of shape (n_samples, 1)
        Receives the probabilities of the block's rows.

    Returns
    -------
    loss : float
        ``sum_i sw_i * logloss_i`` over the block.
    grad : ndarray of shape (n_features + 1,)
        Gradient in ``w`` then in ``b``, over the block.
    """
    no_labels = np.empty(0, dtype=np.int64)
    losses, grads = dense_binary_labelled_loss_grad(
        X, w, b, targets, sw, no_labels, 1, start, stop, P
    )
    return losses[0], grads[0]


@jit(reassociate=True)
def dense_binary_hvp(X, P, sw, v, vb, start, stop):
    """Data Hessian of the binary log-loss applied to ``(v, vb)``, rows ``start:stop``.

    Returns the product in ``w`` then in ``b``, of shape (n_features + 1,):
    ``sum_i sw_i p_i (1 - p_i) (x_i . v + vb) [x_i, 1]`` over the block.
    """
    d = X.shape[1]
    out = np.zeros(d + 1)
    for i in range(start, stop):
        zv = vb
        for j in range(d):
            zv += X[i, j] * v[j]
        p = P[i, 0]
        r = sw[i] * p * (1.0 - p) * zv
        for j in range(d):
            out[j] += X[i, j] * r
        out[d] += r
    return out


@jit
def binary_split_terms(S, targets, sw, role, R, C, start, stop):
    """Log-losses and residuals of several binary models on shared rows.

    Column k of ``S`` holds the scores of split k's model; a row trains
    split k, validates it, or neither (``role``).

    Parameters
    ----------
    S : ndarray of shape (n_samples, n_splits)
        Scores of every split's model on every row.
    targets : ndarray of shape (n_samples,), dtype int64
        Classes 0 and 1.
    sw : ndarray of shape (n_samples,)
    role : ndarray of shape (n_samples, n_splits), dtype int8
        1: the row trains split k; 2: it validates it; 0: neither.
    R : ndarray of shape (n_samples, 2 * n_splits)
        Receives the residuals ``sw (p - y)``: of training rows in column
        k, of validation rows in column ``n_splits + k``, 0 elsewhere.
    C : ndarray of shape (n_samples, n_splits)
        Receives the curvatures ``sw p (1 - p)`` of the training rows (0
        elsewhere): the splits' training Hessians' weights.
    start, stop : int
        The block of rows.

    Returns
    -------
    losses : ndarray of shape (n_splits,)
        Weighted log-loss sums over the validation rows of each split (the
        training rows' losses are not needed: their logarithms are spared).
    """
    K = S.shape[1]
    losses = np.zeros(K)
    for i in range(start, stop):
        for k in range(K):
            R[i, k] = 0.0
            R[i, K + k] = 0.0
            C[i, k] = 0.0
            part = role[i, k]
            if part == 1:
                residual, p = _binary_residual(S[i, k], targets[i], sw[i])
                R[i, k] = residual
                C[i, k] = sw[i] * p * (1.0 - p)
            elif part == 2:
                loss, residual, _ = _binary_loss_grad(S[i, k], targets[i], sw[i])
                losses[k] += loss
                R[i, K + k] = residual
    return losses


@jit(reassociate=True)
def dense_binary_split_pass(X, W, b, targets, sw, role, C, start, stop):
    """:func:`binary_split_terms` and the gradients, fused over dense rows.

    Every row of X is read once for all the splits: its score under each
    split's coefficients, and its share of that split's training or
    validation gradient (measured on 400000 x 200 and 5 splits, 2 threads:
    about 60 against 100 ms for BLAS's two products and the per-sample pass).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    W : ndarray of shape (n_splits, n_features)
        Every split's coefficients, one row each.
    b : ndarray of shape (n_splits,)
        Every split's intercept.
    targets, sw, role, C, start, stop
        As :func:`binary_split_terms`.

    Returns
    -------
    losses : ndarray of shape (n_splits,)
        As :func:`binary_split_terms`.
    grad : ndarray of shape (2 * n_splits, n_features + 1)
        Row k: split k's training gradient (in the coefficients, then the
        intercept); row ``n_splits + k``: its validation gradient.
    """
    d = X.shape[1]
    K = W.shape[0]
    losses = np.zeros(K)
    grad = np.zeros((2 * K, d + 1))
    residuals = np.empty(K)
    # A row's scores, then their residuals, then its shares of the gradients:
    # the dot products and the sums run without the exponentials between
    # them. With the training rows' logarithms spared, measured on 200000 x
    # 200 and 5 splits on one thread: 0.077 -> 0.054 s.
    for i in range(start, stop):
        for k in range(K):
            C[i, k] = 0.0
            residuals[k] = 0.0
            if role[i, k] == 0:
                continue
            score = b[k]
            for j in range(d):
                score += X[i, j] * W[k, j]
            residuals[k] = score
        for k in range(K):
            part = role[i, k]
            if part == 1:
                residuals[k], p = _binary_residual(residuals[k], targets[i], sw[i])
                C[i, k] = sw[i] * p * (1.0 - p)
            elif part == 2:
                loss, residuals[k], _ = _binary_loss_grad(
                    residuals[k], targets[i], sw[i]
                )
                losses[k] += loss
        for k in range(K):
            part = role[i, k]
            if part == 0:
                continue
            row = (part - 1) * K + k
            residual = residuals[k]
            for j in range(d):
                grad[row, j] += X[i, j] * residual
            grad[row, d] += residual
    return losses, grad


@jit(reassociate=True)
def dense_binary_split_hvp(X, V, vb, C, role, start, stop):
    """Every split's training data Hessian applied to its own vector.

    ``sum_i C[i, k] x_i (x_i . v_k + vb_k)`` over split k's training rows
    (with the intercept's entry last), each row of X read once for all the
    splits.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    V : ndarray of shape (n_splits, n_features)
        Every split's vector (coefficient entries), one row each.
    vb : ndarray of shape (n_splits,)
        Their intercept entries.
    C : ndarray of shape (n_samples, n_splits)
        Curvatures of the training rows (:func:`dense_binary_split_pass`).
    role : ndarray of shape (n_samples, n_splits), dtype int8
    start, stop : int

    Returns
    -------
    out : ndarray of shape (n_splits, n_features + 1)
    """
    d = X.shape[1]
    K = V.shape[0]
    out = np.zeros((K, d + 1))
    for i in range(start, stop):
        for k in range(K):
            if role[i, k] != 1:
                continue
            t = vb[k]
            for j in range(d):
                t += X[i, j] * V[k, j]
            t *= C[i, k]
            for j in range(d):
                out[k, j] += X[i, j] * t
            out[k, d] += t
    return out


@jit(reassociate=True)
def dense_binary_labelled_loss_grad(
    X, w, b, targets, sw, labels, n_labels, start, stop, P
):
    """:func:`dense_binary_loss_grad` summed apart for every label of rows.

    Parameters
    ----------
    X, w, b, targets, sw
        As :func:`dense_binary_loss_grad`.
    labels : ndarray of shape (n_samples,) or (0,), dtype int64
        The sum each row adds to (-1: none; its probability is still set);
        empty: every row adds to the first sum.
    n_labels : int
    start, stop : int
        The block of rows.
    P : ndarray of shape (n_samples, 1)
        Receives the probabilities of the block's rows.

    Returns
    -------
    losses : ndarray of shape (n_labels,)
    grads : ndarray of shape (n_labels, n_features + 1)
        Gradients in ``w`` then in ``b``, per label.
    """
    d = X.shape[1]
    grads = np.zeros((n_labels, d + 1))
    losses = np.zeros(n_labels)
    for i in range(start, stop):
        score = b
        for j in range(d):
            score += X[i, j] * w[j]
        loss_i, gi, P[i, 0] = _binary_loss_grad(score, targets[i], sw[i])
        label = labels[i] if labels.shape[0] else 0
        if label < 0:
            continue
        losses[label] += loss_i
        for j in range(d):
            grads[label, j] += X[i, j] * gi
        grads[label, d] += gi
    return losses, grads


@jit
def binary_labelled_terms(z, targets, sw, labels, n_labels, G, P):
    """Binary log-losses of scores ``z`` summed per label of rows (-1: none),
    with every row's derivative in its score (``G``) and probability (``P``).

    Returns
    -------
    losses : ndarray of shape (n_labels,)
    """
    losses = np.zeros(n_labels)
    for i in range(z.shape[0]):
        loss_i, G[i], P[i] = _binary_loss_grad(z[i], targets[i], sw[i])
        if labels[i] >= 0:
            losses[labels[i]] += loss_i
    return losses


@jit
def _sparse_binary_hvp(indptr, indices, data, curvature, penalty, n_coef, v, out):
    """``out = H v`` for the binary Hessian ``[X, 1]^T diag(curvature) [X, 1]
    + diag(penalty)`` (the intercept's entry last where ``v`` has
    ``n_coef + 1``), in one read of CSR X: each row's score, then at once its
    share of ``X.T r``. Returns ``v . H v``, summed on the way."""
    fit_intercept = v.shape[0] > n_coef
    vb = v[n_coef] if fit_intercept else 0.0
    quadratic = 0.0
    for j in range(v.shape[0]):
        out[j] = penalty[j] * v[j]
        quadratic += out[j] * v[j]
    total = 0.0
    for i in range(indptr.shape[0] - 1):
        s = vb
        for q in range(indptr[i], indptr[i + 1]):
            s += data[q] * v[indices[q]]
        r = curvature[i] * s
        quadratic += r * s
        total += r
        for q in range(indptr[i], indptr[i + 1]):
            out[indices[q]] += data[q] * r
    if fit_intercept:
        out[n_coef] += total
    return quadratic


@jit
def sparse_binary_cg(
    indptr,
    indices,
    data,
    n_coef,
    curvature,
    penalty,
    rhs,
    x0,
    warm,
    tol,
    max_iter,
    settle=0.0,
):
    """Jacobi-preconditioned conjugate gradients on a binary logistic Hessian
    over CSR X (see :func:`_sparse_binary_hvp`), the whole loop compiled.

    The iterates are :func:`~skbilevel._linalg.conjugate_gradient`'s with
    ``diagonal`` the Hessian's; compiled, a solve skips the Python overhead
    of every iteration (a third of the time on 8000 x 50000 with 50 entries
    a row) and holds no GIL, so that folds in threads run side by side.
    ``indptr`` and ``indices`` are unsigned 32-bit: with signed ones every
    gather checks for a negative index, which halved the speed of the
    products (measured 0.79 against 0.41 ms, SciPy's two 0.43 ms).

    ``settle``: see :func:`~skbilevel._linalg.conjugate_gradient` (the
    same rule, which lets a Newton step's solve stop where the decrement is
    clearly below the solve's threshold).

    Parameters
    ----------
    indptr, indices : ndarray of dtype uint32
    data : ndarray of shape (nnz,)
    n_coef : int
        Number of columns of X.
    curvature : ndarray of shape (n_samples,)
        ``sw * p * (1 - p)``: each row's second derivative in its score.
    penalty : ndarray of shape (n_params,)
        L2 weights; the intercept's last when ``n_params == n_coef + 1``.
    rhs, x0 : ndarray of shape (n_params,)
        Right-hand side; warm start, used where ``warm`` (else zeros).
    warm : bool
    tol : float
        Stop when ``||H x - rhs|| <= tol * ||rhs||``.
    max_iter : int
    settle : float, default=0.0

    Returns
    -------
    x : ndarray of shape (n_params,)
    n_products : int
    converged : bool
        Whether the tolerance was reached, or the decrement settled.
    """
    # Loops rather than array expressions: they compile faster (first call
    # 1.48 -> 1.31 s with an empty cache).
    m = rhs.shape[0]
    rhs_norm = 0.0
    for j in range(m):
        rhs_norm += rhs[j] * rhs[j]
    rhs_norm = np.sqrt(rhs_norm)
    x = np.zeros(m)
    if rhs_norm == 0.0:
        return x, 0, True
    # The Jacobi preconditioner: the Hessian's diagonal, in one pass.
    diagonal = np.empty(m)
    for j in range(m):
        diagonal[j] = penalty[j]
    total = 0.0
    for i in range(indptr.shape[0] - 1):
        c = curvature[i]
        total += c
        for q in range(indptr[i], indptr[i + 1]):
            diagonal[indices[q]] += c * data[q] * data[q]
    if m > n_coef:
        diagonal[n_coef] += total
    inverse = diagonal  # in place
    for j in range(m):
        inverse[j] = 1.0 / diagonal[j] if diagonal[j] > 0.0 else 1.0
    ap = np.empty(m)
    r = np.empty(m)
    n_products = 0
    if warm:
        for j in range(m):
            x[j] = x0[j]
        _sparse_binary_hvp(indptr, indices, data, curvature, penalty, n_coef, x, ap)
        n_products = 1
        settle = 0.0  # the decrement's sum holds from zero only
    else:
        ap[:] = 0.0
    p = np.empty(m)
    residual = 0.0
    rz = 0.0
    for j in range(m):
        r[j] = rhs[j] - ap[j]
        residual += r[j] * r[j]
        p[j] = inverse[j] * r[j]
        rz += r[j] * p[j]
    threshold = tol * rhs_norm
    if np.sqrt(residual) <= threshold:
        return x, n_products, True
    decrement = 0.0
    kept = max_iter if settle > 0.0 else 0  # the Lanczos coefficients
    alphas = np.empty(kept)
    betas = np.empty(kept)
    for k in range(max_iter):
        pap = _sparse_binary_hvp(
            indptr, indices, data, curvature, penalty, n_coef, p, ap
        )
        n_products += 1
        if not pap > 0.0:  # lost positive definiteness to round-off: stop
            break
        step = rz / pap
        decrement += step * rz
        residual = 0.0
        rz_new = 0.0
        for j in range(m):
            x[j] += step * p[j]
            r[j] -= step * ap[j]
            residual += r[j] * r[j]
            rz_new += r[j] * r[j] * inverse[j]
        if np.sqrt(residual) <= threshold:
            return x, n_products, True
        beta = rz_new / rz
        if settle > 0.0:
            alphas[k], betas[k] = step, beta
        if settle > 0.0 and k >= 2 and decrement <= settle:
            ritz = smallest_ritz_value(alphas, betas, k + 1)
            if ritz > 0.0 and decrement + SETTLE_SAFETY * rz_new / ritz <= settle:
                return x, n_products, True
        for j in range(m):
            p[j] = inverse[j] * r[j] + beta * p[j]
        rz = rz_new
    return x, n_products, False


@jit
def _label_offsets(labels, start, stop, n_labels, offsets):
    """A counting sort's offsets: label ``l``'s rows of ``start:stop`` go to
    ``offsets[l]:offsets[l + 1]`` (rows labelled -1 nowhere). Fills
    ``offsets`` and returns a copy of its first ``n_labels`` entries, the
    next free position of each label."""
    offsets[:] = 0
    for i in range(start, stop):
        if labels[i] >= 0:
            offsets[labels[i] + 1] += 1
    for label in range(n_labels):
        offsets[label + 1] += offsets[label]
    return offsets[:n_labels].copy()


@jit
def scaled_rows_by_label(X, root, labels, start, stop, n_labels, B, r, offsets):
    """Rows ``start:stop`` of X times ``root``, in float32, grouped by label.

    A counting sort, stable: label ``l``'s rows land in
    ``B[offsets[l]:offsets[l + 1]]`` in their order (rows labelled -1 are
    left out), and ``r`` holds their roots. Each entry is X's rounded to
    float32 times the float32 root, NumPy's ``np.multiply(X, root,
    dtype=np.float32)`` to the bit: the per-label Grams ``Bl.T @ Bl`` are
    those of ``B[labels == l]``, without the float32 copy of every chunk
    and the copy of every label's rows (measured, 200000 x 200 on one
    thread: 0.117 s for those two).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float64
    root : ndarray of shape (n_samples,), dtype float32
    labels : ndarray of shape (n_samples,), dtype int64
    start, stop : int
    n_labels : int
    B : ndarray of shape (stop - start, n_features), dtype float32
        Filled (its first ``offsets[-1]`` rows).
    r : ndarray of shape (stop - start,), dtype float32
        Filled likewise.
    offsets : ndarray of shape (n_labels + 1,), dtype int64
        Filled.
    """
    position = _label_offsets(labels, start, stop, n_labels, offsets)
    d = X.shape[1]
    for i in range(start, stop):
        label = labels[i]
        if label < 0:
            continue
        k = position[label]
        position[label] += 1
        scale = root[i]
        for j in range(d):
            B[k, j] = np.float32(X[i, j]) * scale
        r[k] = scale


@jit(reassociate=True)
def labelled_terms_scaled_rows(
    X, w, b, targets, sw, labels, start, stop, n_labels, B, r, offsets, sums
):
    """:func:`dense_binary_labelled_loss_grad` and :func:`scaled_rows_by_label`
    in one read of rows ``start:stop``, the roots those of the rows' weighted
    logistic curvatures at ``(w, b)``: the log-losses and data gradients of
    every label's rows, and what their Hessians' Grams are formed from, at
    one point.

    The scaled rows are those of :func:`scaled_rows_by_label` given the
    roots ``sqrt(sw * p * (1 - p))`` rounded to float32 (computed as
    :func:`~skbilevel._problems._logistic.logistic_curvature` does; the
    scores are reassociated sums, a few ulps from BLAS's). Rows labelled -1
    are skipped.

    Parameters
    ----------
    X, w, b, targets, sw
        As :func:`dense_binary_loss_grad`.
    labels : ndarray of shape (n_samples,), dtype int64
    start, stop : int
    n_labels : int
    B, r, offsets
        Filled, as by :func:`scaled_rows_by_label`.
    sums : ndarray of shape (n_labels, n_features + 3)
        Receives, added per label: the gradient in ``w``, in ``b``, the
        log-loss, and the sum of the squared roots (the intercept's
        curvature), in that order.
    """
    position = _label_offsets(labels, start, stop, n_labels, offsets)
    d = X.shape[1]
    for i in range(start, stop):
        label = labels[i]
        if label < 0:
            continue
        score = b
        for j in range(d):
            score += X[i, j] * w[j]
        loss_i, gi, p = _binary_loss_grad(score, targets[i], sw[i])
        root = np.sqrt(sw[i] * p * (1.0 - p))
        scale = np.float32(root)
        k = position[label]
        position[label] += 1
        for j in range(d):
            x = X[i, j]
            sums[label, j] += x * gi
            B[k, j] = np.float32(x) * scale
        sums[label, d] += gi
        sums[label, d + 1] += loss_i
        sums[label, d + 2] += root * root
        r[k] = scale
