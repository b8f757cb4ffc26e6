"""Numba kernel for the Laplacian kernel's width derivatives.

The RBF and polynomial kernels' width derivatives reduce to matrix products
(see :mod:`skbilevel._problems._kernel`); the Laplacian's involves
``|x_id - z_jd|``, which no product expresses: it is summed here, row pair
by row pair, without forming the ``n_features`` derivative matrices.
"""

import numpy as np

from ._numba import jit

__all__ = ["absolute_difference_contraction"]


@jit(reassociate=True)
def absolute_difference_contraction(M, X, Z):
    """``S_d = sum_ij M_ij |X_id - Z_jd|`` for every feature ``d``.

    Parameters
    ----------
    M : ndarray of shape (n_x, n_z)
    X : ndarray of shape (n_x, n_features), C order
    Z : ndarray of shape (n_z, n_features), C order

    Returns
    -------
    S : ndarray of shape (n_features,)
    """
    n_x, n_z = M.shape
    p = X.shape[1]
    out = np.zeros(p)
    for i in range(n_x):
        for j in range(n_z):
            m = M[i, j]
            if m == 0.0:
                continue
            for d in range(p):
                out[d] += m * abs(X[i, d] - Z[j, d])
    return out
