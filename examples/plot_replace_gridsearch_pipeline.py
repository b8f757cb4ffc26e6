"""
================================================
Replace GridSearchCV over a pipeline in one line
================================================

A scaler and a logistic regression, tuned by GridSearchCV over 20 values of
``C`` for each of two scalers, against HypergradientSearchCV with the same
estimator and a *range* for ``C``: the list of scalers is searched
exhaustively as before, while ``C`` follows the hypergradient of the CV
log-loss. The attributes are GridSearchCV's; ``best_estimator_`` is the
same Pipeline class, refit.
"""

import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler

from skbilevel import HypergradientSearchCV
from skbilevel.plotting import OptimizationPathDisplay

X, y = make_classification(8000, 40, n_informative=10, random_state=0)
X[:, :5] *= 100.0  # a few features on another scale
pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
cv = StratifiedKFold(5, shuffle=True, random_state=0)
scalers = [StandardScaler(), RobustScaler()]

start = time.perf_counter()
grid = GridSearchCV(
    pipe,
    {"scale": scalers, "clf__C": np.logspace(-4, 4, 20)},
    scoring="neg_log_loss",
    cv=cv,
).fit(X, y)
grid_time = time.perf_counter() - start

start = time.perf_counter()
search = HypergradientSearchCV(
    pipe,
    {"scale": scalers, "clf__C": (1e-4, 1e4)},  # the only change: a range
    scoring="neg_log_loss",
    cv=cv,
).fit(X, y)
search_time = time.perf_counter() - start

print(f"{'':<22} {'time (s)':>9} {'CV log-loss':>12}  best parameters")
for name, s, seconds in [
    ("GridSearchCV", grid, grid_time),
    ("HypergradientSearchCV", search, search_time),
]:
    params = {k: v for k, v in s.best_params_.items()}
    print(f"{name:<22} {seconds:>9.2f} {-s.best_score_:>12.5f}  {params}")
print(f"speed-up: {grid_time / search_time:.1f}x; refit: {search.best_estimator_!r}")

# %%
# The path each candidate (one per scaler) took: CV score and C along the
# evaluations; hollow points are the scan, filled ones carry a hypergradient.
display = OptimizationPathDisplay.from_estimator(search)
display.figure_.suptitle("HypergradientSearchCV: one search per scaler")
