"""Search on Newton models of the folds, for many rows (``solver="quadratic"``).

With many rows for its coefficients, a binary logistic fold's training loss
is close to quadratic over the range its solutions move as the strengths
change, and so is its validation loss. Each fold then gets a model of both
around its current solution ``a_k`` (exact gradients, Hessians ``H_k`` and
``V_k`` formed once):

    a_k(theta) = (H_k + P(theta))^-1 (H_k a_k - g_k)
    E_k(theta) ~ E_k + e_k . d + d^T V_k d / 2,    d = a_k(theta) - a_k

with ``g_k`` the training data gradient at ``a_k`` and ``P(theta)`` the
penalty. Minimizing the mean model over the strengths costs no pass over
the data (d x d factorizations only); a trust region in log-strengths
decides how far to trust it, and every candidate is evaluated exactly: each
fold is solved at it (chord steps from the model's solution, one fused pass
over the data for all folds at once), which also anchors the next model
there. A few such evaluations replace the 1-D search and the projected
method of the deterministic solver.

Every fold's Hessian comes from one Gram product over the data: the rows
that train and validate the same folds (in K-fold, one fold's validation
rows) add to one Gram, at one common point (the solution on all the rows at
the starting strengths), and a fold's Hessians are sums of these. They are
about 1% off the Hessians at the folds' solutions, which is too much for a
hypergradient, often a small sum of large terms of both signs (measured:
a third of its value on 20000 x 30). The hypergradient of an evaluation is
therefore that of the exact Hessians (conjugate gradients on exact
Hessian-vector products, preconditioned by the models' factorizations:
two or three passes), and the model gets the linear term that makes its
gradient there this one. The losses of the evaluations are exact too.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from ._linalg import cho_solve_vector, robust_cho_factor
from ._logistic_kernels import (
    binary_labelled_terms,
    binary_split_terms,
    dense_binary_labelled_loss_grad,
    dense_binary_split_hvp,
    dense_binary_split_pass,
)
from ._objectives import CVObjective, map_folds, shared_cores
from ._outer import OuterResult
from ._problems._base import penalty_weights
from ._problems._logistic import (
    LogisticProblem,
    _loss_grad,
    float32_gram_is_safe,
    labelled_terms_and_grams,
    logistic_curvature,
    weighted_grams,
)
from ._rows import blas_controller, map_row_blocks, map_tasks, row_threads
from ._validation import as_float_c, as_index_c

__all__ = ["QuadraticObjective", "TooManyRowPatterns", "minimize_quadratic"]

# At most this many groups of rows with the same part in every split (each
# has its own Gram): K-fold has K, shuffle-splits up to 2**K.
MAX_ROW_PATTERNS = 64
# The solution on all the rows that the Hessians are formed at: Newton's
# method on a regular subsample of at least _SUBSAMPLE_MIN_ROWS rows, then on
# all the rows with the subsample's Hessian, to a relative accuracy of
# _ANCHOR_TOL (the folds' solutions are further from it than that).
_SUBSAMPLE_MIN_ROWS = 20_000
_ANCHOR_TOL = 1e-2
# Relative accuracy of the folds' solutions at an evaluation (as the
# deterministic solver's ``tol``: Newton decrement <= tol**2 * sum(sw)), and
# of the final refit.
_SOLVE_TOL = 1e-5
_REFIT_TOL = 1e-6
_MAX_STEPS = 30
# Chord steps of an evaluation before its splits are solved by Newton's
# method instead (they gain about 1e-3 of the decrement each where the
# models hold: 2 passes in all).
_MAX_CHORD_STEPS = 10
# The refit's ratio of successive chord decrements is taken to be at most
# this many times the largest the splits' showed (as _linalg.SETTLE_SAFETY
# for conjugate gradients).
_CONTRACTION_SAFETY = 10.0
# First trust radius, in log-strengths (largest coordinate), and its bounds.
_RADIUS = 2.0
_MIN_RADIUS = 1e-3
_MAX_RADIUS = 32.0
# Relative accuracy (preconditioned residual) of the adjoint solves, and
# their cap of conjugate gradient iterations.
_ADJOINT_TOL = 1e-4
_ADJOINT_MAX_ITER = 20
# Fewest parameters whose models' factorizations run in threads (see
# model_minimum), and most whose models are solved in batched calls over all
# the splits (see _stacked_model).
_THREADED_MODEL_PARAMS = 160
_STACKED_MODEL_PARAMS = 80
# Distance (log-strength) within which a model minimum is moved onto the
# bound it descends to.
_SNAP = 0.1
_TINY = 1e-300


class TooManyRowPatterns(ValueError):
    """Splits whose rows fall in too many groups for one Gram each."""


def _chord_steps(pass_at, A, factors, penalties, totals, tol, max_steps,
                 contraction=None):  # fmt: skip
    """Chord Newton steps on several binary problems at once.

    ``pass_at(A)`` returns the data gradients at the columns of ``A`` (and
    whatever else the caller keeps); the steps use fixed factorizations of
    ``H + P`` and stop once every problem's Newton decrement is at most
    ``tol**2 * total``. With ``contraction`` (a bound on the ratio of
    successive decrements), a step whose end that ratio, times
    _CONTRACTION_SAFETY, puts under the threshold is taken without a pass
    to confirm it.

    Returns ``(A, last pass, next steps, converged, ratio)``: the last
    pass's terms are those of ``A``, and ``A - steps`` is closer to the
    solutions (the steps left untaken; None if not converged, or if the last
    step was taken without a pass, when the last pass is None too); ``ratio``
    is the largest ratio of two successive decrements seen (None after one
    pass).
    """
    A = A.copy()
    previous, ratio = None, None
    for _ in range(max_steps):
        out = pass_at(A)
        G = out[0] + penalties * A
        steps = np.column_stack(
            [cho_solve_vector(factor, G[:, k]) for k, factor in enumerate(factors)]
        )
        decrements = np.einsum("ik,ik->k", G, steps)
        if previous is not None:
            seen = float(np.max(decrements / np.maximum(previous, _TINY)))
            ratio = seen if ratio is None else max(ratio, seen)
        threshold = tol * tol * np.maximum(totals, 1.0)
        if np.all(decrements <= threshold):
            return A, out, steps, True, ratio
        A -= steps
        if contraction and np.all(
            _CONTRACTION_SAFETY * contraction * decrements <= threshold
        ):
            return A, None, None, True, ratio
        previous = decrements
    return A, pass_at(A), None, False, ratio


def _adjoint(rows, factors, penalties, rhs):
    """Solve every split's ``(H_k + P_k) v_k = rhs_k`` with its exact training
    Hessian at its last :meth:`_SharedRows.split_terms` point: conjugate
    gradients preconditioned by the models' factorizations (Hessians from
    the common point, about 1% off: two or three products, one pass for all
    the splits each). Returns ``(V, converged)``."""

    def precondition(R):
        return np.column_stack(
            [cho_solve_vector(factor, R[:, k]) for k, factor in enumerate(factors)]
        )

    V = precondition(rhs)
    target = _ADJOINT_TOL**2 * np.einsum("ik,ik->k", rhs, V)
    residual = rhs - rows.hessian_products(V) - penalties * V
    z = precondition(residual)
    direction = z.copy()
    rz = np.einsum("ik,ik->k", residual, z)
    for _ in range(_ADJOINT_MAX_ITER):
        if np.all(rz <= target):
            return V, True
        product = rows.hessian_products(direction) + penalties * direction
        curvature = np.einsum("ik,ik->k", direction, product)
        alpha = np.divide(rz, curvature, out=np.zeros_like(rz), where=curvature > 0)
        V += alpha * direction
        residual -= alpha * product
        z = precondition(residual)
        rz_new = np.einsum("ik,ik->k", residual, z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        direction = z + beta * direction
        rz = rz_new
    return V, bool(np.all(rz <= target))


class _SharedRows:
    """The splits of one design matrix: the rows' parts, passes, Grams.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    targets : ndarray of shape (n_samples,), dtype int64
    sw : ndarray of shape (n_samples,)
    parts : list of (train, test)
        Row indices of every split of ``X``.
    fit_intercept : bool
    """

    def __init__(self, X, targets, sw, parts, fit_intercept):
        self.source = X  # the user's matrix (the refit's check)
        # The fused loss passes read dense X as C-contiguous float64.
        self.dense = not hasattr(X, "tocsr")
        self.X = np.ascontiguousarray(X, np.float64) if self.dense else X.tocsr()
        self.targets, self.sw = as_index_c(targets), as_float_c(sw)
        self.fit_intercept = fit_intercept
        n = X.shape[0]
        K = len(parts)
        self.n_features = X.shape[1]
        self.n_params = self.n_features + int(fit_intercept)
        role = np.zeros((n, K), dtype=np.int8)
        for k, (train, test) in enumerate(parts):
            role[train, k] = 1
            role[test, k] = 2
        self.role = role
        # Rows with the same part in every split share a Gram.
        codes = role.astype(np.int64) @ (3 ** np.arange(K, dtype=np.int64))
        used = codes > 0
        if K <= 8:  # 3**K codes at most: a table instead of a sort
            present = np.bincount(codes[used], minlength=3**K) > 0
            patterns = np.flatnonzero(present)
            labels = (np.cumsum(present) - 1)[codes[used]]
        else:
            patterns, labels = np.unique(codes[used], return_inverse=True)
        if len(patterns) > MAX_ROW_PATTERNS:
            raise TooManyRowPatterns(
                f"splits whose rows fall in at most {MAX_ROW_PATTERNS} groups "
                "with the same part (training, validation, neither) in every "
                f"split (K-fold makes K); these make {len(patterns)}"
            )
        self.labels = np.full(n, -1, dtype=np.int64)
        self.labels[used] = labels
        digits = (patterns[:, None] // 3 ** np.arange(K)) % 3
        self.pattern_trains = digits == 1  # (n_patterns, K)
        self.pattern_validates = digits == 2
        self.train_weight = np.array([self.sw[tr].sum() for tr, _ in parts])
        self.val_weight = np.array([self.sw[te].sum() for _, te in parts])
        self.trains = [np.asarray(tr) for tr, _ in parts]
        self.tests = [np.asarray(te) for _, te in parts]

    def _scores(self, A):
        d = self.n_features
        S = np.asarray(self.X @ A[:d])
        if self.fit_intercept:
            S += A[d]
        return np.ascontiguousarray(S)

    def split_terms(self, A):
        """Every split's terms at its coefficients (columns of ``A``), in one
        pass over X for all of them: training data gradients (n_params, K),
        validation losses (K,) and gradients (n_params, K), the latter two
        as means over the validation weight. The training rows' curvatures
        are kept for :meth:`hessian_products`."""
        K = A.shape[1]
        d = self.n_features
        n = self.X.shape[0]
        self.curvature = np.empty((n, K))
        if self.dense:
            W = np.ascontiguousarray(A[:d].T)
            b = A[d].copy() if self.fit_intercept else np.zeros(K)

            def block(start, stop):
                return dense_binary_split_pass(
                    self.X, W, b, self.targets, self.sw, self.role,
                    self.curvature, start, stop,
                )  # fmt: skip

            parts = map_row_blocks(block, n, row_work=4 * K * d)
            losses = np.sum([part[0] for part in parts], axis=0)
            G = np.sum([part[1] for part in parts], axis=0).T
            if not self.fit_intercept:
                G = G[:d]
        else:
            S = self._scores(A)
            R = np.empty((n, 2 * K))
            losses = binary_split_terms(
                S, self.targets, self.sw, self.role, R, self.curvature, 0, n
            )
            G = np.asarray(self.X.T @ R)
            if self.fit_intercept:
                G = np.vstack([G, R.sum(axis=0)])
        val = self.val_weight
        return G[:, :K], losses / val, G[:, K:] / val

    def hessian_products(self, V):
        """Every split's training data Hessian, at its last
        :meth:`split_terms` coefficients, applied to its column of ``V``."""
        K = V.shape[1]
        d = self.n_features
        n = self.X.shape[0]
        vb = V[d].copy() if self.fit_intercept else np.zeros(K)
        if self.dense:
            W = np.ascontiguousarray(V[:d].T)

            def block(start, stop):
                return dense_binary_split_hvp(
                    self.X, W, vb, self.curvature, self.role, start, stop
                )

            out = np.sum(map_row_blocks(block, n, row_work=4 * K * d), axis=0).T
            return out if self.fit_intercept else out[:d]
        Z = np.asarray(self.X @ V[:d]) + vb
        Z *= self.curvature
        out = np.asarray(self.X.T @ Z)
        return np.vstack([out, Z.sum(axis=0)]) if self.fit_intercept else out

    def labelled_terms(self, a):
        """Log-loss and data gradient at coefficients ``a`` (one vector) summed
        per pattern of rows, in one pass; the rows' probabilities."""
        d = self.n_features
        n_labels = len(self.pattern_trains)
        b = float(a[d]) if self.fit_intercept else 0.0
        n = self.X.shape[0]
        P = np.empty((n, 1))
        if self.dense:
            w = np.ascontiguousarray(a[:d])

            def block(start, stop):
                return dense_binary_labelled_loss_grad(
                    self.X, w, b, self.targets, self.sw, self.labels, n_labels,
                    start, stop, P,
                )  # fmt: skip

            parts = map_row_blocks(block, n, row_work=2 * d)
            losses = np.sum([part[0] for part in parts], axis=0)
            grads = np.sum([part[1] for part in parts], axis=0)
            if not self.fit_intercept:
                grads = grads[:, :d]
            return losses, grads, P[:, 0]
        z = np.asarray(self.X @ a[:d]) + b
        G = np.empty(n)
        losses = binary_labelled_terms(
            z, self.targets, self.sw, self.labels, n_labels, G, P[:, 0]
        )
        used = self.labels >= 0
        onehot = sp.csr_matrix(
            (G[used], (np.flatnonzero(used), self.labels[used])), shape=(n, n_labels)
        )
        grads = np.asarray((self.X.T @ onehot).toarray()).T
        if self.fit_intercept:
            sums = np.bincount(self.labels[used], G[used], n_labels)
            grads = np.hstack([grads, sums[:, None]])
        return losses, grads, P[:, 0]

    def anchor(self, penalty, float32):
        """Solution on all the rows of the splits, roughly; its Grams.

        Newton's method on a regular subsample of the rows (every s-th, at
        least _SUBSAMPLE_MIN_ROWS, the penalty scaled to its weight), then
        on all the rows with the subsample's Hessian: two or three passes
        over the data, the last of which forms the Grams (with fewer rows,
        Newton's method on all of them). Returns ``(a,
        data gradient at a, grams, losses, gradients)``: every row
        pattern's Gram at ``a`` (n_patterns, n_params, n_params), log-loss
        (n_patterns,) and data gradient
        (n_patterns, n_params).
        """
        used = self.labels >= 0
        sw = np.where(used, self.sw, 0.0)
        total = float(sw.sum())
        n = len(sw)
        sample = np.arange(0, n, max(1, n // _SUBSAMPLE_MIN_ROWS))
        X_sample, sw_sample = self.X[sample], sw[sample]
        share = max(float(sw_sample.sum()), _TINY) / total
        a = np.zeros(self.n_params)
        if self.fit_intercept:
            mean = np.clip(sw @ self.targets / total, 1e-10, 1 - 1e-10)
            a[-1] = np.log(mean / (1.0 - mean))
        targets_sample = self.targets[sample]

        def sample_terms(a, last):
            loss, grad, P = _loss_grad(
                X_sample, a[:, None], targets_sample, sw_sample, self.fit_intercept
            )
            return loss + 0.5 * share * penalty @ (a * a), grad[:, 0], P[:, 0]

        # Under 2 * _SUBSAMPLE_MIN_ROWS rows the subsample is every row: then
        # Newton's method on all of them, each pass forming its Grams.
        data_hessian = None
        if len(sample) < n:
            a, _, _, hessian = self._newton(
                sample_terms, share * penalty, a,
                lambda P: weighted_grams(
                    X_sample,
                    np.sqrt(logistic_curvature(P[:, None], sw_sample)[:, 0]),
                    fit_intercept=self.fit_intercept, float32=float32,
                )[0],
                float(sw_sample.sum()),
            )  # fmt: skip
            data_hessian = hessian / share

        # On all the rows, the sample's last Hessian (scaled to their weight)
        # while the subsample's solution keeps it valid. The passes sum the
        # loss and gradient per pattern of rows, which gives every split's
        # terms at the anchor without a pass of their own; the pass at a
        # point predicted to be the last forms the Grams there too.
        def terms(a, last):
            if last:
                losses, grads, grams = self.labelled_terms_and_grams(a, float32)
            else:
                losses, grads, _ = self.labelled_terms(a)
                grams = None
            value = losses.sum() + 0.5 * penalty @ (a * a)
            return value, grads.sum(axis=0), (losses, grads, grams)

        def grams_hessian(kept):
            return None if kept[2] is None else kept[2].sum(axis=0)

        a, gradient, (losses, grads, grams), _ = self._newton(
            terms, penalty, a, grams_hessian, total, data_hessian
        )
        if grams is None:  # the last point's Grams: a pass of their own
            _, _, grams = self.labelled_terms_and_grams(a, float32)
        return a, gradient - penalty * a, grams, losses, grads

    def labelled_terms_and_grams(self, a, float32):
        """:meth:`labelled_terms` (without the probabilities) and every row
        pattern's Gram of the Hessian at ``a``, in one pass over dense X
        where the Grams are float32 ones; in two otherwise."""
        n_labels = len(self.pattern_trains)
        if self.dense and float32:
            return labelled_terms_and_grams(
                self.X, a, self.targets, self.sw, self.labels, n_labels,
                self.fit_intercept,
            )  # fmt: skip
        losses, grads, P = self.labelled_terms(a)
        sw = np.where(self.labels >= 0, self.sw, 0.0)
        root = np.sqrt(logistic_curvature(P[:, None], sw)[:, 0])
        grams = weighted_grams(
            self.X, root, self.labels, n_labels,
            fit_intercept=self.fit_intercept, float32=float32,
        )  # fmt: skip
        return losses, grads, grams

    @staticmethod
    def _newton(terms, penalty, a, data_hessian, total, H=None):
        """Newton steps from ``a`` on the objective ``terms(a, last) =
        (value, data gradient, kept)`` plus the penalty, with a backtracking
        line search, to a relative accuracy of _ANCHOR_TOL (``total``: the
        rows' weight).

        The data Hessians are ``data_hessian(kept)`` where that is not None,
        else the last one (``H`` at first; None: the first pass must give
        one). Steps with a fixed Hessian shrink the decrement by a steady
        factor, Newton's steps faster: ``last`` is True for the pass at the
        point predicted to be the last (where that factor takes the decrement
        under the threshold), or after a fresh Hessian, and ``terms`` may
        then form the Hessian there too. Returns ``(a, gradient, kept, data
        Hessian)`` at the last point, the gradient with the penalty's."""

        def penalized(a, last):
            value, grad, kept = terms(a, last)
            return value, grad + penalty * a, kept

        value, gradient, kept = penalized(a, H is None)
        threshold = _ANCHOR_TOL**2 * total
        last_decrement = np.inf
        for _ in range(_MAX_STEPS):
            fresh = data_hessian(kept)
            if fresh is not None:
                H = fresh
            F = H.copy()
            F[np.diag_indices_from(F)] += penalty
            step = cho_solve_vector(robust_cho_factor(F), gradient)
            decrement = gradient @ step
            if decrement <= threshold:
                break
            last = fresh is not None or (
                np.isfinite(last_decrement)
                and decrement**2 <= threshold * last_decrement
            )
            last_decrement = decrement
            t = 1.0
            while True:
                candidate = penalized(a - t * step, last and t == 1.0)
                if candidate[0] <= value - 1e-4 * t * decrement or t < 1e-6:
                    break
                t *= 0.5
            a = a - t * step
            value, gradient, kept = candidate
        return a, gradient, kept, H


class QuadraticObjective(CVObjective):
    """Mean validation log-loss over binary splits, evaluated exactly, and
    its Newton models (see the module docstring).

    Parameters
    ----------
    readers : list of (X, targets, sw, train, test)
        Every split's design matrix (shared by index splits), targets
        (classes 0 and 1), sample weights and row indices, as
        :meth:`~skbilevel._folds.Splits.readers` gives them.
    coef_groups : list of ndarray of shape (n_features, 1), dtype int64
        Every split's hyperparameter group of each coefficient.
    n_hyper : int
    fit_intercept : bool
    theta0 : ndarray of shape (n_hyper,)
        The strengths at which the models' Hessians are formed.
    verbose : int, default=0
    largest_entry : tuple of (matrix, float), default=None
        A design matrix and its largest absolute entry, already computed.
    n_jobs : int, default=None
        Threads for the groups of splits on separate matrices (see
        :meth:`_map_groups`).
    """

    def __init__(self, readers, coef_groups, n_hyper, fit_intercept, theta0,
                 verbose=0, largest_entry=None, n_jobs=None):  # fmt: skip
        super().__init__(n_hyper, len(readers), verbose)
        self.fit_intercept = fit_intercept
        self.n_jobs = n_jobs
        by_matrix = {}
        for k, (X, targets, sw, _, _) in enumerate(readers):
            by_matrix.setdefault(id(X), (X, targets, sw, []))[3].append(k)
        theta0 = np.asarray(theta0, dtype=float)
        self.failed = self.failed_adjoints = 0

        def build(item):
            X, targets, sw, ks = item
            parts = [(readers[k][3], readers[k][4]) for k in ks]
            rows = _SharedRows(X, targets, sw, parts, fit_intercept)
            groups = np.column_stack([coef_groups[k][:, 0] for k in ks])
            known = largest_entry is not None and largest_entry[0] is X
            float32 = rows.dense and float32_gram_is_safe(
                X, rows.sw, largest_entry[1] if known else None
            )
            # The anchor's penalty: every split's strengths, on all the rows.
            weights = penalty_weights(theta0, groups[:, :1])[:, 0]
            penalty = self._augmented(weights, 1e-10 * rows.sw.sum())
            a, gradient, grams, losses, grads = rows.anchor(penalty, float32)
            state = dict(rows=rows, ks=ks, coef_groups=groups, anchor=a,
                         anchor_gradient=gradient)  # fmt: skip
            # Every split's Hessians: sums of its rows' patterns' Grams.
            state["H"] = np.einsum("pk,pij->kij", rows.pattern_trains, grams)
            state["V"] = np.einsum("pk,pij->kij", rows.pattern_validates, grams)
            state["V"] /= rows.val_weight[:, None, None]
            state["full_gram"] = grams.sum(axis=0)
            # Every split's terms at the anchor: sums of its rows' patterns'.
            trains = rows.pattern_trains.astype(float)
            validates = rows.pattern_validates.astype(float)
            self._set_anchor(
                state,
                np.tile(a[:, None], (1, len(ks))),
                grads.T @ trains,
                losses @ validates / rows.val_weight,
                grads.T @ validates / rows.val_weight,
            )
            return state

        self.groups = self._map_groups(build, list(by_matrix.values()))
        # The largest ratio of successive decrements the splits' chord steps
        # showed (see refit), None before two passes.
        self.contraction = None
        # Threads for the splits' models (see _model_splits).
        self._model_threads = 1
        # The splits' terms stacked (see _stack): those of the anchors, and
        # the others (False: not stacked).
        self._stacked = self._stacked_fixed = None
        # The models' first-order correction (see _evaluate), none at first.
        self._correction = np.zeros(n_hyper)
        self._anchor_theta = theta0
        self.coefficients = {}  # evaluation index -> every split's (coef, intercept)

    # ------------------------------------------------------------- helpers
    def _map_groups(self, func, items):
        """``[func(item) for item in items]`` over the groups of splits (one
        per design matrix: a search's preprocessed folds), in threads: as
        ``n_jobs`` asks, or "one after the other" on the cores BLAS may use
        (:func:`~skbilevel._objectives.shared_cores`), each group's passes
        then taking its share of them. One group runs in the calling
        thread, its passes in row blocks on every core."""
        if len(items) < 2:
            return [func(item) for item in items]
        n_jobs, options = shared_cores(self.n_jobs)
        return map_folds(func, items, n_jobs, **options)

    def _augmented(self, weights, intercept_weight):
        if not self.fit_intercept:
            return weights
        return np.append(weights, intercept_weight)

    def _penalties(self, state, theta):
        """Penalty weights of every split's coefficients, shape (n_params, K)."""
        P = penalty_weights(theta, state["coef_groups"])
        if self.fit_intercept:
            P = np.vstack([P, 1e-10 * state["rows"].train_weight])
        return P

    def _set_anchor(self, state, A, g, E, e):
        state["A"], state["g"], state["E"], state["e"] = A, g, E, e
        state["b"] = np.einsum("kij,jk->ik", state["H"], A) - g
        self._stacked = None  # (see _stack)

    def anchors(self):
        """The models' anchors, to restore with :meth:`restore`."""
        keys = ("A", "g", "E", "e", "b")
        saved = [{key: state[key] for key in keys} for state in self.groups]
        return saved, self._correction, self._anchor_theta

    def restore(self, anchors):
        saved, self._correction, self._anchor_theta = anchors
        for state, values in zip(self.groups, saved, strict=True):
            state.update(values)
        self._stacked = None

    # --------------------------------------------------------------- model
    def _model_splits(self, state, theta):
        """Every split's model solution, value and hypergradient at ``theta``.

        The splits' factorizations run in :attr:`_model_threads` threads
        (LAPACK releases the GIL): during a model's minimization, on BLAS's
        single thread each (measured on 400000 x 200, 5 splits, 2 cores:
        0.70 against 0.52 ms a model evaluation).
        """
        P = self._penalties(state, theta)
        K = P.shape[1]
        d = state["rows"].n_features

        def split(k):
            F = state["H"][k].copy()
            F.ravel()[:: len(F) + 1] += P[:, k]  # (no index arrays: hot)
            factor = robust_cho_factor(F)
            a = cho_solve_vector(factor, state["b"][:, k])
            delta = a - state["A"][:, k]
            slope = state["e"][:, k] + state["V"][k] @ delta
            # E + e . d + d^T V d / 2, with slope = e + V d.
            value = state["E"][k] + 0.5 * delta @ (state["e"][:, k] + slope)
            v = cho_solve_vector(factor, slope)
            grad = -np.bincount(
                state["coef_groups"][:, k], (P[:d, k] * a[:d] * v[:d]),
                minlength=self.n_hyper,
            )  # fmt: skip
            return a, value, grad, factor

        out = map_tasks(split, K, self._model_threads)
        A = np.column_stack([a for a, _, _, _ in out])
        values = np.array([value for _, value, _, _ in out])
        grads = np.array([grad for _, _, grad, _ in out])
        factors = [factor for _, _, _, factor in out]
        return A, values, grads, factors, P

    def _stack(self):
        """Every split's model terms stacked over the splits of all groups,
        for :meth:`_stacked_model`; None where the groups' parameters differ
        in number (a search's folds of different widths) or are more than
        _STACKED_MODEL_PARAMS."""
        if self._stacked_fixed is None:  # the terms no anchor changes
            sizes = {state["rows"].n_params for state in self.groups}
            if len(sizes) > 1 or sizes.pop() > _STACKED_MODEL_PARAMS:
                self._stacked_fixed = False
            else:
                self._stacked_fixed = dict(
                    H=np.concatenate([s["H"] for s in self.groups]),
                    V=np.concatenate([s["V"] for s in self.groups]),
                    coef_groups=np.hstack([s["coef_groups"] for s in self.groups]).T,
                    intercept=1e-10
                    * np.concatenate([s["rows"].train_weight for s in self.groups]),
                )
        if not self._stacked_fixed:
            return None
        if self._stacked is None:  # the anchors' terms (see _set_anchor)
            stacked = dict(self._stacked_fixed)
            for key in ("A", "b", "e"):
                stacked[key] = np.hstack([s[key] for s in self.groups]).T
            stacked["E"] = np.concatenate([s["E"] for s in self.groups])
            self._stacked = stacked
        return self._stacked

    def _stacked_model(self, theta, stacked):
        """:meth:`model`'s values and hypergradients of every split, in
        batched LAPACK calls over all of them: where the factorizations are
        small, the calls' overhead outweighs them (5 splits of 61
        parameters: 0.5 ms a model one split at a time, 0.2 ms batched; the
        two batched LU solves cost more than five Cholesky factorizations
        from about 100 parameters: 0.56 against 0.5 ms)."""
        G = stacked["coef_groups"]
        P = penalty_weights(theta, G)
        if self.fit_intercept:
            P = np.hstack([P, stacked["intercept"][:, None]])
        F = stacked["H"].copy()
        diagonal = np.arange(F.shape[1])
        F[:, diagonal, diagonal] += P
        a = np.linalg.solve(F, stacked["b"][:, :, None])[:, :, 0]
        delta = a - stacked["A"]
        e = stacked["e"]
        slope = e + np.einsum("sij,sj->si", stacked["V"], delta)
        values = stacked["E"] + 0.5 * np.einsum("si,si->s", delta, e + slope)
        v = np.linalg.solve(F, slope[:, :, None])[:, :, 0]
        d = G.shape[1]
        shares = P[:, :d] * a[:, :d] * v[:, :d]
        grads = np.zeros((len(values), self.n_hyper))
        np.add.at(grads, (np.arange(len(values))[:, None], G), -shares)
        return values, grads

    def model(self, theta):
        """Mean model loss over the splits and its hypergradient at ``theta``.

        Its small LAPACK calls run on one BLAS thread: woken for them, BLAS's
        threads spin on after, on the cores the next pass's row blocks use
        (measured: a fused pass of 100000 x 100 took 10 ms instead of 5 ms
        after a batched solve of five 101 x 101 systems on two threads).
        """
        with blas_controller().limit(limits=1, user_api="blas"):
            return self._model(theta)

    def _model(self, theta):
        stacked = self._stack()
        values = None
        if stacked is not None:
            try:
                values, grads = self._stacked_model(theta, stacked)
            except np.linalg.LinAlgError:  # a singular one: factorize apart
                values = None
        if values is None:
            values, grads = [], []
            for state in self.groups:
                _, v, g, _, _ = self._model_splits(state, theta)
                values.append(v)
                grads.append(g)
            values, grads = np.concatenate(values), np.vstack(grads)
        value = float(values.mean())
        grad = grads.mean(axis=0) + self._correction
        return value + self._correction @ (theta - self._anchor_theta), grad

    def model_minimum(self, theta, lower, upper, unit, scan=False):
        """The model's minimum in the box ``[lower, upper]``:
        ``(theta, predicted decrease)``.

        L-BFGS-B from ``theta``, or with ``scan`` from the best of a scan of
        the common value of the strengths over the box, 2 points per unit of
        log-strength (the model costs no pass over the data: the first step
        looks as far as the deterministic solver's scan).
        """
        # Small factorizations and L-BFGS-B's own BLAS calls: on one thread
        # (BLAS's threads woken for each cost more than the work), the
        # splits' factorizations in as many threads as BLAS had.
        # (Threads only where each factorization outweighs handing it over:
        # measured, 5 splits of 201 parameters 0.70 -> 0.52 ms a model, of
        # 101 parameters 0.024 -> 0.034-0.054 s a minimization.)
        large = self.groups[0]["rows"].n_params >= _THREADED_MODEL_PARAMS
        self._model_threads = row_threads() if large else 1
        try:
            with blas_controller().limit(limits=1, user_api="blas"):
                return self._model_minimum(theta, lower, upper, scan, unit)
        finally:
            self._model_threads = 1

    def _model_minimum(self, theta, lower, upper, scan, unit):
        f0, _ = self._model(theta)
        start = theta
        if scan:
            low, high = float(np.max(lower)), float(np.min(upper))
            points = np.linspace(low, high, max(2, int(np.ceil(2 * (high - low)))))
            values = [self._model(np.full_like(theta, t))[0] for t in points]
            if min(values) < f0:
                start = np.full_like(theta, points[int(np.argmin(values))])

        def scaled(theta):
            value, grad = self._model(theta)
            return (value - f0) / unit, grad / unit

        # In units of the outer tolerance: L-BFGS-B's tolerances are absolute
        # on the gradient, whose entries may all be far below 1e-10 where one
        # strength per feature starts (each moves the loss little alone).
        result = minimize(
            scaled, start, jac=True, method="L-BFGS-B",
            bounds=list(zip(lower, upper, strict=True)),
            options=dict(maxiter=1000, ftol=1e-9, gtol=1e-4),
        )  # fmt: skip
        best = np.clip(result.x, lower, upper)
        value, grad = self._model(best)
        # The model stops short of a bound where the loss falls slowly towards
        # it (a strength going to an end of its range, e.g. separable
        # classes): a coordinate within _SNAP of a bound that the gradient
        # there or at theta descends to is put on it, if the model loses at
        # most the stopping test's gain by it.
        _, grad0 = self._model(theta)
        up = (best > upper - _SNAP) & ((grad < 0) | (grad0 < 0))
        down = (best < lower + _SNAP) & ((grad > 0) | (grad0 > 0))
        snapped = np.where(up, upper, np.where(down, lower, best))
        if np.any(snapped != best):
            snapped_value = self._model(snapped)[0]
            if snapped_value <= value + 0.01 * unit:
                best, value = snapped, snapped_value
        return best, f0 - value

    # ----------------------------------------------------------- exact solve
    def _solve_group(self, state, theta):
        """Every split of ``state`` solved at ``theta`` (chord steps from
        the model's solution), anchoring the models there; returns the
        validation losses, exact hypergradients (shape (K, n_hyper)), the
        number of splits whose solve and whose adjoint failed, and the chord
        steps' ratio of successive decrements (None after one pass)."""
        A, _, _, factors, P = self._model_splits(state, theta)
        rows = state["rows"]
        A, (g, E, e), steps, converged, ratio = _chord_steps(
            rows.split_terms, A, factors, P, rows.train_weight, _SOLVE_TOL,
            _MAX_CHORD_STEPS,
        )  # fmt: skip
        failed = 0
        if converged:
            # The validation losses at the solutions, to second order: the
            # untaken chord steps move them by -e . step (measured on 3000
            # x 8: error 1.6e-7 -> ~1e-10 of a loss of 0.3 at the default
            # accuracy).
            E = E - np.einsum("ik,ik->k", e, steps)
        else:
            # The models' Hessians are too far from these solutions' (e.g.
            # nearly separable folds at weak penalties): Newton's method with
            # a line search and fresh Hessians, from the anchor, one split
            # at a time.
            A = state["A"].copy()
            for j, train in enumerate(rows.trains):
                group_idx = state["coef_groups"][:, j : j + 1]
                if self.fit_intercept:
                    group_idx = np.vstack([group_idx, [[-1]]])
                problem = LogisticProblem(
                    rows.X[train], rows.targets[train], rows.sw[train], 1,
                    group_idx, self.n_hyper, self.fit_intercept,
                )  # fmt: skip
                # A tenth of the tolerance: no untaken step corrects the loss.
                W, solved = problem.solve(theta, A[:, j : j + 1], tol=0.1 * _SOLVE_TOL)
                A[:, j] = W[:, 0]
                failed += int(not solved)
            g, E, e = rows.split_terms(A)
        self._set_anchor(state, A, g, E, e)
        V, solved = _adjoint(rows, factors, P, e)
        d = rows.n_features
        grads = np.array(
            [
                -np.bincount(
                    state["coef_groups"][:, j], P[:d, j] * A[:d, j] * V[:d, j],
                    minlength=self.n_hyper,
                )
                for j in range(A.shape[1])
            ]
        )  # fmt: skip
        return E, grads, failed, int(not solved), ratio

    def _evaluate(self, theta, need_grad):
        losses = np.empty(self.n_splits)
        grads = np.empty((self.n_splits, self.n_hyper))
        solved = self._map_groups(lambda state: self._solve_group(state, theta),
                                  self.groups)  # fmt: skip
        for state, (E, G, failed, failed_adjoint, ratio) in zip(
            self.groups, solved, strict=True
        ):
            losses[state["ks"]], grads[state["ks"]] = E, G
            self.failed += failed
            self.failed_adjoints += failed_adjoint
            if ratio is not None:
                self.contraction = max(self.contraction or 0.0, ratio)
        grad = grads.mean(axis=0)
        # The model's gradient at its new anchor is made the exact one (its
        # Hessians are the common point's): a linear term, so that the
        # trust region's model agrees with the loss to first order.
        self._correction = np.zeros(self.n_hyper)
        self._correction = grad - self.model(theta)[1]
        self._anchor_theta = np.array(theta, dtype=float)
        index = len(self.records)
        self.coefficients[index] = self._split_coefficients()
        return float(losses.mean()), grad, losses, None

    def _split_coefficients(self):
        out = [None] * self.n_splits
        for state in self.groups:
            d = state["rows"].n_features
            for j, k in enumerate(state["ks"]):
                a = state["A"][:, j]
                b = a[d:] if self.fit_intercept else np.zeros(1)
                out[k] = (a[:d, None].copy(), b.copy())
        return out

    def failures(self):
        return self.failed, self.failed_adjoints

    def split_coefficients(self, index):
        return self.coefficients.get(index)

    def validation_predictions(self, index):
        coefficients = self.coefficients.get(index)
        if coefficients is None:
            return None
        out = [None] * self.n_splits
        for state in self.groups:
            rows = state["rows"]
            for j, k in enumerate(state["ks"]):
                coef, intercept = coefficients[k]
                test = rows.tests[j]
                out[k] = np.asarray(rows.X[test] @ coef) + intercept
        return out

    # ----------------------------------------------------------------- refit
    def refit(self, X, theta):
        """The solution on all of ``X`` at ``theta``, or None when ``X`` is
        not the matrix of the splits: chord steps from the Newton model at
        the anchor, with the Gram of every row the splits use.

        Returns ``(coef, intercept, converged)``.
        """
        if len(self.groups) != 1 or self.groups[0]["rows"].source is not X:
            return None
        state = self.groups[0]
        rows = state["rows"]
        P = self._penalties(state, theta)[:, :1]
        if self.fit_intercept:
            P[-1] = 1e-10 * rows.sw.sum()
        F = state["full_gram"].copy()
        F[np.diag_indices_from(F)] += P[:, 0]
        factor = robust_cho_factor(F)
        if np.array_equal(theta, self._anchor_theta):
            # The splits' solutions at theta, each moved by a Newton step on
            # all the rows: their gradient there is known without a pass
            # (training part + validation part + penalty), and the mean of
            # these steps' ends is close enough for one pass to confirm.
            A = state["A"]
            gradients = state["g"] + rows.val_weight * state["e"] + P * A
            a = np.mean(
                [A[:, k] - cho_solve_vector(factor, gradients[:, k])
                 for k in range(A.shape[1])],
                axis=0,
            )  # fmt: skip
        else:  # a Newton step from the common point
            a0 = state["anchor"]
            a = cho_solve_vector(
                factor, state["full_gram"] @ a0 - state["anchor_gradient"]
            )

        def gradient(A):
            _, grad, _ = _loss_grad(
                rows.X, A, rows.targets, rows.sw, self.fit_intercept
            )
            return (grad,)

        # The splits' chord steps at the evaluations showed how fast such
        # steps converge (their Hessians, the anchor's Grams, are those of
        # the refit's, in parts): a step that this rate takes under the
        # tolerance needs no pass to confirm it.
        A, _, _, converged, _ = _chord_steps(
            gradient, a[:, None], [factor], P, [rows.sw.sum()], _REFIT_TOL,
            _MAX_STEPS, contraction=self.contraction,
        )  # fmt: skip
        d = rows.n_features
        b = A[d] if self.fit_intercept else np.zeros(1)
        return A[:d], b, converged


def minimize_quadratic(objective, theta0, lo, hi, *, max_iter, tol):
    """Trust-region search on the folds' Newton models, every candidate exact.

    The first model (Newton steps from the solution on all the rows) is
    minimized over the whole box, from the best point of a scan of the
    common strength; then the model anchored at the last accepted point is
    minimized within ``radius`` of it (largest log-strength change). Every
    candidate is evaluated exactly and accepted when its loss is lower
    (``theta0`` is evaluated exactly only when the first candidate is not
    accepted against its model value). The radius doubles when the model
    predicted the decrease well at the radius's edge, shrinks to a quarter
    of the step when it did not. Stops when the model (exact value and
    hypergradient at the last evaluated point) predicts a gain below a
    hundredth of ``tol`` times the loss, or when the radius falls below
    1e-3.

    Returns
    -------
    result : OuterResult
        ``n_iter`` counts the exact evaluations.
    """
    lo = np.broadcast_to(np.asarray(lo, dtype=float), np.shape(theta0))
    hi = np.broadcast_to(np.asarray(hi, dtype=float), np.shape(theta0))
    theta = np.clip(np.asarray(theta0, dtype=float), lo, hi)
    f, grad = objective.model(theta)  # a model value: theta is not evaluated yet
    exact = False
    best = objective.anchors()
    radius = np.inf  # the first model step looks over the whole box
    n_iter, converged = 0, False
    while n_iter < max_iter:
        scale = tol * max(abs(f), _TINY)
        lower = np.maximum(lo, theta - radius)
        upper = np.minimum(hi, theta + radius)
        candidate, predicted = objective.model_minimum(
            theta, lower, upper, scale, scan=not np.isfinite(radius)
        )
        if predicted <= 0.01 * scale:
            if exact:
                converged = True
                break
            # The first model sees no gain: theta0 evaluated exactly gives
            # the exact hypergradient, and the model its first-order term.
            f, grad = objective(theta)
            n_iter += 1
            exact = True
            best = objective.anchors()
            radius = _RADIUS
            continue
        f_new, grad_new = objective(candidate)
        n_iter += 1
        step = float(np.max(np.abs(candidate - theta)))
        if not np.isfinite(radius):
            radius = max(_RADIUS, step)
        if f_new <= f:  # ties too: the model saw a gain there
            ratio = (f - f_new) / predicted
            theta, f, grad, exact = candidate, f_new, grad_new, True
            best = objective.anchors()
            if ratio > 0.75 and step >= 0.99 * radius:
                radius = min(2.0 * radius, _MAX_RADIUS)
            elif ratio < 0.25:
                radius = step / 4.0
        else:
            objective.restore(best)
            radius = step / 4.0
            if not exact and n_iter < max_iter:
                f, grad = objective(theta)
                n_iter += 1
                exact = True
                best = objective.anchors()
        if radius < _MIN_RADIUS:
            converged = True
            break
    if not exact:  # no candidate evaluated: theta0 itself
        f, grad = objective(theta)
        n_iter += 1
        best = objective.anchors()
    # Strengths within _SNAP of a bound that the exact hypergradient descends
    # to: the bound itself, if no worse (the trust region creeps towards a
    # bound where the loss flattens, e.g. separable classes).
    edge = np.where((theta > hi - _SNAP) & (grad < 0), hi, theta)
    edge = np.where((edge < lo + _SNAP) & (grad > 0), lo, edge)
    if np.any(edge != theta) and n_iter < max_iter:
        f_edge, _ = objective(edge)
        n_iter += 1
        if f_edge <= f:
            theta, f = edge, f_edge
        else:
            objective.restore(best)  # the refit starts from theta's solutions
    return OuterResult(theta, f, n_iter, converged)
