"""``python -m skbilevel compare`` from the command line's entry point."""

import re

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from skbilevel.__main__ import main
from skbilevel._compare import load_dataset

METHODS = ["skbilevel (scalar)", "GridSearchCV (20)", "RandomizedSearchCV (20)"]


def _table(out):
    """method -> (chosen, seconds, best CV score, CV std, held-out score, fits).

    Cells are separated by two spaces or more (a cell holds single ones).
    """
    rows = {}
    for line in out.splitlines():
        for method in METHODS + ["Optuna TPE (20 trials)"]:
            if line.startswith(method):
                cells = re.split(r"\s{2,}", line[len(method) :].strip())
                chosen, numbers, fits = cells[0], cells[1:5], cells[5]
                rows[method] = (chosen, *map(float, numbers), int(fits.split()[0]))
    return rows


@pytest.mark.parametrize("dataset", ["diabetes", "breast_cancer"])
def test_compare_bundled_datasets(dataset, capsys):
    assert main(["compare", dataset, "--cv", "3"]) == 0
    captured = capsys.readouterr()
    rows = _table(captured.out)
    assert set(METHODS) <= set(rows)
    assert "Optuna TPE (20 trials)" in rows  # optuna is a test dependency
    grid = rows["GridSearchCV (20)"]
    ours = rows["skbilevel (scalar)"]
    assert grid[5] == 20 * 3 + 1
    # The hypergradient search scores at least as well as the 20-point grid.
    assert ours[2] >= grid[2] - 1e-6 * abs(grid[2])
    assert "[compare] running GridSearchCV" in captured.err  # progress lines
    assert "[compare] warm-up" in captured.err  # compile time not counted
    scoring = "neg_log_loss" if dataset == "breast_cancer" else "neg_mean_squared"
    assert scoring in captured.out


def test_compare_csv_and_npy_files(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    X, y = load_diabetes(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(10)])
    frame.insert(3, "progression", y)  # the target need not be last
    csv = tmp_path / "diabetes.csv"
    frame.to_csv(csv, index=False)
    plot = tmp_path / "curves.png"
    code = main(
        [
            "compare",
            str(csv),
            "--target",
            "progression",
            "--cv",
            "3",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0 and plot.stat().st_size > 0
    from_csv = _table(capsys.readouterr().out)
    npy = tmp_path / "diabetes.npy"
    np.save(npy, np.column_stack([X, y]))
    assert main(["compare", str(npy), "--cv", "3"]) == 0
    from_npy = _table(capsys.readouterr().out)
    # Same data, same folds: the same best CV score.
    assert from_csv["GridSearchCV (20)"][2] == pytest.approx(
        from_npy["GridSearchCV (20)"][2]
    )


def test_load_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="No such file"):
        load_dataset(str(tmp_path / "missing.csv"))
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,label\n1,2,x\n3,4,y\n")
    with pytest.raises(
        ValueError, match=r"Column 'c' is not in .*\['a', 'b', 'label'\]"
    ):
        load_dataset(str(csv), "c")
    csv.write_text("a,colour,label\n1,,0\n3,,1\n")
    with pytest.raises(ValueError, match=r"columns \['colour'\] .* entirely blank"):
        load_dataset(str(csv), "label")
    npy = tmp_path / "data.npy"
    np.save(npy, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="column index"):
        load_dataset(str(npy), "7")
    with pytest.raises(ValueError, match="own target"):
        load_dataset("iris", "0")


def test_command_line_errors_exit_with_a_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "nope"])
    assert exit_info.value.code == 2
    assert "Unknown dataset 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "diabetes", "--estimator", "logistic"])
    assert "class labels" in capsys.readouterr().err


def test_inputs_checked_before_the_comparison(tmp_path, capsys):
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,label\n1,2,x\n3,4,\n5,6,y\n")
    with pytest.raises(ValueError, match=r"blank cell\(s\) \(data rows \[2\]"):
        load_dataset(str(csv))
    # --plot is checked before any search runs (a missing folder, a format
    # matplotlib cannot write).
    for plot, message in [
        (tmp_path / "missing" / "curves.png", "does not exist"),
        (tmp_path / "curves.docx", "extension must be one of"),
    ]:
        with pytest.raises(SystemExit):
            main(["compare", "diabetes", "--plot", str(plot)])
        assert message in capsys.readouterr().err


