"""Plots of a hypergradient search, in scikit-learn's Display style."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["OptimizationPathDisplay"]

# Past this many hyperparameters, their median and range are drawn instead
# of one line each.
_MAX_LINES = 20


class OptimizationPathDisplay:
    """CV score and hyperparameters along the evaluations of a search.

    The upper axes show the mean cross-validated score of every evaluated
    point (scan points hollow, points with a hypergradient filled, the best
    point starred); the lower axes show the hyperparameter values (log
    scale): one line each, or their median and range when there are many.
    Searches over several candidates (HypergradientSearchCV with lists)
    draw each candidate in its own colour.

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

    Attributes
    ----------
    ax_ : ndarray of matplotlib Axes, shape (2,)
        Score axes, then hyperparameter axes.
    figure_ : matplotlib Figure
    score_lines_ : list of matplotlib Line2D
    param_lines_ : list of matplotlib Line2D

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
    ):
        self.scores = scores
        self.params = params
        self.with_gradient = with_gradient
        self.candidate = candidate
        self.best_index = best_index
        self.param_name = param_name
        self.score_name = score_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, metric=None):
        """Plot the search of a fitted skbilevel estimator or HypergradientSearchCV.

        Parameters
        ----------
        estimator : BilevelRidgeCV, BilevelLogisticCV or HypergradientSearchCV
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
        from ._base import BaseBilevelCV
        from ._search import HypergradientSearchCV, _final_step, _tunable

        if not isinstance(estimator, (BaseBilevelCV, HypergradientSearchCV)):
            raise TypeError(
                "OptimizationPathDisplay plots skbilevel estimators and "
                f"HypergradientSearchCV; got {type(estimator).__name__}."
            )
        check_is_fitted(estimator, "cv_results_")
        results = estimator.cv_results_
        if metric is None:
            metric = "score"
            if getattr(estimator, "multimetric_", False):
                metric = estimator.refit if isinstance(estimator.refit, str) else None
                if metric is None:
                    raise ValueError("With several metrics, name the one to plot.")
        key = f"mean_test_{metric}"
        if key not in results:
            raise ValueError(f"cv_results_ has no {key!r}.")
        if isinstance(estimator, HypergradientSearchCV):
            prefix, final = _final_step(estimator.estimator)
            name = "param_" + prefix + _tunable(final)[0]
        else:
            name = "param_" + estimator._param_name
        if name not in results:
            raise ValueError(f"cv_results_ has no {name!r} column to plot.")
        column = results[name]
        params = np.array(
            [np.atleast_1d(np.asarray(v, dtype=float)) for v in column.filled(np.nan)]
        )
        candidate = np.cumsum(np.asarray(results["iter"]) == 0) - 1
        display = cls(
            scores=np.asarray(results[key], dtype=float),
            params=params,
            with_gradient=np.isfinite(results["hypergradient_norm"]),
            candidate=np.maximum(candidate, 0),
            best_index=getattr(estimator, "best_index_", None),
            param_name=name[len("param_") :],
            score_name="mean CV score" if metric == "score" else f"mean CV {metric}",
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

        if ax is None:
            figure, ax = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.6))
        ax = np.asarray(ax).ravel()
        if ax.size != 2:
            raise ValueError(f"ax must hold two Axes; got {ax.size}.")
        score_ax, param_ax = ax
        evaluations = np.arange(len(self.scores))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        self.score_lines_, self.param_lines_ = [], []
        for c in np.unique(self.candidate):
            color = colors[int(c) % len(colors)]
            rows = self.candidate == c
            x = evaluations[rows]
            (line,) = score_ax.plot(x, self.scores[rows], "-", color=color, lw=1)
            self.score_lines_.append(line)
            filled = rows & self.with_gradient
            hollow = rows & ~self.with_gradient
            score_ax.plot(evaluations[filled], self.scores[filled], "o", color=color)
            score_ax.plot(
                evaluations[hollow], self.scores[hollow], "o", mfc="none", color=color
            )
            values = self.params[rows]
            if values.shape[1] <= _MAX_LINES:
                for j in range(values.shape[1]):
                    (line,) = param_ax.plot(x, values[:, j], "-", color=color, lw=1)
                    self.param_lines_.append(line)
            else:
                (line,) = param_ax.plot(x, np.median(values, axis=1), color=color)
                param_ax.fill_between(
                    x, values.min(axis=1), values.max(axis=1), color=color, alpha=0.2
                )
                self.param_lines_.append(line)
        if self.best_index is not None:
            score_ax.plot(
                self.best_index, self.scores[self.best_index], "*", ms=14, color="k"
            )
        score_ax.set_ylabel(self.score_name)
        param_ax.set_yscale("log")
        param_ax.set_ylabel(self.param_name)
        param_ax.set_xlabel("evaluation")
        self.ax_ = ax
        self.figure_ = score_ax.figure
        return self
