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


def jit(func):
    """Compile ``func`` with ``@njit(cache=True, nogil=True)``, uncached if needed.

    Parameters
    ----------
    func : callable
        A function written in the Numba-supported subset of Python.

    Returns
    -------
    dispatcher : numba dispatcher
        The compiled function.
    """
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:
        # "cannot cache function ...: no locator available": keep working.
        return numba.njit(cache=False, nogil=True)(func)
