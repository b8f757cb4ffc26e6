"""Plots of a hypergradient search, in scikit-learn's Display style."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["OptimizationPathDisplay", "StrengthsDisplay", "ValidationCurveDisplay"]

# Past this many hyperparameters, their median and range are drawn instead
# of one line each.
_MAX_LINES = 20


class OptimizationPathDisplay:
    """CV score and hyperparameters along the evaluations of a search.

    The x-axis is the evaluation number, ``cv_results_["iter"]`` (what
    ``verbose`` prints as "eval N"). The upper axes show the mean
    cross-validated score of every evaluated point (scan points hollow,
    points with a hypergradient filled, the chosen point starred), focused
    on the curve's best part; the lower axes show the hyperparameter values
    (log scale): one line each, or, past 20 strengths, their median and
    their 10th and 90th percentiles. Searches over several candidates
    (HypergradientSearchCV with lists) draw each candidate in its own
    colour, labelled in the legend by its listed values.

    Use :meth:`from_estimator` to build it from a fitted estimator.

    Parameters
    ----------
    scores : ndarray of shape (n_evaluations,)
        Mean CV score of each evaluation (greater is better).
    params : ndarray of shape (n_evaluations, n_hyper)
        Hyperparameter values of each evaluation.
    with_gradient : ndarray of shape (n_evaluations,), dtype=bool
        Whether the evaluation computed a hypergradient.
    candidate : ndarray of shape (n_evaluations,), dtype=int
        Candidate (list combination) of each evaluation; all zeros for one.
    best_index : int or None
        Evaluation to star.
    param_name : str
        Name of the hyperparameter (axis label).
    score_name : str, default="mean CV score"
    iteration : ndarray of shape (n_evaluations,), default=None
        Evaluation number of each row (x-axis); None numbers the rows of
        each candidate from 1.
    labels : list of str, default=None
        Legend label of each candidate; None or empty strings: unlabelled.

    Attributes
    ----------
    ax_ : ndarray of matplotlib Axes, shape (2,)
        Score axes, then hyperparameter axes.
    figure_ : matplotlib Figure
    score_lines_ : list of matplotlib Line2D
        One per candidate.
    param_lines_ : list of matplotlib Line2D
        One per strength and candidate, or three (median and percentiles)
        per candidate past 20 strengths.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelRidgeCV
    >>> from skbilevel.plotting import OptimizationPathDisplay
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = BilevelRidgeCV().fit(X, y)
    >>> display = OptimizationPathDisplay.from_estimator(reg)
    >>> [ax.get_ylabel() for ax in display.ax_]
    ['mean CV score', 'alpha']
    """

    def __init__(
        self,
        *,
        scores,
        params,
        with_gradient,
        candidate,
        best_index,
        param_name,
        score_name="mean CV score",
        iteration=None,
        labels=None,
    ):
        self.scores = scores
        self.params = params
        self.with_gradient = with_gradient
        self.candidate = candidate
        self.best_index = best_index
        self.param_name = param_name
        self.score_name = score_name
        self.iteration = iteration
        self.labels = labels

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, metric=None):
        """Plot the search of a fitted skbilevel estimator, a Pipeline ending
        with one, or a HypergradientSearchCV.

        Parameters
        ----------
        estimator : estimator
            Fitted.
        ax : array-like of two matplotlib Axes, default=None
            Where to draw the score and the hyperparameters; None makes a
            new figure.
        metric : str, default=None
            With several metrics, which one to draw (default: the refit one).

        Returns
        -------
        display : OptimizationPathDisplay
        """
        view = _search_view(estimator, cls.__name__, metric)
        results = view.results
        display = cls(
            scores=np.asarray(results[view.key], dtype=float),
            params=np.array(view.strengths),
            with_gradient=np.isfinite(results["hypergradient_norm"]),
            candidate=view.candidate,
            best_index=view.best,
            param_name=view.name,
            score_name=_score_name(view.metric),
            iteration=np.asarray(results["iter"]),
            labels=view.labels,
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the path.

        Parameters
        ----------
        ax : array-like of two matplotlib Axes, default=None
            None makes a new figure with two stacked axes sharing x.

        Returns
        -------
        display : OptimizationPathDisplay
        """
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        if ax is None:
            figure, ax = plt.subplots(
                2, 1, sharex=True, figsize=(6.4, 5.6), layout="constrained"
            )
        ax = np.asarray(ax).ravel()
        if ax.size != 2:
            raise ValueError(f"ax must hold two Axes; got {ax.size}.")
        score_ax, param_ax = ax
        scores = np.asarray(self.scores, dtype=float)
        candidate = np.asarray(self.candidate, dtype=int)
        with_gradient = np.asarray(self.with_gradient, dtype=bool)
        params = np.asarray(self.params, dtype=float).reshape(len(scores), -1)
        x = self.iteration
        if x is None:  # each candidate's rows numbered from 1
            x = np.empty(len(scores), dtype=int)
            for c in np.unique(candidate):
                x[candidate == c] = np.arange(1, np.sum(candidate == c) + 1)
        x = np.asarray(x)
        labels = list(self.labels) if self.labels is not None else []
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        many = params.shape[1] > _MAX_LINES
        self.score_lines_, self.param_lines_ = [], []
        for c in np.unique(candidate):
            color = colors[int(c) % len(colors)]
            rows = np.flatnonzero(candidate == c)
            rows = rows[np.argsort(x[rows], kind="stable")]
            label = labels[c] if c < len(labels) and labels[c] else None
            (line,) = score_ax.plot(x[rows], scores[rows], "-", color=color,
                                    lw=1, label=label)  # fmt: skip
            self.score_lines_.append(line)
            filled = rows[with_gradient[rows]]
            hollow = rows[~with_gradient[rows]]
            score_ax.plot(x[filled], scores[filled], "o", ms=4, color=color)
            score_ax.plot(x[hollow], scores[hollow], "o", ms=4, mfc="none",
                          color=color)  # fmt: skip
            values = params[rows]
            if not many:
                for j in range(values.shape[1]):
                    (line,) = param_ax.plot(x[rows], values[:, j], "-",
                                            color=color, lw=1)  # fmt: skip
                    self.param_lines_.append(line)
            else:
                # The min-max band of thousands of strengths spans the whole
                # box from the first step on; percentiles show where most are.
                low, mid, high = np.nanpercentile(values, [10, 50, 90], axis=1)
                (line,) = param_ax.plot(x[rows], mid, "-", color=color, lw=1.5)
                self.param_lines_.append(line)
                for edge in (low, high):
                    (line,) = param_ax.plot(x[rows], edge, "--", color=color,
                                            lw=0.8)  # fmt: skip
                    self.param_lines_.append(line)
        best = self.best_index
        if best is not None:
            score_ax.plot(x[best], scores[best], "*", ms=14, color="k", zorder=3)
        _focus_scores(score_ax, scores, np.full(len(scores), np.nan))
        score_ax.set_ylabel(self.score_name)
        param_ax.set_yscale("log")
        param_ax.set_ylabel(self.param_name)
        param_ax.set_xlabel("evaluation (cv_results_['iter'])")
        param_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # One legend: the candidates' colours, then what the markers mean.
        handles, names = score_ax.get_legend_handles_labels()
        markers = [
            (Line2D([], [], ls="", marker="o", mfc="none", color="0.3"), "scan point"),
            (Line2D([], [], ls="", marker="o", color="0.3"), "with hypergradient"),
        ]
        if best is not None:
            markers.append((Line2D([], [], ls="", marker="*", ms=10, color="k"),
                            "chosen"))  # fmt: skip
        for handle, name in markers:
            handles.append(handle)
            names.append(name)
        score_ax.legend(handles, names, loc="best", fontsize="small")
        if many:
            param_ax.legend(
                [Line2D([], [], color="0.3", lw=1.5),
                 Line2D([], [], color="0.3", ls="--", lw=0.8)],
                [f"median of {params.shape[1]}", "10th and 90th percentiles"],
                loc="best", fontsize="small",
            )  # fmt: skip
        self.ax_ = ax
        self.figure_ = score_ax.figure
        return self


