"""The one fit pipeline of every ``Bilevel*CV`` estimator.

:class:`BaseBilevelCV` owns ``fit``: validate the input, encode the targets,
build the coefficient-to-hyperparameter layout, the box, the folds, pick the
solver, build the CV objective, run the outer search, score the evaluations,
refit and fill the fitted attributes. :class:`~skbilevel.HypergradientSearchCV`
runs the same search (:meth:`BaseBilevelCV._bilevel_search`) on the
preprocessed parts of its folds. A model supplies hooks only:

* ``_target_info(y, sample_weight)`` / ``_encode(y, info)``: validate and
  encode targets (class weights follow the weighted class counts);
* ``_layout(n_features, info)``: the hyperparameter group of every coefficient;
* ``_fold_problems(splits, info, layouts, method)``: every fold's inner problem
  (one layout per split: preprocessing may give folds different widths);
* ``_can_factorize(splits, layout)``: whether "direct" fits in memory;
* ``_closed_form_objective(...)``: an exact shortcut, if the model has one;
* ``_data_term(targets, sw, info)``: the stochastic mode's data term;
* ``_refit(...)``: the final fit on all the data;
* ``_response_model(info)``: the stand-in that scorers read predictions from;
* ``_fold_estimator(coef, intercept, info)``: a fold's model as the fitted
  scikit-learn estimator it is (for custom scoring callables);

and class attributes: the hyperparameter's name and sign, the default box.
"""

import numbers
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, _fit_context, is_regressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.metrics._scorer import _BaseScorer, _PassthroughScorer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    assert_all_finite,
    check_is_fitted,
    validate_data,
)

from ._docs import DocLinkMixin
from ._folds import Splits, check_folds
from ._hypergradient import HYPERGRADIENT_METHODS
from ._objectives import FoldsObjective
from ._outer import OuterResult, minimize_box, minimize_scalar, minimize_stochastic
from ._problems._ridge import column_moments, dense_column_summary
from ._quadratic import minimize_quadratic
from ._results import build_cv_results
from ._stochastic import RowReader, StochasticFold, StochasticObjective
from ._validation import (
    as_float64_data,
    check_bounds,
    check_sample_weight,
    check_square_range,
    warn_user,
)

try:  # scikit-learn >= 1.9 ships a callback API (e.g. sklearn.callback.ProgressBar)
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # pragma: no cover - older scikit-learn

    class CallbackSupportMixin:
        """Stand-in: scikit-learn < 1.9 has no callbacks."""

    def with_callbacks(method):
        return method


__all__ = [
    "BaseBilevelCV",
    "CallbackSupportMixin",
    "Layout",
    "Targets",
    "with_callbacks",
]

# Scalar values within this fraction of the best scalar loss may start the
# many-hyperparameter search (see BaseBilevelCV._box_start).
START_TOLERANCE = 1e-2
# Iterations without a held-out gain after which the guarded search stops:
# the held-out loss moves little in the first steps away from a common value.
GUARD_PATIENCE = 20
# Fewest samples for the guard: a third held out must be able to tell a
# gain from noise (and sklearn's sample-weight checks use fewer rows: the
# guard draws its held-out samples by row, so it cannot follow weights).
GUARD_MIN_SAMPLES = 100
# "auto" leaves the guard off from this many samples per strength on: the CV
# loss's optimism from tuning p strengths is about p / n of it (0.1% here),
# far below what the guard can detect, and the guard cost 3.3x the time and
# 1.9x the memory of the plain per-feature search on 100000x100.
GUARD_SAMPLES_PER_STRENGTH = 1000
# How many standard errors of its held-out gain a point of the path must gain
# over the shared strength to be kept (see BaseBilevelCV._guarded_choice).
GUARD_STANDARD_ERRORS = 2.0
# solver="auto" weighs the two solvers' costs (see stochastic_pays), in
# passes over the data (one pass: X @ W and X.T @ G). The stochastic mode
# takes about STOCHASTIC_PASSES of them whatever the number of strengths
# (two epochs of inner and adjoint mini-batch steps, their overhead, the
# deterministic refit; measured 150 to 215 with benchmarks/
# bench_solver_choice.py). It is picked when the deterministic search is
# estimated at STOCHASTIC_COST_RATIO times that and at least
# STOCHASTIC_MIN_FLOPS (about 10 s on 2 cores), on at least
# STOCHASTIC_MIN_SAMPLES samples (its mini-batch noise needs many).
STOCHASTIC_PASSES = 150.0
STOCHASTIC_COST_RATIO = 2.0
STOCHASTIC_MIN_FLOPS = 2.5e10
STOCHASTIC_MIN_SAMPLES = 100_000
# Mini-batch size of the stochastic mode for batch_size="auto".
DEFAULT_BATCH_SIZE = 1024
# Validation mini-batches averaged in each stochastic hypergradient.
VALIDATION_BATCHES = 4


@dataclass
class Targets:
    """What a model learnt from the whole ``y``.

    Attributes
    ----------
    n_out : int
        Number of output columns of the coefficients.
    ndim : int
        Dimension of the user's ``y`` (1 or 2).
    classes : ndarray or None
        Class labels (classifiers).
    class_weight : ndarray or None
        Weight of every encoded class, multiplied into the sample weights.
    """

    n_out: int
    ndim: int = 1
    classes: np.ndarray = None
    class_weight: np.ndarray = None

    def sample_multiplier(self, encoded):
        """Per-sample class weights of encoded targets, or None."""
        return None if self.class_weight is None else self.class_weight[encoded]


