"""HypergradientSearchCV: GridSearchCV's interface, hypergradient descent inside.

A search space mixes two kinds of entries:

* a ``(low, high)`` tuple on the regularization strength of the final step
  (``alpha`` of a ridge, ``C`` of a logistic regression) is tuned by
  hypergradient descent in log-space, inside that box;
* a list is searched exhaustively, exactly as GridSearchCV does.

Every combination of list values (a *candidate*) runs one bilevel search. Its
preprocessing steps are fitted once per fold, on the fold's training part
only, and their output is reused by every outer iteration. Each evaluated
point becomes one row of ``cv_results_``, scored with ``scoring``.
"""

import numbers
import time
from collections.abc import Mapping, Sequence
from inspect import signature

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import (
    BaseEstimator,
    RegressorMixin,
    _fit_context,
    clone,
    is_classifier,
)
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import FitFailedWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
)
from sklearn.metrics import check_scoring
from sklearn.metrics._scorer import _check_multimetric_scoring
from sklearn.model_selection import GridSearchCV, ParameterGrid, check_cv
from sklearn.model_selection._search import BaseSearchCV, _search_estimator_has
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import Bunch, _safe_indexing
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._tags import get_tags
from sklearn.utils.metadata_routing import (
    _routing_enabled,
    process_routing,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_method_params,
    _check_sample_weight,
    check_array,
    indexable,
)

from ._base import with_callbacks
from ._columns import column_groups
from ._docs import DocLinkMixin
from ._elastic_net import BilevelElasticNetCV, check_ratio_bounds
from ._folds import Splits
from ._kernel_ridge import BilevelKernelRidgeCV
from ._lasso import BilevelLassoCV
from ._logistic import BilevelLogisticCV
from ._objectives import map_folds
from ._problems._kernel import KERNELS
from ._results import build_cv_results
from ._ridge import BilevelRidgeCV
from ._validation import (
    as_float64_data,
    check_bounds,
    check_sample_weight,
    warn_user,
)

__all__ = ["HypergradientSearchCV"]

# The differentiable parameters of each supported final step, and the
# skbilevel estimator whose machinery tunes them (its ``<name>_bounds``).
_TUNABLE = {
    Ridge: (("alpha",), BilevelRidgeCV),
    LogisticRegression: (("C",), BilevelLogisticCV),
    Lasso: (("alpha",), BilevelLassoCV),
    ElasticNet: (("alpha", "l1_ratio"), BilevelElasticNetCV),
    BilevelRidgeCV: (("alpha",), BilevelRidgeCV),
    BilevelLogisticCV: (("C",), BilevelLogisticCV),
    BilevelLassoCV: (("alpha",), BilevelLassoCV),
    BilevelElasticNetCV: (("alpha", "l1_ratio"), BilevelElasticNetCV),
    KernelRidge: (("alpha", "gamma"), BilevelKernelRidgeCV),
    BilevelKernelRidgeCV: (("alpha", "gamma"), BilevelKernelRidgeCV),
}
# The skbilevel estimators a search may end with.
_BILEVEL = (
    BilevelRidgeCV,
    BilevelLogisticCV,
    BilevelLassoCV,
    BilevelElasticNetCV,
    BilevelKernelRidgeCV,
)


def _final_step(estimator):
    """``(prefix, final estimator)``: ``"name__"`` for a Pipeline's last step,
    ``"regressor__"`` before it inside a TransformedTargetRegressor."""
    target, estimator = _target_wrapper(estimator)
    prefix = "" if target is None else "regressor__"
    if isinstance(estimator, Pipeline):
        name, final = estimator.steps[-1]
        return f"{prefix}{name}__", final
    return prefix, estimator


def _target_wrapper(estimator):
    """``(TransformedTargetRegressor or None, the estimator it trains)``."""
    if isinstance(estimator, TransformedTargetRegressor):
        inner = estimator.regressor
        return estimator, LinearRegression() if inner is None else inner
    return None, estimator


def _target_transform(wrapper):
    """The (unfitted) target transform of a TransformedTargetRegressor, as
    its ``fit`` makes it: ``transformer`` cloned, or ``func`` and
    ``inverse_func`` in a FunctionTransformer."""
    if wrapper.transformer is not None:
        if wrapper.func is not None or wrapper.inverse_func is not None:
            raise ValueError(
                "'transformer' and functions 'func'/'inverse_func' cannot both be set."
            )
        transform = clone(wrapper.transformer)
    else:
        if (wrapper.func is None) != (wrapper.inverse_func is None):
            raise ValueError(
                "TransformedTargetRegressor needs both func and inverse_func (or "
                "neither); give the identity explicitly for the one meant as such."
            )
        transform = FunctionTransformer(
            func=wrapper.func, inverse_func=wrapper.inverse_func, validate=True
        ).set_output(transform="default")
    return transform


def _fit_target_transform(wrapper, y):
    """The target transform of a TransformedTargetRegressor, fitted on ``y``."""
    y = np.asarray(y)
    return _target_transform(wrapper).fit(y.reshape(-1, 1) if y.ndim == 1 else y)


def _transform_target(transform, y):
    """``y`` on the scale the regressor is trained on (1-D stays 1-D)."""
    y = np.asarray(y)
    out = np.asarray(transform.transform(y.reshape(-1, 1) if y.ndim == 1 else y))
    return out[:, 0] if y.ndim == 1 and out.ndim == 2 else out


class _OnTargetScale(RegressorMixin, BaseEstimator):
    """A fold model whose predictions are mapped back to the target's own
    scale (``inverse_transform``), as TransformedTargetRegressor predicts:
    what the scorers read, so that scores are those GridSearchCV reports."""

    def __init__(self, model, transform, ndim):
        self.model = model
        self.transform = transform
        self.ndim = ndim

    def predict(self, X):
        pred = np.asarray(self.model.predict(X))
        back = self.transform.inverse_transform(
            pred.reshape(-1, 1) if pred.ndim == 1 else pred
        )
        back = np.asarray(back)
        return back[:, 0] if self.ndim == 1 and back.ndim == 2 else back


def _tunable(final):
    """``(parameter names, skbilevel class)`` for a supported final step, or None."""
    for cls, spec in _TUNABLE.items():
        if type(final) is cls:
            return spec
    return None


