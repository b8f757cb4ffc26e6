"""Folds on dask.distributed workers, for one large fit.

Under ``joblib.parallel_config(backend="dask")`` the folds of a deterministic
search leave the process: each fold's training problem is sent once to a
worker, where a dask *actor* keeps it with its warm-start memory (solution,
adjoint, the last Hessian and its factorization) between outer iterations.
Each evaluation then sends the hyperparameters and a warm start (a few
numbers per coefficient) and receives the fold's loss, hypergradient and
solution. The data never travels again, and no worker state is rebuilt.
"""

import time

from ._hypergradient import FoldState, fold_value_and_grad

__all__ = ["RemoteFolds", "active_dask_client"]


def active_dask_client(n_jobs):
    """The dask client of joblib's active backend when folds should use it.

    Returns None unless the active joblib backend is dask.distributed's,
    ``n_jobs`` asks for parallel work there (``n_jobs=1`` keeps the folds in
    the process) and this code is not itself running on a dask worker.
    """
    from joblib import effective_n_jobs
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend).__name__ != "DaskDistributedBackend":
        return None
    if effective_n_jobs(n_jobs) == 1:
        return None
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return backend.client
    # Already a task on a worker (a search's candidate spread by the same
    # backend): waiting there for actors would hold the worker's thread that
    # they may need.
    return None


class _FoldActor:
    """One fold's problem and warm starts, living on a dask worker."""

    def __init__(self, problem):
        self.problem = problem
        self.state = FoldState()

    def evaluate(self, theta, warm_start, kwargs):
        start = time.perf_counter()
        w0, guess = warm_start
        if w0 is not None:
            self.state.w = w0
        self.state.guess = guess
        n_failures = len(self.state.failures)
        loss, grad, w = fold_value_and_grad(self.problem, theta, self.state, **kwargs)
        failures = self.state.failures[n_failures:]
        elapsed = time.perf_counter() - start
        return loss, grad, w, failures, elapsed, self.state.tangent


class RemoteFolds:
    """The folds of a :class:`~skbilevel._objectives.FoldsObjective` as actors.

    Parameters
    ----------
    client : distributed.Client
    problems : list of InnerProblem
        Sent once each; dask places the actors on its workers.
    """

    def __init__(self, client, problems):
        futures = [
            client.submit(_FoldActor, problem, actor=True, pure=False)
            for problem in problems
        ]
        self.actors = [future.result() for future in futures]

    def evaluate(self, theta, warm_starts, kwargs):
        """All folds at ``theta``, in parallel on the workers.

        ``warm_starts``: one ``(w, guess)`` per fold (see
        :class:`~skbilevel._hypergradient.FoldState`). Returns one ``(loss,
        grad, w, new failures, seconds, tangent)`` per fold.
        """
        futures = [
            actor.evaluate(theta, warm_start, kwargs)
            for actor, warm_start in zip(self.actors, warm_starts, strict=True)
        ]
        return [future.result() for future in futures]
