"""
=====================================================
One strength per input column of a ColumnTransformer
=====================================================

Tabular data mixes numeric columns with categorical ones that one-hot
encoding turns into many columns. ``penalty="per_column"`` tunes one ridge
strength per *input* column: all the one-hot columns of a categorical
variable share one, every numeric column has its own. The groups come from
the Pipeline's fitted preprocessing, which ``HypergradientSearchCV`` sees
fold by fold. The early-stopping guard (on by default) keeps the strengths
from overfitting the folds. ``StrengthsDisplay`` shows what was learnt: the
useless columns (``noise`` and ``agent``, a categorical column of 60 levels)
are penalized thousands of times more than the informative ones.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skbilevel import BilevelRidgeCV, HypergradientSearchCV
from skbilevel.plotting import StrengthsDisplay

rng = np.random.default_rng(0)
n = 800
districts = [f"d{i}" for i in range(12)]
X = pd.DataFrame(
    {
        "surface": rng.lognormal(4, 0.4, n),
        "age": rng.uniform(0, 80, n),
        "noise": rng.normal(size=n),
        "district": rng.choice(districts, n),
        "agent": rng.choice([f"a{i}" for i in range(60)], n),
    }
)
district_effect = dict(zip(districts, rng.normal(0, 0.5, 12), strict=True))
y = (
    np.log(X["surface"])
    - 0.004 * X["age"]
    + X["district"].map(district_effect)
    + rng.normal(0, 0.3, n)
)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

preprocessor = ColumnTransformer(
    [
        ("num", StandardScaler(), ["surface", "age", "noise"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["district", "agent"]),
    ]
)
for penalty in ["scalar", "per_column"]:
    pipe = make_pipeline(preprocessor, BilevelRidgeCV(penalty=penalty))
    search = HypergradientSearchCV(pipe, {"bilevelridgecv__alpha": (1e-4, 1e6)})
    search.fit(X_train, y_train)
    score = r2_score(y_test, search.predict(X_test))
    print(f"{penalty:10s}  test R2 {score:.4f}")

print(search.best_estimator_[-1].strengths_.sort_values())
StrengthsDisplay.from_estimator(search)  # lays its figure out itself
plt.show()
