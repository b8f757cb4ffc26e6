"""
=====================================
The stochastic mode on a million rows
=====================================

With ``solver="stochastic"`` every fold's training problem and adjoint are
solved on mini-batches read in place from the data (stochastic implicit
differentiation), and only the final model is refit exactly. With
``solver="quadratic"`` (binary targets; what ``solver="auto"`` picks here)
the strengths are searched on every fold's Newton model, and only the
candidates are solved exactly. Here one strength per feature of a logistic
regression is tuned on 1,000,000 x 50 rows with each of them, next to the
deterministic mode and one plain LogisticRegression fit. Set
``SKBILEVEL_EXAMPLE_QUICK=1`` to run it on 100,000 rows.
"""

import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import ShuffleSplit, train_test_split

from skbilevel import BilevelLogisticCV

n = 100_000 if os.environ.get("SKBILEVEL_EXAMPLE_QUICK") else 1_000_000
X, y = make_classification(n, 50, n_informative=10, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
split = ShuffleSplit(1, test_size=0.2, random_state=0)  # one hold-out split

models = {}
fig, ax = plt.subplots(figsize=(6.4, 4))
for solver in ["deterministic", "stochastic", "quadratic"]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-feature searches may hit max_iter
        start = time.perf_counter()
        model = BilevelLogisticCV(
            penalty="per_feature", cv=split, solver=solver, random_state=0
        ).fit(X_train, y_train)
    seconds = time.perf_counter() - start
    held_out = log_loss(y_test, model.predict_proba(X_test))
    print(f"{solver:<14} {seconds:6.2f} s   held-out log-loss {held_out:.6f}")
    results = model.cv_results_
    ax.plot(results["time"], -np.asarray(results["mean_test_score"]), ".-",
            label=solver, alpha=0.7)  # fmt: skip
start = time.perf_counter()
plain = LogisticRegression().fit(X_train, y_train)
print(f"{'plain fit':<14} {time.perf_counter() - start:6.2f} s   held-out log-loss "
      f"{log_loss(y_test, plain.predict_proba(X_test)):.6f}")  # fmt: skip
loss = -np.asarray(model.cv_results_["mean_test_score"])
ax.set_ylim(loss[-1] * 0.995, loss[-1] * 1.05)
ax.set_xlabel("time since the start of fit (s)")
ax.set_ylabel("validation log-loss (mini-batch estimates when stochastic)")
ax.legend()