def _check_space(param_space, keys, bilevel_final, hint=""):
    """Split the space into ``[(grid, bounds)]``: lists, and the tuned boxes.

    ``keys`` are the differentiable parameters (``step__name``); ``bounds``
    maps those given a range (a ``(low, high)`` tuple, or a
    ``scipy.stats.loguniform(low, high)``) to it, or is None. Everything
    else is left to :class:`~sklearn.model_selection.ParameterGrid`, whose
    checks and messages are GridSearchCV's. ``hint`` ends the message of a
    range given to a parameter without a hypergradient.
    """
    spaces = [param_space] if isinstance(param_space, Mapping) else param_space
    if not isinstance(spaces, Sequence) or isinstance(spaces, str) or not spaces:
        raise TypeError(
            "param_space must be a dict (or a non-empty list of dicts) mapping "
            f"parameter names to (low, high) tuples or lists; got {param_space!r}."
        )
    out = []
    for space in spaces:
        if not isinstance(space, Mapping):
            ParameterGrid(space)  # GridSearchCV's error for a non-dict
        grid, bounds = {}, {}
        for name, value in space.items():
            value = _as_range(name, value)
            # A differentiable parameter's pair is a range (checked, with
            # its own messages); elsewhere only a pair of numbers is.
            pair = isinstance(value, tuple) and len(value) == 2
            if _is_range(value) or (pair and name in keys):
                bounds[name] = _checked_range(name, value, keys, hint)
                continue
            if name in keys and bilevel_final:
                raise ValueError(
                    f"{name!r} of a skbilevel estimator is always tuned by "
                    "hypergradient: give it a (low, high) tuple, not a list."
                )
            grid[name] = value
        ParameterGrid(grid)  # lists: GridSearchCV's checks and messages
        for name, values in grid.items():
            if name in keys and _looks_like_a_range(list(values)):
                values = list(values)
                warn_user(
                    f"param_space[{name!r}] = {values!r} is a list: its two "
                    "values are searched as a grid of two points. For a "
                    "range tuned by hypergradient give a tuple: "
                    f"({values[0]!r}, {values[1]!r}).",
                    UserWarning,
                )
        out.append((grid, bounds or None))
    return out


def _is_range(value):
    """A tuple of two numbers: a range. Any other tuple (of strings, of three
    numbers) is a sequence of values, as in GridSearchCV."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    )


def _as_range(name, value):
    """A ``scipy.stats.loguniform(a, b)`` (RandomizedSearchCV's usual way to
    ask for a strength between ``a`` and ``b``) as the range ``(a, b)``;
    other distributions are refused; anything else is returned as is."""
    if not (hasattr(value, "rvs") and hasattr(value, "support")):
        return value
    family = getattr(getattr(value, "dist", None), "name", type(value).__name__)
    if family in ("loguniform", "reciprocal"):
        low, high = value.support()
        return (float(low), float(high))
    raise TypeError(
        f"param_space[{name!r}] is a scipy.stats {family} distribution. "
        "HypergradientSearchCV tunes a range by hypergradient and searches a "
        "list exhaustively; it takes scipy.stats.loguniform(low, high) as the "
        "range (low, high); give a (low, high) tuple or a list of values."
    )


def _checked_range(name, value, keys, hint=""):
    """``(low, high)`` as floats, for a parameter that has a hypergradient."""
    if name not in keys:
        supported = (
            f"this estimator's are {' and '.join(map(repr, keys))}"
            if keys
            else "this final step has none (ranges apply to the strengths of "
            "Ridge, LogisticRegression, Lasso, ElasticNet, KernelRidge and "
            "skbilevel estimators)"
        )
        raise ValueError(
            f"param_space[{name!r}] is a range, which asks for tuning by "
            f"hypergradient; only differentiable parameters take one, and "
            f"{supported}. Give {name!r} a list of values to search it "
            f"exhaustively, as GridSearchCV does.{hint}"
        )
    if name.endswith("l1_ratio"):  # a fraction, not a strength
        check_ratio_bounds(value, f"param_space[{name!r}]")
    else:
        check_bounds(value, f"param_space[{name!r}]")
    if np.ndim(value[0]) or np.ndim(value[1]):
        raise ValueError(
            f"param_space[{name!r}] must be a (low, high) pair of "
            "numbers; one box per hyperparameter goes in a skbilevel "
            "final step's own alpha_bounds / C_bounds / l1_ratio_bounds."
        )
    return (float(value[0]), float(value[1]))


def _looks_like_a_range(values):
    """Two positive numbers more than a decade apart: probably meant as a
    ``(low, high)`` range, written as a list."""
    if len(values) != 2 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):
        return False
    low, high = sorted(float(v) for v in values)
    return low > 0 and high > 10 * low


def _as_float_data(X):
    X = check_array(X, accept_sparse=["csr", "csc", "coo"], dtype=[np.float64])
    return as_float64_data(X)


def _transform_fold(estimator, X, y_train, train, test, fit_params):
    """Fit the preprocessing on ``train`` (targets ``y_train``); transform
    both parts.

    ``fit_params`` are the (full-length) parameters routed to the estimator's
    ``fit``. Returns ``X_train, X_test`` and the fitted preprocessing steps.
    """
    X_train = _safe_indexing(X, train)
    X_test = _safe_indexing(X, test)
    fitted = []
    if isinstance(estimator, Pipeline):
        step_params = estimator._check_method_params(method="fit", props=fit_params)
        for name, transformer in estimator.steps[:-1]:
            if transformer is None or transformer == "passthrough":
                continue
            params = _check_method_params(X, step_params[name].fit_transform, train)
            transformer = clone(transformer)
            X_train = transformer.fit_transform(X_train, y_train, **params)
            X_test = transformer.transform(X_test)
            fitted.append((name, transformer))
    return X_train, X_test, fitted


def _input_names(X):
    """Column names of the search's input (``x0, x1, ...`` without names)."""
    names = getattr(X, "columns", None)
    if names is None:
        return [f"x{i}" for i in range(X.shape[1])]
    return [str(name) for name in names]


def _per_column_groups(fitted, X):
    """Input column of every column that the fitted preprocessing steps produce."""
    if not fitted:
        return np.asarray(_input_names(X), dtype=object).astype(str)
    return column_groups(Pipeline(fitted), input_features=_input_names(X))


