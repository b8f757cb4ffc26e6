"""skbilevel: tune scikit-learn models' regularization by hypergradient descent."""

from ._ridge import BilevelRidgeCV

__all__ = ["BilevelRidgeCV", "__version__"]

__version__ = "0.1.0.dev0"
