"""Cross-validated objectives, their evaluation log, and ``cv_results_``.

An *objective* maps log-hyperparameters ``theta`` to the mean validation loss
over folds and its hypergradient. :class:`CVObjective` records every
evaluation (the rows of ``cv_results_``) and prints progress; subclasses only
implement ``_evaluate``.
"""

import time
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed

from ._hypergradient import FoldState, fold_value_and_grad

__all__ = [
    "CVObjective",
    "FoldRows",
    "FoldsObjective",
    "build_cv_results",
    "map_folds",
    "map_folds_timed",
    "rank_scores",
]


def map_folds(func, items, n_jobs=None):
    """``[func(item) for item in items]``, in joblib threads when ``n_jobs`` asks.

    Threads suit this work: the kernels release the GIL (``nogil=True``) and
    so do NumPy's BLAS/LAPACK calls, and no data is copied to workers.
    """
    items = list(items)
    if n_jobs in (None, 1) or len(items) < 2:
        return [func(item) for item in items]
    # An explicit backend: fold states are updated in place (warm starts), so
    # a process or cluster backend set by joblib.parallel_config must not
    # take these over (the search parallelizes whole candidates instead).
    return Parallel(n_jobs=n_jobs, backend="threading")(
        delayed(func)(item) for item in items
    )


def map_folds_timed(func, items, n_jobs=None):
    """:func:`map_folds`, also returning the seconds each item took."""

    def timed(item):
        start = time.perf_counter()
        out = func(item)
        return out, time.perf_counter() - start

    pairs = map_folds(timed, items, n_jobs)
    return [out for out, _ in pairs], [seconds for _, seconds in pairs]


class CVObjective:
    """Base class: recording, progress printing and the common-scalar view.

    Parameters
    ----------
    n_hyper : int
        Number of hyperparameters.
    n_splits : int
        Number of validation splits (1 for leave-one-out, reported as one).
    verbose : int, default=0
        Print one line per hypergradient evaluation when > 0.
    """

    # Whether many evaluations of the common scalar cost little (closed forms).
    cheap_scan = False

    def __init__(self, n_hyper, n_splits, verbose=0):
        self.n_hyper = n_hyper
        self.n_splits = n_splits
        self.verbose = verbose
        self.rows = []  # (theta, f, split_losses, grad_norm, elapsed, accurate)
        # Set by the estimators: the clock of the ``time`` column (start of
        # fit), and how progress lines show a hyperparameter, e.g. "C" with
        # sign -1 for C = exp(-theta).
        self.start_time = time.perf_counter()
        self.param_name, self.param_sign = "alpha", 1.0
        # (sklearn.callback context, estimator): every evaluation is reported
        # to the fit's callbacks as one subtask.
        self.callback = None

    def _evaluate(self, theta, need_grad):
        """Return ``(f, grad or None, split_losses)``."""
        raise NotImplementedError

    def _log(self, theta, f, split_losses, grad):
        elapsed = time.perf_counter() - self.start_time
        grad_norm = np.nan if grad is None else float(np.linalg.norm(grad))
        # Closed-form objectives are exact everywhere; iterative ones solve
        # value-only evaluations more loosely, so only the rows with a
        # hypergradient may be chosen as the optimum.
        accurate = self._row_is_accurate(grad)
        self.rows.append(
            (
                theta.copy(),
                float(f),
                np.asarray(split_losses),
                grad_norm,
                elapsed,
                accurate,
            )
        )
        if self.verbose > 0 and grad is not None:
            values = np.exp(self.param_sign * theta)
            shown = (
                f"{values[0]:.4g}"
                if values.size == 1
                else f"[min {values.min():.3g}, median {np.median(values):.3g}, "
                f"max {values.max():.3g}]"
            )
            print(
                f"[skbilevel] eval {len(self.rows):3d}  {self.param_name}={shown}  "
                f"cv_loss={f:.6g}  |hypergradient|={grad_norm:.3g}  "
                f"time={elapsed:.2f}s",
                flush=True,
            )

    def _row_is_accurate(self, grad):
        """Whether an evaluation may be chosen as the optimum."""
        return self.cheap_scan or grad is not None

    def __call__(self, theta, need_grad=True):
        theta = np.asarray(theta, dtype=float)
        with self._callback_task():
            f, grad, split_losses = self._evaluate(theta, need_grad)
            self._log(theta, f, split_losses, grad)
        return f, grad

    @contextmanager
    def _callback_task(self):
        if self.callback is None:
            yield
            return
        context, estimator = self.callback
        task = context.subcontext(task_name="evaluation")
        task.call_on_fit_task_begin(estimator=estimator)
        yield
        task.call_on_fit_task_end(estimator=estimator)

    # One shared value for every hyperparameter: the start of the outer loop.
    def common(self, t, need_grad=True):
        """Objective along ``theta = t * ones``, with its derivative in ``t``."""
        f, grad = self(np.full(self.n_hyper, float(t)), need_grad)
        return f, (None if grad is None else float(np.sum(grad)))

    def common_scan(self, ts):
        """Values at many common strengths at once (objectives with cheap_scan)."""
        with self._callback_task():
            return self._scan(np.asarray(ts, dtype=float))

    def _scan(self, ts):
        raise NotImplementedError

    def tighten(self, relative_gradient):
        """Hook for the outer loop: the iterate's relative hypergradient norm."""