def _final_sample_weight(estimator, fit_params):
    """The final step's ``sample_weight`` (all rows) among the fit parameters."""
    final_params = fit_params
    if isinstance(estimator, Pipeline):
        step_params = estimator._check_method_params(method="fit", props=fit_params)
        final_params = step_params[estimator.steps[-1][0]].fit
    unknown = set(final_params) - {"sample_weight"}
    if unknown:
        raise ValueError(
            "HypergradientSearchCV passes only sample_weight to the final step; got "
            f"fit parameters {sorted(unknown)}."
        )
    sw = final_params.get("sample_weight")
    return None if sw is None else np.asarray(sw)


def _score(scorers, model, X, y, params):
    start = time.perf_counter()
    scores = {name: float(s(model, X, y, **params)) for name, s in scorers.items()}
    return scores, time.perf_counter() - start


class _Candidate:
    """Everything one candidate needs; ``run`` returns its rows (picklable)."""

    def __init__(self, search, estimator, params, bounds, scorers, routed, folds):
        # Parameter values are cloned, as GridSearchCV does: the user's own
        # objects in the space are never fitted or changed.
        self.estimator = clone(estimator).set_params(**clone(params, safe=False))
        self.params = params
        self.bounds = bounds
        self.scorers = scorers
        self.fit_params = routed.estimator.fit
        self.score_params = routed.scorer.score
        self.folds = folds
        self.groups = routed.splitter.split.get("groups")  # the guard's too
        self.tol, self.max_iter = search.tol, search.max_iter
        self.random_state = search.random_state
        self.verbose = search.verbose
        self.return_train_score = search.return_train_score
        self.error_score = search.error_score
        self.callback = None  # (sklearn.callback context, search), sequential runs
        # A TransformedTargetRegressor: its regressor is what the folds
        # train, on the transformed targets.
        self.target, self.inner = _target_wrapper(self.estimator)
        final = _final_step(self.estimator)[1]
        self.per_column = _is_per_column(final)

    def run(self, X, y, n_jobs):
        try:
            return self._run(X, y, n_jobs)
        except Exception as error:
            if self.error_score == "raise":
                raise
            who = f"Candidate {self.params!r}" if self.params else "The fit"
            warn_user(
                f"{who} failed and scores error_score="
                f"{self.error_score!r}: {type(error).__name__}: {error}",
                FitFailedWarning,
            )
            row = self._new_row(self.params, fit_time=[0.0] * len(self.folds))
            self._fill_scores(row, self.error_score)
            row["error"] = error
            return [row]

    def _new_row(self, params, *, fit_time=None, **fields):
        """A ``cv_results_`` row with no scores yet (see ``_build_results``)."""
        row = dict(
            params=dict(params),
            test=[],
            train=[] if self.return_train_score else None,
            fit_time=[] if fit_time is None else fit_time,
            score_time=[],
            iter=0,
            n_iter=0,
            hypergradient_norm=np.nan,
            accurate=True,
            # The point the candidate's own search chose (the validation
            # loss's optimum); a grid point is its own.
            objective_best=True,
        )
        row.update(fields)
        return row

    def _fill_scores(self, row, value):
        """Every split's score, for every metric, set to ``value``."""
        scores = [{name: value for name in self.scorers}] * len(self.folds)
        row["test"], row["score_time"] = scores, [0.0] * len(self.folds)
        if row["train"] is not None:
            row["train"] = scores

    def _split_data(self, X, y, weight, n_jobs=None):
        """Per fold: transformed parts, targets, weights, score parameters, time.

        ``weight``: the final step's sample weights of all rows, or None. The
        folds' preprocessing runs in threads when ``n_jobs`` asks (each fold
        fits its own clones).
        """

        def split(fold):
            train, test = fold
            start = time.perf_counter()
            y_train, y_test = _safe_indexing(y, train), _safe_indexing(y, test)
            # The scorers read the targets as given; the folds train (and
            # the hypergradient validates) on the transformed ones.
            scored = dict(score_y_train=y_train, score_y_test=y_test, target=None)
            if self.target is not None:
                transform = _fit_target_transform(self.target, y_train)
                scored["target"] = (transform, np.ndim(y))
                y_train = _transform_target(transform, y_train)
                y_test = _transform_target(transform, y_test)
            X_train, X_test, fitted = _transform_fold(
                self.inner, X, y_train, train, test, self.fit_params
            )
            return dict(
                X_train=X_train,
                X_test=X_test,
                y_train=y_train,
                y_test=y_test,
                **scored,
                sw_train=None if weight is None else weight[train],
                sw_test=None if weight is None else weight[test],
                score_test=_check_method_params(X, self.score_params, test),
                score_train=_check_method_params(X, self.score_params, train),
                time=time.perf_counter() - start,
                groups=(_per_column_groups(fitted, X) if self.per_column else None),
            )

        return map_folds(split, self.folds, n_jobs)

    def _run(self, X, y, n_jobs):
        prefix, final = _final_step(self.estimator)
        spec = _tunable(final)
        weight = _final_sample_weight(self.inner, self.fit_params)
        splits = self._split_data(X, y, weight, n_jobs)
        bilevel_final = isinstance(final, _BILEVEL)
        if self.bounds is None and not bilevel_final:
            return [self._plain_row(final, splits)]
        if self.target is not None:  # the scale the final step is trained on
            y = _transform_target(_fit_target_transform(self.target, y), y)
        return self._bilevel_rows(prefix, final, spec, splits, n_jobs, y, weight)

    def _plain_row(self, final, splits):
        """A pure grid point: fit the final step as configured on every fold."""
        row = self._new_row(self.params)
        for split in splits:
            start = time.perf_counter()
            kwargs = {}
            if split["sw_train"] is not None:
                kwargs["sample_weight"] = split["sw_train"]
            model = clone(final).fit(split["X_train"], split["y_train"], **kwargs)
            row["fit_time"].append(split["time"] + time.perf_counter() - start)
            self._score_row(row, model, split)
        return row

    def _score_row(self, row, model, split, X_test=None, X_train=None):
        """Score ``model`` on the split; ``X_test``/``X_train`` replace its parts
        (decision values read by a stand-in model)."""
        if split["target"] is not None:
            model = _OnTargetScale(model, *split["target"])
        X_test = split["X_test"] if X_test is None else X_test
        scores, seconds = _score(
            self.scorers, model, X_test, split["score_y_test"], split["score_test"]
        )
        row["test"].append(scores)
        row["score_time"].append(seconds)
        if row["train"] is not None:
            X_train = split["X_train"] if X_train is None else X_train
            train_scores, _ = _score(
                self.scorers,
                model,
                X_train,
                split["score_y_train"],
                split["score_train"],
            )
            row["train"].append(train_scores)

    def _bilevel_rows(self, prefix, final, spec, splits, n_jobs, y, weight):
        """The candidate's hypergradient search: the estimators' own pipeline."""
        names, bilevel_cls = spec
        own = isinstance(final, bilevel_cls)
        boxes = {}
        for name in names:
            tuned = self.bounds is not None and prefix + name in self.bounds
            if tuned:
                boxes[f"{name}_bounds"] = self.bounds[prefix + name]
            if isinstance(final, KernelRidge) and name == "gamma":
                # One width, in its range; else KernelRidge's own (None is
                # 1 / n_features there and in the tuner).
                boxes["gamma"] = "scalar" if tuned else final.gamma
            elif not (tuned or own):
                # Not tuned: the candidate's value (a list's, or the step's).
                value = getattr(final, name)
                boxes[f"{name}_bounds"] = (value, value)
        if own:
            tuner = clone(final).set_params(**boxes)
        else:
            options = {}
            if "random_state" in bilevel_cls().get_params():
                options["random_state"] = self.random_state  # a stochastic solver
            tuner = bilevel_cls(**_translate(final), **boxes, **options)
        tuner.set_params(
            tol=self.tol, max_iter=self.max_iter, verbose=self.verbose, n_jobs=n_jobs
        )
        if self.per_column:
            groups = splits[0]["groups"]
            if any(not np.array_equal(s["groups"], groups) for s in splits):
                raise ValueError(
                    "penalty='per_column': the preprocessing of different folds "
                    "maps its output columns to different input columns; make "
                    "every fold produce the same columns (e.g. "
                    "OneHotEncoder(categories=[...]) listing every category)."
                )
            tuner.set_params(penalty=groups)
        tuner._validate_params()
        start = time.perf_counter()
        info = tuner._target_info(np.asarray(y), weight)
        parts = []
        for split in splits:  # the final step's input, as the kernels take it
            sides = []
            for side in ("train", "test"):
                X = _as_float_data(split[f"X_{side}"])
                split[f"X_{side}"] = X
                targets = tuner._encode(split[f"y_{side}"], info)
                weight = info.sample_multiplier(targets)
                sw = check_sample_weight(split[f"sw_{side}"], X, weight)
                sides.append((X, targets, sw))
            parts.append(tuple(sides))
        data = Splits.from_parts(parts, n_samples=len(y), indices=self.folds)
        data.groups = None if self.groups is None else np.asarray(self.groups)
        outcome = tuner._bilevel_search(
            data,
            info,
            start,
            callback=self.callback,
            # One candidate, no list: the warnings need not name it.
            label=f"candidate {self.params!r}" if self.params else "",
        )
        objective = outcome.objective
        kept, position = objective.reported_rows()
        rows = []
        best_row = position[outcome.best_index]
        for row_index, i in enumerate(kept):  # a repeated point: its last one
            record = objective.records[i]
            times = record.split_times or [0.0] * len(splits)
            tuned = tuner._search_params(record.theta, objective)
            row = self._new_row(
                {**self.params, **{prefix + k: v for k, v in tuned.items()}},
                # The preprocessing time counts once, in the first row.
                fit_time=[
                    t + (split["time"] if i == kept[0] else 0.0)
                    for t, split in zip(times, splits, strict=True)
                ],
                iter=i,
                n_iter=outcome.result.n_iter,
                hypergradient_norm=record.hypergradient_norm,
                accurate=record.accurate,
                objective_best=row_index == best_row,
            )
            view = tuner._scoring_view(objective, i, info, self.scorers.values())
            if view is None:  # a stochastic estimate: no model was kept
                self._fill_scores(row, np.nan)
                rows.append(row)
                continue
            models, predictions = view
            for k, split in enumerate(splits):
                X_test = X_train = None  # a fold model reads the fold's rows
                if predictions is not None:  # a stand-in reads decision values
                    X_test = predictions[k]
                    if row["train"] is not None:
                        X_train = objective.training_predictions(i, k, split["X_train"])
                self._score_row(row, models[k], split, X_test, X_train)
            rows.append(row)
        return rows


