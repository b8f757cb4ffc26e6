"""Which input column every output column of a fitted preprocessing comes from.

One strength per *input* column (``penalty="per_column"``) needs to know, for
every column a ColumnTransformer produces, the column of the user's data it
was made from: all one-hot columns of a categorical variable then share one
strength, and a numeric column keeps its own.
"""

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, OneToOneFeatureMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted

__all__ = ["column_groups"]


def column_groups(transformer, input_features=None):
    """Name of the input column that every output column comes from.

    Use it as the ``penalty`` of a ``Bilevel*CV`` estimator to tune one
    strength per input column of a fitted preprocessing (what
    ``penalty="per_column"`` does inside :class:`~skbilevel.HypergradientSearchCV`).

    Parameters
    ----------
    transformer : fitted transformer
        A :class:`~sklearn.compose.ColumnTransformer`, a
        :class:`~sklearn.pipeline.Pipeline` of transformers, a
        :class:`~sklearn.pipeline.FeatureUnion` or a single transformer.
        One-hot encoders map every category column to its variable;
        transformers that keep their columns one to one (scalers, imputers)
        map each to its input; outputs named ``"<input>_<suffix>"`` (e.g.
        spline bases) map to that input; outputs mixing all inputs (PCA) are
        groups of their own.
    input_features : array-like of str, default=None
        Names of the input columns; by default ``feature_names_in_`` of the
        transformer, else ``x0, x1, ...``.

    Returns
    -------
    groups : ndarray of str of shape (n_output_columns,)
        The input column of every output column, in output order.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.compose import make_column_transformer
    >>> from sklearn.preprocessing import OneHotEncoder, StandardScaler
    >>> from skbilevel import column_groups
    >>> X = pd.DataFrame({"age": [20, 30, 40], "city": ["a", "b", "c"]})
    >>> pre = make_column_transformer(
    ...     (StandardScaler(), ["age"]), (OneHotEncoder(), ["city"])
    ... ).fit(X)
    >>> column_groups(pre).tolist()
    ['age', 'city', 'city', 'city']
    """
    check_is_fitted(transformer)
    if input_features is None:
        input_features = getattr(transformer, "feature_names_in_", None)
    if input_features is None:
        n_in = _n_features_in(transformer)
        input_features = [f"x{i}" for i in range(n_in)]
    groups = _trace(transformer, [str(name) for name in input_features])
    return np.asarray(groups, dtype=object).astype(str)


def _n_features_in(transformer):
    if isinstance(transformer, Pipeline):
        for _, step in transformer.steps:
            if step not in (None, "passthrough"):
                return step.n_features_in_
    return transformer.n_features_in_


def _trace(transformer, inputs):
    """The group of every output column of ``transformer`` fed ``inputs``."""
    if transformer is None or transformer == "passthrough":
        return list(inputs)
    if transformer == "drop":
        return []
    if isinstance(transformer, Pipeline):
        for _, step in transformer.steps:
            inputs = _trace(step, inputs)
        return inputs
    if isinstance(transformer, ColumnTransformer):
        return _trace_column_transformer(transformer, inputs)
    if isinstance(transformer, FeatureUnion):
        out = []
        for _, part in transformer.transformer_list:
            out.extend(_trace(part, inputs))
        return out
    if isinstance(transformer, OneHotEncoder):
        # Columns per variable after dropped and infrequent categories.
        counts = transformer._n_features_outs
        return [name for name, count in zip(inputs, counts, strict=True)
                for _ in range(count)]  # fmt: skip
    names_out = [str(name) for name in transformer.get_feature_names_out()]
    if isinstance(transformer, OneToOneFeatureMixin) and len(names_out) == len(
        inputs
    ):  # (a multiclass TargetEncoder is not one to one: one column per class)
        return list(inputs)
    if isinstance(transformer, ClassNamePrefixFeaturesOutMixin):
        return names_out  # every output mixes all inputs (PCA, ...)
    own = getattr(transformer, "feature_names_in_", None)
    own = [f"x{i}" for i in range(len(inputs))] if own is None else list(own)
    # The longest input name that the output name is, or starts with + "_".
    by_length = sorted(range(len(own)), key=lambda i: -len(own[i]))
    out = []
    for name in names_out:
        match = next(
            (i for i in by_length
             if name == own[i] or name.startswith(own[i] + "_")),
            None,
        )  # fmt: skip
        out.append(name if match is None else inputs[match])
    return out


def _trace_column_transformer(transformer, inputs):
    n_out = sum(s.stop - s.start for s in transformer.output_indices_.values())
    out = [None] * n_out
    for name, part, _ in transformer.transformers_:
        where = transformer.output_indices_.get(name)
        if where is None or where.stop == where.start:
            continue
        columns = transformer._transformer_to_input_indices[name]
        groups = _trace(part, [inputs[i] for i in columns])
        if len(groups) != where.stop - where.start:
            raise ValueError(
                f"Could not map the outputs of ColumnTransformer step {name!r} to "
                "its input columns; give penalty an array of group ids instead."
            )
        out[where] = groups
    return out
