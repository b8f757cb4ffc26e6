"""scikit-learn's own tests of GridSearchCV, run against HypergradientSearchCV.

The installed scikit-learn ships ``model_selection/tests/test_search.py``.
It is copied at test time (never into this repository) with one change:
after its imports, the name ``GridSearchCV`` means a thin adapter, a
HypergradientSearchCV with GridSearchCV's signature (``param_grid``), so
that every test written for GridSearchCV (lists over SVC, pipelines,
failing fits, callable and multi-metric scorers, metadata routing,
callbacks, ...) checks the drop-in. RandomizedSearchCV and the halving
searches in the same file are left as they are. The copy runs in a child
pytest with scikit-learn's conftest (its fixtures and markers).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sklearn

# Tests of that file that cannot apply to HypergradientSearchCV, with why.
# Empty: with scikit-learn 1.9.1 every one passes (its skips are its own:
# the array API tests need array_api_strict, torch, cupy or dpnp).
NOT_APPLICABLE = {}

ADAPTER = '''

# --- skbilevel: GridSearchCV here means HypergradientSearchCV ---------------
import numpy as _np

from skbilevel import HypergradientSearchCV as _HypergradientSearchCV


class GridSearchCV(_HypergradientSearchCV):
    """HypergradientSearchCV with GridSearchCV's signature."""

    # HypergradientSearchCV's own parameters, at their defaults.
    max_iter, tol, random_state, refit_by = 100, 1e-4, None, "scoring"
    param_grid = None  # a parameter here, not the base class's alias

    def __init__(self, estimator, param_grid, *, scoring=None, n_jobs=None,
                 refit=True, cv=None, verbose=0, pre_dispatch="2*n_jobs",
                 error_score=_np.nan, return_train_score=False):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.refit = refit
        self.cv = cv
        self.verbose = verbose
        self.pre_dispatch = pre_dispatch
        self.error_score = error_score
        self.return_train_score = return_train_score

    @property
    def param_space(self):
        return self.param_grid
# ---------------------------------------------------------------------------
'''

# The last import of the file; the adapter goes right after it, before any
# test (and any parametrize list) names GridSearchCV.
LAST_IMPORT = "from sklearn.utils.validation import _num_samples\n"


@pytest.mark.slow
def test_scikit_learn_gridsearch_suite_passes_against_the_adapter(tmp_path):
    source = Path(sklearn.__file__).parent / "model_selection/tests/test_search.py"
    assert source.is_file(), f"scikit-learn {sklearn.__version__} ships no {source}"
    text = source.read_text()
    assert text.count(LAST_IMPORT) == 1, (
        f"The imports of {source} changed: place the adapter after the new last one."
    )
    copy = tmp_path / "test_search_adapted.py"
    copy.write_text(text.replace(LAST_IMPORT, LAST_IMPORT + ADAPTER))
    command = [
        sys.executable, "-m", "pytest", str(copy), "-q", "-p", "no:cacheprovider",
        "-p", "sklearn.conftest", "--rootdir", str(tmp_path),
        "-W", "ignore::DeprecationWarning",
    ]  # fmt: skip
    for name in NOT_APPLICABLE:
        command += ["--deselect", f"{copy}::{name}"]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout else ""
    failed = re.findall(r"^FAILED (\S+)", result.stdout, flags=re.MULTILINE)
    assert result.returncode == 0, (
        f"{summary}\nfailed: {failed}\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    )
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 100, summary  # the tests did run