def _is_per_column(final):
    """Whether a skbilevel final step asks for one strength per input column."""
    penalty = getattr(final, "penalty", None)
    return (
        isinstance(final, _BILEVEL)
        and isinstance(penalty, str)
        and penalty == "per_column"
    )


def _translate(final):
    """Parameters of the skbilevel estimator equivalent to a scikit-learn one."""
    if isinstance(final, KernelRidge):
        if not isinstance(final.kernel, str) or final.kernel not in KERNELS:
            raise ValueError(
                f"KernelRidge(kernel={final.kernel!r}) cannot be tuned by "
                f"hypergradient; the kernel must be one of {sorted(KERNELS)}."
            )
        if final.kernel_params:
            raise ValueError(
                "KernelRidge(kernel_params=...) cannot be tuned by hypergradient: "
                "give gamma, degree and coef0 as parameters."
            )
        return dict(kernel=final.kernel, degree=final.degree, coef0=final.coef0)
    if isinstance(final, (Ridge, ElasticNet)):  # Lasso is an ElasticNet
        if final.positive:
            raise ValueError(
                f"{type(final).__name__}(positive=True) cannot be tuned by "
                "hypergradient."
            )
        return dict(fit_intercept=final.fit_intercept)
    penalty = getattr(final, "penalty", "l2")
    l1_ratio = getattr(final, "l1_ratio", None)
    if penalty not in ("l2", "deprecated") or l1_ratio not in (None, 0, 0.0):
        raise ValueError(
            "Only an L2-penalized LogisticRegression (l1_ratio=0) can be tuned by "
            f"hypergradient; got penalty={penalty!r}, l1_ratio={l1_ratio!r}."
        )
    return dict(fit_intercept=final.fit_intercept, class_weight=final.class_weight)


