"""
============================================
Hypergradient methods: accuracy against work
============================================

The hypergradient needs the adjoint ``v = H^{-1} g`` of every fold. The
``direct`` method factorizes the Hessian; ``cg`` (conjugate gradient),
``fixed_point`` (gradient steps on ``H v = g``), ``neumann`` (the truncated
series of the same iteration) and ``itd`` (reverse-mode differentiation
through unrolled gradient steps) trade accuracy for Hessian-vector products.
This script measures each one's error against the exact hypergradient on one
logistic-regression fold, for increasing iteration budgets.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

from skbilevel._hypergradient import FoldState, fold_value_and_grad
from skbilevel._problems import LogisticProblem

X, y = make_classification(3000, 20, n_informative=8, random_state=0)
X = StandardScaler().fit_transform(X)
train, test = np.arange(2000), np.arange(2000, 3000)
n_features = X.shape[1]
groups = np.vstack([np.arange(n_features)[:, None], [[-1]]]).astype(np.int64)
problem = LogisticProblem(
    X[train], y[train], np.ones(2000), 1, groups, n_features, True,
    X_val=X[test], targets_val=y[test], sw_val=np.ones(1000),
)  # fmt: skip
theta = np.log(np.logspace(-1, 2, n_features))  # one strength per feature


def hypergradient(method, budget):
    start = time.perf_counter()
    _, grad, _ = fold_value_and_grad(
        problem, theta, FoldState(), method=method, need_grad=True,
        inner_tol=1e-12, adjoint_tol=1e-14, adjoint_max_iter=budget,
    )  # fmt: skip
    return grad, time.perf_counter() - start


exact, direct_time = hypergradient("direct", 1)
budgets = [2, 5, 10, 20, 50, 100, 200, 500]
fig, ax = plt.subplots(figsize=(6.4, 4))
for method in ["cg", "fixed_point", "neumann", "itd"]:
    errors = []
    for budget in budgets:
        grad, _ = hypergradient(method, budget)
        errors.append(np.linalg.norm(grad - exact) / np.linalg.norm(exact))
    ax.loglog(budgets, errors, "o-", label=method)
    print(f"{method:<12} relative error at {budgets[-1]} iterations: {errors[-1]:.1e}")
ax.axhline(1e-12, color="k", ls=":", label=f"direct ({direct_time * 1e3:.0f} ms)")
ax.set_xlabel("iterations (Hessian-vector products)")
ax.set_ylabel("relative error of the hypergradient")
ax.set_title("20 per-feature strengths, one logistic fold")
ax.legend()
