"""Cross-validated objectives and their evaluation log.

An *objective* maps log-hyperparameters ``theta`` to the mean validation loss
over folds and its hypergradient. :class:`CVObjective` records every
evaluation as an :class:`Evaluation` (the rows of ``cv_results_``), prints
progress and reports to callbacks; subclasses implement ``_evaluate`` and,
for scoring, the validation predictions of an evaluation.
"""

import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
from joblib import cpu_count, effective_n_jobs

from ._hypergradient import FoldState, fold_value_and_grad
from ._remote import RemoteFolds, active_dask_client
from ._rows import blas_controller, fold_executor, row_threads, thread_budget

# Newton steps of the first screening round (doubled at each round), and
# rounds before a screened evaluation is solved as usual (see
# FoldsObjective._screen): 2, 4 and 8 steps, then the rest.
_SCREEN_STEPS = 2
_SCREEN_ROUNDS = 3

# Set in the folds' threads of map_folds.
_in_fold = threading.local()

__all__ = [
    "CVObjective",
    "Evaluation",
    "FoldsObjective",
    "map_folds",
    "map_folds_timed",
    "shared_cores",
]


def map_folds(func, items, n_jobs=None, *, cores=None, blas_threads=None):
    """``[func(item) for item in items]``, in threads when ``n_jobs`` asks.

    Threads suit this work: the kernels release the GIL (``nogil=True``) and
    so do NumPy's BLAS/LAPACK calls, and no data is copied to workers. A call
    from inside a fold's thread runs its items one after the other (the
    folds' pool would otherwise wait on itself).

    ``cores`` (default: all of them) are shared between the folds running
    at once: each fold's row blocks get its share, and so does BLAS unless
    ``blas_threads`` sets BLAS's threads for all of them.
    """
    items = list(items)
    n_workers = min(effective_n_jobs(n_jobs), len(items))
    if n_jobs in (None, 1) or n_workers < 2 or getattr(_in_fold, "active", False):
        return [func(item) for item in items]
    # The cores are shared between the folds: each thread's BLAS calls get
    # its share (BLAS would otherwise start one thread per core in every
    # fold's thread, n_jobs times too many). The limit is process-wide, so
    # it is set once around the parallel loop.
    share = max(1, (cpu_count() if cores is None else cores) // n_workers)
    if blas_threads is None:
        blas_threads = share
    # Threads of our own, not a joblib backend: fold states are updated in
    # place (warm starts), so a process backend set by joblib.parallel_config
    # must not take these over (a dask cluster gets the folds as actors
    # instead: see _remote). The row blocks of the fused kernels and Gram
    # products take the same share (see _rows).

    def budgeted(item):
        _in_fold.active = True
        try:
            with thread_budget(share):
                return func(item)
        finally:
            _in_fold.active = False

    # The kept controller: a new threadpool_limits scans every loaded library
    # (measured 65 ms a call on a 16-core machine whose environment loads
    # many, 11 times in a fit), which undid the gain of the parallel folds.
    with blas_controller().limit(limits=blas_threads, user_api="blas"):
        pool = fold_executor(n_workers)
        futures = [pool.submit(budgeted, item) for item in items]
        return [future.result() for future in futures]


def shared_cores(n_jobs):
    """``(n_jobs, options)`` for :func:`map_folds` that run folds "one after
    the other" (``n_jobs`` None or 1) in threads instead, as many as BLAS
    may use now, each with BLAS on one thread: for folds whose work does not
    split in row blocks, which would otherwise run on one core. Under
    ``threadpool_limits(1)`` the folds stay in order. Other ``n_jobs`` are
    returned as they are."""
    if n_jobs not in (None, 1):
        return n_jobs, {}
    threads = row_threads()
    return threads, dict(cores=threads, blas_threads=1)


def map_folds_timed(func, items, n_jobs=None, **options):
    """:func:`map_folds`, also returning the seconds each item took."""

    def timed(item):
        start = time.perf_counter()
        out = func(item)
        return out, time.perf_counter() - start

    pairs = map_folds(timed, items, n_jobs, **options)
    return [out for out, _ in pairs], [seconds for _, seconds in pairs]


@dataclass
class Evaluation:
    """One evaluation of a CV objective: one row of ``cv_results_``.

    ``theta`` holds the log-hyperparameters, ``loss`` the mean validation
    loss over the ``split_losses``; ``hypergradient_norm`` is NaN when no
    hypergradient was computed (scan points, line searches); ``elapsed``
    counts seconds from the start of fit, ``split_times`` those spent on each
    split where measured. ``accurate`` says whether the point may be chosen as
    the optimum: its training problems were solved to the hypergradient's
    accuracy, not loosely (scan) or from mini-batches (stochastic estimates).
    Under the early-stopping guard, ``holdout_losses`` are the held-out
    rows' losses of every split's model (else None), ``holdout_loss`` their
    mean (else NaN) and ``holdout_rows`` every held-out row's loss averaged
    over the splits' models.
    """

    theta: np.ndarray
    loss: float
    split_losses: np.ndarray
    hypergradient_norm: float
    elapsed: float
    accurate: bool
    split_times: list = None
    holdout_losses: np.ndarray = None
    holdout_rows: np.ndarray = None

    @property
    def holdout_loss(self):
        """Mean held-out loss over the splits (NaN without the guard)."""
        if self.holdout_losses is None:
            return np.nan
        return float(np.mean(self.holdout_losses))


class CVObjective:
    """Base class: recording, progress printing and the common-scalar view.

    Parameters
    ----------
    n_hyper : int
        Number of hyperparameters.
    n_splits : int
        Number of validation splits (1 for leave-one-out, reported as one).
    verbose : int, default=0
        1 prints one line per hypergradient evaluation, 2 per evaluation
        (scan points too); "eval N" is ``cv_results_["iter"]`` N.
    """

    # Whether many evaluations of the common scalar cost little (closed forms).
    cheap_scan = False
    # Whether the scan may stop a value's solves above a cutoff (screen).
    screens = False
    # Relative accuracy of value-only evaluations (see minimize_scalar's ties).
    scan_tie = 0.0
    # One hyperparameter: hypergradients in forward mode, whose solutions'
    # derivatives predict the next point's solutions (warm starts tried
    # before the nearest solution itself, see _hypergradient). Measured on
    # sparse text 10000 x 50000: 986 -> 835 Hessian-vector products, 0.61 ->
    # 0.54 s (2 cores); digits 0.41 -> 0.38 s. (FoldsObjective's folds.)
    tangent_starts = False
    # Matrices of all the rows that the final refit may reuse (e.g. a Gram).
    precomputed = None

    def __init__(self, n_hyper, n_splits, verbose=0):
        self.n_hyper = n_hyper
        self.n_splits = n_splits
        self.verbose = verbose
        self.records = []
        # Set by the fit pipeline: the clock of the ``time`` column (start of
        # fit), and how progress lines show a hyperparameter, e.g. "C" with
        # sign -1 for C = exp(-theta).
        self.start_time = time.perf_counter()
        self.param_name, self.param_sign = "alpha", 1.0
        # (sklearn.callback context, estimator): every evaluation is reported
        # to the fit's callbacks as one subtask.
        self.callback = None

    def _evaluate(self, theta, need_grad):
        """Return ``(f, grad or None, split_losses, split_times or None)``.

        Objectives with held-out rows (:meth:`FoldsObjective.hold_out`)
        append the held-out rows' losses ``(per split, per row)``.
        """
        raise NotImplementedError

    def validation_predictions(self, index):
        """Decision values of evaluation ``index`` on every split's validation rows.

        A list of arrays of shape (n_val, n_outputs), one per split, in the
        order of :attr:`~skbilevel._folds.Splits.y_test`; None where the
        evaluation kept no model to predict with.
        """
        return None

    def split_coefficients(self, index):
        """``[(coef, intercept)]`` of every split at evaluation ``index``, or None.

        ``coef`` of shape (n_features, n_outputs), ``intercept`` of shape
        (n_outputs,), in the original (uncentered) coordinates.
        """
        return None

    def training_predictions(self, index, k, X_train):
        """Decision values of split ``k``'s model at evaluation ``index`` on
        its training rows ``X_train`` (a search's training scores)."""
        coef, intercept = self.split_coefficients(index)[k]
        return np.asarray(X_train @ coef) + intercept

    def failures(self):
        """Number of inner and adjoint solves that stopped before their tolerance."""
        return 0, 0

    def polish(self, index):
        """Make evaluation ``index`` exact; returns the loss the search had seen.

        Closed forms and the stochastic mode's final evaluation already are.
        """
        return self.records[index].loss

    def _log(
        self, theta, f, split_losses, grad, split_times=None, holdout=(None, None)
    ):
        elapsed = time.perf_counter() - self.start_time
        grad_norm = np.nan if grad is None else float(np.linalg.norm(grad))
        self.records.append(
            Evaluation(
                theta=theta.copy(),
                loss=float(f),
                split_losses=np.asarray(split_losses),
                hypergradient_norm=grad_norm,
                elapsed=elapsed,
                accurate=self._row_is_accurate(grad),
                split_times=split_times,
                holdout_losses=holdout[0],
                holdout_rows=holdout[1],
            )
        )
        # verbose=1: the evaluations with a hypergradient; 2: every one (scan
        # points too). "eval N" is cv_results_'s "iter" N; cv_loss is the
        # validation loss the search minimizes (not the reported score).
        if self.verbose > 1 or (self.verbose > 0 and grad is not None):
            gradient = (
                "scan point" if grad is None else f"|hypergradient|={grad_norm:.3g}"
            )
            print(
                f"[skbilevel] eval {len(self.records) - 1:3d}  {self._shown(theta)}  "
                f"cv_loss={f:.6g}  {gradient}  time={elapsed:.2f}s",
                flush=True,
            )

    def reported_rows(self):
        """``(rows, position)``: the records ``cv_results_`` shows, and the
        row standing for any record.

        A point evaluated again at the same ``theta`` (a scan point then
        evaluated with its hypergradient) appears once, as its last, most
        accurate evaluation: ``position[i]`` is the row of record ``i``.
        """
        last = {}
        for i, record in enumerate(self.records):
            last[np.asarray(record.theta, dtype=float).tobytes()] = i
        rows = sorted(last.values())
        row_of = {index: k for k, index in enumerate(rows)}
        position = [
            row_of[last[np.asarray(r.theta, dtype=float).tobytes()]]
            for r in self.records
        ]
        return rows, position

    def _shown(self, theta):
        """``theta`` as a progress line shows it: ``name=value(s)``."""
        values = np.exp(self.param_sign * theta)
        shown = (
            f"{values[0]:.4g}"
            if values.size == 1
            else f"[min {values.min():.3g}, median {np.median(values):.3g}, "
            f"max {values.max():.3g}]"
        )
        return f"{self.param_name}={shown}"

    def _row_is_accurate(self, grad):
        """Whether an evaluation may be chosen as the optimum.

        Closed-form objectives are exact everywhere; iterative ones solve
        value-only evaluations more loosely, so only the rows with a
        hypergradient may be chosen.
        """
        return self.cheap_scan or grad is not None

    def __call__(self, theta, need_grad=True):
        theta = np.asarray(theta, dtype=float)
        with self._callback_task():
            out = self._evaluate(theta, need_grad)
            f, grad, split_losses, split_times = out[:4]
            holdout = out[4] if len(out) > 4 else (None, None)
            self._log(theta, f, split_losses, grad, split_times, holdout)
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
        # A Newton decrement of value_tol**2 bounds the loss error far below
        # 1e-4 (relative): scan values within it of the best are ties.
        self.scan_tie = 0.0 if value_tol is None else 1e-4
        self.problems = problems
        self.method = method
        self.adjoint_max_iter = adjoint_max_iter
        self.n_jobs = n_jobs
        self.states = [FoldState() for _ in problems]
        self.solutions = []  # per evaluation: list of per-fold w
        # Per evaluation: list of per-fold dw/dtheta (tangent_starts), or None.
        self.tangents = []
        self.tol = 1e-6
        # Per fold: the held-out validation rows, once hold_out is called.
        self.held_rows = None
        self.held_weights = None
        # The folds on dask workers (see _remote), made at the first
        # evaluation under a dask joblib backend; False: in this process.
        self._remote = None
        # ``batch_solve(problems, theta, warm_starts, tol, for_adjoint)``:
        # solves every fold's training problem at once, before the folds'
        # own evaluations (which then find their solutions made), where the
        # folds run in this process one after the other; None: each fold
        # solves its own.
        self.batch_solve = None
        # BLAS threads while the folds are evaluated one after the other;
        # None leaves BLAS as it is. For evaluations whose BLAS calls are
        # all small, or split in row blocks of their own: BLAS threads then
        # gain nothing and, spinning after each call, take the cores from
        # the row blocks (see _blas_budget).
        self.blas_threads = None
        # Whether folds evaluated "one after the other" (n_jobs None or 1)
        # run in threads instead, as many as their row blocks would have
        # had: for folds whose work does not split in row blocks (small or
        # sparse data), with BLAS on one thread (blas_threads=1). The folds
        # then use the cores BLAS would, and no more.
        self.share_cores = False
        # A value-only evaluation whose folds' mean validation loss rises
        # above this stops there (see _screen); None: solved as usual. Only
        # for objectives that allow it (screens), whose solvers keep their
        # Hessian state across capped rounds.
        self.cutoff = None

    def hold_out(self, held):
        """Take the rows of ``held`` out of the hypergradient, to judge its path.

        ``held``: one boolean mask per fold over its validation rows. The
        held-out rows must be the same samples, in the same order, in every
        fold (see :meth:`~skbilevel._folds.Splits.guarded`): every evaluation
        then also records their loss, per fold and per sample (averaged over
        the folds' models).
        """
        self.held_rows, self.held_weights = [], []
        for problem, mask in zip(self.problems, held, strict=True):
            self.held_rows.append(np.flatnonzero(mask))
            self.held_weights.append(np.where(mask, problem.sw_val, 0.0))
            problem.sw_val = np.where(mask, 0.0, problem.sw_val)
        self._remote = None  # workers' copies must see the new weights

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
            tangent=self.tangent_starts,
        )
        held = self.held_rows or [None] * len(self.problems)
        if self.records:
            # Warm starts from the nearest evaluated point (the latest among
            # ties), not merely the last one: after a scan that went past the
            # minimum, the last solution is the farthest from the next point.
            thetas = np.array([r.theta for r in self.records])
            distances = np.max(np.abs(thetas - theta), axis=1)
            nearest = len(distances) - 1 - int(np.argmin(distances[::-1]))
            tangents = self.tangents[nearest] or [None] * len(self.states)
            step = theta - self.records[nearest].theta
            for state, w, u in zip(
                self.states, self.solutions[nearest], tangents, strict=True
            ):
                state.w = w
                # Moved along the solution's derivative: tried as the warm
                # start (see _hypergradient._warm_start).
                state.guess = None if u is None else w + float(step[0]) * u

        def fold(item, options=kwargs):
            problem, state, rows = item
            loss, grad, w = fold_value_and_grad(problem, theta, state, **options)
            if rows is None:
                return loss, grad, w, None
            return loss, grad, w, problem.row_losses(w, rows)

        if self._remote is None:
            client = active_dask_client(self.n_jobs)
            self._remote = (
                False if client is None else RemoteFolds(client, self.problems)
            )
        if self._remote:
            results, seconds = self._screened(
                lambda options: self._remote_results(theta, held, options),
                kwargs, need_grad,
            )  # fmt: skip
        else:
            # As map_folds decides: the folds one after the other here.
            sequential = (
                self.n_jobs in (None, 1)
                or min(effective_n_jobs(self.n_jobs), len(self.problems)) < 2
            )
            with self._blas_budget() if sequential else nullcontext():
                if self.batch_solve is not None and sequential:
                    self.batch_solve(
                        self.problems, theta, [state.w for state in self.states],
                        kwargs["inner_tol"], need_grad,
                    )  # fmt: skip
                n_jobs, threads = self.n_jobs, {}
                if sequential and self.share_cores and self.batch_solve is None:
                    # The folds' threads instead of the row blocks' (which
                    # these folds cannot use): as many as the row blocks
                    # would have had, BLAS kept on one thread each.
                    n_jobs, threads = shared_cores(self.n_jobs)
                items = list(zip(self.problems, self.states, held, strict=True))

                def run(options):
                    return map_folds_timed(
                        lambda item: fold(item, options), items, n_jobs, **threads
                    )

                results, seconds = self._screened(run, kwargs, need_grad)
        losses = np.array([r[0] for r in results])
        self.solutions.append([r[2] for r in results])
        self.tangents.append(
            [state.tangent for state in self.states]
            if need_grad and self.tangent_starts
            else None
        )
        grad = None
        if need_grad:
            grad = np.mean([r[1] for r in results], axis=0)
        f = float(losses.mean())
        if self.held_rows is None:
            return f, grad, losses, seconds
        rows = np.array([r[3] for r in results])  # (n_folds, n_held)
        weights = self.held_weights[0][self.held_rows[0]]
        per_fold = rows @ weights / weights.sum()
        return f, grad, losses, seconds, (per_fold, rows.mean(axis=0))

    def screen(self, cutoff):
        """Let the next value-only evaluations stop above ``cutoff`` (None:
        solve them as usual); see :func:`~skbilevel._outer.minimize_scalar`."""
        self.cutoff = cutoff

    def _screened(self, run, kwargs, need_grad):
        """``run(kwargs)`` (the folds' results and seconds), screened against
        ``self.cutoff`` for a value alone (see :meth:`_screen`)."""
        seconds = np.zeros(len(self.problems))
        if self.cutoff is not None and not need_grad:
            results, seconds = self._screen(run, kwargs)
            if results is not None:
                return results, list(seconds)
        results, more = run(kwargs)
        return results, list(seconds + more)

    def _screen(self, run, kwargs):
        """Value-only results that stop early above ``self.cutoff``, or None.

        The folds' solves run in rounds of 2, 4, then 8 Newton steps, each
        warm-started where the last one stopped; after each round the
        validation losses are read. Once their mean is above the cutoff, the
        point is settled as worse than the best (a scan's point past the
        minimum, whose weak penalty makes it the scan's most expensive
        solve) and those results are returned, as they are once every solve
        has converged; else None (the caller then finishes the solves, from
        the warm starts left here). Measured on 2 cores: digits 789 -> 453
        passes, sparse text 1270 -> 986 Hessian-vector products, the same
        C_ to 1e-7.

        Returns
        -------
        results : list or None
        seconds : ndarray of shape (n_folds,)
            Spent in the rounds.
        """
        seconds = np.zeros(len(self.problems))
        for k in range(_SCREEN_ROUNDS):
            failed = [len(state.failures) for state in self.states]
            results, more = run(dict(kwargs, inner_max_iter=_SCREEN_STEPS * 2**k))
            seconds += more
            capped = False
            for state, count in zip(self.states, failed, strict=True):
                # A round stopped by its step cap is not a failed solve.
                capped |= len(state.failures) > count
                del state.failures[count:]
            if not capped or np.mean([r[0] for r in results]) > self.cutoff:
                return results, seconds
        return None, seconds

    @contextmanager
    def _blas_budget(self):
        """BLAS on ``blas_threads`` threads (if set) while the folds are
        evaluated one after the other; the row blocks (:mod:`_rows`) keep
        the threads BLAS had, and run BLAS single-threaded in each block."""
        if self.blas_threads is None:
            yield
            return
        budget = row_threads()
        with blas_controller().limit(limits=self.blas_threads, user_api="blas"):
            with thread_budget(budget):
                yield

    def _remote_results(self, theta, held, kwargs):
        """:meth:`_evaluate`'s fold results, computed by the dask workers."""
        outputs = self._remote.evaluate(
            theta, [(s.w, s.guess) for s in self.states], kwargs
        )
        results, seconds = [], []
        for (loss, grad, w, failures, elapsed, tangent), problem, state, rows in zip(
            outputs, self.problems, self.states, held, strict=True
        ):
            state.w, state.guess, state.tangent = w, None, tangent
            state.failures.extend(failures)
            row_losses = None if rows is None else problem.row_losses(w, rows)
            results.append((loss, grad, w, row_losses))
            seconds.append(elapsed)
        return results, seconds

    def split_coefficients(self, index):
        return [
            problem.coefficients(w)
            for problem, w in zip(self.problems, self.solutions[index], strict=True)
        ]

    def validation_predictions(self, index):
        return [
            np.asarray(problem.X_val @ coef) + intercept
            for problem, (coef, intercept) in zip(
                self.problems, self.split_coefficients(index), strict=True
            )
        ]

    def polish(self, index):
        """Re-solve evaluation ``index``'s training problems accurately.

        Iterative methods stop their solves on a residual tolerance, which on
        ill-conditioned data does not bound the validation loss: the loss
        they saw can be far from the model's. The re-solve factorizes where
        the problem allows (else runs CG to 1e-12) and replaces the record's
        losses and solutions. Returns the loss the search had seen.
        """
        record = self.records[index]
        seen = record.loss
        if self.method == "direct" or self.value_tol is not None:
            # Factorized solves are accurate; so are solvers whose tolerance
            # bounds the loss error (value_tol's condition: Newton-CG's
            # decrement, the Lasso's duality gap), which an accurate
            # evaluation ran at 1e-6 or tighter. (Re-solving the logistic
            # folds to 1e-12 cost 150 products on sparse text, 8% of a fit.)
            return seen
        solutions, losses = [], []
        for problem, w0 in zip(self.problems, self.solutions[index], strict=True):
            method = "direct" if problem.can_factorize else "cg"
            w, _ = problem.solve(
                record.theta, w0, tol=1e-12, method=method,
                max_iter=max(1000, 10 * w0.size), for_adjoint=False,
            )  # fmt: skip
            solutions.append(w)
            losses.append(problem.outer_loss_grad(w)[0])
        self.solutions[index] = solutions
        record.split_losses = np.array(losses)
        record.loss = float(record.split_losses.mean())
        return seen

    def failures(self):
        inner = sum(s.failures.count("inner") for s in self.states)
        adjoint = sum(s.failures.count("adjoint") for s in self.states)
        return inner, adjoint
