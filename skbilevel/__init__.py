"""skbilevel: tune scikit-learn models' regularization by hypergradient descent."""

from ._columns import column_groups
from ._elastic_net import BilevelElasticNetCV
from ._kernel_ridge import BilevelKernelRidgeCV
from ._lasso import BilevelLassoCV
from ._logistic import BilevelLogisticCV
from ._ridge import BilevelRidgeCV
from ._search import HypergradientSearchCV

__all__ = [
    "BilevelElasticNetCV",
    "BilevelKernelRidgeCV",
    "BilevelLassoCV",
    "BilevelLogisticCV",
    "BilevelRidgeCV",
    "HypergradientSearchCV",
    "column_groups",
    "__version__",
]

__version__ = "0.1.0.dev0"
