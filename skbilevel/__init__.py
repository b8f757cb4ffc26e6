"""skbilevel: tune scikit-learn models' regularization by hypergradient descent."""

from ._logistic import BilevelLogisticCV
from ._ridge import BilevelRidgeCV

__all__ = ["BilevelLogisticCV", "BilevelRidgeCV", "__version__"]

__version__ = "0.1.0.dev0"
