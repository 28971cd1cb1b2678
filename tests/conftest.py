"""Shared helpers for the test suite."""

import json
import pathlib

import numpy as np
import pytest

import difftransport  # noqa: F401  (enables float64 before any test builds arrays)

DATA = pathlib.Path(__file__).parent / "data"


def load_reference(name: str):
    """A Kwant reference file from tests/data (copied from ../shared/reference; see REFERENCE_README.md)."""
    data = np.load(DATA / name)
    return json.loads(str(data["meta"])), data


def central_difference(f, x, h):
    """Fourth-order central difference f'(x) (truncation error ~ h^4 f^(5) / 30)."""
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
