"""BilevelKernelRidgeCV: kernel ridge regression whose strength and kernel
widths are tuned by hypergradient descent on the cross-validated error."""

import numbers
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer_names
from sklearn.metrics._scorer import _BaseScorer, _PassthroughScorer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    GUARD_MIN_SAMPLES,
    GUARD_PATIENCE,
    GUARD_SAMPLES_PER_STRENGTH,
    GUARD_STANDARD_ERRORS,
    Targets,
    round_trip,
    search_results,
)
from ._docs import DocLinkMixin
from ._folds import Splits, check_folds, held_out_samples
from ._objectives import CVObjective, map_folds
from ._outer import OuterResult, minimize_box, minimize_scalar
from ._problems._kernel import (
    KERNELS,
    KernelFold,
    KernelLeaveOneOut,
    KernelSpec,
    NystroemFold,
    dense_rows,
    kernel_dual,
    nystroem_dual,
)
from ._results import RegressorPredictionsAsInput
from ._validation import check_bounds, check_sample_weight, warn_user

__all__ = ["BilevelKernelRidgeCV"]

# Most training rows of one exact split: its kernel matrix and
# diagonalization (8 n^2 bytes each, O(n^3) operations) must fit a
# workstation.
KERNEL_MAX_SAMPLES = 10_000
# approximation="auto" uses Nystroem landmarks past this many training rows
# in a split (rbf and laplacian kernels): the exact diagonalization of 5000
# rows takes about 20 s on 2 cores, per split and per width.
NYSTROEM_FROM = 5_000
# Default boxes, in units of the data (see BilevelKernelRidgeCV._boxes):
# widths times the typical distance between two rows, and strengths
# relative to the kernel's diagonal (the data term's curvature per row).
WIDTH_BOX = (1e-3, 1e2)
STRENGTH_BOX = (1e-8, 1e3)
# Per-feature widths may also switch a feature off: their box reaches this
# factor below the scalar width's.
FEATURE_OFF = 1e-3
# Scan points per decade: of the widths (each point diagonalizes every
# split's kernel matrix) and of the strength (closed form at a fixed width).
WIDTH_SCAN_PER_DECADE = 1.5
STRENGTH_SCAN_PER_DECADE = 4.0
# Scalar widths whose loss is within this fraction of the best may start the
# per-feature search (the largest of them does).
START_TOLERANCE = 1e-2
# Row pairs sampled to measure the typical distance between rows.
_DISTANCE_PAIRS = 2000


@dataclass
class KernelSearchOutcome:
    """What :meth:`BilevelKernelRidgeCV._bilevel_search` found."""

    objective: object
    result: OuterResult
    best_index: int
    theta: np.ndarray
    width_mode: str
    held_out_path: dict = None
    boxes: tuple = None  # ((log alpha range), (log gamma range)) searched