def test_integer_target_with_many_values_is_a_regression():
    from skbilevel._compare import compare

    rng = np.random.RandomState(0)
    X = rng.randn(120, 3)
    y = np.round(10 * X[:, 0] + 20).astype(int)  # ~40 distinct integers
    assert len(np.unique(y)) > 20
    runs = compare(X, y, cv=3)
    assert runs[0]["scoring"] == "neg_mean_squared_error"


def _messy_csv(path, n=240, seed=0):
    """A table as it comes: text categories, blanks in numeric and text
    columns, a boolean, an integer count; the target depends on them all."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    size = rng.normal(size=n)
    rooms = rng.integers(1, 6, size=n)
    city = rng.choice(["Lyon", "Oslo", "Quito"], size=n)
    garden = rng.random(n) < 0.4
    price = (
        3 * size + rooms + np.select([city == "Oslo", city == "Quito"], [4, -2], 0)
        + 2 * garden + rng.normal(scale=0.5, size=n)
    )  # fmt: skip
    frame = pd.DataFrame(
        {"size": size, "rooms": rooms, "city": city, "garden": garden, "price": price}
    )
    frame.loc[rng.random(n) < 0.1, "size"] = np.nan
    frame.loc[rng.random(n) < 0.05, "city"] = np.nan
    frame.to_csv(path, index=False)
    return frame


def test_compare_a_csv_with_categories_and_blanks(tmp_path, capsys):
    """The default preprocessing (imputation, scaling, one-hot encoding) is
    applied and said; the table shows the chosen strength and the CV standard
    deviation, counts fold fits honestly, and its columns line up."""
    from skbilevel._compare import compare, format_table, make_preprocessing

    csv = tmp_path / "houses.csv"
    frame = _messy_csv(csv)
    assert main(["compare", str(csv), "--target", "price", "--cv", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        "features: 2 numeric columns: median imputation (1 with missing values), "
        "standardized; 2 categorical columns: most frequent imputation (1 with "
        "missing values), one-hot encoded into 5 columns (fitted in every fold)"
    ) in out
    rows = _table(out)
    assert set(METHODS) <= set(rows)
    ours, grid = rows["skbilevel (scalar)"], rows["GridSearchCV (20)"]
    assert float(ours[0]) > 0 and ours[3] > 0  # the chosen alpha, the CV std
    assert ours[2] >= grid[2] - 1e-6 * abs(grid[2])
    # The columns line up: every right-aligned cell ends under its header.
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("method"))
    for name in ("alpha", "time (s)", "best CV", "CV std", "held-out"):
        end = header.index(name) + len(name)
        for line in lines[lines.index(header) + 2 :]:
            assert line[end - 1] != " " and line[end] == " ", (name, line)

    X, y = frame.drop(columns="price"), frame["price"].to_numpy()
    preprocessing, _ = make_preprocessing(X)
    assert preprocessing.fit_transform(X).shape == (len(X), 2 + 5)
    runs = compare(X, y, cv=3)
    ours = runs[0]
    n_evaluations = ours["n_evaluations"]
    assert ours["n_fits"] == n_evaluations * 3 + 1
    assert 0 < ours["n_hypergradients"] <= n_evaluations
    assert runs[1]["n_fits"] == 20 * 3 + 1 and runs[1]["n_hypergradients"] == 0
    fits_cell = format_table(runs, "neg_mean_squared_error")[5].split("  ")[-1]
    assert (
        fits_cell == f"{ours['n_fits']} ({ours['n_hypergradients']} with hypergradient)"
    )


def test_compare_plot_has_readable_time_ticks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skbilevel._compare import curves_figure

    runs = [
        dict(method="a", curve=(np.array([0.003, 0.02, 0.4]), np.array([-3, -2, -1]))),
    ]
    fig = curves_figure(runs, "neg_log_loss")
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    shown = [label for label in labels if 0.003 <= float(label) <= 0.4]
    assert {"0.01", "0.02", "0.05", "0.1"} <= set(shown)
    assert not any("$" in label for label in labels)  # no 10^k mathtext
    plt.close(fig)
