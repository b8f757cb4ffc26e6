"""A single place that decides how Numba kernels are compiled.

Kernels are module-level functions compiled with ``cache=True`` so that the
compiled machine code is reused across Python sessions. When no cache
directory can be written (a read-only install with no user cache), Numba
refuses ``cache=True`` at decoration time; we then compile without a cache
so that the package still imports and works, at the cost of compiling on
first use in every session.
"""

import numba

__all__ = ["jit"]


def jit(func=None, *, reassociate=False):
    """Compile ``func`` with ``@njit(cache=True, nogil=True)``, uncached if needed.

    Parameters
    ----------
    func : callable, default=None
        A function written in the Numba-supported subset of Python. Without
        it, returns a decorator (``@jit(reassociate=True)``).
    reassociate : bool, default=False
        Let LLVM reorder floating-point sums (the ``reassoc`` fast-math
        flag only: no assumption about NaN, infinities or signed zeros).
        A dot product then runs as several vector lanes instead of one
        chain of dependent additions (twice as fast on a row of 200); its
        rounding differs from the sequential sum's by a few ulps.

    Returns
    -------
    dispatcher : numba dispatcher
        The compiled function.
    """
    if func is None:
        return lambda inner: jit(inner, reassociate=reassociate)
    options = dict(nogil=True)
    if reassociate:
        options["fastmath"] = {"reassoc"}
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError:
        # "cannot cache function ...: no locator available": keep working.
        return numba.njit(cache=False, **options)(func)