class KernelRidgeObjective(CVObjective):
    """Mean validation MSE of kernel ridge over splits, in ``theta``.

    ``theta`` holds ``log alpha`` (one, or one per target) followed by
    ``log gamma`` (none for a fixed width, one, or one per feature).

    Parameters
    ----------
    folds : list of KernelFold or [KernelLeaveOneOut]
    n_alpha : int
    n_targets : int
    n_features : int
    widths : {"fixed", "scalar", "per_feature"}
    fixed : ndarray of shape (n_features,) or None
        The widths when they are fixed.
    n_jobs : int or None
    verbose : int
    """

    def __init__(self, folds, n_alpha, n_targets, n_features, widths, fixed,
                 n_jobs=None, verbose=0):  # fmt: skip
        self.width_mode = widths
        self.n_width = {"fixed": 0, "scalar": 1, "per_feature": n_features}[widths]
        super().__init__(n_alpha + self.n_width, len(folds), verbose)
        self.folds = folds
        self.n_alpha, self.n_targets, self.n_features = n_alpha, n_targets, n_features
        self.fixed = fixed
        self.n_jobs = n_jobs
        self.param_name = "alpha"

    def _shown(self, theta):
        alphas, widths = self.split(theta)

        def values(v):
            if np.all(v == v[0]):
                return f"{v[0]:.4g}"
            return f"[min {v.min():.3g}, median {np.median(v):.3g}, max {v.max():.3g}]"

        shown = f"alpha={values(alphas)}"
        if self.n_width:
            shown += f"  gamma={values(widths)}"
        return shown

    def _row_is_accurate(self, grad):
        """Every evaluation is exact (a closed form or a direct solve), with
        or without its hypergradient: any may be chosen."""
        return True

    def split(self, theta):
        """``(alphas per target, widths per feature)`` of ``theta``."""
        theta = np.asarray(theta, dtype=float)
        alphas = np.broadcast_to(np.exp(theta[: self.n_alpha]), (self.n_targets,))
        if self.n_width == 0:
            return alphas.copy(), self.fixed
        widths = np.broadcast_to(np.exp(theta[self.n_alpha :]), (self.n_features,))
        return alphas.copy(), widths.copy()

    def _collapse(self, d_alpha, d_width):
        """Derivatives per target and feature, summed into ``theta``'s."""
        if self.n_alpha == 1:
            d_alpha = np.array([np.sum(d_alpha)])
        if self.n_width == 0:
            return d_alpha
        if self.n_width == 1:
            d_width = np.array([np.sum(d_width)])
        return np.r_[d_alpha, d_width]

    def _evaluate(self, theta, need_grad, spectral=False):
        alphas, widths = self.split(theta)
        results = map_folds(
            lambda fold: fold.loss_grad(alphas, widths, need_grad, spectral),
            self.folds,
            self.n_jobs,
        )
        losses = np.array([r[0] for r in results])
        grad = None
        if need_grad:
            d_alpha = np.mean([r[1] for r in results], axis=0)
            d_width = None
            if self.n_width:
                d_width = np.mean([r[2] for r in results], axis=0)
            grad = self._collapse(d_alpha, d_width)
        return float(losses.mean()), grad, losses, None

    # ------------------------------------------------- strengths at a width
    def best_strengths(self, widths, lo, hi, tol):
        """The exact 1-D search(es) of ``log alpha`` at fixed ``widths``.

        Every split's kernel matrix is diagonalized once; the loss at any
        strength is then a closed form (see ``strength_path``), scanned at
        ``STRENGTH_SCAN_PER_DECADE`` points a decade and refined by the
        bracketing search. One strength for all targets minimizes their
        summed loss, one per target each target's own.

        Returns
        -------
        log_alpha : ndarray of shape (n_alpha,)
        split_losses : ndarray of shape (n_splits,)
        """
        paths = map_folds(
            lambda fold: fold.strength_path(widths), self.folds, self.n_jobs
        )

        def per_target(alphas):
            values = [path(alphas) for path in paths]
            losses = np.mean([v[0] for v in values], axis=0)
            slopes = np.mean([v[1] for v in values], axis=0)
            return losses, slopes

        columns = [None] if self.n_alpha == 1 else list(range(self.n_alpha))
        n_scan = int(np.ceil((hi - lo) / np.log(10.0) * STRENGTH_SCAN_PER_DECADE)) + 1
        best = np.empty(self.n_alpha)
        for k, column in enumerate(columns):
            if not hi > lo:  # alpha fixed (a search pins an untuned one)
                best[k] = lo
                continue

            def pick(values, column=column):
                return values.sum(axis=1) if column is None else values[:, column]

            def fun(t, need_grad=True, pick=pick):
                losses, slopes = per_target(np.array([np.exp(t)]))
                return float(pick(losses)[0]), float(pick(slopes)[0])

            def scan(ts, pick=pick):
                return pick(per_target(np.exp(np.asarray(ts)))[0])

            best[k] = minimize_scalar(fun, lo, hi, scan=scan, n_scan=n_scan,
                                      tol=tol).theta[0]  # fmt: skip
        alphas = np.broadcast_to(np.exp(best), (self.n_targets,))
        split_losses = np.array([np.sum(path(alphas)[0].diagonal()) for path in paths])
        return best, split_losses

    def profile(self, t, need_grad, lo, hi, tol):
        """The CV loss at the best strength(s) for the scalar width
        ``exp(t)``, and its derivative in ``t`` (the partial derivative at
        that strength: the strengths are at their minimum)."""
        widths = np.full(self.n_features, np.exp(t)) if self.n_width else self.fixed
        log_alpha, split_losses = self.best_strengths(widths, lo, hi, tol)
        theta = np.r_[log_alpha, [t] * self.n_width]
        grad = None
        if need_grad:
            f, grad, split_losses, _ = self._evaluate(theta, True, spectral=True)
        f = float(split_losses.mean())
        self._log(theta, f, split_losses, grad)
        return f, (None if grad is None else float(np.sum(grad[self.n_alpha :])))

    # ------------------------------------------------------------- scoring
    def fold_models(self, index, single_output):
        """Every split's fitted model at evaluation ``index`` (its rows
        centered as the split's own: see KernelFold)."""
        alphas, widths = self.split(self.records[index].theta)
        return [
            _KernelFoldModel(
                fold.spec,
                widths,
                fold.basis,
                fold.dual(alphas, widths)[0],
                single_output,
            )
            for fold in self.folds
        ]

    def training_predictions(self, index, k, X_train):
        """Split ``k``'s predictions on its own training rows."""
        alphas, widths = self.split(self.records[index].theta)
        fold = self.folds[k]
        return fold.training_predictions(alphas, widths)

    def validation_predictions(self, index):
        alphas, widths = self.split(self.records[index].theta)
        if isinstance(self.folds[0], KernelLeaveOneOut):
            fold = self.folds[0]
            return [fold.Y - fold.residuals(alphas, widths)]
        return [fold.predict(alphas, widths) for fold in self.folds]