class HypergradientSearchCV(DocLinkMixin, BaseSearchCV):
    """GridSearchCV's interface, with regularization tuned by hypergradient.

    A drop-in for :class:`~sklearn.model_selection.GridSearchCV`: a space of
    lists is searched exactly as GridSearchCV searches it (its own search,
    the same ``cv_results_``, warnings and errors), over any estimator. A
    range adds hypergradient speed where the final step has a hypergradient:
    a scikit-learn :class:`~sklearn.linear_model.Ridge`,
    :class:`~sklearn.linear_model.LogisticRegression`,
    :class:`~sklearn.linear_model.Lasso`,
    :class:`~sklearn.linear_model.ElasticNet` or
    :class:`~sklearn.kernel_ridge.KernelRidge`, a
    :class:`~skbilevel.BilevelRidgeCV`, :class:`~skbilevel.BilevelLogisticCV`,
    :class:`~skbilevel.BilevelLassoCV`, :class:`~skbilevel.BilevelElasticNetCV`
    or :class:`~skbilevel.BilevelKernelRidgeCV`, or a
    :class:`~sklearn.pipeline.Pipeline` that ends with one of them. In
    ``param_space``, a ``(low, high)`` tuple on the final step's strength
    (``alpha``, ``C``; e.g. ``"clf__C": (1e-4, 1e4)``), or on an elastic
    net's ``l1_ratio`` (a range within ``(0, 1]``), is tuned by
    hypergradient descent inside that box (strengths in log-space), minimizing the
    validation loss (mean squared error, log-loss) averaged over the folds;
    a list is searched exhaustively, exactly as
    :class:`~sklearn.model_selection.GridSearchCV` does. Every combination
    of list values runs one hypergradient search; each fold's preprocessing
    steps are fitted once, on that fold's training part only, and reused by
    every outer iteration.

    Parameters
    ----------
    estimator : estimator object
        Any estimator, for a space of lists. For ranges: Ridge,
        LogisticRegression (L2 penalty), Lasso, ElasticNet,
        KernelRidge (rbf, laplacian, poly or linear kernel), BilevelRidgeCV,
        BilevelLogisticCV, BilevelLassoCV, BilevelElasticNetCV,
        BilevelKernelRidgeCV, or a Pipeline ending with one (``positive=True``
        is not supported); either may be wrapped in a
        :class:`~sklearn.compose.TransformedTargetRegressor` (parameters
        ``regressor__...``): the strength is then tuned on the transformed
        targets (the scale the regressor is trained on, e.g. ``log(y)``) and
        every row is scored on ``y``'s own scale, as GridSearchCV scores it.
        A skbilevel final step is always tuned (with its own ``penalty``, one
        strength per feature for instance); a tuple then
        sets its ``alpha_bounds`` / ``C_bounds`` / ``l1_ratio_bounds`` /
        ``gamma_bounds``.
    param_space : dict or list of dict
        Parameter names (``step__param`` inside a Pipeline) mapped to a
        range or to a list of values. A range is a tuple of two numbers
        ``(low, high)`` or ``scipy.stats.loguniform(low, high)``, and only
        the parameters with a hypergradient take one (the final step's
        strength, an elastic net's ``l1_ratio``, a kernel ridge's ``gamma``);
        elsewhere it is an error that suggests a list. Unlike GridSearchCV,
        where any sequence is a list of values, a tuple of two numbers is a
        range here; other tuples (``("linear", "rbf")``) are lists of values.
        Of an ElasticNet's two (a KernelRidge's too), one without a tuple
        keeps its value (a list's, or the step's own):
        ``{"en__alpha": (1e-3, 10), "en__l1_ratio": [0.5, 0.9]}`` tunes
        ``alpha`` at each listed ``l1_ratio``. A list of dicts searches each
        space in turn, as in GridSearchCV.
    scoring : str, callable, list, tuple or dict, default=None
        What ``cv_results_`` reports and ``best_index_`` maximizes, as in
        GridSearchCV: None uses the final step's ``score`` (R^2, accuracy).
        Several metrics need ``refit`` set to the one that chooses. The
        criterion the hypergradient minimizes is always the validation loss.
    cv : int, cross-validation generator or iterable, default=5
        As in GridSearchCV (stratified for classifiers when an int).
    refit : bool, str or callable, default=True
        Refit the estimator (the user's own class) with the best parameters
        on all the data. With several metrics, the name of the metric that
        chooses; a callable takes ``cv_results_`` and returns ``best_index_``.
    refit_by : {"scoring", "objective"}, default="scoring"
        Which rows may be best: every row (GridSearchCV's rule: the scorer
        ranks the scan and search points too), or each candidate's own
        choice, the optimum of the validation loss its hypergradient search
        minimized (the scorer then ranks the candidates). Where the scorer
        differs from that loss (an unweighted log-loss against a
        class-weighted one) the two can disagree; "scoring" then warns,
        naming both points (a ``scoring`` you gave; the estimator's own
        score, ``scoring=None``, ranks silently as in GridSearchCV).
    n_jobs : int, default=None
        Parallel jobs (joblib). With several list candidates, whole candidates
        run in parallel (so ``joblib.parallel_config(backend="dask")`` spreads
        them over a dask cluster); with one, its folds run in threads.
    verbose : int, default=0
        > 0 prints one line per candidate and per hypergradient evaluation
        (hyperparameter, the CV loss the search minimizes, hypergradient
        norm, elapsed time); 2 also prints the scan points.
    max_iter : int, default=100
        Maximum number of outer iterations of each hypergradient search.
    tol : float, default=1e-4
        Outer stopping tolerance of each search (relative hypergradient).
    random_state : int, RandomState instance or None, default=None
        With an int ``cv``: None uses unshuffled (Stratified)KFold, as
        GridSearchCV does; a seed shuffles the rows before splitting. It also
        seeds the stochastic solver of a Ridge or LogisticRegression final
        step on large data (a skbilevel final step keeps its own).
    error_score : "raise" or float, default=np.nan
        Score given to a candidate whose fit fails (with a FitFailedWarning);
        "raise" raises the error.
    return_train_score : bool, default=False
        Also score every evaluated point on the training parts.
    pre_dispatch : int or str, default="2*n_jobs"
        As in GridSearchCV: the jobs dispatched at once by the search of a
        space of lists.

    Attributes
    ----------
    cv_results_ : dict of ndarray
        One row per evaluated point, with GridSearchCV's keys
        (``params``, ``param_<name>``, ``split{k}_test_<metric>``,
        ``mean_test_<metric>``, ``std_test_<metric>``,
        ``rank_test_<metric>``, ``mean_fit_time``, ``std_fit_time``,
        ``mean_score_time``, ``std_score_time``, train scores when asked;
        ``<metric>`` is ``score`` for a single metric) and ``iter`` (the
        evaluation's index within its candidate's search) and
        ``hypergradient_norm`` (NaN where no hypergradient was computed)
        when a range was tuned; a space of lists gives GridSearchCV's
        ``cv_results_``, key for key.
    best_estimator_ : estimator
        The user's estimator refit on all the data with ``best_params_``. A
        skbilevel final step is refit at exactly the chosen strengths (its
        box pinned there), so its ``alpha_`` / ``C_`` is ``best_params_``'.
    best_score_ : float
        Mean cross-validated score of the best row.
    best_params_ : dict
        Parameters of the best row (the tuned strength included).
    best_index_ : int
        The best row: the best mean score among rows whose training problems
        were solved accurately (every row with a hypergradient, and grid
        points); loosely solved scan points are reported but not chosen.
    scorer_ : callable or dict
    n_splits_ : int
    n_iter_ : int
        Outer iterations (scans excluded), summed over the candidates;
        only where a range was tuned (GridSearchCV has no such attribute).
    refit_time_ : float
    multimetric_ : bool
    classes_ : ndarray of shape (n_classes,)
        Classifiers only.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when the refit estimator has it (string column names).

    See Also
    --------
    sklearn.model_selection.GridSearchCV : Exhaustive search over a grid.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbilevel import HypergradientSearchCV
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    >>> search = HypergradientSearchCV(
    ...     pipe, {"clf__C": (1e-4, 1e4)}, scoring="neg_log_loss"
    ... ).fit(X, y)
    >>> print(f"C={search.best_params_['clf__C']:.2f}, "
    ...       f"log-loss={-search.best_score_:.3f}")
    C=0.60, log-loss=0.079
    >>> type(search.best_estimator_).__name__
    'Pipeline'
    """

    _parameter_constraints = {
        **BaseSearchCV._parameter_constraints,
        "param_space": [dict, list],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "refit_by": [StrOptions({"scoring", "objective"})],
    }

    def __init__(
        self,
        estimator,
        param_space,
        *,
        scoring=None,
        cv=5,
        refit=True,
        n_jobs=None,
        verbose=0,
        max_iter=100,
        tol=1e-4,
        random_state=None,
        error_score=np.nan,
        return_train_score=False,
        refit_by="scoring",
        pre_dispatch="2*n_jobs",
    ):
        self.estimator = estimator
        self.param_space = param_space
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.refit_by = refit_by
        self.pre_dispatch = pre_dispatch

    @property
    def param_grid(self):
        """``param_space``, under GridSearchCV's name (read only)."""
        return self.param_space

    # ----------------------------------------------- the refit estimator's
    # BaseSearchCV's attributes and methods, available where its own are
    # (the same check, so the same errors), under docstrings that this API
    # reference shows (an inherited method would not be listed).
    @property
    def n_features_in_(self):
        """Number of features seen by ``fit`` (``refit=True`` only)."""
        return BaseSearchCV.n_features_in_.fget(self)

    @property
    def classes_(self):
        """Class labels of the refit estimator (classifiers, ``refit=True``)."""
        return BaseSearchCV.classes_.fget(self)

    @available_if(_search_estimator_has("predict"))
    def predict(self, X):
        """Predict with the refit ``best_estimator_``.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return BaseSearchCV.predict(self, X)

    @available_if(_search_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the refit ``best_estimator_``.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return BaseSearchCV.predict_proba(self, X)

    @available_if(_search_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities of the refit ``best_estimator_``.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return BaseSearchCV.predict_log_proba(self, X)

    @available_if(_search_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the refit ``best_estimator_``.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        return BaseSearchCV.decision_function(self, X)

    @available_if(_search_estimator_has("score_samples"))
    def score_samples(self, X):
        """``score_samples`` of the refit ``best_estimator_``.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return BaseSearchCV.score_samples(self, X)

    @available_if(_search_estimator_has("transform"))
    def transform(self, X):
        """Transform with the refit ``best_estimator_`` (a Pipeline, say).

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)

        Returns
        -------
        Xt : ndarray or sparse matrix
        """
        return BaseSearchCV.transform(self, X)

    @available_if(_search_estimator_has("inverse_transform"))
    def inverse_transform(self, X):
        """Inverse transform with the refit ``best_estimator_``.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_transformed_features)

        Returns
        -------
        X_original : ndarray or sparse matrix
        """
        return BaseSearchCV.inverse_transform(self, X)

    def score(self, X, y=None, **params):
        """Score of the refit ``best_estimator_`` with ``scorer_`` (the refit
        metric's), as GridSearchCV scores.

        Parameters
        ----------
        X : indexable of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        **params : dict
            Passed to the scorer with metadata routing enabled.

        Returns
        -------
        score : float
        """
        return super().score(X, y, **params)

    # A space of lists only is GridSearchCV's: BaseSearchCV.fit runs it
    # through this, GridSearchCV's own search of every combination.
    _run_search = GridSearchCV._run_search

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.estimator_type = sub.estimator_type
        tags.classifier_tags = sub.classifier_tags
        tags.regressor_tags = sub.regressor_tags
        tags.input_tags.sparse = sub.input_tags.sparse
        tags.input_tags.pairwise = sub.input_tags.pairwise
        tags.target_tags.multi_output = sub.target_tags.multi_output
        # The search of ranges works on NumPy arrays (the list-only search,
        # GridSearchCV's, would follow the estimator).
        tags.array_api_support = False
        return tags

    # ------------------------------------------------------------ validation
    def _check_params(self):
        """``(spaces, exhaustive)``: the checked spaces (see
        ``_check_space``), and whether they hold lists only, for a final
        step that is not a skbilevel estimator: GridSearchCV's search."""
        prefix, final = _final_step(self.estimator)
        spec = _tunable(final)
        keys = () if spec is None else tuple(prefix + name for name in spec[0])
        bilevel_final = isinstance(final, _BILEVEL)
        hint = ""
        if isinstance(final, TransformedTargetRegressor):
            hint = (
                " A TransformedTargetRegressor inside a Pipeline hides its "
                "regressor's strength: wrap the whole Pipeline in it instead."
            )
        spaces = _check_space(self.param_space, keys, bilevel_final, hint)
        if not bilevel_final and all(bounds is None for _, bounds in spaces):
            return spaces, True
        if isinstance(final, (Ridge, LogisticRegression, ElasticNet)):
            _translate(final)
        target = _target_wrapper(self.estimator)[0]
        if target is not None:
            _target_transform(target)  # its settings, before any fit
        return spaces, False

    def _search_scorers(self):
        """``(scorers dict, refit metric name or None, multimetric)``."""
        _, final = _final_step(self.estimator)
        if (
            self.scoring is None
            or isinstance(self.scoring, str)
            or callable(self.scoring)
        ):
            return {"score": check_scoring(final, self.scoring)}, "score", False
        scorers = _check_multimetric_scoring(final, self.scoring)
        if self.refit is not False and not callable(self.refit):
            if not isinstance(self.refit, str) or self.refit not in scorers:
                raise ValueError(
                    "With several metrics, refit must be False, a callable or the "
                    f"name of one of them ({sorted(scorers)}); got {self.refit!r}."
                )
        metric = self.refit if isinstance(self.refit, str) else None
        return scorers, metric, True

    def _cv(self, y):
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        if (
            self.random_state is not None
            and isinstance(self.cv, numbers.Integral)
            and not isinstance(self.cv, bool)
        ):
            # An int gives a (Stratified)KFold: shuffle it with the seed.
            cv = type(cv)(cv.n_splits, shuffle=True, random_state=self.random_state)
        return cv

    def _routed_params(self, params, scorers):
        if _routing_enabled():
            return process_routing(self, "fit", **params)
        params = dict(params)
        groups = params.pop("groups", None)
        score_params = {}
        weight = params.get("sample_weight")
        if weight is not None and all(
            _accepts_sample_weight(s) for s in scorers.values()
        ):
            score_params["sample_weight"] = weight
        return Bunch(
            estimator=Bunch(fit=params),
            splitter=Bunch(split={"groups": groups}),
            scorer=Bunch(score=score_params),
        )

    # -------------------------------------------------------------------- fit
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **params):
        """Run the searches, then refit the best parameters on all the data.

        Parameters
        ----------
        X : {array-like, sparse matrix, dataframe} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        **params : dict
            ``groups`` for the splitter and fit parameters for the estimator
            (``sample_weight``, or ``step__sample_weight`` in a Pipeline), as
            GridSearchCV takes them; with metadata routing enabled, routed as
            the estimator, scorers and splitter request.

        Returns
        -------
        self : object
        """
        for attr in [
            a for a in vars(self) if a.endswith("_") and not a.startswith("_")
        ]:
            delattr(self, attr)  # fit starts from scratch (clone-safe)
        spaces, exhaustive = self._check_params()
        if exhaustive:
            return self._fit_exhaustive(X, y, params)
        scorers, refit_metric, multimetric = self._search_scorers()
        if y is None:
            raise ValueError(
                "HypergradientSearchCV tunes supervised final steps: fit needs y."
            )
        X, y = indexable(X, y)
        if is_classifier(self.estimator):
            check_classification_targets(y)
        routed = self._routed_params(params, scorers)
        final_weight = _final_sample_weight(
            _target_wrapper(self.estimator)[1], routed.estimator.fit
        )
        if final_weight is not None:
            _check_sample_weight(final_weight, X)  # the length, before any work
        cv = self._cv(y)
        folds = [
            (np.asarray(tr), np.asarray(te))
            for tr, te in cv.split(X, y, **routed.splitter.split)
        ]
        candidates = [
            _Candidate(
                self, self.estimator, dict(grid_params), bounds, scorers, routed, folds
            )
            for grid, bounds in spaces
            for grid_params in ParameterGrid(grid)
        ]
        if self.verbose > 0:
            print(
                f"[skbilevel] {len(candidates)} candidate(s) x {len(folds)} folds",
                flush=True,
            )
        context = None
        if hasattr(self, "_init_callback_context"):
            context = self._init_callback_context(max_subtasks=len(candidates))
            context.call_on_fit_task_begin(estimator=self, X=X, y=y)
        if len(candidates) > 1 and self.n_jobs not in (None, 1):
            # Whole candidates in parallel (any joblib backend, dask included);
            # callbacks then see the search as a whole only.
            per_candidate = Parallel(n_jobs=self.n_jobs)(
                delayed(_run_candidate)(c, X, y, None) for c in candidates
            )
        else:
            per_candidate = []
            for candidate in candidates:
                task = None
                if context is not None:
                    task = context.subcontext(task_name="candidate", max_subtasks=None)
                    task.call_on_fit_task_begin(estimator=self)
                    candidate.callback = (task, self)
                per_candidate.append(_run_candidate(candidate, X, y, self.n_jobs))
                if task is not None:
                    task.call_on_fit_task_end(estimator=self)
        for k, candidate_rows in enumerate(per_candidate):
            for row in candidate_rows:
                row["candidate"] = k
        rows = [row for rows in per_candidate for row in rows]
        errors = [row["error"] for row in rows if "error" in row]
        if len(errors) == len(rows):
            # Nothing fitted: the input itself is at fault, not a candidate.
            raise errors[0]

        self.multimetric_ = multimetric
        self.scorer_ = scorers if multimetric else scorers["score"]
        self.n_splits_ = len(folds)
        per_candidate_iter = {}
        for row in rows:
            per_candidate_iter.setdefault(row["candidate"], row["n_iter"])
        self.n_iter_ = int(sum(per_candidate_iter.values()))
        self.cv_results_ = _build_results(rows, list(scorers), len(folds))
        if self.refit is False:
            if context is not None:
                context.call_on_fit_task_end(estimator=self, X=X, y=y)
            return self
        if callable(self.refit):
            best = int(self.refit(self.cv_results_))
            if not 0 <= best < len(rows):
                raise IndexError("best_index_ returned by refit is out of bounds.")
        else:
            key = f"mean_test_{refit_metric}"
            means = np.array(self.cv_results_[key], dtype=float)
            usable = np.array([r["accurate"] for r in rows]) & np.isfinite(means)
            if not usable.any():
                raise ValueError(
                    "Every candidate failed to fit or score; nothing to refit."
                )
            if self.refit_by == "objective":
                usable &= np.array([r["objective_best"] for r in rows])
                if not usable.any():
                    raise ValueError(
                        "refit_by='objective': no candidate's search point could "
                        "be scored; nothing to refit."
                    )
            best = int(np.argmax(np.where(usable, means, -np.inf)))
            self.best_score_ = float(means[best])
            self._warn_if_scoring_disagrees(rows, best, refit_metric)
        self.best_index_ = best
        self.best_params_ = dict(rows[best]["params"])
        self._refit_best(X, y, routed)
        if context is not None:
            context.call_on_fit_task_end(
                estimator=self, X=X, y=y, reconstruction_attributes={}
            )
        return self

    def _fit_exhaustive(self, X, y, params):
        """Lists only: GridSearchCV's own search (BaseSearchCV.fit), whatever
        the estimator, so that its results, warnings and errors are
        GridSearchCV's exactly."""
        cv = self.cv
        if self.random_state is not None:
            # A seed shuffles an int's folds, as in the search of ranges.
            self.cv = self._cv(y)
        try:
            return super().fit(X, y, **params)
        finally:
            self.cv = cv

    def _warn_if_scoring_disagrees(self, rows, best, metric):
        """A warning when the scorer ranks first another point of a
        candidate's search than the one that search chose (the validation
        loss's optimum): e.g. an unweighted log-loss against the class-weighted
        one the search minimized, or R^2 against the mean squared error."""
        row = rows[best]
        if row["objective_best"] or self.scoring is None:
            # scoring=None ranks by the estimator's own score (R^2,
            # accuracy), as GridSearchCV does: a measure every user of the
            # search expects to differ from the loss in its last digits.
            return
        chosen = [
            i for i, r in enumerate(rows)
            if r["candidate"] == row["candidate"] and r["objective_best"]
        ]  # fmt: skip
        if not chosen or _shown_params(rows[chosen[0]]["params"]) == _shown_params(
            row["params"]
        ):
            return
        name = self.scoring if isinstance(self.scoring, str) else metric
        warn_user(
            f"best_params_ follows scoring ({name}), which ranks "
            f"{_shown_params(row['params'])} first (cv_results_ row {best}); the "
            "hypergradient search minimized the validation loss, whose optimum "
            f"is {_shown_params(rows[chosen[0]]['params'])} (row {chosen[0]}). "
            "Set refit_by='objective' to refit at the search's own choice.",
            UserWarning,
        )

    def _refit_best(self, X, y, routed):
        prefix, final = _final_step(self.estimator)
        names = _tunable(final)[0]
        params = dict(self.best_params_)
        if isinstance(final, _BILEVEL):
            # Refit at exactly the chosen strengths: the final step's boxes
            # are pinned there (its alpha_ / C_ then equals best_params_').
            for name in names:
                if prefix + name not in params:
                    continue  # the linear kernel has no width
                value = params.pop(prefix + name)
                if isinstance(final, BilevelKernelRidgeCV) and name == "gamma":
                    params[f"{prefix}gamma"] = value  # fixed width(s)
                    continue
                params[f"{prefix}{name}_bounds"] = (value, value)
                if len(names) == 1:
                    params[f"{prefix}{name}_init"] = value
        estimator = clone(self.estimator).set_params(**clone(params, safe=False))
        start = time.perf_counter()
        # The refit candidate's own final step: a listed penalty may differ.
        if _is_per_column(_final_step(estimator)[1]):
            # The groups of the preprocessing fitted on all the rows (their
            # labels, the input columns, are those the folds tuned).
            fitted = []
            inner = _target_wrapper(estimator)[1]
            if isinstance(inner, Pipeline):
                preprocessing = clone(inner[:-1]).fit(X, y)
                fitted = preprocessing.steps
            groups = _per_column_groups(fitted, X)
            estimator.set_params(**{f"{prefix}penalty": groups})
        estimator.fit(X, y, **routed.estimator.fit)
        self.refit_time_ = time.perf_counter() - start
        self.best_estimator_ = estimator
        if hasattr(estimator, "feature_names_in_"):  # as GridSearchCV sets it
            self.feature_names_in_ = estimator.feature_names_in_


