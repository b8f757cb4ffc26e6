"""The documentation builds without a warning (API pages, gallery pages)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parents[1] / "doc"


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    # The examples themselves run in test_examples.py; here the gallery pages
    # are built without executing them.
    env = dict(os.environ, SKBILEVEL_DOC_QUICK="1", MPLBACKEND="Agg")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOC),
            str(tmp_path / "html"),
        ],  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / "html" / "generated").is_dir()  # the API reference
    assert (tmp_path / "html" / "auto_examples" / "index.html").is_file()


def test_html_diagram_links_to_the_api_pages(monkeypatch):
    """Every public estimator's diagram links to the page doc/api.rst
    generates for it (as scikit-learn's estimators link to theirs); the
    environment variable points the links at another build; a search's
    diagram shows its refit best estimator once fitted, as GridSearchCV's."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils import estimator_html_repr

    import skbilevel

    api = (DOC / "api.rst").read_text()
    names = [n for n in skbilevel.__all__ if n[0].isupper()]
    for name in names:
        estimator = getattr(skbilevel, name)
        if name == "HypergradientSearchCV":
            estimator = estimator(Ridge(), {"alpha": (1e-3, 1e3)})
        else:
            estimator = estimator()
        link = estimator._get_doc_link()
        assert link.endswith(f"/generated/skbilevel.{name}.html")
        assert f"\n   {name}\n" in api  # the page exists in the reference
        assert link in estimator_html_repr(estimator)
    monkeypatch.setenv("SKBILEVEL_DOC_URL", "file:///tmp/build/html/")
    assert skbilevel.BilevelRidgeCV()._get_doc_link() == (
        "file:///tmp/build/html/generated/skbilevel.BilevelRidgeCV.html"
    )

    X, y = load_diabetes(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), Ridge())
    search = skbilevel.HypergradientSearchCV(pipe, {"ridge__alpha": (1e-3, 1e3)})
    assert "estimator: Pipeline" in estimator_html_repr(search)
    html = estimator_html_repr(search.fit(X, y))
    assert "best_estimator_: Pipeline" in html
