"""
=====================================================
The Lasso's alpha by hypergradient, next to LassoCV
=====================================================

``LassoCV`` fits a path of 100 strengths on every fold and keeps the best
grid point. :class:`~skbilevel.BilevelLassoCV` scans a few strengths from
``alpha_max`` down, then follows the hypergradient of the CV error, which
exists wherever the Lasso's support does not change (implicit
differentiation on the support), to the minimum between grid points.

Here on diabetes with all pairwise interactions (55 standardized features),
the same 5 folds for both, each chosen alpha judged by tightly converged
scikit-learn ``Lasso`` fits. The figure shows LassoCV's CV error path and the
points the hypergradient search evaluated.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import KFold
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from skbilevel import BilevelLassoCV

X, y = load_diabetes(return_X_y=True)
X = PolynomialFeatures(2, interaction_only=True, include_bias=False).fit_transform(X)
X = StandardScaler().fit_transform(X)
folds = list(KFold(5, shuffle=True, random_state=0).split(X))


def cv_mse(alpha):
    """CV mean squared error at ``alpha`` with tightly converged Lasso fits."""
    errors = []
    for train, test in folds:
        model = Lasso(alpha=alpha, tol=1e-10, max_iter=100_000)
        model.fit(X[train], y[train])
        errors.append(np.mean((model.predict(X[test]) - y[test]) ** 2))
    return np.mean(errors)


start = time.perf_counter()
path = LassoCV(cv=folds).fit(X, y)
path_seconds = time.perf_counter() - start
start = time.perf_counter()
ours = BilevelLassoCV(cv=folds).fit(X, y)
our_seconds = time.perf_counter() - start
for name, model, seconds in [
    ("LassoCV", path, path_seconds),
    ("BilevelLassoCV", ours, our_seconds),
]:
    print(
        f"{name:<15} alpha={model.alpha_:.4f}  CV MSE={cv_mse(model.alpha_):.2f}  "
        f"nonzero coefficients={np.count_nonzero(model.coef_)}  ({seconds:.2f} s)"
    )
print(f"hypergradient evaluations: {ours.n_iter_}")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(path.alphas_, path.mse_path_.mean(axis=1), label="LassoCV's path")
results = ours.cv_results_
ax.plot(
    results["param_alpha"].astype(float),
    -results["mean_test_score"],
    "o",
    label="BilevelLassoCV's evaluations",
)
ax.axvline(ours.alpha_, color="k", lw=0.8)
ax.set_xscale("log")
ax.set_ylim(top=1.2 * cv_mse(ours.alpha_))
ax.set_xlabel("alpha")
ax.set_ylabel("CV mean squared error")
ax.legend()
fig.tight_layout()
plt.show()
