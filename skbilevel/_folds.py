"""Cross-validation splits as the bilevel search reads them.

:class:`Splits` is the one description of a search's data, whether it comes
from an estimator (one design matrix and index arrays, possibly exact
leave-one-out) or from :class:`~skbilevel.HypergradientSearchCV` (every
split's own preprocessed parts). The fit pipeline asks it for the parts of
every split, for row readers of the stochastic mode, or for the whole
matrix when a model can share work across folds.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import check_cv

__all__ = ["FoldRows", "Splits", "check_folds"]

# Rows per chunk when gathering rows into another dtype.
_CHUNK = 8192


def _gather(A, index, dtype=None):
    """``A[index]`` (rows), in ``dtype`` if given, without a full-size temporary.

    Converting X to float32 first and indexing after would hold a float32
    copy of all of X on top of the result; chunks of rows bound that.
    """
    if dtype is None or A.dtype == dtype:
        return np.take(A, index, axis=0)
    out = np.empty((len(index), *A.shape[1:]), dtype=dtype)
    for start in range(0, len(index), _CHUNK):
        out[start : start + _CHUNK] = A[index[start : start + _CHUNK]]
    return out


def check_folds(cv, X, y, groups, sw, classifier):
    """The ``cv`` splits as index arrays, each with data and weight on both sides."""
    splitter = check_cv(cv, y, classifier=classifier)
    folds = [
        (np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y, groups)
    ]
    for k, (train, test) in enumerate(folds):
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"cv split {k} has an empty training or test part.")
        if not sw[train].sum() > 0 or not sw[test].sum() > 0:
            raise ValueError(
                f"cv split {k} has zero total sample_weight in its training or "
                "test part; its loss is undefined."
            )
    return folds


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
        if sp.issparse(A):
            A = A if dtype is None else A.astype(dtype)
            return [
                (A[tr], A[te]) for tr, te in map(self.index, range(len(self.folds)))
            ]
        if self.order is None:
            # Same row order as the views of dense arrays of the same splits.
            return [
                (_gather(A, train, dtype), _gather(A, test, dtype))
                for train, test in map(self.index, range(len(self.folds)))
            ]
        doubled = _gather(A, self.order, dtype)
        return [
            (doubled[train], doubled[test])
            for train, test in map(self._windows, range(len(self.folds)))
        ]


class Splits:
    """The data of one bilevel search: every split's training and validation parts.

    Built by :meth:`from_indices` (one design matrix and index arrays;
    ``folds=None`` is exact leave-one-out) or :meth:`from_parts` (every
    split's own, already transformed, parts). ``targets`` are the model's
    encoded targets, ``sw`` the training weights (class weights included).

    Attributes
    ----------
    widths : list of int
        Number of features of every split (given parts may differ).
    whole : tuple (X, targets, sw, folds) or None
        One design matrix and the splits' index arrays, when the splits are
        rows of one matrix: models may then share work across folds.
    y_test, score_weight : list of ndarray or None
        The user's targets and sample weights (None if not given) of every
        split's validation rows, for scorers (index splits only).
    """

    def __init__(
        self, whole=None, parts=None, y_test=None, score_weight=None, n_samples=None
    ):
        self.whole, self._parts = whole, parts
        self.y_test, self.score_weight = y_test, score_weight
        self.leave_one_out = whole is not None and whole[3] is None
        if parts is None:
            X, _, sw, folds = whole
            self.widths = [X.shape[1]] * (1 if folds is None else len(folds))
            self.n_splits = 1 if folds is None else len(folds)
            self.n_samples = X.shape[0]
            self.min_train_size = min(
                (len(tr) for tr, _ in folds or []), default=X.shape[0]
            )
        else:
            X, _, sw = parts[0][0]  # the default bounds follow the first part
            # Preprocessing may give folds different widths (rare categories).
            self.widths = [train[0].shape[1] for train, _ in parts]
            self.n_splits = len(parts)
            self.n_samples = n_samples  # the data's, not the splits' total
            self.min_train_size = min(train[0].shape[0] for train, _ in parts)
        self.bounds_data = X, sw
        self.n_features, self.sparse = max(self.widths), sp.issparse(X)

    @classmethod
    def from_indices(cls, X, targets, sw, folds, y, sample_weight):
        """Splits of one data set by index arrays; ``folds=None``: leave-one-out."""
        tests = [np.arange(X.shape[0])] if folds is None else [te for _, te in folds]
        weight = None if sample_weight is None else np.asarray(sample_weight)
        return cls(
            whole=(X, targets, sw, folds),
            y_test=[y[test] for test in tests],
            score_weight=None if weight is None else [weight[test] for test in tests],
        )

    @classmethod
    def from_parts(cls, parts, n_samples):
        """Splits given as ``[((X, targets, sw) train, (X, targets, sw) test)]``
        of a data set of ``n_samples`` rows."""
        return cls(parts=parts, n_samples=n_samples)

    def test_design(self, k):
        """The validation rows of split ``k`` (all rows for leave-one-out)."""
        if self._parts is not None:
            return self._parts[k][1][0]
        X, _, _, folds = self.whole
        return X if folds is None else X[folds[k][1]]

    def parts(self, float32_design=False):
        """``[((X, targets, sw) train, (X, targets, sw) test)]`` of every split.

        Index splits of one matrix give views of one shared copy (see
        :class:`FoldRows`). ``float32_design`` returns the float32 design of
        every training part alone, for models that form Hessians in single
        precision.
        """
        if self._parts is not None:
            if float32_design:
                return [np.asarray(tr[0], np.float32) for tr, _ in self._parts]
            return self._parts
        X, targets, sw, folds = self.whole
        rows = FoldRows(X.shape[0], folds)
        if float32_design:
            return [train for train, _ in rows.split(X, np.float32)]
        return [
            ((X_tr, t_tr, sw_tr), (X_te, t_te, sw_te))
            for (X_tr, X_te), (t_tr, t_te), (sw_tr, sw_te) in zip(
                rows.split(X), rows.split(targets), rows.split(sw), strict=True
            )
        ]

    def readers(self):
        """``[(X, targets, sw, train, test)]`` per split, read by row index.

        Index splits share one matrix (read in place, a memory map
        included); given parts are stacked, training rows first.
        """
        if self._parts is None:
            X, targets, sw, folds = self.whole
            return [(X, targets, sw, train, test) for train, test in folds]
        out = []
        for train, test in self._parts:
            stack = sp.vstack if sp.issparse(train[0]) else np.vstack
            X = stack([train[0], test[0]])
            X = X.tocsr() if sp.issparse(X) else X
            n_train = train[0].shape[0]
            out.append(
                (
                    X,
                    np.concatenate([train[1], test[1]]),
                    np.concatenate([train[2], test[2]]),
                    np.arange(n_train),
                    np.arange(n_train, X.shape[0]),
                )
            )
        return out
