"""Blocks of rows processed in parallel threads, on the cores BLAS may use.

Two kinds of work over the rows of a tall X are split in blocks of rows:

* the fused Numba kernels (:mod:`~skbilevel._logistic_kernels`), which read
  each row of X once where two BLAS matrix-vector products read it twice,
  and release the GIL;
* Gram products ``B.T @ B`` of tall, narrow matrices: BLAS splits them over
  the small output and gains little from its threads; one single-threaded
  product per block of rows, in parallel, is twice as fast (measured on 2
  cores, 80000 x 100 float32: 16 against 34 ms).

They take as many threads as the caller's budget: a fold's share of the cores
inside :func:`~skbilevel._objectives.map_folds` (:func:`thread_budget`),
else as many as BLAS may use now (all the cores by default, a worker's share
under joblib's process backends, which limit BLAS in their workers). Kernels
and BLAS thereby never oversubscribe the cores more than BLAS alone would.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = [
    "MIN_WORK_PER_THREAD",
    "blas_controller",
    "fold_executor",
    "map_row_blocks",
    "map_tasks",
    "row_block_count",
    "row_threads",
    "thread_budget",
]

# Less work per thread than this (multiply-adds, about 1 ms of a fused pass)
# is not worth handing a block to a thread. Waking a thread costs tens of
# microseconds on bare metal, far more under some hypervisors: on a 16-core
# gVisor machine a fit on 100000 x 100 took 1.22 s with a quarter of this
# (sixteen blocks of 5000 rows) and 0.85 s with it; four times more was
# slower again (1.13 s).
MIN_WORK_PER_THREAD = 4 * 8192 * 100

_lock = threading.Lock()
_state = {"controller": None, "executor": None, "size": 0, "blas_users": 0, "folds": {}}
_local = threading.local()


def _reset_after_fork():
    """Start afresh in a forked child: the lock may have been held by another
    thread at the fork (it would stay locked there), and none of the pool's
    threads exist in the child."""
    global _lock
    _lock = threading.Lock()
    _state.update(controller=None, executor=None, size=0, blas_users=0, folds={})


os.register_at_fork(after_in_child=_reset_after_fork)


@contextmanager
def thread_budget(n_threads):
    """Give the calling thread's row blocks ``n_threads`` threads at most."""
    previous = getattr(_local, "budget", None)
    _local.budget = max(1, int(n_threads))
    try:
        yield
    finally:
        _local.budget = previous


def row_threads():
    """Threads for the calling thread's row blocks.

    The budget set by :func:`thread_budget` if any, else the number of
    threads the BLAS libraries may use now (the fewest, at least 1).
    """
    budget = getattr(_local, "budget", None)
    if budget is not None:
        return budget
    counts = [c.num_threads for c in blas_controller().lib_controllers]
    return max(1, min(counts)) if counts else 1


def blas_controller():
    """The BLAS libraries' thread controller, made at the first call (once
    NumPy and SciPy have loaded theirs) and kept: making one scans every
    loaded library (measured: 4 ms a call once scikit-learn and Numba are
    loaded, 16 times in a logistic fit on 100000 x 100)."""
    with _lock:
        if _state["controller"] is None:
            _state["controller"] = ThreadpoolController().select(user_api="blas")
        return _state["controller"]


def _executor(size):
    with _lock:
        if _state["size"] < size:
            # The older, smaller pool finishes what it was given.
            _state["executor"] = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix="skbilevel-rows"
            )
            _state["size"] = size
        return _state["executor"]


def fold_executor(size):
    """A kept pool of exactly ``size`` threads for the folds of one objective.

    Kept, not made per evaluation: joblib's threading backend starts its
    threads at every call and polls for their results every 10 ms, which
    cost more than short evaluations themselves on a 16-core machine. One
    pool per size, so that no more folds run at once than their share of
    the cores assumes. Row blocks have their own pool (a fold waits for its
    blocks: in one pool they could wait behind the folds).
    """
    with _lock:
        pool = _state["folds"].get(size)
        if pool is None:
            pool = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix="skbilevel-folds"
            )
            _state["folds"][size] = pool
        return pool


@contextmanager
def _single_threaded_blas():
    """BLAS on one thread while any caller is inside (a process-wide limit,
    counted so that overlapping sections from several folds nest)."""
    controller = blas_controller()
    with _lock:
        if _state["blas_users"] == 0:
            _state["limiter"] = controller.limit(limits=1, user_api="blas")
        _state["blas_users"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["blas_users"] -= 1
            if _state["blas_users"] == 0:
                _state["limiter"].restore_original_limits()


def row_block_count(n_rows, row_work, threads, min_rows=1):
    """Blocks :func:`map_row_blocks` splits ``n_rows`` rows into, with
    ``threads`` threads (each block at least ``min_rows`` rows and
    ``MIN_WORK_PER_THREAD`` multiply-adds of ``row_work`` a row)."""
    min_rows = max(min_rows, int(MIN_WORK_PER_THREAD // max(row_work, 1)))
    return min(threads, n_rows // min_rows)


def map_row_blocks(kernel, n_rows, row_work, blas=False, min_rows=1):
    """``[kernel(start, stop)]`` over consecutive blocks of ``n_rows`` rows.

    Parameters
    ----------
    kernel : callable
        ``kernel(start, stop)`` processes rows ``start:stop`` and returns its
        partial result; it must release the GIL (Numba ``nogil`` kernels,
        BLAS calls) to gain from the threads.
    n_rows : int
    row_work : float
        Multiply-adds per row: a block has at least
        ``MIN_WORK_PER_THREAD / row_work`` rows.
    blas : bool, default=False
        Whether ``kernel`` calls BLAS: with several blocks, BLAS then runs on
        one thread per block.
    min_rows : int, default=1
        Fewest rows in a block.

    Returns
    -------
    results : list
        One result per block, in row order (one block when the rows are too
        few to share, or the budget is one thread).
    """
    n_blocks = row_block_count(n_rows, row_work, row_threads(), min_rows)
    if n_blocks <= 1:
        return [kernel(0, n_rows)]
    bounds = np.linspace(0, n_rows, n_blocks + 1).astype(int)
    with _single_threaded_blas() if blas else nullcontext():
        return map_tasks(
            lambda i: kernel(int(bounds[i]), int(bounds[i + 1])), n_blocks, n_blocks
        )


def map_tasks(task, n_tasks, threads):
    """``[task(i) for i in range(n_tasks)]`` on up to ``threads`` threads.

    For tasks that release the GIL (row blocks of :func:`map_row_blocks`,
    LAPACK factorizations of a fraction of a millisecond each): consecutive
    tasks share a thread. The calling thread runs the first share itself:
    it would otherwise only wait, and one hand-over less matters where
    waking a thread is slow (tens of microseconds under some hypervisors).
    """
    threads = min(int(threads), n_tasks)
    if threads <= 1:
        return [task(i) for i in range(n_tasks)]
    bounds = np.linspace(0, n_tasks, threads + 1).astype(int)
    pool = _executor(threads - 1)
    futures = [
        pool.submit(lambda lo=lo, hi=hi: [task(i) for i in range(lo, hi)])
        for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True)
    ]
    out = [task(i) for i in range(bounds[0], bounds[1])]
    for future in futures:
        out.extend(future.result())
    return out