class StrengthsDisplay:
    """The tuned strengths by feature or group, sorted: what the model leans on.

    One horizontal bar per strength (log scale), from the least penalized
    (the features the model is free to use) down to the most penalized
    (shrunk away). With more than ``max_display`` strengths, the least and
    the most penalized halves are drawn.

    Use :meth:`from_estimator` to build it from a fitted estimator.

    Parameters
    ----------
    names : ndarray of str of shape (n_strengths,)
        Feature or group of every strength.
    values : ndarray of shape (n_strengths,)
        The strengths (``alpha`` or ``C``).
    param_name : str
        "alpha" (a penalty) or "C" (an inverse penalty).

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    bars_ : matplotlib BarContainer
    shown_ : ndarray of str
        The names drawn, top to bottom.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelRidgeCV
    >>> from skbilevel.plotting import StrengthsDisplay
    >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
    >>> reg = BilevelRidgeCV(penalty="per_feature").fit(X, y)
    >>> display = StrengthsDisplay.from_estimator(reg)
    >>> len(display.shown_)
    10
    """

    def __init__(self, *, names, values, param_name):
        self.names = np.asarray(names).astype(str)
        self.values = np.asarray(values, dtype=float)
        self.param_name = param_name

    @classmethod
    def from_estimator(cls, estimator, *, max_display=30, ax=None):
        """Plot the strengths of a fitted skbilevel estimator.

        Parameters
        ----------
        estimator : fitted estimator
            A ``Bilevel*CV`` estimator, a Pipeline ending in one (a
            per-feature strength is then named by the preprocessing's
            ``get_feature_names_out()``), or a fitted HypergradientSearchCV
            whose ``best_estimator_`` is one of those.
        max_display : int, default=30
            Most bars to draw.
        ax : matplotlib Axes, default=None
            None makes a new figure.

        Returns
        -------
        display : StrengthsDisplay
        """
        from sklearn.pipeline import Pipeline

        from ._base import BaseBilevelCV
        from ._search import HypergradientSearchCV

        if isinstance(estimator, HypergradientSearchCV):
            check_is_fitted(estimator, "best_estimator_")
            estimator = estimator.best_estimator_
        final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
        if not isinstance(final, BaseBilevelCV):
            raise TypeError(
                "StrengthsDisplay plots the strengths of a skbilevel estimator "
                f"(alone, last in a Pipeline or searched); got {type(final).__name__}."
            )
        check_is_fitted(final, "strengths_")
        names = final.strength_names_
        per_feature = isinstance(final.penalty, str) and final.penalty == "per_feature"
        if (
            per_feature
            and isinstance(estimator, Pipeline)
            and not hasattr(final, "feature_names_in_")
        ):
            try:
                names = np.asarray(estimator[:-1].get_feature_names_out()).astype(str)
            except (AttributeError, ValueError):  # a step without names out
                pass
        values = np.atleast_1d(getattr(final, f"{final._param_name}_"))
        display = cls(names=names, values=values, param_name=final._param_name)
        return display.plot(max_display=max_display, ax=ax)

    def plot(self, *, max_display=30, ax=None):
        """Draw the bars.

        Parameters
        ----------
        max_display : int, default=30
            Most bars to draw (the least and most penalized halves).
        ax : matplotlib Axes, default=None
            None makes a new figure.

        Returns
        -------
        display : StrengthsDisplay
        """
        import matplotlib.pyplot as plt

        # A penalty (alpha) grows with shrinkage, an inverse penalty (C) falls.
        shrinkage = self.values if self.param_name != "C" else 1.0 / self.values
        order = np.argsort(shrinkage, kind="stable")
        hidden = max(len(order) - max_display, 0)
        if hidden:
            half = max_display // 2
            order = np.r_[order[: max_display - half], order[len(order) - half :]]
        if ax is None:
            _, ax = plt.subplots(
                figsize=(6.4, 1.0 + 0.25 * len(order)), layout="constrained"
            )
        rows = np.arange(len(order))[::-1]  # least penalized on top
        self.bars_ = ax.barh(rows, self.values[order], color="C0")
        ax.set_yticks(rows, self.names[order])
        ax.set_xscale("log")
        meaning = "smaller" if self.param_name == "C" else "larger"
        ax.set_xlabel(f"{self.param_name} ({meaning} = more penalized)")
        title = "Tuned strengths, least penalized first"
        if hidden:
            title += f" ({hidden} middle ones not shown)"
        ax.set_title(title)
        self.shown_ = self.names[order]
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