@dataclass
class Layout:
    """The hyperparameter group of every coefficient.

    Attributes
    ----------
    group_idx : ndarray of shape (n_params, n_out), dtype int64
        Group of every coefficient of the inner problem, -1 for unpenalized
        ones (an intercept row).
    coef_groups : ndarray of shape (n_features, n_out), dtype int64
        The same, for the feature coefficients only.
    n_hyper : int
    labels : ndarray or None
        The distinct group ids of an array ``penalty``.
    """

    group_idx: np.ndarray
    coef_groups: np.ndarray
    n_hyper: int
    labels: np.ndarray = None

    @property
    def shared(self):
        """Whether every output's coefficients share one strength."""
        return bool(np.all(self.coef_groups == self.coef_groups[:1, :]))


@dataclass
class SearchOutcome:
    """What :meth:`BaseBilevelCV._bilevel_search` found."""

    objective: object
    result: object
    layout: Layout
    method: str
    solver: str
    best_index: int
    theta: np.ndarray
    guarded: object = None  # the early-stopping guard's objective, if any
    bounds: tuple = None  # the (lo, hi) box of theta that was searched


def common_constraints(name, per_output):
    """``_parameter_constraints`` shared by every ``Bilevel*CV`` estimator."""
    return {
        "penalty": [
            StrOptions({"scalar", "per_feature", "per_column", per_output}),
            "array-like",
        ],
        f"{name}_init": [
            Interval(numbers.Real, 0, None, closed="neither"),
            "array-like",
            None,
        ],  # fmt: skip
        f"{name}_bounds": ["array-like", None],
        "fit_intercept": ["boolean"],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "hypergradient": [StrOptions({"auto", *HYPERGRADIENT_METHODS})],
        "adjoint_max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_jobs": [numbers.Integral, None],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "solver": [StrOptions({"auto", "deterministic", "stochastic"})],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "random_state": ["random_state"],
        "early_stopping": ["boolean", StrOptions({"auto"})],
    }


