"""Helpers of the experiment scripts (experiments/common.py) and the statistics they use (difftransport.stats)."""

import numpy as np

from conftest import experiment
from difftransport.stats import jackknife, mean_stderr

common = experiment("common")


def test_jackknife_of_the_mean_is_its_standard_error():
    """Delete-one jackknife of a mean equals s/sqrt(n) exactly; delete-a-block is close for iid data, and for a
    pair of correlated statistics it keeps each one's own error."""
    x = np.random.default_rng(3).normal(size=(200, 2)) @ np.array([[1.0, 0.9], [0.0, 0.4]])
    _, se = mean_stderr(x)
    np.testing.assert_allclose(jackknife(lambda p: p.mean(0), x, blocks=len(x))[1], se, rtol=1e-12)
    blocked = jackknife(lambda rows: x[rows].mean(0), np.arange(len(x)), blocks=10)[1]
    np.testing.assert_allclose(blocked, se, rtol=0.5)  # 10 blocks: the error of an error is ~1/sqrt(2 * 9) ~ 24%


def test_sheet_conductance_takes_the_lead_channels_at_each_flux():
    """The leads carry the field: a 64-wide lead at E = 1 has 43 channels at zero flux and 30 at 0.01 h/e per
    plaquette (cyclotron diameter ~ 2 k_F l_B^2 below the width), so sigma(phi) must subtract 1/N(phi). A
    two-terminal G built from a known sheet conductance and each N is inverted exactly; a grid axis fixed by an
    override (one rashba value) drops out of the shape, and a shape that does not match the grid is an error."""
    import pytest

    import difftransport as dt
    from difftransport.runs import validate

    sheet_conductance = common.sheet_conductance

    config = validate({"run": {"seed": 1, "realizations": 2},
                       "ensembles": {"sq": {"sample": {"lattice": "strip", "width": 64, "length": 64},
                                            "model": {"energy": 1.0}, "disorder": {"strength": 1.0},
                                            "grid": {"flux": [0.0, 0.01]}}}})
    sample = dt.Sample(dt.strip(64), 64)
    expected = [float(dt.open_channels(sample, dt.Model(energy=1.0, flux=f))) for f in (0.0, 0.01)]
    assert expected == [43.0, 30.0]
    sigma = np.array([[2.0, 2.1], [1.5, 1.6]])
    g = 1 / (1 / sigma + 1 / np.asarray(expected))  # square: 1/G = 1/sigma + 1/N
    got, channels = sheet_conductance(config, "sq", g)
    np.testing.assert_allclose(channels, expected)
    np.testing.assert_allclose(got, sigma, rtol=1e-12)
    with pytest.raises(ValueError, match="expected \\(realizations, flux\\)"):
        sheet_conductance(config, "sq", g[:, 0])
    _, fixed = sheet_conductance(config, "sq", g[:, 0], flux=0.01)
    assert fixed.shape == () and float(fixed) == 30.0


def test_dephasing_fields_compares_with_the_comparator_the_configs_state():
    """experiments/dephasing_fields.py divides by the finite square's one loop that
    configs/scaling_dephasing_2d_48_fields.toml wrote down before its run (48^2, D = 5.61, l = 4.99, tau_phi = 40):
    magnetoconductance 0.2181 at flux 0.005 and the corrected beta_phi 0.858 of -1/(pi g) at g = 4; the singlet
    (symplectic) sign reverses both."""
    import math

    fields = experiment("dephasing_fields")
    mc, beta, mfp = fields.one_loop(48, 5.61, 2 * 5.61 / 4.99, 40.0, 0.005, 4.0, 1.0)
    assert abs(mfp - 4.99) < 1e-12
    assert abs(mc - 0.2181) < 5e-4 and abs(beta / (-1 / (math.pi * 4.0)) - 0.858) < 5e-4
    assert fields.one_loop(48, 5.61, 2 * 5.61 / 4.99, 40.0, 0.005, 4.0, -1.0)[:2] == (-mc, -beta)