def _metric_key(estimator, metric):
    """``(metric, "mean_test_<metric>")`` to draw: the given one, else the
    single score or the one a multi-metric search refits on."""
    if metric is None:
        metric = "score"
        if getattr(estimator, "multimetric_", False):
            metric = estimator.refit if isinstance(estimator.refit, str) else None
            if metric is None:
                raise ValueError("With several metrics, name the one to plot.")
    key = f"mean_test_{metric}"
    if key not in estimator.cv_results_:
        raise ValueError(f"cv_results_ has no {key!r}.")
    return metric, key


def _score_name(metric):
    return "mean CV score" if metric == "score" else f"mean CV {metric}"


def _strength_name(estimator):
    """The tuned strength's name in ``cv_results_`` (``param_<name>``)."""
    from ._search import HypergradientSearchCV, _final_step, _tunable

    if isinstance(estimator, HypergradientSearchCV):
        prefix, final = _final_step(estimator.estimator)
        return prefix + _tunable(final)[0][0]
    return getattr(estimator, "_param_name", "alpha")


def _candidates(results):
    """The candidate of every row of ``cv_results_``: a candidate's rows
    follow its evaluations in order, and the next one starts where the
    evaluation number does not increase (its first evaluation may be shown
    later, evaluated again)."""
    iteration = np.asarray(results["iter"])
    return np.cumsum(np.r_[True, np.diff(iteration) <= 0]) - 1


