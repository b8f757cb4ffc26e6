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

__all__ = ["FoldRows", "Splits", "check_folds", "held_out_samples"]

# Share of the samples that the early-stopping guard holds out of every
# training set and every hypergradient (see Splits.guarded).
HELD_OUT_SHARE = 3  # one sample in 3
# Interleaved folds of the kept samples when the user's splits are exact
# leave-one-out.
GUARDED_LOO_FOLDS = 5

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


def held_out_samples(targets, stratify, groups=None):
    """Boolean mask of one sample in three, in a fixed shuffled order.

    A fixed seed keeps fits reproducible; with ``stratify`` the shuffled
    samples are grouped by class before taking every third, so the held-out
    samples hold every class in its proportion. With ``groups``, whole
    groups are held out (one in three), so no group-mate of a held-out
    sample trains a model.
    """
    rng = np.random.default_rng(0)
    if groups is not None:
        labels, index = np.unique(groups, return_inverse=True)
        held_labels = np.zeros(len(labels), dtype=bool)
        held_labels[rng.permutation(len(labels))[1::HELD_OUT_SHARE]] = True
        return held_labels[index]
    n_samples = targets.shape[0]
    order = rng.permutation(n_samples)
    if stratify:
        key = targets if targets.ndim == 1 else targets[:, 0]
        order = order[np.argsort(key[order], kind="stable")]
    held = np.zeros(n_samples, dtype=bool)
    held[order[HELD_OUT_SHARE // 2 :: HELD_OUT_SHARE]] = True
    return held


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

    def split(self, A, dtype=None, column_major=False):
        """``[(A_train, A_test)]`` per split, rows in the order of :meth:`index`.

        Dense arrays are views of one doubled copy (in ``dtype`` if given)
        when the splits partition the samples; sparse matrices and other
        splits are indexed (copied) fold by fold. Validation rows keep the
        order of the split's test indices. ``column_major`` returns dense
        parts as Fortran-ordered copies, taken from one column-major copy
        of ``A`` (for column-wise solvers: gathering rows in C order and
        transposing each fold after costs several times more).
        """
        if column_major and not sp.issparse(A):
            columns = np.asfortranarray(A, dtype=dtype).T  # C-ordered A.T
            return [
                tuple(np.take(columns, rows, axis=1).T for rows in self.index(k))
                for k in range(len(self.folds))
            ]
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
        self,
        whole=None,
        parts=None,
        y_test=None,
        score_weight=None,
        n_samples=None,
        indices=None,
    ):
        self.whole, self._parts, self.indices = whole, parts, indices
        # Group labels of the samples (a group-aware cv), for the guard.
        self.groups = None
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
        # (bounds_data's X, its largest absolute entry) once the search has
        # checked it (BaseBilevelCV._bilevel_search), for later checks.
        self.largest_entry = None
        # (bounds_data's X, its dense_column_summary) when the estimator computed
        # it already (in the pass that checks X's entries are finite).
        self.column_summary = None
        # The encoded targets of the same rows (a box may follow them).
        self.bounds_targets = whole[1] if parts is None else parts[0][0][1]
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
    def from_parts(cls, parts, n_samples, indices=None):
        """Splits given as ``[((X, targets, sw) train, (X, targets, sw) test)]``
        of a data set of ``n_samples`` rows; ``indices``: the ``(train, test)``
        sample indices of every part's rows (the early-stopping guard needs
        them)."""
        return cls(parts=parts, n_samples=n_samples, indices=indices)

    @property
    def can_hold_out(self):
        """Whether :meth:`guarded` can build its splits: splits that validate
        every sample once (K-fold, leave-one-out), whose rows are known.

        Other splits (time series, shuffle-split) leave samples out of some
        splits or train on the future of others: held-out samples would not
        be predicted alike by every split.
        """
        if self.leave_one_out:
            return True
        if self._parts is None:
            folds = self.whole[3]
        elif self.indices is None:
            return False
        else:
            folds = self.indices
        tests = np.concatenate([test for _, test in folds])
        return (
            len(tests) == self.n_samples
            and all(len(train) + len(test) == self.n_samples for train, test in folds)
            and np.array_equal(np.sort(tests), np.arange(self.n_samples))
        )

    def guarded(self, stratify):
        """The early-stopping guard's splits: ``(splits, held-out masks)``.

        One sample (or group, see :attr:`groups`) in three
        (:func:`held_out_samples`) leaves every training part and joins every
        split's validation rows, at their end and in the same order: the
        masks mark them. The other validation rows drive the hypergradient;
        the held-out ones, on which no model of the search was trained and no
        hypergradient looked, judge its path. Exact leave-one-out becomes 5
        interleaved folds of the kept samples. Needs :attr:`can_hold_out`.
        """
        if self._parts is None:
            X, targets, sw, folds = self.whole
            held = held_out_samples(targets, stratify, self.groups)
            kept = np.flatnonzero(~held)
            if folds is None:
                part = np.arange(len(kept)) % GUARDED_LOO_FOLDS
                folds = [
                    (kept[part != k], kept[part == k]) for k in range(GUARDED_LOO_FOLDS)
                ]
            rows = np.flatnonzero(held)
            new = [(tr[~held[tr]], np.r_[te[~held[te]], rows]) for tr, te in folds]
            masks = [np.r_[np.zeros(len(te) - len(rows)), np.ones(len(rows))] > 0
                     for _, te in new]  # fmt: skip
            return Splits.from_indices(X, targets, sw, new, targets, None), masks
        first = self._parts[0][0][1]
        targets = np.empty((self.n_samples, *first.shape[1:]), dtype=first.dtype)
        for (train, test), (tr_idx, te_idx) in zip(
            self._parts, self.indices, strict=True
        ):
            targets[tr_idx], targets[te_idx] = train[1], test[1]
        held = held_out_samples(targets, stratify, self.groups)
        parts, masks = [], []
        for (train, test), (tr_idx, te_idx) in zip(
            self._parts, self.indices, strict=True
        ):
            # The held-out rows, as this split's preprocessing transformed
            # them, in the order of their sample indices.
            index = np.r_[tr_idx[held[tr_idx]], te_idx[held[te_idx]]]
            order = np.argsort(index, kind="stable")
            pieces = [
                _stack([train[j][held[tr_idx]], test[j][held[te_idx]]])[order]
                for j in range(3)
            ]
            keep_tr, keep_te = ~held[tr_idx], ~held[te_idx]
            validation = tuple(_stack([test[j][keep_te], pieces[j]]) for j in range(3))
            parts.append((tuple(part[keep_tr] for part in train), validation))
            masks.append(np.r_[np.zeros(keep_te.sum()), np.ones(len(index))] > 0)
        return Splits.from_parts(parts, self.n_samples), masks

    def test_design(self, k):
        """The validation rows of split ``k`` (all rows for leave-one-out)."""
        if self._parts is not None:
            return self._parts[k][1][0]
        X, _, _, folds = self.whole
        return X if folds is None else X[folds[k][1]]

    def parts(self, float32_design=False, column_major=False):
        """``[((X, targets, sw) train, (X, targets, sw) test)]`` of every split.

        Index splits of one matrix give views of one shared copy (see
        :class:`FoldRows`). ``float32_design`` returns the float32 design of
        every training part alone, for models that form Hessians in single
        precision. ``column_major`` gives dense designs in Fortran order
        (see :meth:`FoldRows.split`); given parts are returned as they are.
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
                rows.split(X, column_major=column_major),
                rows.split(targets),
                rows.split(sw),
                strict=True,
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
            X = _stack([train[0], test[0]])
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


def _stack(blocks):
    """Rows of ``blocks`` one after another (dense, sparse or 1-D)."""
    if sp.issparse(blocks[0]):
        return sp.vstack(blocks, format="csr")
    return np.concatenate(blocks, axis=0)
