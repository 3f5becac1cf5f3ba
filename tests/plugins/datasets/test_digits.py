"""The digits data set reads scikit-learn's bundled file without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from lossatlas.plugins.datasets.digits import digits_arrays


def test_digits_arrays_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    X, y = digits_arrays()
    X_ref, y_ref = load_digits(return_X_y=True)
    assert X.dtype == X_ref.dtype and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_digits_load_does_not_import_sklearn() -> None:
    code = (
        "import sys\n"
        "from lossatlas.plugins.datasets.digits import Digits, DigitsOptions\n"
        "b = Digits().load(DigitsOptions(), 0)\n"
        "print(len(b.train) + len(b.validation), 'sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1797", "False"]