def _fitted_search(estimator, display):
    """The fitted skbilevel estimator or search inside ``estimator`` (a
    Pipeline's last step), checked; ``display`` names the plot in errors."""
    from sklearn.pipeline import Pipeline

    from ._base import BaseBilevelCV
    from ._kernel_ridge import BilevelKernelRidgeCV
    from ._search import HypergradientSearchCV

    if isinstance(estimator, Pipeline):
        estimator = estimator[-1]
    if not isinstance(
        estimator, (BaseBilevelCV, BilevelKernelRidgeCV, HypergradientSearchCV)
    ):
        raise TypeError(
            f"{display} plots skbilevel estimators (or a Pipeline ending with "
            f"one) and HypergradientSearchCV; got {type(estimator).__name__}."
        )
    check_is_fitted(estimator, "cv_results_")
    if "iter" not in estimator.cv_results_:
        raise ValueError(
            f"{display} plots a search of ranges by hypergradient; this "
            "search had lists only (GridSearchCV's search), so there is no "
            "path to plot."
        )
    return estimator


def _search_view(estimator, display, metric):
    """What both search plots read from a fitted estimator: the search
    itself (``estimator``), its ``results``, the ``metric`` and its ``key``,
    the strength's ``name``, every row's ``strengths`` (1-D arrays), each
    row's ``candidate`` and the candidates' legend ``labels``, and the
    ``best`` row."""
    from sklearn.utils import Bunch

    estimator = _fitted_search(estimator, display)
    results = estimator.cv_results_
    metric, key = _metric_key(estimator, metric)
    name = _strength_name(estimator)
    column = results["param_" + name].filled(np.nan)
    candidate = _candidates(results)
    return Bunch(
        estimator=estimator,
        results=results,
        metric=metric,
        key=key,
        name=name,
        strengths=[np.atleast_1d(np.asarray(v, dtype=float)) for v in column],
        candidate=candidate,
        labels=_candidate_labels(results, candidate, name),
        best=getattr(estimator, "best_index_", None),
    )


def _candidate_labels(results, candidate, name):
    """Legend label of each candidate: its listed values (the parameters
    other than the tuned strength ``name``); empty for a single candidate."""
    n_candidates = candidate.max() + 1
    if n_candidates == 1:
        return [""]
    labels = []
    for c in range(n_candidates):
        params = results["params"][int(np.flatnonzero(candidate == c)[0])]
        listed = {k: v for k, v in params.items() if k != name}
        labels.append(", ".join(f"{k}={v!r}" for k, v in listed.items()))
    return labels


def _range_searched(estimator, name):
    """The ``(low, high)`` range of the strength ``name``: a fitted
    estimator's ``<name>_bounds_``, or the tuple a search's every space gave
    it; None where there is no single pair of ends (one range per strength,
    different ranges per space, or a search's default ranges)."""
    from collections.abc import Mapping

    from ._search import HypergradientSearchCV

    if isinstance(estimator, HypergradientSearchCV):
        spaces = estimator.param_space
        spaces = [spaces] if isinstance(spaces, Mapping) else list(spaces)
        ranges = {
            tuple(map(float, space[name])) if isinstance(space.get(name), tuple)
            else None
            for space in spaces
        }  # fmt: skip
        return ranges.pop() if len(ranges) == 1 else None
    bounds = getattr(estimator, f"{name}_bounds_", None)
    if bounds is not None and np.ndim(bounds[0]) > 0:
        return None
    return bounds


def _focus_scores(ax, scores, stds):
    """Limit the score axis to the curve's best part: the weakest scan
    points (a model that predicts nothing) would squash the rest."""
    finite = scores[np.isfinite(scores)]
    if finite.size <= 2:
        return
    top = finite.max()
    spread = np.nanmax(stds) if np.isfinite(stds).any() else 0.0
    low = np.percentile(finite, 25)
    margin = 0.1 * (top - low) + spread
    if margin > 0:
        ax.set_ylim(low - margin, top + margin)


