"""The README's code examples run and reproduce the Kwant numbers they quote."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]


@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
def test_readme_examples_run(block, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})


def test_reference_interface_reproduces_kwant(monkeypatch):
    import numpy as np

    import difftransport as dt

    monkeypatch.chdir(ROOT)
    ref = np.load("tests/data/strip_magnetic.npz")
    sample = dt.Sample(dt.strip(10), 24, spinful=True)
    disorder = dt.Disorder(potential=ref["V"][0], moments=ref["m"][0])
    model = dt.Model(energy=0.7, flux=0.03, rashba=0.2, exchange=0.4)
    assert abs(dt.conductance(sample, model, disorder) - ref["G"][0, 0, 1, 1]) < 1e-9
