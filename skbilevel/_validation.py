"""Input checks, dtype normalization and user-facing warnings.

Parameter *types and ranges* are declared in each public class's
``_parameter_constraints`` (scikit-learn's validation); this module holds
what that language cannot say (a penalty array of the right length, bounds
that depend on each other) and the conversions every kernel relies on.
"""

import os
import sys
import warnings

import joblib
import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.utils.validation import _check_sample_weight

__all__ = [
    "as_float64_data",
    "as_float_c",
    "as_index_c",
    "check_bounds",
    "check_penalty",
    "check_sample_weight",
    "check_square_range",
    "max_abs",
    "warn_user",
]


def _package_directory(module):
    return os.path.dirname(module.__file__) + os.sep


# Code in these folders is skipped when a warning looks for the user's line.
_INTERNAL = tuple(_package_directory(m) for m in (sklearn, joblib)) + (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
)


def warn_user(message, category):
    """``warnings.warn`` attributed to the first frame outside the library.

    Fit methods are wrapped by scikit-learn's decorators and may be called by
    a Pipeline or a search: counting frames by hand breaks whenever one of
    those layers changes. The warning points at the user's line instead:
    the innermost frame whose code is not in skbilevel's, scikit-learn's or
    joblib's folder (a doctest's ``<doctest ...>`` frame is the user's).
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel of warn_user's caller
    while frame.f_back is not None:
        if not frame.f_code.co_filename.startswith(_INTERNAL):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def as_float_c(a):
    """Return ``a`` as a writable, C-contiguous float64 array (copy only if needed)."""
    a = np.asarray(a)
    if a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=np.float64, order="C")


def as_index_c(a):
    """Return ``a`` as a writable, C-contiguous int64 array (copy only if needed)."""
    a = np.asarray(a)
    if a.dtype == np.int64 and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=np.int64, order="C")


def as_float64_data(X, writable=True):
    """X as C-contiguous float64, or CSR with float64 data and int64 indices.

    Computations run in float64 whatever the input's dtype, and the kernels
    then see one type and layout only (no recompilation). ``writable=False``
    keeps a read-only dense array (a read-only memory map) in place: for
    code that passes dense X to BLAS or to the row-gathering kernels only.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        X.data = as_float_c(X.data)
        X.indices, X.indptr = as_index_c(X.indices), as_index_c(X.indptr)
        return X
    if not writable:
        return np.ascontiguousarray(X, dtype=np.float64)
    return as_float_c(X)


def check_penalty(penalty, n_features, n_targets, per_output_name):
    """Turn ``penalty`` into a coefficient-to-hyperparameter map.

    Parameters
    ----------
    penalty : {"scalar", "per_feature", per_output_name} or array-like
        Array-like: group id of every feature (any hashable values).
    n_features, n_targets : int
    per_output_name : str
        ``"per_target"`` for regressors, ``"per_class"`` for classifiers.

    Returns
    -------
    group_idx : ndarray of shape (n_features, n_targets), dtype int64
    n_hyper : int
    group_labels : ndarray or None
        The distinct group ids (in the order of the hyperparameters) for an
        array penalty, else None.
    """
    labels = None
    if isinstance(penalty, str):
        if penalty == "scalar":
            feature_group = np.zeros(n_features, dtype=np.int64)
        elif penalty == "per_feature":
            feature_group = np.arange(n_features, dtype=np.int64)
        elif penalty == per_output_name:
            group_idx = np.tile(np.arange(n_targets, dtype=np.int64), (n_features, 1))
            return group_idx, n_targets, None
        elif penalty == "per_column":
            raise ValueError(
                "penalty='per_column' gives one strength to all the columns that "
                "a Pipeline's preprocessing makes from one input column; only "
                "HypergradientSearchCV(pipeline, ...) sees that preprocessing. For "
                "this estimator alone pass the groups, e.g. "
                "penalty=skbilevel.column_groups(fitted_column_transformer)."
            )
        else:
            raise ValueError(
                f"penalty must be 'scalar', 'per_feature', '{per_output_name}' or an "
                f"array of group ids of length n_features; got {penalty!r}."
            )
    else:
        groups = np.asarray(penalty)
        if groups.ndim != 1 or groups.shape[0] != n_features:
            raise ValueError(
                "penalty given as an array must hold one group id per feature: "
                f"expected shape ({n_features},), got {groups.shape}."
            )
        if groups.dtype.kind == "f" and not np.all(np.isfinite(groups)):
            raise ValueError("penalty group ids must be finite.")
        try:
            labels, feature_group = np.unique(groups, return_inverse=True)
        except TypeError:
            raise ValueError(
                "penalty group ids must be numbers or strings that can be "
                f"sorted; got {groups.tolist()!r}."
            ) from None
        feature_group = feature_group.astype(np.int64)
    n_hyper = int(feature_group.max()) + 1 if n_features else 1
    group_idx = np.repeat(feature_group[:, None], n_targets, axis=1)
    return np.ascontiguousarray(group_idx), n_hyper, labels


