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
