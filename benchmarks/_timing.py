"""Timing shared by the benchmark scripts."""

import time
from contextlib import nullcontext

import numpy as np
from threadpoolctl import threadpool_limits


def best_time(func, repeat=1):
    """Best wall time of ``repeat`` runs (two at least), and a result.

    Every run follows a 1 s pause, which lets the previous method's worker
    threads (OpenMP, BLAS) go idle: right after a LogisticRegressionCV run,
    the same fit measured up to 30% slower on a 2-core machine. The best of
    several runs is the usual estimate of a time on a noisy machine.

    The runs alternate between the default thread pools and OpenBLAS on one
    thread, and every method gets its faster setting: where scikit-learn's
    OpenMP threads (its losses) and OpenBLAS's threads spin on the same few
    cores they can stall each other (measured on a 2-vCPU VM:
    ``LogisticRegression().fit`` on digits took 0.88 s with the default
    pools and 0.037 s with BLAS on one thread; LogisticRegressionCV on
    standardized 100000 x 100, 5.2 s against 3.1 s with one OpenMP
    thread). Timing that stall would flatter whichever method avoids it.
    """
    best, result = np.inf, None
    for run in range(max(repeat, 2)):
        time.sleep(1.0)
        with threadpool_limits(1, user_api="blas") if run % 2 else nullcontext():
            start = time.perf_counter()
            result = func()
            best = min(best, time.perf_counter() - start)
    return best, result
