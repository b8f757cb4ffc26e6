"""Weighted L2-penalized logistic regression (binary or multinomial), inner problem.

The training problem of one fold is

    L(W, theta) = sum_i sw_i * logloss(y_i, x_i W + b) + 0.5 * sum(p * W ** 2)

with ``p = exp(theta)[group_idx]`` (``p = 1 / C`` in scikit-learn's scale) and
intercepts ``b`` stored as the last row of ``W`` (group -1), outside the
hyperparameters (they only carry a 1e-10 relative weight, see ``_penalty``).
Binary problems have one output column (sigmoid), multinomial ones one per
class (softmax).

The inner solver is Newton's method with a backtracking line search,
warm-started across outer iterations. With a factorized Hessian (``direct``)
the last data Hessian is kept across evaluations: chord steps reuse it while
they cost less than a fresh one (a cost model in passes over the data), and
it preconditions conjugate gradients on exact Hessian-vector products for
the adjoint system. Without factorization (``cg`` and the other iterative
methods) Newton-CG is used; sparse data goes through SciPy's products.
"""

import numpy as np
import scipy.sparse as sp

from .._linalg import (
    cho_solve_vector,
    conjugate_gradient,
    power_iteration,
    robust_cho_factor,
)
from .._logistic_kernels import (
    dense_binary_hvp,
    dense_binary_loss_grad,
    labelled_terms_scaled_rows,
    samplewise_hvp,
    samplewise_loss_grad,
    scaled_rows_by_label,
    sparse_binary_cg,
)
from .._results import log_probabilities
from .._rows import map_row_blocks, row_block_count
from .._validation import as_float_c, as_index_c, max_abs
from ._base import InnerProblem, penalty_weights

__all__ = [
    "DIRECT_MAX_PARAMS",
    "LogLossFit",
    "float32_gram_is_safe",
    "factorization_cost_in_passes",
    "hessian_cost_in_passes",
    "LogisticProblem",
    "logistic_curvature",
    "uses_float32_gram",
    "weighted_grams",
]

# Largest number of coefficients (features+intercept times outputs) for which
# the Hessian is formed and factorized.
DIRECT_MAX_PARAMS = 1500


def hessian_cost_in_passes(n_coef):
    """Cost of forming and factorizing the data Hessian, in passes over the data.

    A pass (scores and gradient) streams X from memory; the Hessian is a
    matrix-matrix product, many times faster per operation. The constant was
    tuned on whole fits (2 cores; 4 runs each, best): n_coef / 20 took 2.6 s
    against 3.7 s with / 40 and 3.3 s with / 10 on standardized
    make_classification 100000 x 100, and 1.5 s against 1.7 and 2.0 s on
    digits (10 classes, 650 coefficients), whose Hessian costs about 35
    passes. The Cholesky factorization, which only matters when there are
    about as many coefficients as samples, is left out: the estimate depends
    on the coefficients alone, so that weighted and repeated samples take
    the same steps.
    """
    return n_coef / 20.0


# A Hessian cheaper than this many passes is formed at the solution for the
# adjoint (about the cost of the products preconditioned by a stale one).
_CHEAP_HESSIAN_PASSES = 4.0
# The adjoint system is solved to this relative residual by conjugate
# gradients preconditioned with the last factorized Hessian; past
# _STALE_PRODUCTS products that Hessian is deemed stale (the next solve forms
# a fresh one), past _ADJOINT_MAX_PRODUCTS one is formed at the solution.
_ADJOINT_TOL = 1e-10
_STALE_PRODUCTS = 8
_ADJOINT_MAX_PRODUCTS = 30
# Solves at least this loose (relative accuracy) of a value alone read the
# float32 copy of X for their loss and gradient (see LogisticProblem.solve).
_ROUGH_TOL = 1e-4
# Rows per chunk of the float32 Hessian products (bounds their temporaries).
_GRAM_CHUNK = 16384
# A factorization costing at least this many passes is not made again for
# a new penalty: Newton steps from a Hessian formed at another point are then
# taken by conjugate gradients preconditioned with the factorization at hand
# (see LogisticProblem._newton).
_KRYLOV_MIN_FACTOR_PASSES = 4.0


# Multiply-adds (rows x coefficients^2) from which the multinomial Hessian is
# formed in float32 (digits, 1437 x 650: 6e8; 9 against 12 ms a Hessian).
_FLOAT32_MIN_PRODUCT = 1e8


# Largest |sqrt(weight) * x| of the float32 Hessian products: their terms stay
# far below float32's 3.4e38 (features past ~1e19 would overflow it).
_FLOAT32_MAX_ENTRY = 1e15


def factorization_cost_in_passes(n_coef, n_rows):
    """Cost of a Cholesky factorization of the Hessian, in passes over the data.

    ``n_coef**3 / 3`` multiply-adds against a pass's ``2 n_rows n_coef``, at
    about 5 times a pass's rate (as for :func:`hessian_cost_in_passes`).
    Measured on 2 cores: digits (1437 x 650) 2.7 ms against 0.24 ms a pass
    (11 passes; this estimate 9.8), 16000 x 357 0.5 against 1.9 ms (0.25;
    0.27).
    """
    return n_coef**2 / (30.0 * max(n_rows, 1))


def float32_gram_is_safe(X, sw, largest=None):
    """Whether dense X and weights ``sw`` fit the float32 Hessian products
    (``largest``: X's largest absolute entry, if known)."""
    largest = max_abs(X) if largest is None else largest
    return bool(np.sqrt(np.max(sw)) * largest < _FLOAT32_MAX_ENTRY)