class FoldsObjective(CVObjective):
    """Generic K-fold objective: any inner problem, any hypergradient method.

    Inner solutions and adjoints are warm-started from the previous
    evaluation, and the iterative solvers' tolerances follow the outer
    iterate: loose while the hypergradient is large, tight near the optimum.

    Parameters
    ----------
    problems : list of InnerProblem
        One per fold, each carrying its validation data.
    method : str
        Hypergradient method (see :mod:`skbilevel._hypergradient`).
    adjoint_max_iter : int
    n_jobs : int or None
        Folds are evaluated in threads (the kernels release the GIL).
    verbose : int
    value_tol : float, default=None
        Looser inner tolerance for evaluations without a hypergradient (scan
        points); None keeps the current tolerance. Only sound for solvers
        whose tolerance bounds the loss error (Newton's decrement), not for
        a residual tolerance on an ill-conditioned system (CG).
    """

    def __init__(
        self, problems, method, adjoint_max_iter, n_jobs=None, verbose=0, value_tol=None
    ):
        super().__init__(problems[0].n_hyper, len(problems), verbose)
        self.value_tol = value_tol
        self.problems = problems
        self.method = method
        self.adjoint_max_iter = adjoint_max_iter
        self.n_jobs = n_jobs
        self.states = [FoldState() for _ in problems]
        self.solutions = []  # per evaluation: list of per-fold w (for scoring)
        self.split_times = []  # per evaluation: seconds spent on each fold
        self.tol = 1e-6

    def tighten(self, relative_gradient):
        self.tol = float(np.clip(0.1 * relative_gradient, 1e-10, 1e-6))

    def _evaluate(self, theta, need_grad):
        kwargs = dict(
            method=self.method,
            need_grad=need_grad,
            # A value alone (scan, line search) only has to rank points: when
            # the solver's tolerance bounds the loss error well (Newton), a
            # looser solve does.
            inner_tol=self.tol
            if need_grad or self.value_tol is None
            else max(self.tol, self.value_tol),
            adjoint_tol=self.tol,
            adjoint_max_iter=self.adjoint_max_iter,
        )
        results, seconds = map_folds_timed(
            lambda pair: fold_value_and_grad(pair[0], theta, pair[1], **kwargs),
            zip(self.problems, self.states, strict=True),
            self.n_jobs,
        )
        self.split_times.append(seconds)
        losses = np.array([r[0] for r in results])
        self.solutions.append([r[2] for r in results])
        grad = None
        if need_grad:
            grad = np.mean([r[1] for r in results], axis=0)
        return float(losses.mean()), grad, losses

    def failures(self):
        """Number of inner and adjoint solves that stopped before their tolerance."""
        inner = sum(s.failures.count("inner") for s in self.states)
        adjoint = sum(s.failures.count("adjoint") for s in self.states)
        return inner, adjoint


