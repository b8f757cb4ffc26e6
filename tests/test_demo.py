"""``python -m skbilevel demo``, the README's first command: it runs without
a warning and shows what it says it shows."""

import re
import warnings

from skbilevel.__main__ import main


def test_demo_shows_what_it_claims(capsys):
    with warnings.catch_warnings():
        # A warning here (e.g. a strength at the end of its range) would be
        # the first thing a new user sees.
        warnings.simplefilter("error")
        assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "at or below the grid's" in out  # BilevelRidgeCV vs GridSearchCV
    mse = dict(
        re.findall(
            r"(one shared alpha|one alpha per feature)\s+held-out MSE\s+([\d.]+)", out
        )
    )
    # One strength per feature helps on data with many useless features...
    assert float(mse["one alpha per feature"]) < float(mse["one shared alpha"])
    # ... by penalizing the useless features far more than the informative.
    informative, useless = map(
        float,
        re.search(r"informative features (\S+), useless features (\S+)", out).groups(),
    )
    assert useless > informative + 1.0