def uses_float32_gram(n_params, n_out, sparse):
    """Whether the data Hessian is formed from a float32 copy of X (see
    :meth:`LogisticProblem._weighted_gram`): binary, dense, factorizable."""
    return n_out == 1 and not sparse and n_params <= DIRECT_MAX_PARAMS


def weighted_grams(
    X, root, labels=None, n_labels=1, *, fit_intercept=True, float32=False, X32=None
):
    """``[X, 1]^T diag(root**2) [X, 1]`` over the rows of each label, without
    forming ``[X, 1]``.

    Dense data: the products run in float32 when ``float32`` (BLAS syrk on
    ``B.T @ B``, B = root * X: measured 7x faster than a float64 general
    product on 80000 x 100). The Gram is then exact to ~1e-7 relative:
    plenty for Newton steps, and :meth:`LogisticProblem.hessian_solve` adds
    one step of iterative refinement with exact Hessian-vector products for
    the adjoint. Sparse data stays sparse (a sparse product, then densified).

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    root : ndarray of shape (n_samples,)
        Square roots of the rows' weights.
    labels : ndarray of shape (n_samples,), dtype int64, default=None
        Which Gram each row adds to (-1: none); None: one Gram of every row.
        Every row is read once whatever the number of labels.
    n_labels : int, default=1
    fit_intercept : bool, default=True
        Whether to append the column of ones (the last row and column).
    float32 : bool, default=False
        Dense products in float32 (see :func:`float32_gram_is_safe`).
    X32 : ndarray of shape (n_samples, n_features), dtype float32, default=None
        A float32 copy of dense X, read instead of converting each chunk.

    Returns
    -------
    grams : ndarray of shape (n_labels, n_params, n_params)
        ``n_params = n_features + fit_intercept``.
    """
    d = X.shape[1]
    grams = np.zeros((n_labels, d, d))
    cross = np.zeros((n_labels, d))
    if sp.issparse(X):
        for label in range(n_labels):
            rows = slice(None) if labels is None else np.flatnonzero(labels == label)
            B = X[rows].multiply(root[rows][:, None]).tocsr()
            grams[label] = (B.T @ B).toarray()
            cross[label] = np.asarray(B.T @ root[rows]).ravel()
    else:
        # Chunks of rows bound the float32 temporaries; without a float32
        # copy of X (X32), each chunk is converted on the fly.
        dtype = np.float32 if float32 else np.float64
        root32 = root.astype(dtype)
        source = X32 if X32 is not None else X

        # float32 products of float64 rows with labels: the rows are scaled,
        # rounded and grouped by label in one compiled pass per chunk.
        grouped = (
            labels is not None
            and dtype == np.float32
            and source.dtype == np.float64
            and source.flags.c_contiguous
        )
        if grouped:
            labels = np.ascontiguousarray(labels, dtype=np.int64)
            grams, cross, _ = _grouped_float32_grams(
                source.shape[0], d, n_labels,
                lambda start, stop, B, r, offsets: scaled_rows_by_label(
                    source, root32, labels, start, stop, n_labels, B, r, offsets
                ),
            )  # fmt: skip
            return _append_intercept(grams, cross, root, labels, fit_intercept)

        def block(first, last):
            grams = np.zeros((n_labels, d, d))
            cross = np.zeros((n_labels, d))
            for start in range(first, last, _GRAM_CHUNK):
                stop = min(start + _GRAM_CHUNK, last)
                B = np.multiply(
                    source[start:stop], root32[start:stop, None], dtype=dtype
                )
                r = root32[start:stop]
                if labels is None:
                    grams[0] += B.T @ B
                    cross[0] += B.T @ r
                    continue
                chunk_labels = labels[start:stop]
                for label in range(n_labels):
                    mine = chunk_labels == label
                    Bl = B[mine]  # a copy: B.T @ B below stays one syrk
                    grams[label] += Bl.T @ Bl
                    cross[label] += Bl.T @ r[mine]
            return grams, cross

        # Blocks of rows in threads, each product on one BLAS thread (see
        # _rows), when the blocks stay much taller than wide. (Not the
        # multinomial Hessian: its products are wide, and BLAS threads
        # them well. Measured on digits: 28 ms in two blocks, 17 ms in one.)
        blocks = map_row_blocks(
            block, source.shape[0], row_work=d * d / 2.0, blas=True, min_rows=16 * d
        )
        grams = np.sum([b[0] for b in blocks], axis=0)
        cross = np.sum([b[1] for b in blocks], axis=0)
    return _append_intercept(grams, cross, root, labels, fit_intercept)


def _append_intercept(grams, cross, root, labels, fit_intercept, corner=None):
    """The Grams of :func:`weighted_grams` from those of X's columns, their
    cross products with the roots (``cross``) and, if known, the roots'
    squares summed per label (``corner``)."""
    if not fit_intercept:
        return grams
    n_labels, d = cross.shape
    if corner is None:
        squares = root * root
        corner = (
            np.full(n_labels, squares.sum())
            if labels is None
            else np.bincount(labels[labels >= 0], squares[labels >= 0], n_labels)
        )
    out = np.empty((n_labels, d + 1, d + 1))
    out[:, :-1, :-1] = grams
    out[:, :-1, -1] = cross
    out[:, -1, :-1] = cross
    out[:, -1, -1] = corner
    return out