class _HeldOutGuard:
    """The per-feature path run on kept samples, judged on held-out ones.

    Parameters
    ----------
    objective : KernelRidgeObjective
        On the user's splits without the held-out samples.
    judge : KernelFold
        All the kept samples as training rows, the held-out ones as
        validation rows.
    """

    def __init__(self, objective, judge):
        self.objective = objective
        self.judge = judge
        self.path = []  # (theta, per-sample held-out losses) after each step

    @classmethod
    def build(
        cls, make_fold, spec, X, Y, sw, splits, groups, n_alpha, n_features, n_jobs
    ):  # fmt: skip
        held = held_out_samples(Y, stratify=False, groups=groups)
        kept = ~held
        if splits is None:
            folds = [KernelLeaveOneOut(spec, X[kept], Y[kept], sw[kept])]
        else:
            folds = []
            for train, test in splits:
                train, test = train[kept[train]], test[kept[test]]
                if not (sw[train].sum() > 0 and sw[test].sum() > 0):
                    return None  # a split without kept samples on a side
                folds.append(
                    make_fold(X[train], Y[train], sw[train], X[test], Y[test], sw[test])
                )
        if not (sw[kept].sum() > 0 and sw[held].sum() > 0):
            return None
        objective = KernelRidgeObjective(
            folds, n_alpha, Y.shape[1], n_features, "per_feature", None, n_jobs
        )
        judge = make_fold(X[kept], Y[kept], sw[kept], X[held], Y[held], sw[held])
        return cls(objective, judge)

    def _held_out_losses(self, theta):
        alphas, widths = self.objective.split(theta)
        errors = (self.judge.predict(alphas, widths) - self.judge.Y_val) ** 2
        return self.judge.sw_val * errors.mean(axis=1)

    def run(self, start, lo, hi, **box):
        """The path from ``start``; returns the box method's result and the
        point kept (None: the start, the scalar width)."""

        def monitor():
            theta = self.objective.records[-1].theta
            losses = self._held_out_losses(theta)
            self.path.append((theta, losses))
            return float(losses.sum() / self.judge.sw_val.sum())

        result = minimize_box(
            self.objective, start, lo, hi, monitor=monitor,
            patience=GUARD_PATIENCE, **box,
        )  # fmt: skip
        totals = np.array([losses.sum() for _, losses in self.path])
        best = int(np.argmin(totals))
        weights = self.judge.sw_val / self.judge.sw_val.sum()
        per_sample = np.divide(
            self.path[0][1] - self.path[best][1], self.judge.sw_val,
            out=np.zeros_like(weights), where=self.judge.sw_val > 0,
        )  # fmt: skip
        gain = float(weights @ per_sample)
        spread = float(np.sqrt(weights**2 @ (per_sample - gain) ** 2))
        self.chosen = best if gain > GUARD_STANDARD_ERRORS * spread else 0
        return result, (self.path[self.chosen][0] if self.chosen else None)

    def summary(self, objective):
        """``held_out_path_``: widths and held-out losses along the path."""
        total = self.judge.sw_val.sum()
        return {
            "gamma": [objective.split(theta)[1] for theta, _ in self.path],
            "held_out_loss": np.array(
                [losses.sum() / total for _, losses in self.path]
            ),
            "chosen": self.chosen,
        }


class _KernelFoldModel(RegressorMixin, BaseEstimator):
    """A split's kernel ridge model, fitted (for plain scoring callables)."""

    def __init__(self, spec=None, widths=None, X_fit=None, dual_coef=None,
                 single_output=True):  # fmt: skip
        self.spec = spec
        self.widths = widths
        self.X_fit = X_fit
        self.dual_coef = dual_coef
        self.single_output = single_output

    def predict(self, X):
        out = self.spec.matrix(dense_rows(X), self.X_fit, self.widths) @ self.dual_coef
        return out[:, 0] if self.single_output else out


