"""
==============================
A distributed search with dask
==============================

``HypergradientSearchCV`` runs the candidates of its list parameters through
joblib. Under ``joblib.parallel_config(backend="dask")`` with a
``dask.distributed`` client, they become tasks of the cluster. Here a local
cluster of two worker processes stands in for a real one; the results are
the same as a local run.
"""

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from skbilevel import HypergradientSearchCV

if __name__ == "__main__":  # worker processes import this module
    X, y = make_classification(5000, 30, n_informative=8, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    space = {
        "scale": [StandardScaler(), RobustScaler(), MinMaxScaler()],
        "clf__C": (1e-4, 1e4),
    }
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c,
        Client(c) as client,
        joblib.parallel_config(backend="dask"),
    ):
        print(client)
        remote = HypergradientSearchCV(
            pipe, space, scoring="neg_log_loss", n_jobs=-1
        ).fit(X, y)
    local = HypergradientSearchCV(pipe, space, scoring="neg_log_loss").fit(X, y)
    print("best parameters:", remote.best_params_)
    print("same results as locally:", np.array_equal(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    ))  # fmt: skip