def _grouped_float32_grams(n_rows, d, n_labels, fill, n_sums=0):
    """float32 Grams of rows that ``fill`` scales, rounds and groups by label.

    ``fill(start, stop, B, r, offsets, *sums)`` (a compiled pass over rows
    ``start:stop``, see :func:`~skbilevel._logistic_kernels.scaled_rows_by_label`)
    puts every label's scaled rows in ``B[offsets[l]:offsets[l + 1]]`` and
    their roots in ``r``; each label's rows are then one BLAS syrk. Chunks of
    _GRAM_CHUNK rows bound the float32 temporaries; blocks of rows run in
    threads (BLAS on one thread each, see :mod:`skbilevel._rows`).
    ``n_sums``: how many ``(n_labels, d + 3)`` float64 arrays ``fill`` also
    adds to, summed over the blocks.

    Returns ``(grams (n_labels, d, d), cross (n_labels, d), sums)``, with
    ``cross`` the rows' products with their roots.
    """

    def block(first, last):
        grams = np.zeros((n_labels, d, d))
        cross = np.zeros((n_labels, d))
        sums = [np.zeros((n_labels, d + 3)) for _ in range(n_sums)]
        B = np.empty((min(_GRAM_CHUNK, last - first), d), dtype=np.float32)
        r = np.empty(B.shape[0], dtype=np.float32)
        offsets = np.empty(n_labels + 1, dtype=np.int64)
        for start in range(first, last, _GRAM_CHUNK):
            fill(start, min(start + _GRAM_CHUNK, last), B, r, offsets, *sums)
            for label in range(n_labels):
                rows = slice(offsets[label], offsets[label + 1])
                Bl = B[rows]  # contiguous: B.T @ B below stays one syrk
                grams[label] += Bl.T @ Bl
                cross[label] += Bl.T @ r[rows]
        return grams, cross, sums

    blocks = map_row_blocks(
        block, n_rows, row_work=d * d / 2.0, blas=True, min_rows=16 * d
    )
    grams = np.sum([b[0] for b in blocks], axis=0)
    cross = np.sum([b[1] for b in blocks], axis=0)
    sums = [np.sum([b[2][i] for b in blocks], axis=0) for i in range(n_sums)]
    return grams, cross, sums


def labelled_terms_and_grams(X, a, targets, sw, labels, n_labels, fit_intercept):
    """Binary log-losses, data gradients and float32 Hessian Grams of every
    label's rows at coefficients ``a``, in one read of dense X.

    What :func:`weighted_grams` (``float32=True``) gives for the roots of
    the curvatures at ``a`` (to float32's round-off), and the losses and
    gradients of
    :func:`~skbilevel._logistic_kernels.dense_binary_labelled_loss_grad`,
    without a pass of their own (measured on 400000 x 200 in 5 labels: the
    pass for the losses and gradients took 0.037 s, the Grams 0.175 s).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), C-contiguous float64
    a : ndarray of shape (n_features + fit_intercept,)
    targets : ndarray of shape (n_samples,), dtype int64
    sw : ndarray of shape (n_samples,)
    labels : ndarray of shape (n_samples,), dtype int64
        -1: a row that no label sums.
    n_labels : int
    fit_intercept : bool

    Returns
    -------
    losses : ndarray of shape (n_labels,)
    grads : ndarray of shape (n_labels, n_params)
    grams : ndarray of shape (n_labels, n_params, n_params)
    """
    d = X.shape[1]
    w = np.ascontiguousarray(a[:d], dtype=np.float64)
    b = float(a[d]) if fit_intercept else 0.0
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    grams, cross, (sums,) = _grouped_float32_grams(
        X.shape[0], d, n_labels,
        lambda start, stop, B, r, offsets, sums: labelled_terms_scaled_rows(
            X, w, b, targets, sw, labels, start, stop, n_labels, B, r, offsets,
            sums,
        ),
        n_sums=1,
    )  # fmt: skip
    grams = _append_intercept(
        grams, cross, None, labels, fit_intercept, corner=sums[:, d + 2]
    )
    grads = sums[:, : d + 1] if fit_intercept else sums[:, :d]
    return sums[:, d + 1], np.ascontiguousarray(grads), grams


def logistic_curvature(P, sw):
    """Second derivative of each sample's binary log-loss in its score, weighted.

    The reference formula ``sw * p * (1 - p)`` (per output column); the Numba
    kernels (:func:`~skbilevel._logistic_kernels.samplewise_hvp`) are tested
    against it.

    Parameters
    ----------
    P : ndarray of shape (n_samples, n_out)
        Predicted probabilities.
    sw : ndarray of shape (n_samples,)

    Returns
    -------
    curvature : ndarray of shape (n_samples, n_out)
    """
    return sw[:, None] * P * (1.0 - P)


def _prepare_X(X):
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        if X.indices.dtype != np.int32 and max(X.nnz, *X.shape) < 2**31:
            # 32-bit indices (what SciPy makes where they fit): half the
            # memory a product reads for them, and the compiled solver's
            # (see LogisticProblem.cg_solve).
            X = sp.csr_matrix(
                (X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)),
                shape=X.shape,
            )
        return X
    # Dense X meets BLAS and the fused binary kernels (which compile once
    # more for a read-only array, such as a memory map): no copy needed.
    return np.ascontiguousarray(X, dtype=np.float64)


