import os

# scikit-learn's common checks include an array-API dispatch check that runs
# only when SciPy's array-API mode is on; it must be set before SciPy loads.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
