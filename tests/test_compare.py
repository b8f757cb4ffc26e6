"""``python -m skbilevel compare`` from the command line's entry point."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from skbilevel.__main__ import main
from skbilevel._compare import load_dataset

METHODS = ["skbilevel (scalar)", "GridSearchCV (20)", "RandomizedSearchCV (20)"]


def _table(out):
    """method -> (seconds, best CV score, held-out score, fits)."""
    rows = {}
    for line in out.splitlines():
        for method in METHODS + ["Optuna TPE (20 trials)"]:
            if line.startswith(method):
                values = line[len(method) :].split()
                rows[method] = (*map(float, values[:3]), int(values[3]))
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
    assert grid[3] == 20 * 3 + 1
    # The hypergradient search scores at least as well as the 20-point grid.
    assert ours[1] >= grid[1] - 1e-6 * abs(grid[1])
    assert "[compare] running GridSearchCV" in captured.err  # progress lines
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
    assert from_csv["GridSearchCV (20)"][1] == pytest.approx(
        from_npy["GridSearchCV (20)"][1]
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
    csv.write_text("a,colour,label\n1,red,0\n3,blue,1\n")
    with pytest.raises(ValueError, match=r"Non-numeric feature columns \['colour'\]"):
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
