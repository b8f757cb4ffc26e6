"""
==================================================
One regularization strength per feature (ARD-like)
==================================================

With many useless features, a single ridge strength must compromise between
shrinking the noise features and keeping the informative ones. Tuning one
strength per feature (``penalty="per_feature"``: here 100 hyperparameters,
far beyond what a grid can search) lets the useless features be shrunk away.
"""

import time

import numpy as np
from sklearn.datasets import make_regression
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split

from skbilevel import BilevelRidgeCV

X, y, coef = make_regression(
    800, 100, n_informative=8, noise=20.0, coef=True, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

for penalty in ["scalar", "per_feature"]:
    start = time.perf_counter()
    model = BilevelRidgeCV(penalty=penalty).fit(X_train, y_train)
    seconds = time.perf_counter() - start
    mse = mean_squared_error(y_test, model.predict(X_test))
    print(
        f"{penalty:<12} CV MSE={-model.best_score_:8.2f}  held-out MSE={mse:8.2f}"
        f"  ({seconds:.2f} s, {model.n_iter_} outer iterations)"
    )

log_alpha = np.log10(model.alpha_)
print(
    "median log10(alpha), informative features:",
    np.median(log_alpha[coef != 0]).round(1),
    "| useless features:",
    np.median(log_alpha[coef == 0]).round(1),
)