def _named_values(names, values, name):
    """``values`` indexed by ``names``: a pandas Series, or a dict without pandas."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        return dict(zip(names.tolist(), values.tolist(), strict=True))
    return pd.Series(values, index=pd.Index(names, name="strength of"), name=name)


def search_results(estimator, objective, splits, info, params_of, test_rows):
    """``(cv_results_, kept, position)`` of a model's own search, shared by
    every estimator: one row per reported evaluation (``kept``, their
    evaluation numbers; ``position``, each evaluation's row), scored by
    the estimator's ``scoring`` (None: minus the validation losses the
    search computed) on the validation rows.

    ``params_of(record)`` gives a row's parameters; ``test_rows()`` every
    split's validation design, read once and only when a fitted split model
    needs the rows (scikit-learn's scorers read decision values instead).
    """
    kept, position = objective.reported_rows()
    records = [objective.records[i] for i in kept]
    if estimator.scoring is None:
        scores = np.array([-r.split_losses for r in records])
    else:
        scorer = check_scoring(estimator, scoring=estimator.scoring)
        scores = np.full((len(records), splits.n_splits), np.nan)
        weights = splits.score_weight or [None] * splits.n_splits
        rows = None
        for row, i in enumerate(kept):
            view = estimator._scoring_view(objective, i, info, [scorer])
            if view is None:
                continue  # stochastic estimates: no model kept
            models, inputs = view
            if inputs is None:  # fitted split models read the rows
                rows = test_rows() if rows is None else rows
                inputs = rows
            for k, (model, X, y_true, weight) in enumerate(
                zip(models, inputs, splits.y_test, weights, strict=True)
            ):
                kwargs = {} if weight is None else {"sample_weight": weight}
                scores[row, k] = scorer(model, X, y_true, **kwargs)
    extra = [
        # The evaluation's number (as verbose prints it).
        ("iter", np.array(kept)),
        ("time", np.array([r.elapsed for r in records])),
        ("hypergradient_norm", np.array([r.hypergradient_norm for r in records])),
    ]
    params = [params_of(r) for r in records]
    results = build_cv_results(params, {"score": scores}, extra=extra)
    if splits.leave_one_out:  # one split: no spread
        for key in [k for k in results if k.startswith("split")]:
            del results[key]
        results["std_test_score"] = np.full(len(records), np.nan)
    # Every row holds a value: no masked entries in its param_<name>.
    for key in [k for k in results if k.startswith("param_")]:
        results[key].mask = False
    return results, kept, position


def round_trip(values):
    """Values rounded to 14 significant digits, so that a strength read back
    from its logarithm is the number it was (``exp(log(1.0))`` is
    1.0000000000000009); 1e-14 is far below any strength's own accuracy."""
    values = np.asarray(values, dtype=float)
    out = np.array([float(f"{v:.14g}") for v in values.ravel()])
    return out.reshape(values.shape)


def stochastic_pays(n_samples, deterministic_passes, pass_flops):
    """Whether ``solver="auto"`` takes the stochastic mode.

    Parameters
    ----------
    n_samples : int
    deterministic_passes : float
        Estimated cost of the deterministic search, in passes over the data.
    pass_flops : float
        Floating-point operations of one pass (``2 * entries * n_outputs``).

    Returns
    -------
    pays : bool
    """
    return bool(
        n_samples >= STOCHASTIC_MIN_SAMPLES
        and deterministic_passes >= STOCHASTIC_COST_RATIO * STOCHASTIC_PASSES
        and deterministic_passes * pass_flops >= STOCHASTIC_MIN_FLOPS
    )


class BaseBilevelCV(DocLinkMixin, CallbackSupportMixin, BaseEstimator):
    """Shared fit pipeline; subclasses supply the hooks listed in the module doc.

    ``_param_name``: user-facing name of the hyperparameter (``"alpha"``,
    ``"C"``); ``_param_sign``: +1 when ``theta = log(param)``, -1 when
    ``theta = -log(param)`` (C is an inverse penalty strength);
    ``_default_box``: the data-scaled default box (see :meth:`_data_scaled_box`);
    ``_value_tol``: the inner tolerance of value-only evaluations
    (see :class:`~skbilevel._objectives.FoldsObjective`);
    ``_writable_X``: whether the deterministic kernels need a writable copy
    of dense X (a read-only memory map is otherwise read in place);
    ``_exact_leave_one_out``: whether ``cv=None`` is the model's closed-form
    leave-one-out (else it is scikit-learn's default 5-fold);
    ``_path_scan_per_decade``: scan points per decade when every point
    solves the folds' training problems; ``_scan_derivatives``: whether that
    scan evaluates derivatives once it has descended (and stops where they
    say the loss rises).
    """

    _param_name = "alpha"
    _param_sign = 1.0
    _per_output = "per_target"  # the penalty option with one strength per output
    # The floor lets columns whose scales differ by 1e8 keep their full range.
    _default_box = dict(scale=1.0, low=1e-6, high=1e6, floor=1e-22)
    _value_tol = None
    _writable_X = True
    _exact_leave_one_out = False  # whether cv=None means exact leave-one-out
    # Scan points per decade of an objective that solves every fold per point.
    _path_scan_per_decade = 0.5
    # Whether the scan evaluates derivatives once it has descended (see
    # minimize_scalar): for models whose derivative costs little.
    _scan_derivatives = False

    # ------------------------------------------------------------------- fit
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, groups=None):
        """Tune the strengths by hypergradient descent, then refit on all data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values (class labels of any type for classifiers).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights, used in training and validation
            losses alike (and passed to ``scoring``).
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        start_time = time.perf_counter()
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32],
            multi_output=is_regressor(self),
            y_numeric=is_regressor(self),
            # Checked below, in the pass that summarizes dense X's columns.
            ensure_all_finite=False,
        )
        dtype = X.dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        info = self._target_info(y, sample_weight)
        targets = self._encode(y, info)
        sw = check_sample_weight(sample_weight, X, info.sample_multiplier(targets))
        summary = dense_column_summary(X, sw)
        if summary is None:  # a NaN or infinity seen, or no pass (other layouts)
            assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
        loo = self._leave_one_out
        n_hyper = self._layout(X.shape[1], info).n_hyper
        solver = self._choose_solver(
            X.shape, X, info.n_out, n_hyper, self._check_params(loo), loo
        )
        # The stochastic and quadratic modes read dense X in place (BLAS,
        # row gathers and fused passes only), a read-only memory map included.
        writable = self._writable_X and solver not in ("stochastic", "quadratic")
        X = as_float64_data(X, writable=writable)
        folds = None
        if not loo:
            folds = check_folds(
                self.cv, X, y, groups, sw, classifier=info.classes is not None
            )
        splits = Splits.from_indices(X, targets, sw, folds, y, sample_weight)
        splits.groups = None if groups is None else np.asarray(groups)
        if summary is not None:
            splits.column_summary = (X, summary)
        callback = self._callback_begin(X, y)
        outcome = self._bilevel_search(splits, info, start_time, callback=callback)

        self._store_search(outcome, splits, info)
        warm = outcome.objective.split_coefficients(outcome.best_index)
        coef, intercept = self._refit(
            X, targets, sw, info, outcome.layout, outcome.theta, warm, outcome.objective
        )
        self.coef_ = coef.astype(dtype, copy=False)
        self.intercept_ = (
            float(intercept) if np.ndim(intercept) == 0 else intercept.astype(dtype)
        )
        if info.classes is not None:
            self.classes_ = info.classes
        self._callback_end(X, y)
        return self

    # --------------------------------------------------------------- checks
    def _check_params(self, leave_one_out):
        """Checks the constraint language cannot say; returns the method.

        ``leave_one_out``: whether the search runs exact leave-one-out (the
        search's own folds make ``cv`` irrelevant).
        """
        name = self._param_name
        bounds = getattr(self, f"{name}_bounds")
        if bounds is not None:
            check_bounds(bounds, f"{name}_bounds")
        method = self.hypergradient
        if leave_one_out:
            if method not in ("auto", "direct"):
                raise ValueError(
                    "cv=None uses the closed-form leave-one-out hypergradient: "
                    f"hypergradient must be 'auto' or 'direct', got {method!r}."
                )
            if self.solver in ("stochastic", "quadratic"):
                raise ValueError(
                    "cv=None is exact leave-one-out (deterministic); the "
                    f"{self.solver} solver needs hold-out splits (cv=5, ...)."
                )
        if self.solver in ("stochastic", "quadratic") and method != "auto":
            raise ValueError(
                f"hypergradient={method!r} applies to the deterministic solver; "
                f"the {self.solver} solver computes its own. Leave "
                "hypergradient='auto'."
            )
        return method

    def _choose_solver(self, shape, X, n_out, n_hyper, method, leave_one_out):
        """The solver to use: ``solver``, or for "auto" the cheaper one's.

        "auto" compares :meth:`_deterministic_passes` with the stochastic
        mode's cost (see :func:`stochastic_pays`); an explicit
        ``hypergradient`` method or exact leave-one-out keeps the
        deterministic solver.
        """
        if self.solver != "auto":
            return self.solver
        if method != "auto" or leave_one_out:
            return "deterministic"
        n_samples, n_features = shape
        passes = self._deterministic_passes(n_samples, n_features, n_out, n_hyper)
        # X (or a part of the data, in the search) gives the density.
        density = X.nnz / max(np.prod(X.shape), 1) if sp.issparse(X) else 1.0
        pass_flops = 2.0 * density * n_samples * n_features * n_out
        pays = stochastic_pays(n_samples, passes, pass_flops)
        return "stochastic" if pays else "deterministic"

    def _deterministic_passes(self, n_samples, n_features, n_out, n_hyper):
        """Estimated cost of the deterministic search, in passes over the data."""
        raise NotImplementedError

    @property
    def _leave_one_out(self):
        return self.cv is None and self._exact_leave_one_out

    # -------------------------------------------------------------- search
    def _bilevel_search(self, splits, info, start_time, *, callback=None, label=""):
        """Run the bilevel search on ``splits``; warnings name ``label``.

        Shared by :meth:`fit` and :class:`~skbilevel.HypergradientSearchCV`;
        it reads the estimator's parameters and sets no attribute.
        """
        method = self._check_params(splits.leave_one_out)
        # Dense X: one pass for the range check and the default box (None
        # for other layouts: each then reads what it needs).
        known = splits.column_summary
        if known is not None and known[0] is splits.bounds_data[0]:
            summary = known[1]
        else:
            summary = dense_column_summary(*splits.bounds_data)
        largest = None if summary is None else summary[2]
        # Kept for the checks of the same matrix that follow (one pass less).
        splits.largest_entry = (
            splits.bounds_data[0],
            check_square_range(splits.bounds_data[0], "X", largest=largest),
        )
        layouts = self._split_layouts(splits, info)
        layout, widest = layouts[0], max(layouts, key=lambda lay: lay.group_idx.size)
        n_hyper = layout.n_hyper
        solver = self._choose_solver(
            (splits.n_samples, splits.n_features),
            splits.bounds_data[0],
            info.n_out,
            n_hyper,
            method,
            splits.leave_one_out,
        )
        lo, hi = self._log_bounds(
            *splits.bounds_data, splits.bounds_targets, summary=summary
        )
        if np.ndim(lo) or np.ndim(hi):  # one (low, high) per hyperparameter
            sizes = {np.size(lo), np.size(hi)} - {1}
            if sizes - {n_hyper}:
                raise ValueError(
                    f"{self._param_name}_bounds arrays must hold {n_hyper} values, "
                    f"one per hyperparameter; got {sorted(sizes)}."
                )
            lo, hi = (np.broadcast_to(side, (n_hyper,)).copy() for side in (lo, hi))
            if np.all(lo == lo[0]) and np.all(hi == hi[0]):  # one box after all
                lo, hi = float(lo[0]), float(hi[0])
        theta0 = self._initial_theta(n_hyper, lo, hi)
        # The stochastic and quadratic modes start at scikit-learn's default
        # strength (alpha = 1, C = 1), in the box, unless told otherwise.
        start = np.clip(np.zeros(n_hyper), lo, hi) if theta0 is None else theta0
        if solver == "quadratic":
            objective = self._quadratic_objective(splits, info, layouts, start)
            method = "newton-model"
            if objective is None:  # "auto", and splits the mode does not take
                solver, method = "deterministic", self.hypergradient
        if solver == "stochastic":
            objective = self._stochastic_objective(splits, info, layouts)
            method = "sid"
        elif solver == "deterministic":
            if method == "auto":
                method = "direct" if self._can_factorize(splits, widest) else "cg"
            elif method == "direct" and not self._can_factorize(splits, widest):
                raise ValueError(
                    "hypergradient='direct' needs a factorization that is too large "
                    f"for {splits.min_train_size} training samples and "
                    f"{splits.n_features} features; use 'cg'."
                )
            objective = self._closed_form_objective(splits, info, layout, method)
            if objective is None:
                objective = self._folds_objective(splits, info, layouts, method)

        # The guard judges its path against the best common value.
        common = not np.ndim(lo) and (theta0 is None or np.all(theta0 == theta0[0]))
        guarded = None
        if self._guard(splits, solver, n_hyper, common):
            guarded = self._guarded_objective(splits, info, method)
        for each in (objective, guarded):
            if each is not None:
                each.start_time, each.callback = start_time, callback
                each.param_name, each.param_sign = self._param_name, self._param_sign
        if solver == "stochastic":
            result = minimize_stochastic(
                objective, start, lo, hi, max_iter=self.max_iter, tol=self.tol
            )
        elif solver == "quadratic":
            result = minimize_quadratic(
                objective, start, lo, hi, max_iter=self.max_iter, tol=self.tol
            )
        else:
            result = self._run_outer(objective, theta0, n_hyper, lo, hi, guarded)
        self._warn_outcome(objective, result, label)
        best = self._choose(objective, method, label)
        records = objective.records
        return SearchOutcome(
            objective, result, layout, method, solver, best, records[best].theta,
            guarded, (lo, hi),
        )  # fmt: skip

    def _guard(self, splits, solver, n_hyper, common):
        """Whether the many-strength search runs under the early-stopping guard.

        See ``early_stopping``: "auto" guards strengths per feature and per
        group of features (many, alike hyperparameters that overfit the
        validation folds); strengths per target or class are few. The guard
        needs the deterministic solver, K-fold-like splits (every sample
        validated once), enough samples, and a common starting value (its
        reference).
        """
        setting = self.early_stopping
        if n_hyper == 1 or setting is False:
            return False
        many = not (isinstance(self.penalty, str) and self.penalty == self._per_output)
        if setting == "auto" and (
            not many or splits.n_samples >= GUARD_SAMPLES_PER_STRENGTH * n_hyper
        ):
            return False
        reasons = []
        if solver == "stochastic":
            reasons.append("the stochastic solver (it averages its iterates instead)")
        if solver == "quadratic":
            reasons.append("the quadratic solver (for many samples per strength)")
        if splits.n_samples < GUARD_MIN_SAMPLES:
            reasons.append(
                f"fewer than {GUARD_MIN_SAMPLES} samples (one in three is held "
                "out, and must tell a gain from noise)"
            )
        if not splits.can_hold_out:
            reasons.append(
                "splits that do not validate every sample exactly once "
                "(time series, shuffle-split)"
            )
        if not common:
            reasons.append(
                "different bounds per hyperparameter or a starting point that "
                "differs between them (the guard compares its path with the "
                "best common value)"
            )
        if setting == "auto" or not reasons:
            return not reasons
        raise ValueError(
            "early_stopping=True cannot hold samples out with "
            + "; ".join(reasons)
            + ". Use early_stopping='auto' or False."
        )

    def _folds_objective(self, splits, info, layouts, method, problems=None):
        """The generic K-fold objective of ``splits``: the model's fold
        problems (``problems``, or those of :meth:`_fold_problems`)."""
        if problems is None:
            problems = self._fold_problems(splits, info, layouts, method)
        return FoldsObjective(
            problems,
            method,
            self.adjoint_max_iter,
            self.n_jobs,
            self.verbose,
            value_tol=self._value_tol,
        )

    def _guarded_objective(self, splits, info, method):
        """The early-stopping guard's objective (see :meth:`Splits.guarded`)."""
        guarded, held = splits.guarded(stratify=info.classes is not None)
        objective = self._folds_objective(
            guarded, info, self._split_layouts(guarded, info), method
        )
        objective.hold_out(held)
        return objective

    def _split_layouts(self, splits, info):
        """The layout of every split; one strength per feature needs one width."""
        widths = sorted(set(splits.widths))
        width_free = ("scalar", self._per_output)  # strengths that ignore widths
        if len(widths) > 1 and not (
            isinstance(self.penalty, str) and self.penalty in width_free
        ):
            raise ValueError(
                "The preprocessing gives the folds different numbers of features "
                f"({widths}), so one strength per feature or per group of features "
                "cannot follow them. Use penalty='scalar', or make every fold "
                "produce the same columns (e.g. OneHotEncoder(categories=[...]) "
                "listing every category)."
            )
        layouts = {width: self._layout(width, info) for width in widths}
        return [layouts[width] for width in splits.widths]

    def _choose(self, objective, method, label):
        """The best accurate evaluation, its loss that of the model it gives.

        Iterative methods rank points by losses of loosely solved problems:
        the best one is re-solved accurately (``objective.polish``), and so is
        the next best while the polished loss loses its rank (five at most).
        Under the early-stopping guard the records hold the common-value
        search and the guard's choice (its path ran on the guard's own
        folds), so the choice is between the two.
        """
        records = objective.records
        # A point evaluated twice is reported (cv_results_) as its last
        # evaluation: only that one may be chosen and polished. (The guard's
        # kept point is evaluated again on the user's folds, often at the
        # common value searched before: choosing and polishing the earlier
        # record reported the later one's loosely solved loss as best_score_,
        # 0.0201 for a model whose CV MSE is 0.0130.)
        rows, position = objective.reported_rows()
        shown = np.array([rows[p] for p in position]) == np.arange(len(records))
        losses = np.array([
            r.loss if r.accurate and s else np.inf
            for r, s in zip(records, shown, strict=True)
        ])  # fmt: skip
        if not np.isfinite(losses).any():
            losses = np.where(shown, [r.loss for r in records], np.inf)
        polished = {}
        while len(polished) < 5:
            best = int(np.argmin(losses))
            if best in polished:
                break
            polished[best] = objective.polish(best)
            losses[best] = records[best].loss
            others = np.delete(losses, list(polished))
            # Near-ties do not matter: stop unless another point is clearly better.
            if not others.size or losses[best] <= others.min() + 1e-6 * abs(
                losses[best]
            ):
                break
        best = min(polished, key=lambda i: losses[i])
        seen, exact = polished[best], records[best].loss
        # Differences at the round-off level of the losses' scale do not count.
        floor = 1e-12 * max(abs(r.loss) for r in records)
        if abs(seen - exact) > 1e-3 * abs(exact) + floor:
            where = f" of {label}" if label else ""
            warn_user(
                f"hypergradient={method!r} solved the training problems{where} "
                "too loosely for this data's CV loss: at the chosen strength it is "
                f"{exact:.6g}, not the {seen:.6g} the search saw (best_score_ and "
                "cv_results_ report the accurate value; the search itself may "
                "have been misled). hypergradient='direct' searches on accurate "
                "values where it fits in memory.",
                ConvergenceWarning,
            )
        return best

    @staticmethod
    def _guarded_choice(guarded):
        """The point of the guarded path that the held-out samples support.

        The path starts at the best common value of the guard's folds (the
        evaluation ``guarded.origin_index``) and follows the hypergradient of
        the kept samples. Its point of lowest held-out loss is kept only if it
        beats the start by more than ``GUARD_STANDARD_ERRORS`` standard errors
        of the paired, per-sample difference of held-out losses; otherwise
        the common value is kept: a move away from the shared strength must
        gain more than the held-out samples' noise (and the choice of the
        best among many points).
        """
        records = guarded.records
        start = guarded.origin_index
        path = [start] + [
            i
            for i in range(start + 1, len(records))
            if records[i].accurate and np.isfinite(records[i].holdout_loss)
        ]
        held = np.array([records[i].holdout_loss for i in path])
        best = int(np.argmin(held))
        weights = guarded.held_weights[0][guarded.held_rows[0]]
        weights = weights / weights.sum()
        gain = records[path[0]].holdout_rows - records[path[best]].holdout_rows
        mean = float(weights @ gain)
        se = float(np.sqrt(weights**2 @ (gain - mean) ** 2))
        return path[best] if mean > GUARD_STANDARD_ERRORS * se else path[0]

    def _warn_outcome(self, objective, result, label):
        where = f" of {label}" if label else ""
        if not result.converged:
            warn_user(
                f"The outer loop{where} did not converge in {self.max_iter} "
                f"iterations (tol={self.tol}); the best point found is used. "
                "Increase max_iter or tol.",
                ConvergenceWarning,
            )
        inner, adjoint = objective.failures()
        if inner or adjoint:
            # adjoint_max_iter caps the adjoint solves only; the inner solves'
            # cap is the solver's own.
            advice = " Increase adjoint_max_iter." if adjoint else ""
            if inner:
                advice += (
                    " The training problems were hard to solve to the "
                    "hypergradient's accuracy (nearly collinear features or very "
                    "weak penalties): a narrower box of strengths helps."
                )
            warn_user(
                f"{inner} inner solves and {adjoint} adjoint solves{where} stopped "
                "at their iteration cap before reaching their tolerance; the "
                f"hypergradient was approximate.{advice}",
                ConvergenceWarning,
            )

    def _stochastic_objective(self, splits, info, layouts):
        """The stochastic mode's CV objective (one StochasticFold per split).

        Every fold has its own random generator, seeded from ``random_state``,
        so ``n_jobs`` does not change the results.
        """
        batch = DEFAULT_BATCH_SIZE if self.batch_size == "auto" else self.batch_size
        entropy = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        seeds = np.random.SeedSequence(int(entropy)).spawn(splits.n_splits)
        parts = list(splits.readers())
        readers = {}  # one reader per matrix: index splits share it
        by_matrix = {}  # the folds of each matrix
        for k, (X, targets, sw, _, _) in enumerate(parts):
            if id(X) not in readers:
                readers[id(X)] = RowReader(X), self._data_term(targets, sw, info)
            by_matrix.setdefault(id(X), []).append(k)
        means = [None] * len(parts)
        if self.fit_intercept:
            # The training rows' means of all the folds of a matrix (index
            # splits share one, and its weights), in one pass over it.
            for key, ks in by_matrix.items():
                rows = [parts[k][3] for k in ks]
                sw = parts[ks[0]][2]
                for k, mean in zip(
                    ks, readers[key][0].weighted_means(rows, sw), strict=True
                ):
                    means[k] = mean
        folds = []
        for (X, _, _, train, test), seed, layout, mean in zip(
            parts, seeds, layouts, means, strict=True
        ):
            reader, data_term = readers[id(X)]
            fold_class, options = self._stochastic_fold(layout)
            folds.append(
                fold_class(
                    reader,
                    data_term,
                    train,
                    test,
                    layout.coef_groups,
                    layout.n_hyper,
                    self.fit_intercept,
                    batch,
                    int(seed.generate_state(1)[0]),
                    mean=mean,
                    **options,
                )
            )
        # A fiftieth of an epoch of inner and adjoint steps per outer step:
        # max_iter=100 outer steps then make two epochs of each.
        steps = int(np.clip(np.ceil(folds[0].epoch / 50), 10, 200))
        return StochasticObjective(
            folds, layouts[0].n_hyper, steps, steps, VALIDATION_BATCHES, self.n_jobs,
            self.verbose,
        )  # fmt: skip

    def _quadratic_objective(self, splits, info, layouts, theta0):
        """The quadratic mode's CV objective (models that have one), or None
        under ``solver="auto"`` where ``splits`` do not suit it."""
        raise ValueError(f"{type(self).__name__} has no quadratic solver.")

    def _stochastic_fold(self, layout):
        """The stochastic mode's fold class for ``layout``, and its options."""
        return StochasticFold, {}

    def _run_outer(self, objective, theta0, n_hyper, lo, hi, guarded=None):
        """Deterministic outer search: 1-D scan and bracket, then the box method.

        With the early-stopping guard (``guarded``), the box method runs on
        the guard's objective from the best common value, stops once the
        held-out samples' loss stops improving, and the point it keeps is
        evaluated on the user's folds (the last evaluation).
        """
        box = dict(tol=self.tol, max_iter=self.max_iter, on_gradient=objective.tighten)

        def box_search(start, origin=None, **options):
            if guarded is None or origin is None:
                return minimize_box(objective, start, lo, hi, **options)
            # The guard runs from a common value (see _guard). Its folds train
            # on fewer samples, whose best common value is another: it is
            # searched again there, so that the path is judged against the
            # common value of its own folds.
            scalar = minimize_scalar(
                guarded.common, lo, hi, x0=float(origin[0]), tol=self.tol,
                max_iter=options["max_iter"], on_gradient=guarded.tighten,
            )  # fmt: skip
            n_iter = scalar.n_iter
            guarded_origin = np.full(n_hyper, float(scalar.theta[0]))
            start = np.full(n_hyper, self._box_start(guarded, scalar))
            guarded.origin_index = len(guarded.records)
            guarded(guarded_origin, True)  # the path's origin
            options.update(
                max_iter=options["max_iter"] - n_iter,
                on_gradient=guarded.tighten,
                monitor=lambda: guarded.records[-1].holdout_loss,
                patience=GUARD_PATIENCE,
            )
            converged = False
            if options["max_iter"] >= 1:
                result = minimize_box(guarded, start, lo, hi, **options)
                n_iter, converged = n_iter + result.n_iter, result.converged
            chosen = guarded.records[self._guarded_choice(guarded)].theta
            # The kept strengths relative to the common value, moved to the
            # common value of the user's folds.
            theta = np.clip(origin + (chosen - guarded_origin), lo, hi)
            f, _ = objective(theta, True)
            return OuterResult(theta, f, n_iter, converged)

        if np.ndim(lo):  # a box per hyperparameter: no common scalar phase
            start = 0.5 * (lo + hi) if theta0 is None else theta0
            return box_search(start, **box)
        decades = (hi - lo) / np.log(10.0)
        # A cheap objective is scanned finely (4 points a decade), one that
        # solves a training problem per point coarsely (1 every 2 decades,
        # unless the model's path solver gains from closer warm starts).
        per_decade = 4.0 if objective.cheap_scan else self._path_scan_per_decade
        n_scan = int(np.ceil(decades * per_decade)) + 1
        if theta0 is not None and n_hyper > 1 and not np.allclose(theta0, theta0[0]):
            return box_search(theta0, **box)
        first = minimize_scalar(
            objective.common,
            lo,
            hi,
            x0=None if theta0 is None else float(theta0[0]),
            # Closed forms scan all points at once; iterative solves go point
            # by point along the path (see minimize_scalar).
            scan=objective.common_scan if objective.cheap_scan else None,
            n_scan=n_scan,
            ties=objective.scan_tie,
            scan_derivatives=self._scan_derivatives,
            screen=objective.screen if objective.screens else None,
            **box,
        )
        if n_hyper == 1:
            return first
        # max_iter bounds both phases together.
        box["max_iter"] = self.max_iter - first.n_iter
        if box["max_iter"] < 1:
            first.converged = False
            return first
        start = np.full(n_hyper, self._box_start(objective, first))
        second = box_search(start, np.full(n_hyper, first.theta[0]), **box)
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
            r.theta[0]
            for r in objective.records
            if np.all(r.theta == r.theta[0]) and r.loss <= first.f + tolerance
        ]
        return max(common, default=float(first.theta[0]))

    # ------------------------------------------------------- hyperparameters
    def _to_param(self, theta):
        values = round_trip(np.exp(self._param_sign * np.asarray(theta, dtype=float)))
        if (
            values.size == 1
            and isinstance(self.penalty, str)
            and self.penalty == "scalar"
        ):
            return float(values[0])
        return values

    def _range_edges(self, theta, lo, hi):
        """``[(name, value, low, high)]``: every tuned strength at ``theta``
        and its range's ends, in the user's units (floats for one strength,
        arrays for many), from the searched box ``(lo, hi)`` of theta."""
        return [(self._param_name, *self._snapped(self._param_name, theta, lo, hi))]

    def _snapped(self, name, theta, lo, hi):
        """``(value, low, high)`` of strength ``name`` at log-strengths
        ``theta`` in the box ``(lo, hi)``, user units: a range given by the
        user is reported as given, and a value at its end is that end
        exactly (``exp(log(1e3))`` is 999.9999999999998)."""
        shape = np.shape(theta)
        value = self._to_param(theta)
        one = np.ndim(value) == 0  # one strength: reported as a float
        ends = [self._to_param(np.broadcast_to(side, shape)) for side in (lo, hi)]
        low, high = np.minimum(*ends), np.maximum(*ends)
        given = getattr(self, f"{name}_bounds", None)
        if given is not None:
            low, high = (
                np.full(np.shape(end), np.ravel(side)[0], dtype=float)
                if np.size(side) == 1
                else np.broadcast_to(np.asarray(side, dtype=float), np.shape(end))
                for side, end in zip(given, (low, high), strict=True)
            )
        for ends_exact in (low, high):
            value = np.where(
                np.isclose(value, ends_exact, rtol=1e-12, atol=0.0), ends_exact, value
            )
        if np.ndim(low) == 0 or (
            np.all(low == np.ravel(low)[0]) and np.all(high == np.ravel(high)[0])
        ):
            low, high = float(np.ravel(low)[0]), float(np.ravel(high)[0])
        else:
            low, high = np.array(low), np.array(high)
        value = float(np.ravel(value)[0]) if one else value
        return value, low, high

    def _warn_at_range_edges(self, outcome, label=""):
        """A ``ConvergenceWarning`` where a chosen strength sits at an end of
        its range (the CV loss may keep falling past it), naming the bounds
        to widen. Strengths per feature or group are left alone: many of
        them at an end (features switched off or left free) is the method
        working."""
        if not (
            isinstance(self.penalty, str)
            and self.penalty in ("scalar", self._per_output)
        ):
            return
        where = f" of {label}" if label else ""
        for name, value, low, high in self._range_edges(outcome.theta, *outcome.bounds):
            values = np.atleast_1d(value).astype(float)
            lows = np.broadcast_to(low, values.shape)
            highs = np.broadcast_to(high, values.shape)
            free = lows < highs
            for side, ends in (("lower", lows), ("upper", highs)):
                hit = free & np.isclose(values, ends, rtol=1e-9, atol=0.0)
                if hit.any():
                    shown = values[hit][0]
                    warn_user(
                        f"{name}_{where} = {shown:.4g} is at the {side} end of its "
                        f"range ({float(np.min(lows)):.4g}, "
                        f"{float(np.max(highs)):.4g}): the CV loss may keep "
                        f"falling past it. Widen {name}_bounds (the range used "
                        f"is in {name}_bounds_).",
                        ConvergenceWarning,
                    )

    def _search_params(self, theta, objective=None):
        """The final step's parameters at ``theta`` (a search's rows);
        ``objective`` is the search's (unused by the linear models)."""
        return {self._param_name: self._to_param(theta)}

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

    def _log_bounds(self, X, sw, targets=None, summary=None):
        """Box of log penalty strengths (theta), from the bounds or the data
        (``summary``: :func:`~skbilevel._problems._ridge.dense_column_summary`
        of ``X, sw``, if it ran)."""
        bounds = getattr(self, f"{self._param_name}_bounds")
        if bounds is None:
            return self._data_scaled_box(
                X, sw, targets, summary=summary, **self._default_box
            )
        low, high = check_bounds(bounds, f"{self._param_name}_bounds")
        return (low, high) if self._param_sign > 0 else (-high, -low)

    def _data_scaled_box(self, X, sw, targets, *, scale, low, high, floor,
                         summary=None):  # fmt: skip
        """Default box of log penalty strengths, following the data's units.

        With ``ss_j`` the weighted sum of squares of centered column ``j``, a
        penalty matters for feature j when it is comparable to
        ``scale * ss_j`` (the data term's curvature). The box is
        ``(max(low * min_j, floor * max_j), high * max_j)`` in those units,
        so every feature can be left nearly unpenalized or shrunk away
        whatever its units, without going under the round-off level of the
        largest column (``floor``). ``targets`` (the encoded targets of the
        same rows) are not used here; a model whose box follows them (the
        Lasso's ``alpha_max``) overrides this method.
        """
        mean, sq = column_moments(X, sw) if summary is None else summary[:2]
        if not self.fit_intercept:  # the squares about zero
            sq = sq + sw.sum() * mean**2
        sq = scale * sq[np.isfinite(sq)]
        if sq.size == 0 or not sq.max() > 0:  # only constant columns
            return float(np.log(low)), float(np.log(high))
        # Columns under 1e-20 of the largest are constants up to round-off.
        sq = sq[sq > 1e-20 * sq.max()]
        return (
            float(np.log(max(low * sq.min(), floor * sq.max()))),
            float(np.log(high * sq.max())),
        )

    # -------------------------------------------------------------- results
    def _store_search(self, outcome, splits, info):
        """The search's fitted attributes: results, best point, diagnostics."""
        results, _, position = search_results(
            self, outcome.objective, splits, info,
            lambda r: {self._param_name: self._to_param(r.theta)},
            lambda: [splits.test_design(k) for k in range(splits.n_splits)],
        )  # fmt: skip
        self.cv_results_ = results
        self.best_index_ = position[outcome.best_index]
        self.best_score_ = float(results["mean_test_score"][self.best_index_])
        strengths = self._to_param(outcome.theta)
        edges = self._range_edges(outcome.theta, *outcome.bounds)
        for name, value, low, high in edges:
            setattr(self, f"{name}_", value)
            setattr(self, f"{name}_bounds_", (low, high))
            if name == self._param_name and np.shape(value) == np.shape(strengths):
                strengths = value  # the snapped values (a range's end exactly)
        self._warn_at_range_edges(outcome)
        self.n_iter_ = int(outcome.result.n_iter)
        self.n_splits_ = splits.n_splits
        self.hypergradient_ = outcome.method
        self.solver_ = outcome.solver
        self.penalty_groups_ = outcome.layout.labels
        self.held_out_path_ = None
        guarded = outcome.guarded
        if guarded is not None and hasattr(guarded, "origin_index"):
            path = guarded.records[guarded.origin_index :]
            self.held_out_path_ = {
                self._param_name: [self._to_param(r.theta) for r in path],
                "held_out_loss": np.array([r.holdout_loss for r in path]),
                "fit_loss": np.array([r.loss for r in path]),
                "chosen": self._guarded_choice(guarded) - guarded.origin_index,
            }
        self.strength_names_ = self._strength_names(outcome.layout, info)
        self.strengths_ = _named_values(
            self.strength_names_, np.atleast_1d(strengths), self._param_name
        )

    def _strength_names(self, layout, info):
        """Name of every strength: its feature, group, output, or "all"."""
        if layout.labels is not None:
            return np.asarray(layout.labels).astype(str)
        if layout.n_hyper == 1:
            return np.array(["all"])
        if isinstance(self.penalty, str) and self.penalty == self._per_output:
            return np.asarray(self._output_names(info, layout.n_hyper)).astype(str)
        names = getattr(self, "feature_names_in_", None)
        if names is None or len(names) != layout.n_hyper:
            names = [f"x{i}" for i in range(layout.n_hyper)]
        return np.asarray(names).astype(str)

    def _output_names(self, info, n_outputs):
        """Names of the outputs that ``per_target``/``per_class`` strengths follow."""
        return [f"target {t}" for t in range(n_outputs)]

    def _scoring_view(self, objective, index, info, scorers):
        """What ``scorers`` read for evaluation ``index``: ``(models, inputs)``.

        scikit-learn's scorers only call ``predict``, ``predict_proba`` or
        ``decision_function``: they read the decision values the search already
        has (``inputs``) through a stand-in model. Any other callable gets what
        GridSearchCV would give it: a fitted scikit-learn estimator with the
        fold's coefficients, and ``inputs=None`` (the caller passes the
        validation rows). None when the evaluation kept no model.
        """
        coefficients = objective.split_coefficients(index)
        if coefficients is not None and not all(
            isinstance(s, (_BaseScorer, _PassthroughScorer)) for s in scorers
        ):
            return [self._fold_estimator(c, b, info) for c, b in coefficients], None
        predictions = objective.validation_predictions(index)
        if predictions is None:
            return None
        return [self._response_model(info)] * len(predictions), predictions

    # ----------------------------------------------------------- callbacks
    def _callback_begin(self, X, y):
        """Open the fit's callback task; each evaluation becomes a subtask.

        ``set_callbacks`` (scikit-learn >= 1.9, e.g. ``ProgressBar()``) then
        follows the outer iterations live.
        """
        if not hasattr(self, "_init_callback_context"):
            return None
        context = self._init_callback_context(max_subtasks=None)
        context.call_on_fit_task_begin(estimator=self, X=X, y=y)
        return context, self

    def _callback_end(self, X, y):
        context = getattr(self, "_callback_fit_ctx", None)
        if context is not None:
            context.call_on_fit_task_end(
                estimator=self, X=X, y=y, reconstruction_attributes={}
            )

    # ---------------------------------------------------------- prediction
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

    # ---------------------------------------------------------------- hooks
    def _closed_form_objective(self, splits, info, layout, method):
        """An exact objective that replaces the fold problems, or None."""
        return None
