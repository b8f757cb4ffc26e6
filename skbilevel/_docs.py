"""Links from an estimator's HTML diagram to its page in skbilevel's API
reference, as scikit-learn's own estimators link to theirs."""

import os

# Where the documentation built by ``sphinx-build doc`` is published. The
# environment variable SKBILEVEL_DOC_URL points the links elsewhere, e.g. at
# a local build: ``file:///path/to/skbilevel/doc/_build/html``.
DOC_URL = "https://skbilevel.readthedocs.io/en/latest"


class DocLinkMixin:
    """The ``?`` of a fitted or unfitted estimator's diagram in a notebook
    opens ``<DOC_URL>/generated/skbilevel.<Class>.html``, the page that
    ``doc/api.rst`` generates for every public estimator."""

    _doc_link_module = "skbilevel"

    @property
    def _doc_link_template(self):
        base = os.environ.get("SKBILEVEL_DOC_URL", DOC_URL).rstrip("/")
        return base + "/generated/{estimator_module}.{estimator_name}.html"