class ValidationCurveDisplay:
    """Mean CV score against the strength, as a validation curve.

    Every evaluated point of the search with one common strength is placed
    at that strength (log scale), with its mean CV score and a band of one
    standard deviation over the folds; the chosen point is starred and the
    ends of the range searched are dashed. Points with different strengths
    per feature or group have no place on one axis and are left out. A
    HypergradientSearchCV over several candidates draws one curve each,
    labelled by its listed values.

    Use :meth:`from_estimator` to build it from a fitted estimator.

    Parameters
    ----------
    values : ndarray of shape (n_points,)
        Strength of each point.
    scores, stds : ndarrays of shape (n_points,)
        Mean CV score and its standard deviation over the folds (NaN:
        no band, e.g. leave-one-out).
    candidate : ndarray of shape (n_points,), dtype=int
        Candidate of each point.
    labels : list of str
        Label of each candidate (empty strings: no legend).
    best : int or None
        Point to star.
    bounds : (float, float) or None
        Range searched.
    param_name, score_name : str

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : list of matplotlib Line2D
        One curve per candidate.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from skbilevel import BilevelRidgeCV
    >>> from skbilevel.plotting import ValidationCurveDisplay
    >>> X, y = load_diabetes(return_X_y=True)
    >>> display = ValidationCurveDisplay.from_estimator(BilevelRidgeCV().fit(X, y))
    >>> display.ax_.get_xscale(), display.ax_.get_xlabel()
    ('log', 'alpha')
    """

    def __init__(self, *, values, scores, stds, candidate, labels, best, bounds,
                 param_name, score_name="mean CV score"):  # fmt: skip
        self.values = np.asarray(values, dtype=float)
        self.scores = np.asarray(scores, dtype=float)
        self.stds = np.asarray(stds, dtype=float)
        self.candidate = np.asarray(candidate, dtype=int)
        self.labels = list(labels)
        self.best = best
        self.bounds = bounds
        self.param_name = param_name
        self.score_name = score_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, metric=None):
        """Plot the validation curve of a fitted skbilevel estimator, a
        Pipeline ending with one, or a HypergradientSearchCV.

        Parameters
        ----------
        estimator : estimator
            Fitted.
        ax : matplotlib Axes, default=None
        metric : str, default=None
            With several metrics, which one to draw (default: the refit one).

        Returns
        -------
        display : ValidationCurveDisplay
        """
        view = _search_view(estimator, cls.__name__, metric)
        results = view.results
        values = np.full(len(view.strengths), np.nan)
        for i, value in enumerate(view.strengths):
            if np.all(value == value[0]):
                values[i] = value[0]  # one common strength
        std_key = f"std_test_{view.metric}"
        stds = results[std_key] if std_key in results else np.full(len(values), np.nan)
        display = cls(
            values=values,
            scores=results[view.key],
            stds=stds,
            candidate=view.candidate,
            labels=view.labels,
            best=view.best,
            bounds=_range_searched(view.estimator, view.name),
            param_name=view.name,
            score_name=_score_name(view.metric),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curve(s).

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ValidationCurveDisplay
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        self.lines_ = []
        shown = np.isfinite(self.values) & np.isfinite(self.scores)
        for c in np.unique(self.candidate):
            rows = np.flatnonzero(shown & (self.candidate == c))
            if rows.size == 0:
                continue
            order = rows[np.argsort(self.values[rows])]
            color = colors[int(c) % len(colors)]
            x, y, spread = self.values[order], self.scores[order], self.stds[order]
            (line,) = ax.plot(x, y, "o-", ms=3, lw=1, color=color,
                              label=self.labels[c] or None)  # fmt: skip
            self.lines_.append(line)
            if np.isfinite(spread).any():
                ax.fill_between(x, y - spread, y + spread, color=color, alpha=0.15)
        starred = self.best is not None and bool(shown[self.best])
        if starred:
            ax.plot(self.values[self.best], self.scores[self.best], "*", ms=14,
                    color="k", label="chosen", zorder=3)  # fmt: skip
        if self.bounds is not None:
            for end in self.bounds:
                ax.axvline(end, ls="--", lw=1, color="0.5")
        ax.set_xscale("log")
        ax.set_xlabel(self.param_name)
        ax.set_ylabel(self.score_name)
        _focus_scores(ax, self.scores[shown], self.stds[shown])
        if any(self.labels) or starred:
            ax.legend(loc="best", fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