def build_cv_results(rows, param_name, to_param, split_scores):
    """Assemble a GridSearchCV-shaped ``cv_results_`` dict.

    Parameters
    ----------
    rows : list of tuple
        ``(theta, f, split_losses, grad_norm, elapsed, accurate)`` per
        evaluation.
    param_name : str
        Name of the hyperparameter (``"alpha"``, ``"C"``).
    to_param : callable
        Maps ``theta`` to the user-facing value (float or ndarray).
    split_scores : ndarray of shape (n_rows, n_splits)
        Validation score of each row on each split (greater is better).

    Returns
    -------
    cv_results : dict
    """
    n_rows = len(rows)
    values = [to_param(r[0]) for r in rows]
    param = np.ma.MaskedArray(np.empty(n_rows, dtype=object), mask=False)
    for i, v in enumerate(values):
        param[i] = v
    results = {
        "params": [{param_name: v} for v in values],
        f"param_{param_name}": param,
    }
    split_scores = np.asarray(split_scores, dtype=float).reshape(n_rows, -1)
    for k in range(split_scores.shape[1]):
        results[f"split{k}_test_score"] = split_scores[:, k]
    mean = split_scores.mean(axis=1)
    results["mean_test_score"] = mean
    results["std_test_score"] = split_scores.std(axis=1)
    results["rank_test_score"] = rank_scores(mean)
    results["iter"] = np.arange(n_rows)
    results["time"] = np.array([r[4] for r in rows])
    results["hypergradient_norm"] = np.array([r[3] for r in rows])
    return results


def rank_scores(mean):
    """GridSearchCV's ranks: 1 is best, ties share the best rank, NaN ranks last."""
    filled = np.where(np.isnan(mean), -np.inf, mean)
    order = np.argsort(-filled, kind="stable")
    ranks = np.empty(len(mean), dtype=np.int32)
    ranks[order] = np.arange(1, len(mean) + 1)
    for i in range(1, len(mean)):
        if filled[order[i]] == filled[order[i - 1]]:
            ranks[order[i]] = ranks[order[i - 1]]
    return ranks


class FoldRows:
    """Training and validation rows of every split, without a copy per fold.

    When the splits partition the samples (K-fold: every sample is validated
    exactly once and trained on in every other split), the rows are stored
    once in the order of the validation blocks, twice over: a split's
    validation rows are then one contiguous block and its training rows the
    contiguous window that follows it (wrapping around). Every fold's data
    are views of that one array: 2 n rows in memory instead of K n, and no
    per-fold copy (each costs page faults and memory bandwidth). Other
    splits (shuffle-split, leave-p-out) get copies.

    Parameters
    ----------
    n_samples : int
    folds : list of (train, test) index arrays
    """

    def __init__(self, n_samples, folds):
        self.folds = folds
        self.order = None
        tests = [np.asarray(test) for _, test in folds]
        order = np.concatenate(tests) if tests else np.array([], dtype=int)
        partition = (
            len(order) == n_samples
            and np.array_equal(np.sort(order), np.arange(n_samples))
            and all(len(tr) + len(te) == n_samples for tr, te in folds)
        )
        if partition and len(folds) > 1:
            self.order = np.concatenate([order, order])
            self.starts = np.cumsum([0] + [len(t) for t in tests])

    def _windows(self, k):
        n = len(self.order) // 2
        start, stop = self.starts[k], self.starts[k + 1]
        return slice(stop, stop + n - (stop - start)), slice(start, stop)

    def index(self, k):
        """``(train, test)`` sample indices of split ``k``, in view order."""
        if self.order is None:
            return self.folds[k]
        train, test = self._windows(k)
        return self.order[train], self.order[test]

    def split(self, A, dtype=None):
        """``[(A_train, A_test)]`` per split, rows in the order of :meth:`index`.

        Dense arrays are views of one doubled copy (in ``dtype`` if given)
        when the splits partition the samples; sparse matrices and other
        splits are indexed (copied) fold by fold. Validation rows keep the
        order of the split's test indices.
        """
        if dtype is not None and not sp.issparse(A):
            A = np.asarray(A, dtype=dtype)
        if self.order is None or sp.issparse(A):
            # Same row order as the views of dense arrays of the same splits.
            return [
                (A[train], A[test])
                for train, test in map(self.index, range(len(self.folds)))
            ]
        doubled = np.take(A, self.order, axis=0)
        return [
            (doubled[train], doubled[test])
            for train, test in map(self._windows, range(len(self.folds)))
        ]
