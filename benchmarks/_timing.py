"""Timing shared by the benchmark scripts."""

import time

import numpy as np


def best_time(func, repeat=1):
    """Best wall time of ``repeat`` runs (after a 1 s pause each), and a result.

    The pause lets the previous method's worker threads (OpenMP, BLAS) go
    idle: right after a LogisticRegressionCV run, the same fit measured up to
    30% slower on a 2-core machine. The best of several runs is the usual
    estimate of a time on a noisy machine.
    """
    best, result = np.inf, None
    for _ in range(repeat):
        time.sleep(1.0)
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result
