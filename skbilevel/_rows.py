"""Row blocks of the dense Numba kernels, run in threads on BLAS's share of the cores.

The fused kernels (:mod:`~skbilevel._logistic_kernels`) read each row of X
once where two BLAS matrix-vector products read it twice; they release the
GIL, so blocks of rows run in parallel threads. They take as many threads as
BLAS is currently allowed: all the cores by default, a fold's share
inside :func:`~skbilevel._objectives.map_folds` (which limits BLAS per fold
thread), a worker's share under joblib's process backends (which limit BLAS
in their workers). Kernels and BLAS thereby never oversubscribe the cores
more than BLAS alone would.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["MIN_ROWS_PER_THREAD", "map_row_blocks", "row_threads"]

# Fewer rows per thread than this are not worth a thread's start-up (tens of
# microseconds against about 0.1 ms for 8192 rows of 100 features).
MIN_ROWS_PER_THREAD = 8192

_lock = threading.Lock()
_state = {"controller": None, "executor": None, "size": 0}


def row_threads():
    """Number of threads the BLAS libraries may use now (the fewest, at least 1)."""
    with _lock:
        if _state["controller"] is None:
            # Made at the first call, once NumPy and SciPy have loaded theirs.
            _state["controller"] = ThreadpoolController().select(user_api="blas")
        controllers = _state["controller"].lib_controllers
    counts = [c.num_threads for c in controllers]
    return max(1, min(counts)) if counts else 1


def _executor(size):
    with _lock:
        if _state["size"] < size:
            # The older, smaller pool finishes what it was given.
            _state["executor"] = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix="skbilevel-rows"
            )
            _state["size"] = size
        return _state["executor"]


def map_row_blocks(kernel, n_rows):
    """``[kernel(start, stop)]`` over consecutive blocks of ``n_rows`` rows.

    Parameters
    ----------
    kernel : callable
        ``kernel(start, stop)`` processes rows ``start:stop`` and returns its
        partial result; it must release the GIL to gain from the threads.
    n_rows : int

    Returns
    -------
    results : list
        One result per block, in row order (one block when the rows are too
        few to share, or BLAS is limited to one thread).
    """
    n_blocks = min(row_threads(), n_rows // MIN_ROWS_PER_THREAD)
    if n_blocks <= 1:
        return [kernel(0, n_rows)]
    bounds = np.linspace(0, n_rows, n_blocks + 1).astype(int)
    futures = [
        _executor(n_blocks).submit(kernel, int(start), int(stop))
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return [future.result() for future in futures]
