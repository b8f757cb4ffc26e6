"""Sphinx configuration: API reference from the numpydoc docstrings, and the
examples as a sphinx-gallery."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import skbilevel  # noqa: E402

project = "skbilevel"
author = "the skbilevel developers"
copyright = "2026, the skbilevel developers"
release = version = skbilevel.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    # Figures in the user guide, drawn from their code at build time.
    "matplotlib.sphinxext.plot_directive",
]
autosummary_generate = True
numpydoc_show_class_members = False  # autosummary lists them
numpydoc_validation_checks = set()
exclude_patterns = ["_build"]
html_theme = "alabaster"
plot_include_source = True
plot_html_show_formats = False
plot_html_show_source_link = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    # SKBILEVEL_DOC_QUICK=1 builds the pages without running the examples
    # (the test suite runs them); the million-row one always runs in its
    # quick mode in a documentation build.
    "plot_gallery": "False" if os.environ.get("SKBILEVEL_DOC_QUICK") else "True",
    "download_all_examples": False,
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skbilevel",),
}
os.environ.setdefault("SKBILEVEL_EXAMPLE_QUICK", "1")
templates_path = ["_templates"]