def _binary_dense_loss_grad(X, W, targets, sw, fit_intercept):
    """:func:`_loss_grad` of a binary problem on dense X: fused row blocks."""
    n, d = X.shape
    w = np.ascontiguousarray(W[:d, 0])
    b = float(W[d, 0]) if fit_intercept else 0.0
    P = np.empty((n, 1))

    def block(start, stop):
        return dense_binary_loss_grad(X, w, b, targets, sw, start, stop, P)

    parts = map_row_blocks(block, n, row_work=2 * d)
    loss = sum(part[0] for part in parts)
    grad = np.sum([part[1] for part in parts], axis=0)
    return loss, (grad if fit_intercept else grad[:d]).reshape(-1, 1), P


def _loss_grad(X, W, targets, sw, fit_intercept, XT=None):
    """Weighted log-loss, its gradient in W (intercept row last) and probabilities.

    ``XT``: ``X.T`` kept by the caller (SciPy makes a new matrix object at
    every ``X.T`` of a sparse X: 40 us, a tenth of a product).
    """
    if W.shape[1] == 1 and not sp.issparse(X):
        return _binary_dense_loss_grad(X, W, targets, sw, fit_intercept)
    n_features = X.shape[1]
    coef = W[:n_features]
    b = W[n_features] if fit_intercept else np.zeros(W.shape[1])
    # Sparse X too: SciPy's two products beat a fused CSR kernel (measured
    # 0.8 against 1.4 ms for a binary Hessian-vector product on 400000
    # nonzeros, 5.4 against 8.7 ms with 10 classes).
    Z = X @ coef
    Z += b
    loss, G, P = samplewise_loss_grad(Z, targets, sw)
    g_coef = np.asarray((X.T if XT is None else XT) @ G)
    g_b = G.sum(axis=0)
    grad = np.vstack([g_coef, g_b]) if fit_intercept else g_coef
    return loss, grad, P


