"""Statistics helpers of the experiment scripts (experiments/common.py)."""

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
from common import jackknife, mean_err  # noqa: E402


def test_jackknife_of_the_mean_is_its_standard_error():
    """Delete-one jackknife of a mean equals s/sqrt(n) exactly; delete-a-block is close for iid data, and for a
    pair of correlated statistics it keeps each one's own error."""
    x = np.random.default_rng(3).normal(size=(200, 2)) @ np.array([[1.0, 0.9], [0.0, 0.4]])
    _, se = mean_err(x)
    np.testing.assert_allclose(jackknife(lambda rows: x[rows].mean(0), len(x), blocks=len(x)), se, rtol=1e-12)
    blocked = jackknife(lambda rows: x[rows].mean(0), len(x), blocks=10)
    np.testing.assert_allclose(blocked, se, rtol=0.5)  # 10 blocks: the error of an error is ~1/sqrt(2 * 9) ~ 24%