def _shown_params(params):
    """``{name: value}`` with short numbers, for messages."""
    shown = []
    for key, value in params.items():
        if np.ndim(value) == 0 and isinstance(value, numbers.Real):
            shown.append(f"{key}={float(value):.4g}")
        elif np.ndim(value) == 1 and np.size(value) > 3:
            shown.append(f"{key}=[{np.size(value)} values]")
        else:
            shown.append(f"{key}={value!r}")
    return "{" + ", ".join(shown) + "}"


def _run_candidate(candidate, X, y, n_jobs):
    if candidate.verbose > 0:
        print(f"[skbilevel] candidate {candidate.params}", flush=True)
    return candidate.run(X, y, n_jobs)


def _accepts_sample_weight(scorer):
    func = getattr(scorer, "_score_func", None)
    if func is None:
        return False
    return "sample_weight" in signature(func).parameters


def _build_results(rows, metrics, n_splits):
    """GridSearchCV-shaped ``cv_results_`` from the candidates' rows."""

    def scores(side, metric):
        return np.array(
            [[split[metric] for split in r[side]] for r in rows], dtype=float
        ).reshape(len(rows), n_splits)

    train = rows and rows[0]["train"] is not None
    return build_cv_results(
        [r["params"] for r in rows],
        {metric: scores("test", metric) for metric in metrics},
        train_scores={m: scores("train", m) for m in metrics} if train else None,
        times={k: [r[k] for r in rows] for k in ("fit_time", "score_time")},
        extra=[
            ("iter", np.array([r["iter"] for r in rows])),
            (
                "hypergradient_norm",
                np.array([r["hypergradient_norm"] for r in rows], dtype=float),
            ),
            # Each candidate's own choice (see refit_by).
            ("search_choice", np.array([r["objective_best"] for r in rows])),
        ],
    )