class LogisticProblem(InnerProblem):
    """Weighted logistic regression training problem of one fold.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or sparse matrix
    targets : ndarray of shape (n_samples,), dtype int64
        Class index of every sample (0/1 when binary).
    sw : ndarray of shape (n_samples,)
        Sample weights (class weights included).
    n_out : int
        1 for binary (sigmoid), the number of classes for multinomial.
    group_idx : ndarray of shape (n_params, n_out), dtype int64
        Hyperparameter group of each coefficient, -1 for the intercept row.
    n_hyper : int
    fit_intercept : bool
    X_val, targets_val, sw_val : arrays, default=None
        Validation rows, for :meth:`outer_loss_grad`.
    X32 : ndarray of shape (n_samples, n_features), dtype float32, default=None
        A float32 copy of X for the binary Hessian (a view of a copy shared
        by the folds); None converts chunks of X at each Hessian instead (a
        problem that forms few Hessians, such as the final refit).
    """

    def __init__(
        self,
        X,
        targets,
        sw,
        n_out,
        group_idx,
        n_hyper,
        fit_intercept,
        *,
        X_val=None,
        targets_val=None,
        sw_val=None,
        X32=None,
    ):
        self.X = _prepare_X(X)
        self._XT = self.X.T  # kept: a sparse X makes a new object at each .T
        self._X32 = X32
        self._float32 = None if X32 is None else True  # float32 Hessian products
        self.targets = as_index_c(targets)
        self.sw = as_float_c(sw)
        self.n_out = n_out
        self.group_idx = group_idx
        self.n_hyper = n_hyper
        self.fit_intercept = fit_intercept
        self.n_features = self.X.shape[1]
        self.n_params = self.n_features + int(fit_intercept)
        self.total = float(self.sw.sum())
        self.intercept_penalty = 1e-10 * self.total
        self._terms_key = None
        self._terms = None
        self._rough_passes = False  # loss passes on X32 (see solve)
        self._penalty_key = None
        self._penalty_weights = None
        self._hessian_key = None
        self._hessian = None
        self._factor_key = None
        self._factor = None
        self._stale = False  # form a fresh Hessian at the next solve
        # The point of the solver's last Newton step from the current Hessian.
        self._previous_step_key = None
        self._hessian_passes = hessian_cost_in_passes(self.n_params * n_out)
        factor_passes = factorization_cost_in_passes(
            self.n_params * n_out, self.X.shape[0]
        )
        # Newton steps by conjugate gradients on a stale Hessian's factor
        # (see _newton), and at most this many products each: about a
        # quarter of the cost of a fresh Hessian and its factorization.
        self._krylov = factor_passes >= _KRYLOV_MIN_FACTOR_PASSES
        self._krylov_products = max(
            4, int((self._hessian_passes + factor_passes) / 4.0)
        )
        if X_val is not None:
            self.X_val = _prepare_X(X_val)
            self.targets_val = as_index_c(targets_val)
            self.sw_val = as_float_c(sw_val)

    def _penalty(self, theta):
        """L2 weights of every coefficient; the intercepts get a tiny one.

        ``1e-10 * sum(sw)`` on the intercepts changes predictions by about
        1e-10 relative, and keeps an intercept finite when its class is
        absent from a training fold (softmax) or perfectly separated.

        The weights of the last ``theta`` are kept (read-only): iterative
        solvers ask for them at every Hessian-vector product.
        """
        key = theta.tobytes()
        if key != self._penalty_key:
            p = penalty_weights(theta, self.group_idx)
            if self.fit_intercept:
                p[-1] = self.intercept_penalty
            p.flags.writeable = False
            self._penalty_key, self._penalty_weights = key, p
        return self._penalty_weights

    @property
    def uses_row_blocks(self):
        """Whether this fold's passes split into at least two row blocks
        (dense binary data with enough rows, see :mod:`~skbilevel._rows`):
        the other folds' work runs on one thread unless folds share the
        cores (``FoldsObjective.share_cores``)."""
        if self.n_out != 1 or sp.issparse(self.X):
            return False
        # The fused passes' blocks (row_work=2 d, see _loss_grad), two threads.
        return row_block_count(self.X.shape[0], 2 * self.n_features, 2) >= 2

    @property
    def pass_work(self):
        """Cost of one pass over the data (scores of every output), in dense
        multiply-adds: a stored entry of sparse X counts 4 (its index read
        and the gather; measured on 400000 entries: 188 us a CSR
        matrix-vector product against 44 us dense)."""
        entries = 4 * self.X.nnz if sp.issparse(self.X) else self.X.size
        return entries * self.n_out

    @property
    def can_factorize(self):
        """Whether the Hessian is small enough to form and factorize."""
        return self.n_params * self.n_out <= DIRECT_MAX_PARAMS

    # ------------------------------------------------------------- data terms
    def _data_terms(self, W):
        # A loose solve (scan points) reads the float32 copy of X, half the
        # memory of a pass (see solve); its terms are kept apart.
        rough = self._rough_passes and self._X32 is not None
        key = (W.tobytes(), rough)
        if key != self._terms_key:
            self._terms = (
                _loss_grad(self._X32, W, self.targets, self.sw, self.fit_intercept)
                if rough
                else _loss_grad(
                    self.X, W, self.targets, self.sw, self.fit_intercept, self._XT
                )
            )
            self._terms_key = key
        return self._terms

    def value(self, W, theta):
        p = self._penalty(theta)
        return float(self._data_terms(W)[0] + 0.5 * np.sum(p * W**2))

    def gradient(self, W, theta):
        p = self._penalty(theta)
        return self._data_terms(W)[1] + p * W

    def _data_hvp(self, W, V):
        P = self._data_terms(W)[2]
        d = self.n_features
        if self.n_out == 1 and not sp.issparse(self.X):
            v = np.ascontiguousarray(V[:d, 0])
            vb = float(V[d, 0]) if self.fit_intercept else 0.0
            blocks = map_row_blocks(
                lambda start, stop: dense_binary_hvp(
                    self.X, P, self.sw, v, vb, start, stop
                ),
                self.X.shape[0],
                row_work=2 * d,
            )
            out = np.sum(blocks, axis=0)
            return (out if self.fit_intercept else out[:d]).reshape(-1, 1)
        v_b = V[d] if self.fit_intercept else np.zeros(self.n_out)
        Zv = self.X @ V[:d]  # SciPy's products for sparse X (see _loss_grad)
        Zv += v_b
        R = samplewise_hvp(P, Zv, self.sw)
        out = np.asarray(self._XT @ R)
        out_b = R.sum(axis=0)
        return np.vstack([out, out_b]) if self.fit_intercept else out

    def hvp(self, W, theta, V):
        return self._data_hvp(W, V) + self._penalty(theta) * V

    def hessian_diagonal(self, W, theta):
        curvature = logistic_curvature(self._data_terms(W)[2], self.sw)
        if not hasattr(self, "_X_squared"):
            self._X_squared = (
                self.X.multiply(self.X).tocsr() if sp.issparse(self.X) else self.X**2
            )
        diag = np.asarray(self._X_squared.T @ curvature)
        if self.fit_intercept:
            intercept = curvature.sum(axis=0)
            if self.n_out > 1:
                # One value for all classes: the preconditioner then keeps
                # the iterates off the softmax's null direction (the same
                # shift of every intercept), which a class-dependent scaling
                # would excite, wrecking the iteration.
                intercept[:] = intercept.mean()
            diag = np.vstack([diag, intercept])
        return diag + self._penalty(theta)

    def cg_solve(self, W, theta, rhs, x0=None, tol=1e-10, max_iter=1000, settle=0.0):
        """:meth:`InnerProblem.cg_solve`; binary problems on sparse X run the
        whole loop compiled (:func:`~skbilevel._logistic_kernels.sparse_binary_cg`,
        the same iterates)."""
        X = self.X
        compiled = (
            sp.issparse(X)
            and self.n_out == 1
            and X.indices.dtype == X.indptr.dtype == np.int32
        )
        if not compiled:
            return super().cg_solve(
                W, theta, rhs, x0=x0, tol=tol, max_iter=max_iter, settle=settle
            )
        curvature = logistic_curvature(self._data_terms(W)[2], self.sw)
        x, n_products, converged = sparse_binary_cg(
            X.indptr.view(np.uint32),
            X.indices.view(np.uint32),
            X.data,
            self.n_features,
            np.ascontiguousarray(curvature[:, 0]),
            np.ascontiguousarray(self._penalty(theta)[:, 0]),
            np.ascontiguousarray(rhs[:, 0], dtype=np.float64),
            np.ascontiguousarray((rhs if x0 is None else x0)[:, 0], dtype=np.float64),
            x0 is not None,
            float(tol),
            int(max_iter),
            float(settle),
        )
        return x.reshape(-1, 1), n_products, converged

    def lipschitz(self, W, theta):
        return power_iteration(lambda v: self.hvp(W, theta, v), W.shape)

    # ------------------------------------------------------------- direct path
    def _weighted_gram(self, root):
        """``[X, 1]^T diag(root**2) [X, 1]`` (see :func:`weighted_grams`)."""
        if self._float32 is None and not sp.issparse(self.X):
            self._float32 = float32_gram_is_safe(self.X, self.sw)
        return weighted_grams(
            self.X, root, fit_intercept=self.fit_intercept,
            float32=bool(self._float32), X32=self._X32,
        )[0]  # fmt: skip

    def _augmented_design(self):
        """``[X, 1]`` (or X), built once; sparse input stays sparse."""
        if not hasattr(self, "_Xa"):
            X = self.X
            if self.fit_intercept:
                ones = np.ones((X.shape[0], 1))
                X = (
                    sp.hstack([X, ones]).tocsr()
                    if sp.issparse(X)
                    else np.hstack([X, ones])
                )
            self._Xa = X
        return self._Xa

    def _multinomial_gram(self, P):
        """Softmax data Hessian, coefficients ordered as ``W.ravel()``.

        ``H[(a, k), (b, j)] = sum_i sw_i x_ia x_ib (delta_kj p_ik - p_ik p_ij)``
        with ``x = [X, 1]``. Dense data: the off-diagonal blocks are one
        product ``B.T @ B`` with ``B[i, (a, k)] = sqrt(sw_i) x_ia p_ik``, the
        K diagonal blocks (weights ``sw p_k (1 - p_k)``) one product
        ``x.T @ C``, both over chunks of rows; in float32 past
        ``_FLOAT32_MIN_PRODUCT`` multiply-adds, like the binary Hessian
        (:meth:`_weighted_gram`; exact to ~1e-7 relative, which the Newton
        steps and the refined adjoint do not see): on digits (1437 x 65, 10
        classes) 9 against 12 ms in float64, and 22 ms for the K (K + 1) / 2
        block products of the sparse path.
        """
        Xa = self._augmented_design()
        m, K = self.n_params, self.n_out
        if sp.issparse(Xa):
            H4 = np.empty((m, K, m, K))
            for k in range(K):
                for j in range(k, K):
                    c = self.sw * P[:, k] * ((k == j) - P[:, j])
                    block = (Xa.T @ Xa.multiply(c[:, None]).tocsr()).toarray()
                    H4[:, k, :, j] = block
                    H4[:, j, :, k] = block.T
            return H4.reshape(m * K, m * K)
        if self._float32 is None:
            self._float32 = float32_gram_is_safe(self.X, self.sw)
        # float32 where the product is large enough to gain from it. Small
        # ones stay float64: a float32 Hessian's round-off (1e-7) changes the
        # Newton path, and with it the search's point, between sample weights
        # and the repeated rows they stand for (scikit-learn's equivalence
        # check: decision values 2e-6 apart on 45 rows; 1e-15 in float64).
        large = Xa.shape[0] * (m * K) ** 2 >= _FLOAT32_MIN_PRODUCT
        dtype = np.float32 if self._float32 and large else np.float64
        root = np.sqrt(self.sw)
        curvature = self.sw[:, None] * P * (1.0 - P)  # the diagonal blocks'
        H = np.zeros((m * K, m * K))
        diagonal_blocks = np.zeros((m, m * K))
        chunk = max(1, (1 << 22) // (m * K))  # B holds at most 4M entries
        for start in range(0, Xa.shape[0], chunk):
            rows = slice(start, start + chunk)
            x = Xa[rows].astype(dtype)
            B = x[:, :, None] * (P[rows] * root[rows, None]).astype(dtype)[:, None, :]
            H -= B.reshape(B.shape[0], m * K).T @ B.reshape(B.shape[0], m * K)
            C = x[:, :, None] * curvature[rows].astype(dtype)[:, None, :]
            diagonal_blocks += x.T @ C.reshape(C.shape[0], m * K)
        H4 = H.reshape(m, K, m, K)
        diagonal_blocks = diagonal_blocks.reshape(m, m, K)
        for k in range(K):
            # Formed apart, not as sum(x x^T p_k) minus the product's
            # sum(x x^T p_k^2): in float32 that difference loses the digits
            # of confident predictions (p_k near 1).
            H4[:, k, :, k] = diagonal_blocks[:, :, k]
        return H

    def _data_hessian(self, W):
        """Hessian of the data term, coefficients ordered as ``W.ravel()``."""
        key = W.tobytes()
        if key == self._hessian_key:
            return self._hessian
        P = self._data_terms(W)[2]
        K = self.n_out
        if K == 1:
            H = self._weighted_gram(np.sqrt(logistic_curvature(P, self.sw)[:, 0]))
        elif not W.any():
            # Every probability is 1/K at W = 0 (the first solve of a fold):
            # H = [X, 1]^T S [X, 1] (x) (I / K - 1 1^T / K^2), from a Gram
            # K^2 times smaller than the general product's.
            Xa = self._augmented_design()
            gram = Xa.T @ (
                Xa.multiply(self.sw[:, None])
                if sp.issparse(Xa)
                else Xa * self.sw[:, None]
            )
            gram = gram.toarray() if sp.issparse(gram) else gram
            H = np.kron(gram, np.eye(K) / K - 1.0 / K**2)
        else:
            H = self._multinomial_gram(P)
        if K > 1 and self.fit_intercept:
            # The softmax is unchanged by adding one constant to every
            # intercept: fill that null direction (which no gradient of
            # this problem has a component along) so H is invertible.
            u = np.zeros((self.n_params, K))
            u[-1] = 1.0 / np.sqrt(K)
            u = u.ravel()
            H += np.mean(np.diag(H)) * np.outer(u, u)
        self._hessian_key, self._hessian = key, H
        self._previous_step_key = None  # that step left from another Hessian
        return H

    def _reference_solve(self, theta, rhs):
        """Solve with the last formed data Hessian plus the penalty at ``theta``."""
        key = (self._hessian_key, theta.tobytes())
        if key != self._factor_key:
            H = self._hessian.copy()
            H[np.diag_indices_from(H)] += self._penalty(theta).ravel()
            self._factor_key, self._factor = key, robust_cho_factor(H)
        return cho_solve_vector(self._factor, rhs.ravel()).reshape(rhs.shape)

    def _factor_solve(self, theta, rhs):
        """Solve with the last data Hessian's factorization, at whatever
        penalty it was made (a preconditioner: made at ``theta`` only when
        that Hessian has none), in Krylov mode (see :meth:`_newton`); with
        the penalty at ``theta`` otherwise."""
        if (
            self._krylov
            and self._factor is not None
            and self._factor_key[0] == self._hessian_key
        ):
            return cho_solve_vector(self._factor, rhs.ravel()).reshape(rhs.shape)
        return self._reference_solve(theta, rhs)

    def hessian_solve(self, W, theta, rhs):
        """Solve the adjoint system with the Hessian at ``W``, to 1e-10.

        The last formed data Hessian (usually from an earlier Newton step,
        not at ``W``: forming one costs more than several passes over the
        data) preconditions conjugate gradients on exact Hessian-vector
        products. A Hessian formed at ``W`` needs one product (the float32
        one's ~1e-7 error refined away); one from a nearby point a few. When
        the iteration is slow the Hessian is formed again at ``W``, and the
        next solve starts with a fresh one. In Krylov mode (see
        :meth:`solve`) the factorization at hand preconditions whatever its
        penalty.
        """
        key = W.tobytes()
        if self._hessian_key is None or (
            self._hessian_passes < _CHEAP_HESSIAN_PASSES
            and self._hessian_key != key
            and self._previous_step_key != key
        ):
            # Cheaper than a few products, unless the solver's last Newton
            # step left from the Hessian's point.
            self._data_hessian(W)
        # Where factorizations are costly (Krylov mode), the one at hand
        # serves whatever its penalty, and more products are worth it before
        # the Hessian is deemed stale.
        stale = 2 * _STALE_PRODUCTS if self._krylov else _STALE_PRODUCTS
        for _ in range(2):
            solution, n_products, converged = conjugate_gradient(
                lambda v: self.hvp(W, theta, v),
                rhs,
                x0=self._factor_solve(theta, rhs),
                tol=_ADJOINT_TOL,
                max_iter=_ADJOINT_MAX_PRODUCTS,
                preconditioner=lambda r: self._factor_solve(theta, r),
            )
            if n_products > stale:
                self._stale = True
            if converged or self._hessian_key == key:
                return solution
            self._data_hessian(W)
        return solution

    # ------------------------------------------------------------------ solver
    def solve(
        self, theta, w0=None, tol=1e-10, method="direct", max_iter=100, for_adjoint=True
    ):
        """Newton (``method="direct"``) or Newton-CG, warm-started at ``w0``.

        Stops when the Newton decrement ``-grad . step`` (twice the predicted
        decrease of the loss, a squared distance to the optimum in the
        Hessian's norm) is at most ``tol**2 * sum(sw)``: ``tol`` is a relative
        accuracy of the solution, like the other solvers' residual tolerance.

        The direct path reuses the last data Hessian it formed (typically at
        an earlier outer iterate's solution) while the steps it gives
        contract fast (a chord method: each step costs one pass over the data
        instead of a Hessian), and forms a new one when they do not. The
        adjoint system needs no Hessian at the returned point either (see
        :meth:`hessian_solve`). With a Hessian from another point, the
        decrement is trusted once a step has shown that it contracts.
        Where a factorization costs several passes (Krylov mode: many
        coefficients for the rows, such as digits' 650), a Hessian from
        another point is not factorized again at the new penalty: its
        factorization, at the penalty it was made with, preconditions
        conjugate gradients on exact Hessian-vector products for an inexact
        Newton step, and a fresh Hessian is formed when those take more
        than a quarter of its cost. Measured on digits (5 folds, one core):
        31 -> 16 Hessians, 76 -> 21 factorizations, 0.76 -> 0.53 s.

        A loose solve of a value alone (``tol >= 1e-4``, ``for_adjoint``
        False: the scan's points) reads the float32 copy of X where the
        problem has one: its loss and gradient are those of X rounded to
        float32 (6e-8 relative), far below that accuracy, at half the
        memory a pass reads.
        """
        self._rough_passes = not for_adjoint and tol >= _ROUGH_TOL
        try:
            return self._newton(theta, w0, tol, method, max_iter, for_adjoint)
        finally:
            self._rough_passes = False

    def _newton(self, theta, w0, tol, method, max_iter, for_adjoint):
        """:meth:`solve`'s iterations."""
        W = np.zeros((self.n_params, self.n_out)) if w0 is None else w0.copy()
        p = self._penalty(theta)
        scale = max(self.total, 1.0)
        threshold = tol * tol * scale
        refresh = self._hessian_key is None or self._stale
        previous = None  # the last step's decrement
        tiny_steps = 0
        krylov = method == "direct" and self._krylov
        exact = False  # the last step came from a Hessian formed at its start
        for _ in range(max_iter):
            loss, grad, _ = self._data_terms(W)
            grad = grad + p * W
            value = loss + 0.5 * np.sum(p * W**2)
            krylov_failed = False
            if method == "direct":
                if refresh:
                    self._data_hessian(W)
                    refresh = self._stale = False
                exact = fresh = self._hessian_key == W.tobytes()
                if fresh or not krylov:
                    step = -self._reference_solve(theta, grad)
                else:
                    # An inexact Newton step (forcing as Newton-CG's) by
                    # conjugate gradients preconditioned with the stale
                    # factorization: a few products instead of factorizing
                    # at a new penalty and chord steps that crawl.
                    forcing = min(0.5, np.sqrt(np.linalg.norm(grad) / scale))
                    step, _, converged = conjugate_gradient(
                        lambda v, W=W: self.hvp(W, theta, v),
                        -grad,
                        tol=forcing,
                        max_iter=self._krylov_products,
                        preconditioner=lambda r: self._factor_solve(theta, r),
                        settle=threshold,
                    )
                    # Short of its tolerance, the step still descends, but
                    # its decrement proves nothing, and a fresh Hessian is
                    # formed next.
                    fresh = converged
                    krylov_failed = not converged
            else:
                fresh = True
                g_norm = np.linalg.norm(grad)
                forcing = min(0.5, np.sqrt(g_norm / scale))
                # Where the decrement is clearly below the threshold, the
                # solve ends here and the step's accuracy does not matter:
                # the solver stops as soon as it can tell (measured on
                # text-like 10000 x 50000: the last step of a solve took 3
                # products instead of 9-14).
                step, _, _ = self.cg_solve(
                    W, theta, -grad, tol=forcing,
                    max_iter=max(50, 2 * self.n_params), settle=threshold,
                )  # fmt: skip
            decrement = -float(np.sum(grad * step))
            trusted = fresh or not for_adjoint or previous is not None
            if decrement <= threshold and trusted:
                return W, True
            # Below the loss's round-off, decrements only tell that the end
            # is near: the chord steps' cost is counted down to there.
            floor = max(threshold, 1e-12 * abs(value))
            # A stale Hessian is formed again when the chord steps left (one
            # pass over the data each, at the observed contraction) would cost
            # more than a fresh Hessian and a Newton step or two.
            slow = False
            if previous is not None and decrement > floor:
                rate = decrement / previous
                slow = rate >= 1.0 or (
                    np.log(floor / decrement) / np.log(rate)
                    > self._hessian_passes + 2.0
                )
            previous = decrement
            if decrement <= floor:
                # Too small a decrease for a line search to tell from the
                # loss's round-off: near the optimum, take full steps, a few
                # at most; one with the Hessian at W (quadratic convergence
                # leaves a decrement of about its square).
                tiny_steps += 1
                W = W + step
                if tiny_steps > 3 or (fresh and method == "direct"):
                    if exact:  # the adjoint may use this Hessian, a step away
                        self._previous_step_key = W.tobytes()
                    return W, True
                refresh = method == "direct" and (slow or krylov_failed)
                continue
            refresh = slow or krylov_failed
            t = 1.0
            for _ in range(40):
                candidate = W + t * step
                if self.value(candidate, theta) <= value - 1e-4 * t * decrement:
                    break
                t *= 0.5
            else:  # no decrease along a descent direction: round-off floor
                if not exact and method == "direct":
                    refresh = True
                    continue
                return W, decrement <= 1e-12 * scale
            if t < 1.0:
                refresh = True
            W = candidate
        # Out of steps (a capped round, see FoldsObjective._screen): a fresh
        # Hessian this solve meant to form is formed at the next one.
        self._stale = self._stale or refresh
        return W, False

    # ---------------------------------------------------------------- outputs
    def row_losses(self, W, rows):
        """Log-loss of validation rows ``rows``."""
        coef, intercept = self.coefficients(W)
        scores = np.asarray(self.X_val[rows] @ coef) + intercept
        log_proba = log_probabilities(scores)
        return -log_proba[np.arange(len(rows)), self.targets_val[rows]]

    def outer_loss_grad(self, W):
        """Weighted mean validation log-loss and its gradient in W."""
        sw_val = self.sw_val  # the early-stopping guard may zero some rows
        loss, grad, _ = _loss_grad(
            self.X_val, W, self.targets_val, sw_val, self.fit_intercept
        )
        total = float(sw_val.sum())
        return loss / total, grad / total

    def coefficients(self, W):
        """``(coef, intercept)``: the feature rows of ``W`` and its intercept row."""
        d = self.n_features
        return W[:d], (W[d].copy() if self.fit_intercept else np.zeros(self.n_out))


class LogLossFit:
    """Log-loss data term of the stochastic mode (rows read by index).

    ``targets`` are class indices, ``n_out`` 1 = sigmoid. The intercept is a
    learnt, unpenalized coordinate of the iterate.
    """

    val_factor = 1.0
    learns_intercept = True

    def __init__(self, targets, sw, n_out):
        self.targets, self.sw, self.n_out = targets, sw, n_out
        # Largest eigenvalue of one sample's loss Hessian in its scores.
        self.curvature = 0.25 if n_out == 1 else 0.5

    def residual(self, Z, rows):
        """``(sum_i sw_i loss_i, d/dZ, state for curvature products)``."""
        return samplewise_loss_grad(Z, self.targets[rows], self.sw[rows])

    def curvature_product(self, state, rows, Zv):
        return samplewise_hvp(state, Zv, self.sw[rows])

    def curvature_weights(self, state, rows):
        """Per-sample, per-output diagonal curvature (preconditioner)."""
        return logistic_curvature(state, self.sw[rows])
