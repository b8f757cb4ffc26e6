"""Inner (training) problems of the bilevel program, one module per model.

Each problem implements the protocol documented in :mod:`._base`: value,
gradient, Hessian-vector product, cross-derivative with respect to the
log-hyperparameters, a warm-startable solver, and the validation loss that
the hyperparameters are tuned for.
"""

from ._base import InnerProblem, penalty_weights
from ._logistic import LogisticProblem
from ._ridge import RidgeProblem

__all__ = ["InnerProblem", "LogisticProblem", "RidgeProblem", "penalty_weights"]