def max_abs(A):
    """Largest absolute entry of a non-empty array or sparse matrix, without
    an ``|A|`` temporary (two passes instead of a copy of A)."""
    data = A.data if sp.issparse(A) else np.asarray(A)
    if data.size == 0:
        return 0.0
    return max(float(data.max()), -float(data.min()))


def check_square_range(A, name, largest=None):
    """Raise a ValueError when sums of squares of ``A`` would overflow float64.

    Losses, Gram matrices and Hessians sum squares over the rows: past
    ``sqrt(max_float / n)`` they are infinite and every strength looks alike.
    Returns the largest absolute entry (0 for an empty ``A``), for checks of
    the same data that follow. ``largest``: that entry, if already known.
    """
    if A.size == 0:
        return 0.0
    if largest is None:
        largest = max_abs(A)
    if largest > np.sqrt(np.finfo(np.float64).max / (16.0 * A.shape[0])):
        raise ValueError(
            f"{name} holds values up to {largest:.3g}: sums of their squares "
            f"overflow float64. Rescale {name} (e.g. StandardScaler, or divide "
            "by a constant)."
        )
    return largest


def check_bounds(bounds, name):
    """Validate a ``(low, high)`` pair of positive strengths; return their logs.

    Each side is a number, or an array with one value per hyperparameter
    (its length is checked against the layout later); logs come back as
    floats, or as arrays when either side is one.
    """
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a (low, high) pair of positive numbers; got {bounds!r}."
        ) from None
    sides = [np.asarray(low), np.asarray(high)]
    if any(side.dtype.kind not in "iuf" or side.ndim > 1 for side in sides):
        raise TypeError(
            f"{name} must hold real numbers (or 1-D arrays of them); got {bounds!r}."
        )
    low, high = (side.astype(np.float64) for side in sides)
    finite = np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    if not (finite and np.all(0 < low) and np.all(low <= high)):
        raise ValueError(
            f"{name} must satisfy 0 < low <= high with finite values; got {bounds!r}."
        )
    if low.ndim == high.ndim == 0:
        return float(np.log(low)), float(np.log(high))
    return np.log(low), np.log(high)


def check_sample_weight(sample_weight, X, multiplier=None):
    """Validated non-negative sample weights with a positive sum (float64).

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,) or None
    X : array-like of shape (n_samples, n_features)
    multiplier : ndarray of shape (n_samples,), default=None
        Applied before the sum is checked (class weights).
    """
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
    if np.any(sw < 0):
        raise ValueError("sample_weight must be non-negative.")
    if multiplier is not None:
        if not np.all(np.isfinite(multiplier)) or np.any(multiplier < 0):
            raise ValueError("class_weight must be non-negative and finite.")
        sw = sw * multiplier
    if not sw.sum() > 0:
        raise ValueError("sample_weight must have a positive sum.")
    return as_float_c(sw)
