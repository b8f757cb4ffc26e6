"""
===================================================
Replace GridSearchCV over Ridge with BilevelRidgeCV
===================================================

GridSearchCV fits one model per grid point and per fold. BilevelRidgeCV
differentiates the cross-validated error with respect to ``alpha`` and
follows that derivative, so the optimum is not limited to grid points and
costs a handful of cheap evaluations after one eigendecomposition per fold.

This script compares both on the same folds and, if matplotlib is installed,
plots the CV error along the path each method took.
"""

import time

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold

from skbilevel import BilevelRidgeCV

X, y = load_diabetes(return_X_y=True)
cv = KFold(5, shuffle=True, random_state=0)

start = time.perf_counter()
search = GridSearchCV(
    Ridge(), {"alpha": np.logspace(-6, 6, 50)}, cv=cv, scoring="neg_mean_squared_error"
).fit(X, y)
grid_time = time.perf_counter() - start

start = time.perf_counter()
bilevel = BilevelRidgeCV(cv=cv).fit(X, y)
bilevel_time = time.perf_counter() - start

print(
    f"GridSearchCV:   alpha={search.best_params_['alpha']:.4g} "
    f"CV MSE={-search.best_score_:.2f} in {grid_time:.3f} s"
)
print(
    f"BilevelRidgeCV: alpha={bilevel.alpha_:.4g} "
    f"CV MSE={-bilevel.best_score_:.2f} in {bilevel_time:.4f} s"
)

try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    res = bilevel.cv_results_
    alphas = np.array([p["alpha"] for p in res["params"]])
    refine = np.isfinite(res["hypergradient_norm"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(
        search.cv_results_["param_alpha"].astype(float),
        -search.cv_results_["mean_test_score"],
        "o",
        ms=3,
        label="GridSearchCV (50 fits x 5 folds)",
    )
    ax.semilogx(
        alphas[~refine],
        -res["mean_test_score"][~refine],
        ".",
        label="BilevelRidgeCV: closed-form scan",
    )
    ax.semilogx(
        alphas[refine],
        -res["mean_test_score"][refine],
        "x",
        ms=8,
        label="BilevelRidgeCV: hypergradient steps",
    )
    ax.set_xlabel("alpha")
    ax.set_ylabel("5-fold CV MSE")
    ax.set_ylim(top=-search.best_score_ * 1.5)
    ax.legend()
    fig.tight_layout()
