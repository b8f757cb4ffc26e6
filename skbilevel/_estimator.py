"""What every skbilevel estimator shares: checks, the outer search, results.

The estimator classes only say how to build their CV objective (from the
inner problem of their model) and how to refit; this base class runs the
search in log-space, raises the convergence warnings and assembles
``cv_results_`` and the other fitted attributes, identically for all of them.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._cv import FoldsObjective, build_cv_results
from ._hypergradient import HYPERGRADIENT_METHODS
from ._outer import minimize_box, minimize_scalar
from ._stochastic import (
    LogLossFit,
    RowReader,
    StochasticFold,
    StochasticObjective,
    minimize_stochastic,
)
from ._validation import check_hypergradient, check_positive_int, check_tol

try:  # scikit-learn >= 1.9 ships a callback API (e.g. sklearn.callback.ProgressBar)
    from sklearn.callback import CallbackSupportMixin, with_callbacks

    # ``with_callbacks`` wraps fit in one more frame: warnings raised from
    # fit climb one more level to reach the caller's line.
    FIT_FRAMES = 1
except ImportError:  # pragma: no cover - older scikit-learn

    class CallbackSupportMixin:
        """Stand-in: scikit-learn < 1.9 has no callbacks."""

    def with_callbacks(method):
        return method

    FIT_FRAMES = 0


__all__ = [
    "BilevelSearchMixin",
    "CallbackSupportMixin",
    "FIT_FRAMES",
    "START_TOLERANCE",
    "STOCHASTIC_MIN_SAMPLES",
    "with_callbacks",
]

# Scalar values within this fraction of the best scalar loss may start the
# many-hyperparameter search (see BilevelSearchMixin._box_start).
START_TOLERANCE = 1e-2
# solver="auto" picks the stochastic mode from this many samples on.
STOCHASTIC_MIN_SAMPLES = 500_000
# Mini-batch size of the stochastic mode for batch_size="auto".
DEFAULT_BATCH_SIZE = 1024
# Validation mini-batches averaged in each stochastic hypergradient.
VALIDATION_BATCHES = 4


class BilevelSearchMixin(CallbackSupportMixin):
    """Shared machinery; subclasses set the class attributes below.

    ``_param_name``: user-facing name of the hyperparameter (``"alpha"``,
    ``"C"``); ``_param_sign``: +1 when ``theta = log(param)``, -1 when
    ``theta = -log(param)`` (C is an inverse penalty strength).
    """

    _param_name = "alpha"
    _param_sign = 1.0

    def _check_common_params(self):
        method = check_hypergradient(self.hypergradient, HYPERGRADIENT_METHODS)
        for name in ("max_iter", "adjoint_max_iter"):
            check_positive_int(getattr(self, name), name)
        check_tol(self.tol)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(
                "fit_intercept must be a bool; got "
                f"{type(self.fit_intercept).__name__}."
            )
        return method

    def _linear_scores(self, X):
        """``X @ coef_.T + intercept_`` for validated, fitted-shape input."""
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32],
            reset=False,
        )
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def _attach(self, objective, start_time):
        """Give the objective the fit's clock and the hyperparameter's name."""
        objective.start_time = start_time
        objective.param_name, objective.param_sign = self._param_name, self._param_sign

    def _begin_search(self, objective, start_time, X, y):
        """Attach the objective to this fit: clock, names and callbacks."""
        self._attach(objective, start_time)
        self._callback_begin(objective, X, y)

    def _check_solver(self, n_samples, method):
        """The solver to use: ``solver``, or for "auto" the data size's."""
        if self.solver not in ("auto", "deterministic", "stochastic"):
            raise ValueError(
                "solver must be 'auto', 'deterministic' or 'stochastic'; got "
                f"{self.solver!r}."
            )
        batch = self.batch_size
        if not (
            (isinstance(batch, str) and batch == "auto")
            or (
                isinstance(batch, numbers.Integral)
                and not isinstance(batch, bool)
                and batch >= 1
            )
        ):
            raise ValueError(
                f"batch_size must be 'auto' or a positive integer; got {batch!r}."
            )
        if self.solver == "stochastic" and method != "auto":
            raise ValueError(
                f"hypergradient={method!r} applies to the deterministic solver; "
                "the stochastic solver computes its own (stochastic implicit "
                "differentiation). Leave hypergradient='auto'."
            )
        if self.solver == "auto":
            large = n_samples >= STOCHASTIC_MIN_SAMPLES and method == "auto"
            return "stochastic" if large else "deterministic"
        return self.solver

    def _stochastic_objective(self, parts, coef_groups, n_hyper, learn_intercept):
        """The stochastic mode's CV objective (one StochasticFold per split).

        ``parts`` holds ``(reader, fit, train, test)`` per split: the design
        matrix and data term the split reads, and its rows. Every fold has
        its own random generator, seeded from ``random_state``, so
        ``n_jobs`` does not change the results.
        """
        batch = DEFAULT_BATCH_SIZE if self.batch_size == "auto" else self.batch_size
        entropy = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        seeds = np.random.SeedSequence(int(entropy)).spawn(len(parts))
        stochastic_folds = [
            StochasticFold(
                reader,
                fit,
                train,
                test,
                coef_groups,
                n_hyper,
                self.fit_intercept,
                learn_intercept,
                batch,
                int(seed.generate_state(1)[0]),
            )
            for (reader, fit, train, test), seed in zip(parts, seeds, strict=True)
        ]
        # A fiftieth of an epoch of inner and adjoint steps per outer step:
        # max_iter=100 outer steps then make two epochs of each.
        steps = int(np.clip(np.ceil(stochastic_folds[0].epoch / 50), 10, 200))
        objective = StochasticObjective(
            stochastic_folds,
            n_hyper,
            steps,
            steps,
            VALIDATION_BATCHES,
            self.n_jobs,
            self.verbose,
        )
        return objective

    def _stochastic_search(self, X, y, fit, folds, coef_groups, n_hyper, box, start):
        """The stochastic mode on the estimator's own data; ``(objective, result)``.

        Every split reads its rows from ``X`` in place; ``fit`` is the data
        term over all rows (log-loss: the intercept is a learnt coordinate;
        squared error: it is the training mean of the centered targets).
        """
        reader = RowReader(X)
        objective = self._stochastic_objective(
            [(reader, fit, train, test) for train, test in folds],
            coef_groups,
            n_hyper,
            learn_intercept=isinstance(fit, LogLossFit),
        )
        self.hypergradient_ = "sid"
        self._begin_search(objective, start, X, y)
        return objective, self._run_stochastic(objective, n_hyper, *box)

    def _run_stochastic(self, objective, n_hyper, lo, hi):
        theta0 = self._initial_theta(n_hyper, lo, hi)
        if theta0 is None:
            # scikit-learn's default strength (alpha = 1, C = 1), in the box.
            theta0 = np.clip(np.zeros(n_hyper), lo, hi)
        return minimize_stochastic(
            objective, theta0, lo, hi, max_iter=self.max_iter, tol=self.tol
        )

    def _callback_begin(self, objective, X, y):
        """Open the fit's callback task; each evaluation becomes a subtask.

        ``set_callbacks`` (scikit-learn >= 1.9, e.g. ``ProgressBar()``) then
        follows the outer iterations live.
        """
        if hasattr(self, "_init_callback_context"):
            context = self._init_callback_context(max_subtasks=None)
            context.call_on_fit_task_begin(estimator=self, X=X, y=y)
            objective.callback = (context, self)

    def _callback_end(self, X, y):
        context = getattr(self, "_callback_fit_ctx", None)
        if context is not None:
            context.call_on_fit_task_end(
                estimator=self, X=X, y=y, reconstruction_attributes={}
            )

    def _make_folds(self, X, y, groups, sw, classifier):
        """The ``cv`` splits as index arrays, each with data on both sides."""
        cv = check_cv(self.cv, y, classifier=classifier)
        folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y, groups)]
        for k, (train, test) in enumerate(folds):
            if len(train) == 0 or len(test) == 0:
                raise ValueError(f"cv split {k} has an empty training or test part.")
            if not sw[train].sum() > 0 or not sw[test].sum() > 0:
                raise ValueError(
                    f"cv split {k} has zero total sample_weight in its training or "
                    "test part; its loss is undefined."
                )
        return folds

    # -------------------------------------------------------- parameter maps
    def _to_param(self, theta):
        values = np.exp(self._param_sign * np.asarray(theta, dtype=float))
        if (
            values.size == 1
            and isinstance(self.penalty, str)
            and self.penalty == "scalar"
        ):
            return float(values[0])
        return values

    def _initial_theta(self, n_hyper, lo, hi):
        name = self._param_name
        if self.warm_start and hasattr(self, f"{name}_"):
            previous = np.ravel(getattr(self, f"{name}_"))
            if previous.size == n_hyper:
                return np.clip(self._param_sign * np.log(previous), lo, hi)
        init = getattr(self, f"{name}_init")
        if init is None:
            return None
        init = np.asarray(init, dtype=float).ravel()
        if init.size not in (1, n_hyper):
            raise ValueError(
                f"{name}_init must be a scalar or hold {n_hyper} values; "
                f"got {init.size}."
            )
        if not np.all(np.isfinite(init)) or np.any(init <= 0):
            raise ValueError(f"{name}_init must hold positive, finite values.")
        theta = self._param_sign * np.log(np.broadcast_to(init, (n_hyper,)))
        return np.clip(theta, lo, hi)

    def _data_scaled_box(self, X, sw, *, scale, low, high, floor):
        """Default box of log penalty strengths, following the data's units.

        With ``ss_j`` the weighted sum of squares of centered column ``j``, a
        penalty matters for feature j when it is comparable to
        ``scale * ss_j`` (the data term's curvature). The box is
        ``(max(low * min_j, floor * max_j), high * max_j)`` in those units,
        so every feature can be left nearly unpenalized or shrunk away
        whatever its units, without going under the round-off level of the
        largest column (``floor``).
        """
        total = sw.sum()
        mean = np.asarray(X.T @ sw).ravel() / total
        if not self.fit_intercept:
            mean[:] = 0.0
        if sp.issparse(X):
            sq = np.asarray(X.multiply(X).T @ sw).ravel() - total * mean**2
        else:
            # Two passes, so that constant columns give (nearly) exact zeros;
            # in chunks of rows, so that no copy of X is made.
            sq = np.zeros(X.shape[1])
            for start in range(0, X.shape[0], 8192):
                block = X[start : start + 8192] - mean
                sq += sw[start : start + 8192] @ (block * block)
        sq = scale * sq[np.isfinite(sq)]
        if sq.size == 0 or not sq.max() > 0:  # only constant columns
            return float(np.log(low)), float(np.log(high))
        # Columns under 1e-20 of the largest are constants up to round-off.
        sq = sq[sq > 1e-20 * sq.max()]
        return (
            float(np.log(max(low * sq.min(), floor * sq.max()))),
            float(np.log(high * sq.max())),
        )

    # ---------------------------------------------------------- outer search
    def _run_outer(self, objective, theta0, n_hyper, lo, hi):
        decades = (hi - lo) / np.log(10.0)
        # A cheap objective is scanned finely (4 points a decade), one that
        # solves a training problem per point coarsely (1 every 2 decades).
        per_decade = 4.0 if objective.cheap_scan else 0.5
        n_scan = int(np.ceil(decades * per_decade)) + 1
        box = dict(tol=self.tol, max_iter=self.max_iter, on_gradient=objective.tighten)
        if theta0 is not None and n_hyper > 1 and not np.allclose(theta0, theta0[0]):
            return minimize_box(objective, theta0, lo, hi, **box)
        first = minimize_scalar(
            objective.common,
            lo,
            hi,
            x0=None if theta0 is None else float(theta0[0]),
            # Closed forms scan all points at once; iterative solves go point
            # by point along the path (see minimize_scalar).
            scan=objective.common_scan if objective.cheap_scan else None,
            n_scan=n_scan,
            **box,
        )
        if n_hyper == 1:
            return first
        start = np.full(n_hyper, self._box_start(objective, first))
        second = minimize_box(objective, start, lo, hi, **box)
        second.n_iter += first.n_iter
        second.converged = second.converged and first.converged
        return second

    @staticmethod
    def _box_start(objective, first):
        """Common value from which the many-hyperparameter search starts.

        The validation loss is flat in ``theta_j`` wherever the penalty on
        feature j is far below that feature's scale, so starting at a tiny
        best scalar would leave every hypergradient near zero (and the search
        would stop on that plateau). Among the scalar values whose loss is
        within 1% of the best, we start from the largest penalty, where the
        hypergradient sees every feature. The best point overall, scalar ones
        included, is what the estimator keeps.
        """
        tolerance = START_TOLERANCE * abs(first.f)
        common = [
            row[0][0]
            for row in objective.rows
            if np.all(row[0] == row[0][0]) and row[1] <= first.f + tolerance
        ]
        return max(common, default=float(first.theta[0]))

    # --------------------------------------------------------------- results
    def _finish_search(self, objective, result, split_scores, leave_one_out):
        """Warnings and the search's fitted attributes; returns the chosen theta."""
        rows = objective.rows
        losses = np.array([r[1] if r[5] else np.inf for r in rows])
        if not np.isfinite(losses).any():
            losses = np.array([r[1] for r in rows])
        best_index = int(np.argmin(losses))
        if not result.converged:
            warnings.warn(
                f"The outer loop did not converge in {self.max_iter} iterations "
                f"(tol={self.tol}); the best point found is used. Increase max_iter "
                "or tol.",
                ConvergenceWarning,
                stacklevel=3 + FIT_FRAMES,
            )
        if isinstance(objective, FoldsObjective):
            inner, adjoint = objective.failures()
            if inner or adjoint:
                warnings.warn(
                    f"{inner} inner solves and {adjoint} adjoint solves stopped at "
                    "their iteration cap before reaching their tolerance; the "
                    "hypergradient was approximate. Increase adjoint_max_iter.",
                    ConvergenceWarning,
                    stacklevel=3 + FIT_FRAMES,
                )
        results = build_cv_results(rows, self._param_name, self._to_param, split_scores)
        if leave_one_out:
            for key in [k for k in results if k.startswith("split")]:
                del results[key]
            results["std_test_score"] = np.full(len(rows), np.nan)
        theta = rows[best_index][0]
        self.cv_results_ = results
        self.best_index_ = best_index
        self.best_score_ = float(results["mean_test_score"][best_index])
        setattr(self, f"{self._param_name}_", self._to_param(theta))
        self.n_iter_ = int(result.n_iter)
        self.n_splits_ = split_scores.shape[1] if not leave_one_out else 1
        return theta