class BilevelKernelRidgeCV(DocLinkMixin, RegressorMixin, BaseEstimator):
    """Kernel ridge regression with its strength and kernel widths tuned by
    hypergradient descent on the cross-validated error.

    The model is scikit-learn's :class:`~sklearn.kernel_ridge.KernelRidge`
    (no intercept; ``alpha`` and ``gamma`` as there). Its strength and the
    kernel's width(s) are chosen to minimize the mean validation MSE over
    the ``cv`` splits: for each width the strength is found exactly (the
    loss of every strength is a closed form once each split's kernel matrix
    is diagonalized), and the width by a 1-D search on the resulting curve,
    whose derivative is the hypergradient in the width at that strength.
    With ``gamma="per_feature"`` (automatic relevance determination: one
    width per feature, which no grid can search) the strength and all the
    widths then move together by the projected hypergradient method from
    that point.

    Parameters
    ----------
    kernel : {"rbf", "laplacian", "poly", "linear"}, default="rbf"
        ``"rbf"``: ``exp(-sum_d gamma_d (x_d - z_d)**2)``; ``"laplacian"``:
        ``exp(-sum_d gamma_d |x_d - z_d|)``; ``"poly"``: ``(sum_d gamma_d
        x_d z_d + coef0)**degree``; ``"linear"``: ``x . z`` (no width).
    gamma : {"scalar", "per_feature"}, float, array-like or None, \
            default="scalar"
        The width(s) tuned: one for all features, one per feature; or fixed
        (only ``alpha`` is tuned): a value, one value per feature, or None
        for ``1 / n_features`` (KernelRidge's default).
    penalty : {"scalar", "per_target"}, default="scalar"
        One strength for all target columns, or one per column.
    alpha_bounds : (float, float), default=None
        Range of ``alpha``. None: ``(1e-8, 1e3)`` times the weighted mean
        of the kernel's diagonal (the data term's curvature per row).
    gamma_bounds : (float, float), default=None
        Range of ``gamma`` (per feature: the same range for each). None:
        ``(1e-3, 1e2)`` divided by the median squared (RBF) or absolute
        (Laplacian) distance between two rows, or by the median squared
        norm of a row (polynomial); per feature, reaching
        ``1e-3`` times lower (a width that switches its feature off).
    degree : int, default=3
        Degree of the polynomial kernel.
    coef0 : float, default=1.0
        Constant of the polynomial kernel.
    cv : int, cross-validation generator, iterable or None, default=5
        As in :func:`~sklearn.model_selection.cross_val_score`. None: exact
        leave-one-out, by a closed form.
    scoring : str or callable, default=None
        What ``cv_results_`` and ``best_score_`` report (the search itself
        minimizes the weighted validation MSE). None: the negative MSE.
    max_iter : int, default=100
        Outer iterations of the per-feature search.
    tol : float, default=1e-4
        Relative tolerance of the outer searches.
    n_jobs : int, default=None
        Splits evaluated in parallel threads.
    verbose : int, default=0
        1 prints one line per hypergradient evaluation, 2 per evaluation
        (scan points too); "eval N" is ``cv_results_["iter"]`` N.
    approximation : {"auto", "exact", "nystroem"}, default="auto"
        ``"exact"`` forms and diagonalizes every split's kernel matrix
        (``O(n_train^3)``, up to 10000 training rows); ``"nystroem"`` fits
        the kernel ridge model restricted to ``n_components`` landmark rows
        drawn from each training part (``O(n_train m^2)``; rbf and
        laplacian kernels), with the same closed form in ``alpha`` and the
        same hypergradients; ``"auto"`` uses it past 5000 training rows.
        The final model then predicts from ``n_components`` landmarks of all
        the rows (``X_fit_``).
    n_components : int, default=500
        Number of Nystroem landmarks.
    random_state : int, RandomState instance or None, default=None
        Draws the Nystroem landmarks.
    early_stopping : bool or "auto", default="auto"
        Judge the per-feature path on held-out samples (the early-stopping
        guard): one sample in three (fixed seed; whole groups with
        ``groups``) is taken out of every split, the path runs on the
        others' splits from the scalar width, and after each step a model
        of all the kept samples is scored on the held-out ones. The point
        of lowest held-out loss is kept only if it beats the scalar width
        by two standard errors of the paired per-sample gains; the path
        stops after 20 steps without a held-out gain. "auto" guards
        ``gamma="per_feature"`` with fewer than 1000 samples per width (and
        at least 100 samples): there the CV loss of many widths is
        optimistic (measured on diabetes: a CV MSE 7% lower along the
        path, a test MSE 10% higher).

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_targets,)
        Chosen strength(s).
    gamma_ : float, ndarray of shape (n_features,) or None
        Chosen width(s) (None for the linear kernel).
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients of the final fit on all the data (one per
        landmark under the Nystroem approximation).
    X_fit_ : {ndarray, sparse matrix} of shape (n_samples, n_features)
        The training data, needed for prediction (the landmark rows, shape
        (n_components, n_features), under the Nystroem approximation).
    approximation_ : {"exact", "nystroem"}
        How the kernels were computed.
    alpha_bounds_ : (float, float)
        The range of ``alpha`` searched (``alpha_bounds`` as given, or the
        data's default).
    gamma_bounds_ : (float, float) or None
        The range of the width(s) searched; None for a fixed width.
    best_score_ : float
        Mean validation score of the chosen point.
    best_index_ : int
        Its row in ``cv_results_``.
    cv_results_ : dict of ndarrays
        One row per evaluation, in :class:`~sklearn.model_selection.GridSearchCV`'s
        layout (``param_alpha``, ``param_gamma``, split scores, ranks) with
        ``iter``, ``time`` and ``hypergradient_norm`` columns.
    n_iter_ : int
        Number of evaluations.
    n_splits_ : int
        Number of splits (1 for leave-one-out).
    held_out_path_ : dict or None
        Under the early-stopping guard, when it kept a point of the path:
        ``gamma`` and ``held_out_loss`` at each step and ``chosen``, the
        step kept (0 is the scalar width's). None otherwise.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has feature names that are all strings.

    See Also
    --------
    sklearn.kernel_ridge.KernelRidge : The model, at given hyperparameters.
    sklearn.gaussian_process.GaussianProcessRegressor : Widths per feature
        by the marginal likelihood instead of the cross-validated error.

    Notes
    -----
    Every split's kernel matrix is formed and diagonalized (or factorized)
    at each width, ``O(n_train^3)`` operations: training parts of up to
    ``KERNEL_MAX_SAMPLES`` (10000) rows are accepted. Computations run in
    float64.

    Examples
    --------
    >>> import numpy as np
    >>> from skbilevel import BilevelKernelRidgeCV
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-3, 3, (120, 2))
    >>> y = np.sin(X[:, 0]) + 0.1 * rng.randn(120)
    >>> model = BilevelKernelRidgeCV(gamma="per_feature").fit(X, y)
    >>> bool(model.gamma_[0] > model.gamma_[1])  # the first feature matters
    True
    """

    _parameter_constraints = {
        "kernel": [StrOptions(set(KERNELS))],
        "gamma": [
            StrOptions({"scalar", "per_feature"}),
            Interval(numbers.Real, 0, None, closed="neither"),
            "array-like",
            None,
        ],
        "penalty": [StrOptions({"scalar", "per_target"})],
        "alpha_bounds": ["array-like", None],
        "gamma_bounds": ["array-like", None],
        "degree": [Interval(numbers.Integral, 1, None, closed="left")],
        "coef0": [Interval(numbers.Real, None, None, closed="neither")],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_jobs": [numbers.Integral, None],
        "verbose": ["verbose"],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "approximation": [StrOptions({"auto", "exact", "nystroem"})],
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        kernel="rbf",
        gamma="scalar",
        penalty="scalar",
        alpha_bounds=None,
        gamma_bounds=None,
        degree=3,
        coef0=1.0,
        cv=5,
        scoring=None,
        max_iter=100,
        tol=1e-4,
        n_jobs=None,
        verbose=0,
        early_stopping="auto",
        approximation="auto",
        n_components=500,
        random_state=None,
    ):
        self.kernel = kernel
        self.gamma = gamma
        self.penalty = penalty
        self.alpha_bounds = alpha_bounds
        self.gamma_bounds = gamma_bounds
        self.degree = degree
        self.coef0 = coef0
        self.cv = cv
        self.scoring = scoring
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.early_stopping = early_stopping
        self.approximation = approximation
        self.n_components = n_components
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, groups=None):
        """Tune ``alpha`` and ``gamma`` on the ``cv`` splits, then refit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (made dense: the kernels are).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, in training and validation losses alike.
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        start_time = time.perf_counter()
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32], multi_output=True, y_numeric=True,
        )  # fmt: skip
        X64 = dense_rows(X)
        info = self._target_info(y, sample_weight)
        Y = self._encode(y, info)
        sw = check_sample_weight(sample_weight, X64)
        folds = None
        if self.cv is not None:
            folds = check_folds(self.cv, X64, y, groups, sw, classifier=False)
        splits = Splits.from_indices(X64, Y, sw, folds, y, sample_weight)
        splits.groups = None if groups is None else np.asarray(groups)
        outcome = self._bilevel_search(splits, info, start_time)
        self._store_results(outcome, splits, info)
        alphas, widths = outcome.objective.split(outcome.theta)
        spec = outcome.objective.folds[0].spec
        self._spec, self._widths = spec, widths
        self._shift = sw @ X64 / sw.sum() if spec.translation_invariant else None
        centered = self._centered(X64)
        if isinstance(outcome.objective.folds[0], NystroemFold):
            # Landmarks drawn from all the rows, after the splits' own draws.
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            rows = landmark_rows(
                X64, sw, self.n_components, np.random.default_rng(seed + 1)
            )
            dual = nystroem_dual(
                spec, centered, Y, sw, centered[rows], alphas, widths
            )  # fmt: skip
            self.X_fit_ = (X.tocsr() if sp.issparse(X) else X)[rows]
        else:
            matrix = spec.matrix(centered, centered, widths)
            dual = kernel_dual(matrix, np.sqrt(sw), Y, alphas)[0]
            self.X_fit_ = X
        self.dual_coef_ = dual[:, 0] if y.ndim == 1 else dual
        self.approximation_ = (
            "nystroem" if isinstance(outcome.objective.folds[0], NystroemFold)
            else "exact"
        )  # fmt: skip
        return self

    # ------------------------------------------------------- search hooks
    # (shared with HypergradientSearchCV, which runs _bilevel_search on the
    # preprocessed parts of its folds)
    def _target_info(self, y, sample_weight):
        y = np.asarray(y)
        return Targets(n_out=1 if y.ndim == 1 else y.shape[1], ndim=y.ndim)

    def _encode(self, y, info):
        return np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    def _bilevel_search(self, splits, info, start_time, *, callback=None, label=""):
        """Run the search on ``splits`` (a :class:`~skbilevel._folds.Splits`);
        warnings name ``label``. Reads the parameters, sets no attribute.

        Returns
        -------
        outcome : KernelSearchOutcome
        """
        spec = KernelSpec(self.kernel, int(self.degree), float(self.coef0))
        if splits.leave_one_out:
            X, Y, sw, _ = splits.whole
            if X.shape[0] < 2:
                raise ValueError(
                    "Leave-one-out (cv=None) needs at least 2 samples, got "
                    f"n_samples={X.shape[0]}."
                )
            largest = X.shape[0]
        else:
            largest = max(train[0].shape[0] for train, _ in splits.parts())
        make_fold = self._fold_factory(spec, largest, splits.leave_one_out)
        if splits.leave_one_out:
            folds = [KernelLeaveOneOut(spec, X, Y, sw)]
        else:
            folds = [make_fold(*train, *test) for train, test in splits.parts()]
        if len(set(splits.widths)) > 1:
            raise ValueError(
                "The preprocessing gives the folds different numbers of features "
                f"({sorted(set(splits.widths))}): a kernel's widths cannot follow "
                "them. Make every fold produce the same columns (e.g. "
                "OneHotEncoder(categories=[...]) listing every category)."
            )
        X, sw = splits.bounds_data
        X = dense_rows(X)
        n_features, n_targets = X.shape[1], info.n_out
        widths_mode, fixed = self._width_mode(spec, n_features)
        width_lo, width_hi = self._width_box(spec, X, sw, widths_mode)
        alpha_lo, alpha_hi = self._alpha_box(spec, X, sw, width_lo, width_hi, fixed)
        n_alpha = 1 if self.penalty == "scalar" else n_targets
        objective = KernelRidgeObjective(
            folds, n_alpha, n_targets, n_features, widths_mode, fixed, self.n_jobs,
            self.verbose,
        )  # fmt: skip
        objective.start_time, objective.callback = start_time, callback
        guard = None
        if self._guarded(widths_mode, splits.n_samples, n_features, splits):
            whole_X, whole_Y, whole_sw, index_folds = splits.whole
            guard = _HeldOutGuard.build(
                make_fold, spec, whole_X, whole_Y, whole_sw, index_folds,
                splits.groups, n_alpha, n_features, self.n_jobs,
            )  # fmt: skip
        converged, chosen, path = self._search(
            objective, widths_mode, (alpha_lo, alpha_hi), (width_lo, width_hi), guard
        )
        if not converged:
            where = f" of {label}" if label else ""
            warn_user(
                f"The outer search{where} did not converge in {self.max_iter} "
                f"iterations (tol={self.tol}); the best point found is used. "
                "Increase max_iter or tol.",
                ConvergenceWarning,
            )
        records = objective.records
        best = int(np.argmin([r.loss for r in records])) if chosen is None else chosen
        theta = records[best].theta
        result = OuterResult(theta, records[best].loss, len(records), converged)
        return KernelSearchOutcome(
            objective, result, best, theta, widths_mode, path,
            ((alpha_lo, alpha_hi), (width_lo, width_hi)),
        )  # fmt: skip

    def _search_params(self, theta, objective=None):
        """The final step's ``alpha`` and ``gamma`` at ``theta``."""
        alphas, widths = (round_trip(v) for v in objective.split(theta))
        row = {"alpha": float(alphas[0]) if objective.n_alpha == 1 else alphas}
        if objective.folds[0].spec.has_widths:
            row["gamma"] = self._user_widths(objective.width_mode, widths)
        return row

    def _scoring_view(self, objective, index, info, scorers):
        """Scorers read every split's validation predictions through a
        stand-in; a plain callable gets each split's fitted model and its
        validation rows (``inputs=None``), as GridSearchCV gives it."""
        if not all(isinstance(s, (_BaseScorer, _PassthroughScorer)) for s in scorers):
            if not isinstance(objective.folds[0], KernelLeaveOneOut):
                return objective.fold_models(index, info.ndim == 1), None
        predictions = objective.validation_predictions(index)
        stand_in = RegressorPredictionsAsInput(single_output=info.ndim == 1)
        return [stand_in] * len(predictions), predictions

    def _approximates(self, spec, largest):
        """Whether the splits use Nystroem landmarks (see ``approximation``)."""
        if self.approximation == "nystroem":
            return True
        return (
            self.approximation == "auto"
            and spec.translation_invariant
            and largest > NYSTROEM_FROM
        )

    def _fold_factory(self, spec, largest, leave_one_out):
        """``make_fold(X, Y, sw, X_val, Y_val, sw_val)``: exact splits, or
        Nystroem splits with landmarks drawn from each training part."""
        if not self._approximates(spec, largest):
            if largest > KERNEL_MAX_SAMPLES:
                raise ValueError(
                    f"BilevelKernelRidgeCV(approximation='exact') forms and "
                    f"diagonalizes each split's kernel matrix: {largest} training "
                    f"rows exceed its limit of {KERNEL_MAX_SAMPLES}. Use "
                    "approximation='nystroem' (rbf and laplacian kernels), or "
                    "subsample the rows."
                )
            return lambda *rows: KernelFold(spec, *rows)
        if leave_one_out:
            raise ValueError(
                "Leave-one-out (cv=None) is the exact closed form; with "
                f"approximation={self.approximation!r} and {largest} rows use cv=5."
            )
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        rng = np.random.default_rng(seed)

        def make_fold(X, Y, sw, X_val, Y_val, sw_val):
            landmarks = landmark_rows(dense_rows(X), sw, self.n_components, rng)
            return NystroemFold(spec, X, Y, sw, X_val, Y_val, sw_val, landmarks)

        return make_fold

    def _guarded(self, mode, n_samples, n_features, splits):
        """Whether the per-feature path runs under the early-stopping guard
        (see ``early_stopping``)."""
        if mode != "per_feature" or self.early_stopping is False:
            return False
        if splits.whole is None:  # given parts (a search's folds)
            if self.early_stopping is True:
                raise ValueError(
                    "early_stopping=True needs the samples' rows; in "
                    "HypergradientSearchCV each fold is preprocessed apart. Use "
                    "early_stopping='auto' or False."
                )
            return False
        if n_samples < GUARD_MIN_SAMPLES:
            if self.early_stopping is True:
                raise ValueError(
                    f"early_stopping=True holds out one sample in three: it needs "
                    f"at least {GUARD_MIN_SAMPLES} samples, got {n_samples}. Use "
                    "early_stopping='auto' or False."
                )
            return False
        return (
            self.early_stopping is True
            or n_samples < GUARD_SAMPLES_PER_STRENGTH * n_features
        )

    def _width_mode(self, spec, n_features):
        """``("fixed" | "scalar" | "per_feature", fixed widths or None)``."""
        if not spec.has_widths:
            return "fixed", np.zeros(n_features)
        if isinstance(self.gamma, str):
            return self.gamma, None
        if self.gamma is None:  # KernelRidge's default
            return "fixed", np.full(n_features, 1.0 / n_features)
        widths = np.asarray(self.gamma, dtype=np.float64)
        if widths.ndim > 1 or widths.size not in (1, n_features):
            raise ValueError(
                f"gamma must be a number or hold one width per feature "
                f"({n_features}); got shape {widths.shape}."
            )
        if not (np.all(np.isfinite(widths)) and np.all(widths > 0)):
            raise ValueError("gamma must hold positive, finite widths.")
        return "fixed", np.broadcast_to(widths, (n_features,)).copy()

    def _width_box(self, spec, X, sw, mode):
        """Log-width box: ``gamma_bounds``, or the data's typical distance."""
        if mode == "fixed":
            return 0.0, 0.0
        if self.gamma_bounds is not None:
            lo, hi = check_bounds(self.gamma_bounds, "gamma_bounds")
            if np.ndim(lo) or np.ndim(hi):
                raise ValueError(
                    "gamma_bounds must be one (low, high) pair of numbers: the "
                    "same range serves every feature's width."
                )
            return lo, hi
        scale = _typical_distance(spec, X)
        lo, hi = np.log(WIDTH_BOX[0] / scale), np.log(WIDTH_BOX[1] / scale)
        if mode == "per_feature":
            lo += np.log(FEATURE_OFF)
        return float(lo), float(hi)

    def _alpha_box(self, spec, X, sw, width_lo, width_hi, fixed):
        """Log-strength box: ``alpha_bounds``, or the kernel's diagonal."""
        if self.alpha_bounds is not None:
            lo, hi = check_bounds(self.alpha_bounds, "alpha_bounds")
            if np.ndim(lo) or np.ndim(hi):
                raise ValueError(
                    "alpha_bounds must be one (low, high) pair of numbers."
                )
            return lo, hi
        scales = []
        for log_width in {width_lo, width_hi}:
            widths = (
                fixed if fixed is not None else np.full(X.shape[1], np.exp(log_width))
            )
            diagonal = spec.diagonal(X, widths)
            scales.append(float(sw @ diagonal / sw.sum()))
        positive = [s for s in scales if s > 0] or [1.0]
        return (
            float(np.log(STRENGTH_BOX[0] * min(positive))),
            float(np.log(STRENGTH_BOX[1] * max(positive))),
        )

    def _search(self, objective, mode, alpha_box, width_box, guard=None):
        """Run the outer search.

        Returns
        -------
        converged : bool
        chosen : int or None
            The record the early-stopping guard chose (None: the best one).
        path : dict or None
            ``held_out_path_`` when the guard kept a point of its path.
        """
        tol = self.tol
        if mode == "fixed":
            objective.profile(0.0, False, *alpha_box, tol)
            return True, None, None
        scalar_box = width_box
        if mode == "per_feature" and self.gamma_bounds is None:
            # The default per-feature box reaches FEATURE_OFF lower than the
            # scalar width's (see _width_box); a user's range serves both.
            scalar_box = (width_box[0] - np.log(FEATURE_OFF), width_box[1])
        decades = (scalar_box[1] - scalar_box[0]) / np.log(10.0)

        def profile(t, need_grad=True):
            return objective.profile(t, need_grad, *alpha_box, tol)

        def scan(ts):
            # Every point: the loss can have two basins in the width (a
            # smooth kernel and a local one, 0.13 and 0.09 apart on a sine of
            # one feature in three), which a scan stopped where the loss
            # first rises would miss.
            return np.array([profile(t, False)[0] for t in ts])

        # The width's loss is a statistical estimate flat over wide ranges
        # (a factor 4 in gamma moved it by 0.3% on a smooth target): its
        # search stops once the loss is certified within ``tol`` of the
        # minimum, not ``tol**2`` as the strength's (whose points cost a
        # closed form, not a diagonalization per split).
        first = minimize_scalar(
            profile, *scalar_box, scan=scan, tol=np.sqrt(tol),
            n_scan=int(np.ceil(decades * WIDTH_SCAN_PER_DECADE)) + 1,
        )  # fmt: skip
        if mode == "scalar":
            return first.converged, None, None
        # Every width from a scalar one, the strength(s) with them: the
        # largest width whose loss is within START_TOLERANCE of the best.
        # Where the loss is flat in the width, the widest kernel (the
        # largest gamma) lets the hypergradient tell features apart; the
        # smallest make every kernel nearly a low-degree polynomial.
        records = objective.records
        best = min(r.loss for r in records)
        start_record = max(
            (r for r in records if r.loss <= best + START_TOLERANCE * abs(best)),
            key=lambda r: r.theta[-1],
        )
        n_alpha, n_width = objective.n_alpha, objective.n_width
        start = np.r_[
            start_record.theta[:n_alpha], np.full(n_width, start_record.theta[-1])
        ]
        lo = np.r_[np.full(n_alpha, alpha_box[0]), np.full(n_width, width_box[0])]
        hi = np.r_[np.full(n_alpha, alpha_box[1]), np.full(n_width, width_box[1])]
        box = dict(tol=tol, max_iter=self.max_iter)
        if guard is None:
            return minimize_box(objective, start, lo, hi, **box).converged, None, None
        result, chosen = guard.run(start, lo, hi, **box)
        if chosen is None:  # the held-out rows saw no gain: one width
            return result.converged, None, None
        objective(chosen, True)  # the path's point, on the user's splits
        return result.converged, len(objective.records) - 1, guard.summary(objective)

    @staticmethod
    def _user_widths(mode, widths):
        if widths is None or not np.any(widths):
            return None  # the linear kernel
        if mode == "per_feature" or np.any(widths != widths[0]):
            return widths.copy()
        return float(widths[0])

    def _centered(self, X):
        return X if self._shift is None else X - self._shift

    # ------------------------------------------------------------- results
    def _store_results(self, outcome, splits, info):
        objective = outcome.objective
        results, kept, position = search_results(
            self, objective, splits, info,
            lambda r: self._search_params(r.theta, objective),
            lambda: [fold.X_val for fold in objective.folds],
        )  # fmt: skip
        best = position[outcome.best_index]
        self.cv_results_ = results
        self.best_index_ = best
        self.best_score_ = float(results["mean_test_score"][best])
        self.n_iter_ = len(kept)
        self.n_splits_ = splits.n_splits
        self.held_out_path_ = outcome.held_out_path
        tuned = self._search_params(objective.records[kept[best]].theta, objective)
        self.alpha_ = tuned["alpha"]
        self.gamma_ = tuned.get("gamma")
        # The ranges searched (a user's as given); a width that was not
        # searched has none.
        (alpha_lo, alpha_hi), (width_lo, width_hi) = outcome.boxes
        self.alpha_bounds_ = _user_range(self.alpha_bounds, alpha_lo, alpha_hi)
        self.gamma_bounds_ = None
        if outcome.width_mode != "fixed":
            self.gamma_bounds_ = _user_range(self.gamma_bounds, width_lo, width_hi)

    # ----------------------------------------------------------- prediction
    def predict(self, X):
        """Predict with the final fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32], reset=False,
        )  # fmt: skip
        X = dense_rows(X)
        fit = self._centered(dense_rows(self.X_fit_))
        K = self._spec.matrix(self._centered(X), fit, self._widths)
        return K @ self.dual_coef_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags


def _user_range(given, lo, hi):
    """``(low, high)`` of a log range, as the user gave it if they did."""
    if given is not None:
        return float(given[0]), float(given[1])
    return float(np.exp(lo)), float(np.exp(hi))


def landmark_rows(X, sw, n_components, rng):
    """Indices of Nystroem landmarks: ``n_components`` distinct rows of
    positive weight drawn at random (all of them if fewer), in a fixed order.

    Drawn among distinct rows, so that repeating a row or doubling its
    weight draws the same landmarks (the model of a row set, with every
    distinct row a landmark, is the exact kernel ridge).
    """
    candidates = np.flatnonzero(sw > 0)
    _, first = np.unique(X[candidates], axis=0, return_index=True)
    distinct = candidates[np.sort(first)]
    # The draw follows the distinct rows' lexicographic order, not their
    # positions: the same rows are drawn whatever their order or repeats.
    order = np.lexsort(X[distinct].T[::-1])
    distinct = distinct[order]
    if distinct.size > n_components:
        distinct = distinct[rng.choice(distinct.size, n_components, replace=False)]
    return np.sort(distinct)


def _typical_distance(spec, X):
    """Median distance between two rows, as the kernel measures it: squared
    Euclidean (RBF), absolute (Laplacian), or the median squared norm of a
    row (polynomial). Sampled pairs, a fixed seed; 1 if all are zero."""
    rng = np.random.default_rng(0)
    n = X.shape[0]
    if spec.kernel == "poly":
        values = np.einsum("ij,ij->i", X, X)
    else:
        first = rng.integers(0, n, _DISTANCE_PAIRS)
        second = rng.integers(0, n, _DISTANCE_PAIRS)
        differences = X[first] - X[second]
        if spec.kernel == "rbf":
            values = np.einsum("ij,ij->i", differences, differences)
        else:
            values = np.abs(differences).sum(axis=1)
    values = values[values > 0]
    return float(np.median(values)) if values.size else 1.0
